/* core.h: the one header every subsystem includes -- Python.h, the version
 * shims, and the module state.
 *
 * Each subsystem lives in its own folder (heap/, census/, advise/, tracer/,
 * capture/, lineprof/, records/) and hooks into the module through one
 * `*_module_exec(PyObject *m)` function in its `<prefix>_module.c` binding,
 * declared in bindings.h and called from module.c.  Subsystems reach the
 * module state through core_get_state(); process-wide state that CPython
 * itself makes global (the PEP 445 allocator hooks) is documented where it
 * lives.
 */
#ifndef MEMLENS_CORE_H
#define MEMLENS_CORE_H

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

/* tp_new of the module's types that only the C code may create (their
 * fields would be NULL otherwise): raises TypeError. */
PyObject *core_tp_new_refused(PyTypeObject *type, PyObject *args, PyObject *kwds);

#endif /* MEMLENS_CORE_H */
