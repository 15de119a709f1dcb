/* trace_stack.h: interned Python stacks.
 *
 * Stacks are interned as a trie: a stack is its innermost frame (code
 * object, instruction offset) plus the id of the stack of its callers
 * (`parent`; id 1 is the empty stack).  Interning a stack whose callers are
 * already known is one hash probe on (code, offset, parent), which is what
 * the tracer does on almost every allocation: it caches, per thread, the id
 * of the callers' stack and checks that the callers did not change
 * (trace_hooks.c).  Each distinct stack gets a small integer id, so a live
 * block stores only 22 bits to name the stack that allocated it, and each
 * stack record carries the running totals of the blocks it allocated (live
 * and cumulative), so a snapshot is a walk over stacks, not over blocks.
 *
 * The table lives in mmap'd memory (trace_mem.h), never in PyMem, so the
 * allocator hooks can use it.  Functions suffixed _unlocked rely on the
 * caller for exclusion: the tracer calls them with the GIL held
 * (trace_hooks.h), which also allows the references to code objects.
 */
#ifndef MEMLENS_TRACE_STACK_H
#define MEMLENS_TRACE_STACK_H

#include "cpython/cpy_frame.h"

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
    PyCodeObject *code; /* innermost frame; strong reference (NULL: empty) */
    int32_t offset;     /* instruction offset in code units */
    uint32_t parent;    /* id of the callers' stack */
    uint32_t depth;     /* number of frames */
    uint32_t pad_;
    /* Live totals of the blocks this stack allocated. */
    uint64_t size;
    uint64_t count; /* in STACK_COUNT_ONE units */
    /* Cumulative totals of every block this stack allocated since start(),
     * freed or not: increased with size/count, never decreased.  Written
     * in the same place as size/count, so the allocation path touches no
     * other line of the record. */
    uint64_t alloc_size;
    uint64_t alloc_count; /* in STACK_COUNT_ONE units */
    /* Totals at the latest high-water mark, valid when snap_gen equals the
     * tracer's peak generation; otherwise the live totals have not changed
     * since that peak and are the peak picture themselves. */
    uint64_t snap_size;
    uint64_t snap_count;
    uint64_t snap_gen;
} stack_rec; /* 80 bytes: the cumulative totals did not fit in 64 */

/* The hooks' working set per stack: keep an eye on it when adding fields. */
_Static_assert(sizeof(stack_rec) == 80, "stack_rec layout changed");

typedef struct {
    stack_rec *recs; /* by id; recs[0] unused */
    uint32_t nrecs;
    uint32_t cap_recs;
    uint32_t *index; /* open addressing on (code, offset, parent) */
    uint32_t index_mask;
    int overflowed; /* a stack was cut short: the table was full */
} stack_table;

/* Set up an empty table (with the empty stack as id 1); -1 on no memory. */
int stack_table_init(stack_table *t);
/* Id of the stack (code, offset) called from stack `parent`, interning it if
 * new, which takes a reference to `code`: the GIL must be held.  When the
 * table is full or out of memory, returns `parent` (the stack loses its
 * innermost frames) and sets `overflowed`. */
uint32_t stack_intern_unlocked(stack_table *t, PyCodeObject *code, int32_t offset, uint32_t parent);
static inline stack_rec *
stack_get_unlocked(stack_table *t, uint32_t id)
{
    return &t->recs[id];
}
/* Release everything the table holds (DECREFs: needs the GIL, and must not
 * be called while the tables are in use, since deallocation may run code). */
void stack_table_release(stack_table *t);

#endif /* MEMLENS_TRACE_STACK_H */
