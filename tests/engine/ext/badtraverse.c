/* A test-only extension type whose tp_traverse misbehaves in the ways
 * third-party extensions get away with (CPython's own collector tolerates
 * them): it reports references it does not own to objects the collector
 * ignores (a shared int, its static type) and stops early with an error
 * code when asked to.  (Reporting NULL, or a GC object more often than it
 * is owned, crashes CPython's collector itself, so no extension can.)
 * Built by tests/test_misbehaving_traverse.py in a temporary directory. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD PyObject *held; /* a real, owned reference */
    int stop_early;
} BadObject;

static PyObject *borrowed_int; /* reported but never owned */

static int
Bad_traverse(BadObject *self, visitproc visit, void *arg)
{
    Py_VISIT(borrowed_int); /* not ours */
    if (self->stop_early) {
        return -1; /* an error code mid-traversal */
    }
    Py_VISIT(self->held);
    Py_VISIT((PyObject *)Py_TYPE(self)); /* a static type: not a GC object */
    return 0;
}

static int
Bad_clear(BadObject *self)
{
    Py_CLEAR(self->held);
    return 0;
}

static void
Bad_dealloc(BadObject *self)
{
    PyObject_GC_UnTrack(self);
    Bad_clear(self);
    PyObject_GC_Del(self);
}

static int
Bad_init(BadObject *self, PyObject *args, PyObject *kw)
{
    PyObject *held = NULL;
    int stop = 0;
    if (!PyArg_ParseTuple(args, "O|p", &held, &stop)) {
        return -1;
    }
    Py_INCREF(held);
    Py_XSETREF(self->held, held);
    self->stop_early = stop;
    return 0;
}

static PyTypeObject BadType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "badtraverse.Bad",
    .tp_basicsize = sizeof(BadObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Bad_init,
    .tp_traverse = (traverseproc)Bad_traverse,
    .tp_clear = (inquiry)Bad_clear,
    .tp_dealloc = (destructor)Bad_dealloc,
};

static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "badtraverse", NULL, -1, NULL};

PyMODINIT_FUNC
PyInit_badtraverse(void)
{
    if (PyType_Ready(&BadType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&mod);
    if (m == NULL) {
        return NULL;
    }
    borrowed_int = PyLong_FromLong(123456789);
    Py_INCREF(&BadType);
    if (PyModule_AddObject(m, "Bad", (PyObject *)&BadType) < 0
        || PyModule_AddObject(m, "shared_int", borrowed_int) < 0) {
        return NULL;
    }
    Py_INCREF(borrowed_int);
    return m;
}
