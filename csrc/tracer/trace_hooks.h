/* trace_hooks.h: the allocation tracer engine.
 *
 * PEP 445 hooks on the RAW, MEM and OBJ domains, chained to the previous
 * allocators, record every live block (or, in sampled mode, a Poisson
 * sample of them) in the live-block map (trace_map.h) with the interned
 * stack (trace_stack.h) that allocated it, and keep per-stack and global totals:
 * live, cumulative (everything allocated since start(), per stack) and the
 * picture at the high-water mark.
 *
 * The hooks and the tables are process-wide because PEP 445 allocators
 * are: there is one tracer per process, whatever the module state says.
 *
 * Locking: the GIL protects the stack table and the totals.  The hooks of
 * the MEM and OBJ domains (and RAW calls made with the GIL) update them
 * directly, with no atomic read-modify-write on the hot path; RAW calls
 * made without the GIL take a spinlock among themselves, record their block
 * in the map (whose entries are per block, see trace_map.h) and queue the
 * change to the totals for the next GIL holder.  Spinlocks are held only for
 * bookkeeping, never while calling the underlying allocator or running
 * Python code, so they never nest with another lock; pthread_atfork
 * handlers hold them across fork() so the child never inherits them locked.
 */
#ifndef MEMLENS_TRACE_HOOKS_H
#define MEMLENS_TRACE_HOOKS_H

#include "tracer/trace_stack.h" /* first: core.h, Python.h */
#include "tracer/trace_map.h"

#include <stddef.h>
#include <stdint.h>

/* All functions below need the GIL (but trace_peek_memory).
 *
 * Start tracing; `native`: the malloc and mmap calls of C extensions and
 * the libraries they load too (trace_native.h).  -1 with an exception set
 * on failure. */
int trace_start(int max_frames, uint64_t sample_bytes, int native);
/* Stop tracing and free the tables (GIL held).  No-op when not tracing. */
void trace_stop(void);
/* Install (1) or remove (0) PEP 445 hooks that only call the allocator
 * below, for benchmarks (memlens._testcore, through testapi.h); -1 with an
 * exception set if that cannot be done (the tracer runs, or other hooks
 * sit above them).  GIL held. */
int trace_chain_only(int on);
int trace_is_tracing(void);
/* Current and peak traced bytes (estimates in sampled mode). */
void trace_get_traced_memory(uint64_t *current, uint64_t *peak);
/* Current and peak traced bytes and the native share of current, without
 * the GIL (the timeline's sampler thread): what GIL-less calls queued is
 * not applied, so the figures may lag by those. */
void trace_peek_memory(uint64_t *current, uint64_t *peak, uint64_t *native);
/* The native blocks' share of traced_memory: now, and at the peak. */
void trace_get_native_memory(uint64_t *current, uint64_t *at_peak);
/* Make the peak equal to the current size, and the peak picture to the
 * current one. */
void trace_reset_peak(void);
/* Bytes of RAM the tracer's own tables use. */
size_t trace_tracer_memory(void);
/* Live traced blocks (sampled blocks in sampled mode). */
uint64_t trace_live_blocks(void);

/* Everything a reader needs, valid while the GIL is held and nothing
 * allocates through the hooks (trace_thread_pause()). */
typedef struct {
    stack_table *stacks;
    uint64_t peak_gen; /* stacks with snap_gen == peak_gen use snap_* */
    uint64_t current;
    uint64_t peak;
    uint64_t sample_bytes;
    int max_frames;
    int tracing;
    int failed; /* bookkeeping ran out of memory at some point */
} trace_view;

void trace_view_get(trace_view *v);

/* For the native hooks (trace_native.c), which may run on any thread, with
 * or without the GIL, and never raise.  A hook brackets its bookkeeping with
 * enter/leave: trace_native_enter() is 0 when the tracer is off or this
 * thread is already inside a hook (the underlying allocator's or our own
 * allocations), and the hook then only calls the real function.  The
 * blocks are recorded as RAW-domain blocks are (trace_record). */
int trace_native_enter(void);
void trace_native_leave(void);
/* The tracer's generation (see trace_native_put_back). */
uint64_t trace_native_generation(void);
/* Block `p` of `size` bytes was allocated. */
void trace_native_alloc(void *p, size_t size);
/* Block `p` is freed: its entry (stack 0 if it was not traced). */
trace_map_entry trace_native_free(void *p);
/* Put back a block taken out by trace_native_free() (a failed realloc or
 * mremap, the rest of a partly unmapped region): live again, not counted
 * as allocated again; `gen` is trace_native_generation() when it was
 * taken out. */
void trace_native_put_back(void *p, trace_map_entry e, uint64_t gen);
/* PyTraceMalloc_Track(): recorded unless the block already is (its
 * malloc() was seen by a native hook). */
void trace_native_track(void *p, size_t size);

/* Leave this thread's new blocks untraced (a counter, so calls nest):
 * memlens' own report objects are not part of what it measures. */
void trace_thread_pause(void);
void trace_thread_resume(void);

/* Per-thread cumulative counters, read by the line profiler (lp_events.c)
 * at every line boundary.  Each thread's own allocations and frees update
 * its own counters (GIL held, in trace_record / trace_on_free), and only
 * that thread reads them, so a line's figures never include another
 * thread's allocations.  "Freed" counts the traced blocks this thread
 * freed, whoever allocated them.  Real block sizes (the line profiler runs
 * the tracer in exact mode); RAW calls made without the GIL are not
 * counted. */
typedef struct {
    uint64_t allocated; /* bytes of traced blocks allocated (realloc: new size) */
    uint64_t freed;     /* bytes of traced blocks freed (realloc: old size) */
    int64_t peak_net;   /* highest allocated - freed; readers may lower it to restart */
    /* The highest peak_net the line profiler lowered at a line boundary
     * (lp_events.c), for a reader measuring across lines (%memit). */
    int64_t peak_held;
} trace_thread_counters;

/* This thread's counters, valid for the thread's lifetime; only read them
 * from this thread, outside the hooks (the GIL held). */
trace_thread_counters *trace_thread_counters_ptr(void);

/* Install the fork handlers; called once from the module's exec. */
int trace_hooks_init(void);

#endif /* MEMLENS_TRACE_HOOKS_H */
