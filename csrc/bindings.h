/* bindings.h: the subsystems' `*_module_exec` hooks, called in order from
 * module.c's Py_mod_exec slot.  Only module.c and the binding files
 * (`<folder>/<prefix>_module.c`) include this; engine files never do.
 *
 * Each hook adds its functions/types to `m` and returns 0, or -1 with an
 * exception set.  Keep the list in the order module.c calls them.
 */
#ifndef MEMLENS_BINDINGS_H
#define MEMLENS_BINDINGS_H

#include "core.h"

int walk_module_exec(PyObject *m);   /* heap/: sizeof, deep_size, size_by_type, breakdown */
int rec_module_exec(PyObject *m);    /* records/: compact records */
int advise_module_exec(PyObject *m); /* advise/: the advisor's heap scan */
int census_module_exec(PyObject *m); /* census/: census, retained size, why_alive */
int trace_module_exec(PyObject *m);  /* tracer/: the allocation tracer, the timeline */
int cap_module_exec(PyObject *m);    /* capture/: capture files (run, trace_load) */
int lp_module_exec(PyObject *m);     /* lineprof/: line-by-line profile */

#endif /* MEMLENS_BINDINGS_H */
