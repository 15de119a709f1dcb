/* trace_budget.h: what pays for the live-block map's pages.
 *
 * The map (trace_map.c) opens a new page of entries only while its pages
 * cost at most so many bytes per block at the high-water mark of live
 * traced blocks.  That mark is kept by the tracer's totals (trace_hooks.c),
 * next to the live count it follows; this header is the one thing the map
 * needs from them, so that the map does not depend on the hooks.
 */
#ifndef MEMLENS_TRACE_BUDGET_H
#define MEMLENS_TRACE_BUDGET_H

#include <stdint.h>

/* The high-water mark of live traced blocks since start().  Written by the
 * hooks with the GIL held (and by start()/stop() under the tracer's GIL-less
 * lock as well); read without any lock by trace_map.c, from GIL-less hooks
 * too: a stale value only moves the budget a little. */
extern int64_t trace_blocks_peak;

#endif /* MEMLENS_TRACE_BUDGET_H */
