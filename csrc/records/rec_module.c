/* rec_module.c: registers the compact records in the module: the
 * RecordMeta metaclass (rec_type.c), the _RecordField descriptor type
 * (rec_field.c), _RecordBase and the module functions (rec_instance.c),
 * and memlens.Record itself.  The three types are kept in the module state
 * too (core.h). */
#include "bindings.h"
#include "records/rec.h"

#include <stddef.h>

/* PyModule_AddObjectRef is 3.10+. */
static int
rec_add_object(PyObject *m, const char *name, PyObject *obj)
{
    Py_INCREF(obj);
    if (PyModule_AddObject(m, name, obj) < 0) {
        Py_DECREF(obj);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(rec_record_doc,
             "Base class of compact records.\n\n"
             "    class Point(memlens.Record):\n"
             "        x: float\n"
             "        y: float\n"
             "        label: str = \"\"\n\n"
             "int, float and bool fields are stored unboxed (int64, double, byte);\n"
             "any other annotation is an object reference.  Class options:\n"
             "frozen, order, kw_only, weakref.");

int
rec_module_exec(PyObject *m)
{
    PyObject *meta = NULL, *descr_type = NULL, *base = NULL, *record = NULL;
    PyObject *ns = NULL, *meta_bases = NULL;
    int rc = -1;

    /* 3.9 only accepts a tuple here, not a single base type */
    meta_bases = PyTuple_Pack(1, (PyObject *)&PyType_Type);
    if (meta_bases == NULL) {
        goto done;
    }
    meta = PyType_FromModuleAndSpec(m, &rec_meta_spec, meta_bases);
    if (meta == NULL) {
        goto done;
    }
    /* Calling a record class goes through its tp_vectorcall only if the
     * metaclass advertises vectorcall at type's offset.  3.12+ inherits
     * this from `type`; 3.9-3.11 do not inherit it into heap types. */
    ((PyTypeObject *)meta)->tp_vectorcall_offset = offsetof(PyTypeObject, tp_vectorcall);
    ((PyTypeObject *)meta)->tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL;
    PyType_Modified((PyTypeObject *)meta);

    descr_type = PyType_FromModuleAndSpec(m, &rec_descr_spec, NULL);
    if (descr_type == NULL) {
        goto done;
    }
    base = PyType_FromModuleAndSpec(m, &rec_base_spec, NULL);
    if (base == NULL) {
        goto done;
    }
    /* In the state before Record is made: building a record class reads
     * the descriptor type from there (rec_type.c). */
    core_state *st = core_get_state(m);
    st->rec_meta_type = (PyTypeObject *)Py_NewRef(meta);
    st->rec_field_type = (PyTypeObject *)Py_NewRef(descr_type);
    st->rec_base_type = (PyTypeObject *)Py_NewRef(base);
    ns = Py_BuildValue("{s:s,s:s,s:s}", "__module__", "memlens", "__qualname__", "Record",
                       "__doc__", rec_record_doc);
    if (ns == NULL) {
        goto done;
    }
    record = PyObject_CallFunction(meta, "s(O)O", "Record", base, ns);
    if (record == NULL) {
        goto done;
    }
    if (rec_add_object(m, "RecordMeta", meta) < 0 || rec_add_object(m, "_RecordBase", base) < 0
        || rec_add_object(m, "_RecordField", descr_type) < 0
        || rec_add_object(m, "Record", record) < 0 || PyModule_AddFunctions(m, rec_functions) < 0
        || PyModule_AddFunctions(m, rec_layout_functions) < 0) {
        goto done;
    }
    st->rec_restore = PyObject_GetAttrString(m, "_record_restore");
    if (st->rec_restore == NULL) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(meta);
    Py_XDECREF(descr_type);
    Py_XDECREF(base);
    Py_XDECREF(record);
    Py_XDECREF(ns);
    Py_XDECREF(meta_bases);
    return rc;
}
