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

/* The module's types (and the one function its objects hand out), as strong references taken when each subsystem's
 * exec creates them, so that C code uses them without looking anything up
 * by name.  module.c's core_traverse and core_clear list the fields in this
 * order.  (Facts about the interpreter that are the same for every module
 * instance, such as heap/walk_size.c's interned "__sizeof__" and the
 * descriptors it looks up, are process-wide statics where they are used.) */
typedef struct {
    /* records/rec_module.c: the compact records' types. */
    PyTypeObject *rec_meta_type;  /* RecordMeta, the metaclass of memlens.Record */
    PyTypeObject *rec_field_type; /* _RecordField, the field descriptors */
    PyTypeObject *rec_base_type;  /* _RecordBase, the base of memlens.Record */
    PyObject *rec_restore;        /* _record_restore, what a pickled record calls */
    /* tracer/trace_table.c: what take_snapshot() and the capture reader
     * make, and what the capture writer accepts. */
    PyTypeObject *trace_table_type; /* TraceTable */
} core_state;

/* The state of the module object `module` (a module function's `self`;
 * methods of the module's heap types use PyType_GetModuleState()). */
core_state *core_get_state(PyObject *module);

/* tp_new of the module's types that only the C code may create (their
 * fields would be NULL otherwise): raises TypeError. */
PyObject *core_tp_new_refused(PyTypeObject *type, PyObject *args, PyObject *kwds);

#endif /* MEMLENS_CORE_H */
