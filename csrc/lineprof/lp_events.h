/* lineprof.h: the line-by-line memory profiler's event machinery.
 *
 * Profiled code objects are registered in a small C table.  Line events
 * come only from them: on 3.12+ through PEP 669 (sys.monitoring) events
 * enabled locally on those code objects, with C callables as callbacks; on
 * 3.9-3.11 through a C trace function (PyEval_SetTrace), with a PEP 523
 * frame evaluation function that switches the thread's tracing off while a
 * frame that is not profiled runs (the trace function also switches line
 * events off in any such frame it does see).  At each line boundary the running
 * thread's cumulative counters (trace_hooks.h: allocated, freed, local
 * peak) are read and the deltas charged to the line that just ended, in
 * the innermost profiled frame of that thread.
 *
 * Everything here runs with the GIL held, which protects the code table
 * and the per-line records.  Per-thread state (the stack of profiled
 * frames running on the thread) is thread-local.  The profiler's own
 * memory comes from the C allocator, never from PyMem, so it is not traced.
 */
#ifndef MEMLENS_LINEPROF_H
#define MEMLENS_LINEPROF_H

#include "core.h"

/* Exported as the lineprof_* functions of memlens._core. */
int lineprof_module_exec(PyObject *m);

#endif /* MEMLENS_LINEPROF_H */
