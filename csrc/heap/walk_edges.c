/* walk_edges.c: naming a reference (edge_; see walk_edges.h). */
#include "heap/walk_edges.h"
#include "heap/walk_attrs.h"
#include "cpython/cpy_layout.h"

/* Safe to repr: builtin scalars whose repr runs no user code. */
static int
edge_is_plain_key(PyObject *k)
{
    return PyUnicode_CheckExact(k) || PyLong_CheckExact(k) || PyFloat_CheckExact(k)
           || PyBytes_CheckExact(k) || PyBool_Check(k) || k == Py_None;
}

/* A key's repr longer than EDGE_KEY_MAX characters is cut to its first
 * EDGE_KEY_CUT and "...", so that the label keeps the same length bound. */
#define EDGE_KEY_MAX 60
#define EDGE_KEY_CUT (EDGE_KEY_MAX - 3)

static PyObject *
edge_key_label(const char *fmt, PyObject *key)
{
    PyObject *r;
    if (edge_is_plain_key(key)) {
        r = PyObject_Repr(key);
        if (r == NULL) {
            return NULL;
        }
        if (PyUnicode_GET_LENGTH(r) > EDGE_KEY_MAX) {
            PyObject *cut = PyUnicode_Substring(r, 0, EDGE_KEY_CUT);
            Py_DECREF(r);
            if (cut == NULL) {
                return NULL;
            }
            r = PyUnicode_FromFormat("%U...", cut);
            Py_DECREF(cut);
            if (r == NULL) {
                return NULL;
            }
        }
    }
    else {
        r = PyUnicode_FromFormat("<%s>", Py_TYPE(key)->tp_name);
        if (r == NULL) {
            return NULL;
        }
    }
    PyObject *s = PyUnicode_FromFormat(fmt, r);
    Py_DECREF(r);
    return s;
}

PyObject *
edge_dict_label(PyObject *d, PyObject *child, int as_attr)
{
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (v == child) {
            if (as_attr && PyUnicode_CheckExact(k)) {
                return PyUnicode_FromFormat(".%U", k);
            }
            return edge_key_label("[%U]", k);
        }
        if (k == child) {
            return edge_key_label("<key %U>", k);
        }
    }
    return NULL;
}

typedef struct {
    PyObject *child;
    PyObject *label; /* result, or NULL */
} edge_attr_find;

static int
edge_attr_match(const attrs_item *it, void *arg)
{
    edge_attr_find *f = arg;
    if (it->value != f->child) {
        return 0;
    }
    f->label = it->name != NULL ? PyUnicode_FromFormat(".%U", it->name)
                                : PyUnicode_FromFormat(".%s", it->slot);
    return 1;
}

/* ".name" of the instance attribute or slot holding `child` (read in
 * place, see walk_attrs.h), ".__dict__" for the instance's dict itself, or NULL
 * (exception set only on failure). */
static PyObject *
edge_attr_label(PyObject *op, PyObject *child)
{
    PyObject *d = layout_instance_dict(op, Py_TYPE(op));
    if (d != NULL && d == child) {
        return PyUnicode_FromString(".__dict__");
    }
    edge_attr_find f = {child, NULL};
    (void)attrs_foreach(op, edge_attr_match, &f);
    return f.label;
}

PyObject *
edge_label(PyObject *parent, PyObject *child)
{
    PyObject *l = NULL;
    PyTypeObject *tp = Py_TYPE(parent);

    if (PyList_Check(parent) || PyTuple_Check(parent)) {
        Py_ssize_t n = Py_SIZE(parent);
        PyObject **items = PyList_Check(parent) ? ((PyListObject *)parent)->ob_item
                                                : ((PyTupleObject *)parent)->ob_item;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (items[i] == child) {
                return PyUnicode_FromFormat("[%zd]", i);
            }
        }
    }
    if (PyDict_Check(parent)) {
        l = edge_dict_label(parent, child, 0);
        if (l != NULL || PyErr_Occurred()) {
            return l;
        }
    }
    if (PyType_Check(parent) && ((PyTypeObject *)parent)->tp_dict == child) {
        return PyUnicode_FromString(".__dict__");
    }
    if (PyModule_Check(parent) && PyModule_GetDict(parent) == child) {
        return PyUnicode_FromString(".__dict__");
    }
    if (PyCell_Check(parent) && PyCell_GET(parent) == child) {
        return PyUnicode_FromString(".cell_contents");
    }
    if (PyFunction_Check(parent) && PyFunction_GET_CLOSURE(parent) == child) {
        return PyUnicode_FromString(".__closure__");
    }
    if (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) {
        l = edge_attr_label(parent, child);
        if (l != NULL || PyErr_Occurred()) {
            return l;
        }
    }
    else {
        /* builtin objects with object members (function.__globals__ ...) */
        for (PyMemberDef *m = tp->tp_members; m != NULL && m->name != NULL; m++) {
            if ((m->type == Py_T_OBJECT_EX || m->type == Py_T_OBJECT)
                && *(PyObject **)((char *)parent + m->offset) == child) {
                return PyUnicode_FromFormat(".%s", m->name);
            }
        }
    }
    if (PyAnySet_Check(parent)) {
        return PyUnicode_FromString("{item}");
    }
    return PyUnicode_FromFormat("<%s>", Py_TYPE(child)->tp_name);
}
