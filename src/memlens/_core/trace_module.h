/* trace_module.h: the Python binding of the tracer (memlens._core.trace_*
 * functions); argument conversion only, the work is in trace_hooks.c,
 * trace_snapshot.c and capture.c. */
#ifndef MEMLENS_TRACE_MODULE_H
#define MEMLENS_TRACE_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

int trace_module_exec(PyObject *m);

#endif /* MEMLENS_TRACE_MODULE_H */
