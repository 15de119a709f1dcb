/* lp_events.h: the line-by-line memory profiler's event machinery.
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
#ifndef MEMLENS_LP_EVENTS_H
#define MEMLENS_LP_EVENTS_H

#include "core.h"

#include <stdint.h>

/* Figures of one source line, summed over its occurrences. */
typedef struct {
    uint64_t occurrences;
    int64_t increment; /* allocated - freed */
    uint64_t allocated;
    uint64_t freed;
    int64_t peak;       /* highest net growth during one occurrence */
    uint64_t mem_usage; /* highest traced (or RSS) bytes seen after it */
    int seen;           /* charged at least once */
} lp_line;

typedef struct {
    PyObject *code; /* strong reference */
    int firstline;  /* lines[i] is line firstline + i */
    int nlines;
    int is_gen;     /* generator/coroutine: a push may be a resume */
    lp_line *lines; /* C heap (untraced) */
    uint64_t calls;
} lp_code;

/* Everything below runs with the GIL held. */

/* Once, at module exec: the per-thread key.  0, or -1 with OSError. */
int lp_events_init(void);

/* Profile the lines of `code` (a code object; registering twice is a
 * no-op).  0, or -1 with MemoryError. */
int lp_register(PyObject *code);
/* Start / stop charging line events (3.9-3.11: install / remove the C trace
 * function on this thread and the frame evaluation function).  rss: Mem
 * usage from RSS instead of traced bytes.  Records are kept by lp_disable. */
void lp_enable(int rss);
void lp_disable(void);
/* Zero every line record (registrations kept); forget every registration. */
void lp_reset(void);
void lp_clear(void);
/* The registered code objects, in registration order (borrowed: valid until
 * the next lp_register / lp_clear). */
lp_code *const *lp_records(Py_ssize_t *n);
/* Sticky: the C allocator failed, some figures are missing (lp_reset clears it). */
int lp_has_failed(void);
/* Between lp_enable and lp_disable. */
int lp_is_active(void);

/* Event entry points registered from Python: memlens/lineprof.py hands
 * them to sys.monitoring (3.12+) or threading.settrace (3.9-3.11). */
#if PY_VERSION_HEX >= 0x030C0000
PyObject *lp_mon_start(PyObject *m, PyObject *const *args, Py_ssize_t nargs);
PyObject *lp_mon_resume(PyObject *m, PyObject *const *args, Py_ssize_t nargs);
PyObject *lp_mon_leave(PyObject *m, PyObject *const *args, Py_ssize_t nargs);
PyObject *lp_mon_line(PyObject *m, PyObject *const *args, Py_ssize_t nargs);
#else
PyObject *lp_thread_hook(PyObject *m, PyObject *args);
#endif

#endif /* MEMLENS_LP_EVENTS_H */
