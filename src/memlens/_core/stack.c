/* stack.c: interning of Python stacks (see stack.h). */
#include "stack.h"
#include "trace_mem.h"

#include <string.h>

#define STACK_INIT_RECS 4096u
#define STACK_INIT_FRAMES 16384u
#define STACK_INIT_INDEX 8192u

int
stack_table_init(stack_table *t)
{
    memset(t, 0, sizeof(*t));
    t->recs = trace_mem_map(STACK_INIT_RECS * sizeof(stack_rec), 1);
    t->frames = trace_mem_map(STACK_INIT_FRAMES * sizeof(stack_frame), 1);
    t->index = trace_mem_map(STACK_INIT_INDEX * sizeof(uint32_t), 1);
    if (t->recs == NULL || t->frames == NULL || t->index == NULL) {
        goto error;
    }
    t->cap_recs = STACK_INIT_RECS;
    t->cap_frames = STACK_INIT_FRAMES;
    t->index_mask = STACK_INIT_INDEX - 1;
    /* id 0: "no stack"; id 1: the empty stack (not in the index: callers
     * with no frame ask for it directly). */
    t->nrecs = 2;
    t->recs[STACK_ID_EMPTY].hash = stack_hash(NULL, 0);
    return 0;

error:
    trace_mem_unmap(t->recs, STACK_INIT_RECS * sizeof(stack_rec), 1);
    trace_mem_unmap(t->frames, STACK_INIT_FRAMES * sizeof(stack_frame), 1);
    trace_mem_unmap(t->index, STACK_INIT_INDEX * sizeof(uint32_t), 1);
    memset(t, 0, sizeof(*t));
    return -1;
}

uint64_t
stack_hash(const stack_frame *frames, int n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    for (int i = 0; i < n; i++) {
        h ^= (uint64_t)(uintptr_t)frames[i].code + ((uint64_t)(uint32_t)frames[i].offset << 44);
        h *= 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
    }
    return h;
}

static int
stack_equal(const stack_table *t, const stack_rec *r, const stack_frame *frames, int n)
{
    if (r->nframes != (uint32_t)n) {
        return 0;
    }
    const stack_frame *g = &t->frames[r->first];
    for (int i = 0; i < n; i++) {
        if (g[i].code != frames[i].code || g[i].offset != frames[i].offset) {
            return 0;
        }
    }
    return 1;
}

/* Double the index and reinsert every stack. */
static int
stack_index_grow_unlocked(stack_table *t)
{
    uint32_t old_size = t->index_mask + 1;
    uint32_t new_size = old_size * 2;
    uint32_t *idx = trace_mem_map((size_t)new_size * sizeof(uint32_t), 1);
    if (idx == NULL) {
        return -1;
    }
    for (uint32_t id = 2; id < t->nrecs; id++) {
        uint32_t i = (uint32_t)t->recs[id].hash & (new_size - 1);
        while (idx[i] != 0) {
            i = (i + 1) & (new_size - 1);
        }
        idx[i] = id;
    }
    trace_mem_unmap(t->index, (size_t)old_size * sizeof(uint32_t), 1);
    t->index = idx;
    t->index_mask = new_size - 1;
    return 0;
}

uint32_t
stack_intern_unlocked(stack_table *t, const stack_frame *frames, int n, uint64_t hash)
{
    if (n == 0) {
        return STACK_ID_EMPTY;
    }
    uint32_t i = (uint32_t)hash & t->index_mask;
    for (;;) {
        uint32_t id = t->index[i];
        if (id == 0) {
            break;
        }
        stack_rec *r = &t->recs[id];
        if (r->hash == hash && stack_equal(t, r, frames, n)) {
            return id;
        }
        i = (i + 1) & t->index_mask;
    }
    /* New stack.  Make room first so that failure leaves the table as is. */
    if (t->nrecs + 1 >= STACK_ID_LIMIT
        || (uint64_t)t->nframes + (uint64_t)n >= UINT32_MAX) {
        t->overflowed = 1;
        return STACK_ID_EMPTY;
    }
    if (t->nrecs == t->cap_recs) {
        stack_rec *r = trace_mem_remap(t->recs, (size_t)t->cap_recs * sizeof(stack_rec),
                                       (size_t)t->cap_recs * 2 * sizeof(stack_rec), 1);
        if (r == NULL) {
            t->overflowed = 1;
            return STACK_ID_EMPTY;
        }
        t->recs = r;
        t->cap_recs *= 2;
    }
    while (t->nframes + (uint32_t)n > t->cap_frames) {
        stack_frame *f = trace_mem_remap(t->frames, (size_t)t->cap_frames * sizeof(stack_frame),
                                         (size_t)t->cap_frames * 2 * sizeof(stack_frame), 1);
        if (f == NULL) {
            t->overflowed = 1;
            return STACK_ID_EMPTY;
        }
        t->frames = f;
        t->cap_frames *= 2;
    }
    if ((t->nrecs + 1) * 2 > t->index_mask + 1) {
        if (stack_index_grow_unlocked(t) < 0) {
            t->overflowed = 1;
            return STACK_ID_EMPTY;
        }
        i = (uint32_t)hash & t->index_mask;
        while (t->index[i] != 0) {
            i = (i + 1) & t->index_mask;
        }
    }
    uint32_t id = t->nrecs++;
    stack_rec *r = &t->recs[id];
    memset(r, 0, sizeof(*r));
    r->hash = hash;
    r->first = t->nframes;
    r->nframes = (uint32_t)n;
    for (int k = 0; k < n; k++) {
        /* The GIL is held (n > 0 only when frames were read under it), so
         * the code objects can be kept alive for the report. */
        Py_INCREF(frames[k].code);
        t->frames[t->nframes + (uint32_t)k] = frames[k];
    }
    t->nframes += (uint32_t)n;
    t->index[i] = id;
    return id;
}

void
stack_table_release(stack_table *t)
{
    if (t->frames != NULL) {
        for (uint32_t k = 0; k < t->nframes; k++) {
            Py_DECREF(t->frames[k].code);
        }
    }
    trace_mem_unmap(t->recs, (size_t)t->cap_recs * sizeof(stack_rec), 1);
    trace_mem_unmap(t->frames, (size_t)t->cap_frames * sizeof(stack_frame), 1);
    if (t->index != NULL) {
        trace_mem_unmap(t->index, ((size_t)t->index_mask + 1) * sizeof(uint32_t), 1);
    }
    memset(t, 0, sizeof(*t));
}

size_t
stack_table_memory(const stack_table *t)
{
    if (t->recs == NULL) {
        return 0;
    }
    return (size_t)t->cap_recs * sizeof(stack_rec) + (size_t)t->cap_frames * sizeof(stack_frame)
           + ((size_t)t->index_mask + 1) * sizeof(uint32_t);
}
