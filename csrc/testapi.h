/* testapi.h: what memlens._core lends the test-only extension
 * memlens._testcore, through the capsule memlens._core._testapi.
 *
 * _testcore's entry points that must share engine state go through these
 * pointers instead of linking the engine a second time: the tracer's and
 * the line profiler's state is process-wide (static variables next to the
 * PEP 445 hooks and the trace function), and a second copy of it inside
 * _testcore would not know what the first one has installed.  Entry points
 * that need no engine state (the raw-allocator calls, the layout probes,
 * which only include the cpython/ headers) live in _testcore alone.
 */
#ifndef MEMLENS_TESTAPI_H
#define MEMLENS_TESTAPI_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define TESTAPI_CAPSULE "memlens._core._testapi"
/* Bumped whenever the struct changes: _testcore refuses a _core built from
 * other sources. */
#define TESTAPI_VERSION 1

typedef struct {
    unsigned version; /* TESTAPI_VERSION of the _core that made it */
    /* trace_hooks.h: install (1) or remove (0) the chain-only hooks; -1
     * with an exception if the tracer runs or other hooks sit above. */
    int (*trace_chain_only)(int on);
    /* lp_events.h: the line profiler is between enable and disable. */
    int (*lineprof_is_active)(void);
} testapi;

/* _core side (testapi.c): add the capsule to the module. */
int testapi_module_exec(PyObject *m);

#endif /* MEMLENS_TESTAPI_H */
