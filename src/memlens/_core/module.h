/* memlens._core: module init and per-module state.
 *
 * Each subsystem (size_, walk_, trace_, rec_ ...) lives in its own file pair
 * and hooks into the module through one `*_module_exec(PyObject *m)`
 * function listed in module.c.  Subsystems reach the module state through
 * core_get_state(); process-wide state that CPython itself makes global
 * (the PEP 445 allocator hooks) is documented where it lives.
 */
#ifndef MEMLENS_MODULE_H
#define MEMLENS_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX < 0x030A0000
/* 3.9 has no Py_NewRef. */
static inline PyObject *
core_newref_(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#define Py_NewRef(o) core_newref_((PyObject *)(o))
#endif

typedef struct {
    /* interned "__sizeof__", looked up on types for sizing. */
    PyObject *str_sizeof;
} core_state;

core_state *core_get_state(PyObject *module);

/* Subsystem hooks, called in order from the module's Py_mod_exec slot.
 * Each adds its functions/types to `m` and returns 0, or -1 with an
 * exception set. */
/* tp_new of the module's types that only the C code may create (their
 * fields would be NULL otherwise): raises TypeError. */
PyObject *core_tp_new_refused(PyTypeObject *type, PyObject *args, PyObject *kwds);

int size_module_exec(PyObject *m);
int size_api_module_exec(PyObject *m);
int rec_module_exec(PyObject *m);        /* record*.c: compact records */
int advise_module_exec(PyObject *m);     /* advise.c: the advisor's heap scan */
int census_api_module_exec(PyObject *m); /* census_api.c: census, retained size, why_alive */
int trace_module_exec(PyObject *m);      /* trace_module.c: the allocation tracer */
int timeline_module_exec(PyObject *m);   /* timeline.c: memory timeline of `memlens run` */
int cap_run_module_exec(PyObject *m);    /* cap_run.c: run capture files */
int lineprof_module_exec(PyObject *m);   /* lineprof.c: line-by-line profile */

#endif /* MEMLENS_MODULE_H */
