/* trace_lock.h: the tracer's spinlock, shared by the hooks (trace_hooks.c)
 * and the live-block map (trace_map.c).
 *
 * A spinlock, not a mutex: the allocator hooks take it without the GIL,
 * and a pthread mutex may allocate or be interrupted by a signal handler
 * that allocates.  Every lock of the tracer is held only for a few hundred
 * nanoseconds of bookkeeping, never while calling the underlying allocator
 * or running Python code, so no two of them nest except in the fork
 * handlers (trace_hooks.c), which take them in one fixed order.
 */
#ifndef MEMLENS_TRACE_LOCK_H
#define MEMLENS_TRACE_LOCK_H

#include <sched.h>
#include <stdatomic.h>

/* Spins this many times before yielding the CPU to the lock's holder. */
#define TRACE_SPIN_BEFORE_YIELD 64

static inline void
trace_spin_lock(atomic_flag *l)
{
    unsigned spins = 0;
    while (atomic_flag_test_and_set_explicit(l, memory_order_acquire)) {
        if (++spins > TRACE_SPIN_BEFORE_YIELD) {
            sched_yield();
        }
    }
}

static inline void
trace_spin_unlock(atomic_flag *l)
{
    atomic_flag_clear_explicit(l, memory_order_release);
}

#endif /* MEMLENS_TRACE_LOCK_H */
