/* trace_stack.c: interning of Python stacks as a trie (see trace_stack.h). */
#include "tracer/trace_stack.h"
#include "tracer/trace_mem.h"

#include <string.h>

#define STACK_INIT_RECS 4096u
#define STACK_INIT_INDEX 8192u

int
stack_table_init(stack_table *t)
{
    memset(t, 0, sizeof(*t));
    t->recs = trace_mem_map(STACK_INIT_RECS * sizeof(stack_rec), 1);
    t->index = trace_mem_map(STACK_INIT_INDEX * sizeof(uint32_t), 1);
    if (t->recs == NULL || t->index == NULL) {
        goto error;
    }
    t->cap_recs = STACK_INIT_RECS;
    t->index_mask = STACK_INIT_INDEX - 1;
    /* id 0: "no stack"; id 1: the empty stack, the root of the trie. */
    t->nrecs = 2;
    return 0;

error:
    trace_mem_unmap(t->recs, STACK_INIT_RECS * sizeof(stack_rec), 1);
    trace_mem_unmap(t->index, STACK_INIT_INDEX * sizeof(uint32_t), 1);
    memset(t, 0, sizeof(*t));
    return -1;
}

static inline uint32_t
stack_node_hash(PyCodeObject *code, int32_t offset, uint32_t parent)
{
    uint64_t h = (uint64_t)(uintptr_t)code * 0x9E3779B97F4A7C15ull;
    h ^= ((uint64_t)(uint32_t)offset << 32 | parent) * 0xFF51AFD7ED558CCDull;
    return (uint32_t)(h ^ (h >> 29) ^ (h >> 47));
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
        stack_rec *r = &t->recs[id];
        uint32_t i = stack_node_hash(r->code, r->offset, r->parent) & (new_size - 1);
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
stack_intern_unlocked(stack_table *t, PyCodeObject *code, int32_t offset, uint32_t parent)
{
    uint32_t h = stack_node_hash(code, offset, parent);
    uint32_t i = h & t->index_mask;
    for (;;) {
        uint32_t id = t->index[i];
        if (id == 0) {
            break;
        }
        stack_rec *r = &t->recs[id];
        if (r->code == code && r->offset == offset && r->parent == parent) {
            return id;
        }
        i = (i + 1) & t->index_mask;
    }
    /* New stack.  Make room first so that failure leaves the table as is. */
    if (t->nrecs + 1 >= STACK_ID_LIMIT) {
        t->overflowed = 1;
        return parent;
    }
    if (t->nrecs == t->cap_recs) {
        stack_rec *r = trace_mem_remap(t->recs, (size_t)t->cap_recs * sizeof(stack_rec),
                                       (size_t)t->cap_recs * 2 * sizeof(stack_rec), 1);
        if (r == NULL) {
            t->overflowed = 1;
            return parent;
        }
        t->recs = r;
        t->cap_recs *= 2;
    }
    if ((t->nrecs + 1) * 2 > t->index_mask + 1) {
        if (stack_index_grow_unlocked(t) < 0) {
            t->overflowed = 1;
            return parent;
        }
        i = h & t->index_mask;
        while (t->index[i] != 0) {
            i = (i + 1) & t->index_mask;
        }
    }
    uint32_t id = t->nrecs++;
    stack_rec *r = &t->recs[id];
    memset(r, 0, sizeof(*r));
    /* The GIL is held (frames are only read under it), so the code object
     * can be kept alive for the report. */
    Py_INCREF(code);
    r->code = code;
    r->offset = offset;
    r->parent = parent;
    r->depth = t->recs[parent].depth + 1;
    t->index[i] = id;
    return id;
}

void
stack_table_release(stack_table *t)
{
    for (uint32_t id = 2; t->recs != NULL && id < t->nrecs; id++) {
        Py_DECREF(t->recs[id].code);
    }
    trace_mem_unmap(t->recs, (size_t)t->cap_recs * sizeof(stack_rec), 1);
    if (t->index != NULL) {
        trace_mem_unmap(t->index, ((size_t)t->index_mask + 1) * sizeof(uint32_t), 1);
    }
    memset(t, 0, sizeof(*t));
}
