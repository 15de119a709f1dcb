/* stack.h: interned Python stacks.
 *
 * A stack is a sequence of frames (code object, instruction offset),
 * innermost first.  Each distinct stack gets a small integer id, so that a
 * live block only stores 22 bits to name the stack that allocated it, and
 * each stack record carries the running totals of the blocks it allocated
 * (which makes a snapshot a walk over stacks, not over blocks).
 *
 * The table lives in mmap'd memory (trace_mem.h), never in PyMem, so the
 * allocator hooks can use it.  All functions suffixed _unlocked must be
 * called with the tracer lock held (trace_hooks.h); those that create or
 * drop references to code objects also need the GIL, as noted.
 */
#ifndef MEMLENS_STACK_H
#define MEMLENS_STACK_H

#include "stack_compat.h"

#include <stdint.h>

/* Deepest stack the tracer records (the `frames` argument of start()). */
#define STACK_MAX_FRAMES 512

/* Id 0 means "no stack" (an empty map slot); id 1 is the empty stack, used
 * for allocations made with no Python frame or without the GIL; ids are
 * below 2**22 because a live-block map entry holds 22 bits of id. */
#define STACK_ID_NONE 0u
#define STACK_ID_EMPTY 1u
#define STACK_ID_LIMIT (1u << 22)

/* Counts are kept in fixed point so that sampled mode can add fractional
 * weights (1/p per sampled block) without rounding bias. */
#define STACK_COUNT_ONE 65536u

typedef struct {
    uint64_t hash;
    uint32_t first;   /* index of the innermost frame in the frame pool */
    uint32_t nframes;
    /* Live totals of the blocks this stack allocated. */
    uint64_t size;
    uint64_t count; /* in STACK_COUNT_ONE units */
    /* Totals at the latest high-water mark, valid when snap_gen equals the
     * tracer's peak generation; otherwise the live totals have not changed
     * since that peak and are the peak picture themselves. */
    uint64_t snap_size;
    uint64_t snap_count;
    uint64_t snap_gen;
} stack_rec;

typedef struct {
    stack_rec *recs;     /* by id; recs[0] unused */
    uint32_t nrecs;
    uint32_t cap_recs;
    stack_frame *frames; /* frame pool; code objects are strong references */
    uint32_t nframes;
    uint32_t cap_frames;
    uint32_t *index;     /* open addressing by hash: stack ids, 0 = free */
    uint32_t index_mask;
    int overflowed;      /* a stack was folded into the empty stack */
} stack_table;

/* Set up an empty table (with the empty stack as id 1); -1 on no memory. */
int stack_table_init(stack_table *t);
uint64_t stack_hash(const stack_frame *frames, int n);
/* Id of the stack `frames[0:n]`, interning it if new (which takes a
 * reference on each code object: the GIL must be held when n > 0).
 * Returns STACK_ID_EMPTY when the table is full or out of memory. */
uint32_t stack_intern_unlocked(stack_table *t, const stack_frame *frames, int n, uint64_t hash);
static inline stack_rec *
stack_get_unlocked(stack_table *t, uint32_t id)
{
    return &t->recs[id];
}
/* Release everything the table holds (DECREFs: needs the GIL, and must not
 * be called under the tracer lock since deallocation may run code). */
void stack_table_release(stack_table *t);
/* Bytes of memory the table uses. */
size_t stack_table_memory(const stack_table *t);

#endif /* MEMLENS_STACK_H */
