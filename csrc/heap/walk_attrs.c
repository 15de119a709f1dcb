/* walk_attrs.c: an instance's attributes, read in place (attrs_; see
 * walk_attrs.h). */
#include "heap/walk_attrs.h"
#include "cpython/cpy_layout.h"

#if PY_VERSION_HEX >= 0x030B0000
/* 3.11+: the values a class's instances keep outside a dict, as an array
 * parallel to the shared keys' entries, or NULL. */
static PyObject **
attrs_values_array(PyObject *op, PyTypeObject *tp)
{
#if PY_VERSION_HEX >= 0x030D0000
    if (tp->tp_flags & Py_TPFLAGS_INLINE_VALUES) {
        uint8_t *v = (uint8_t *)op + sizeof(PyObject);
        if (v[3] == 0) {
            return NULL; /* values no longer valid: the dict has them */
        }
        return (PyObject **)(v + sizeof(PyObject *));
    }
    return NULL;
#else
    return (PyObject **)layout_instance_values(op, tp);
#endif
}
#endif

int
attrs_foreach(PyObject *op, attrs_fn fn, void *arg)
{
    PyTypeObject *tp = Py_TYPE(op);
    attrs_item it;
    int r;

    if (!(tp->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        return 0;
    }
    it.slot = NULL;
    PyObject *d = layout_instance_dict(op, tp);
    if (d != NULL && PyDict_Check(d)) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(d, &pos, &k, &v)) {
            if (!PyUnicode_Check(k)) {
                continue;
            }
            it.name = k;
            it.value = v;
            if ((r = fn(&it, arg)) != 0) {
                return r;
            }
        }
    }
#if PY_VERSION_HEX >= 0x030B0000
    else if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        layout_dictkeys *keys = layout_cached_keys(tp);
        PyObject **vals = attrs_values_array(op, tp);
        if (keys != NULL && vals != NULL) {
            /* split keys hold {key, value} entries after the index table */
            PyObject **entries =
                (PyObject **)(keys->dk_indices + ((size_t)1 << keys->dk_log2_index_bytes));
            for (Py_ssize_t i = 0; i < keys->dk_nentries; i++) {
                if (vals[i] == NULL || entries[2 * i] == NULL) {
                    continue;
                }
                it.name = entries[2 * i];
                it.value = vals[i];
                if ((r = fn(&it, arg)) != 0) {
                    return r;
                }
            }
        }
    }
#endif
    it.name = NULL;
    for (PyTypeObject *t = tp; t != NULL && (t->tp_flags & Py_TPFLAGS_HEAPTYPE); t = t->tp_base) {
        for (PyMemberDef *m = t->tp_members; m != NULL && m->name != NULL; m++) {
            if (m->type != Py_T_OBJECT_EX && m->type != Py_T_OBJECT) {
                continue;
            }
            if (m->flags & Py_READONLY) {
                continue; /* __weakref__, __dict__ descriptors' storage */
            }
            PyObject *v = *(PyObject **)((char *)op + m->offset);
            if (v == NULL) {
                continue;
            }
            it.slot = m->name;
            it.value = v;
            if ((r = fn(&it, arg)) != 0) {
                return r;
            }
        }
    }
    return 0;
}
