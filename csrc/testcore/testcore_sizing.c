/* testcore_sizing.c: types whose C code calls back into Python in the
 * middle of a heap walk (see testcore.h).
 *
 * memlens takes a __sizeof__ written in Python as the program's view, not
 * the object's allocation, and never calls it; a C __sizeof__ or a C
 * buffer exporter is still called, and may run any Python code it likes.
 * These types are that case, for the tests that guard the walker's pins:
 *   CallbackSizeof(fn): its C __sizeof__ returns fn(self), whatever that
 *     is (an int, a str, an exception); subclassable, so a test can swap
 *     an instance's class.
 *   ObjectBuffer(items, on_getbuffer=None): outside the collector, like
 *     numpy's ndarray; exports its items as a buffer of format "O" and
 *     calls on_getbuffer(self) first when given. */
#include "testcore/testcore.h"

/* ---- CallbackSizeof --------------------------------------------------------- */

typedef struct {
    PyObject_HEAD PyObject *fn; /* called by __sizeof__ */
} CallbackSizeof;

static int
CallbackSizeof_traverse(CallbackSizeof *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fn);
    Py_VISIT(Py_TYPE(self)); /* heap subclasses' instances own their type */
    return 0;
}

static int
CallbackSizeof_clear(CallbackSizeof *self)
{
    Py_CLEAR(self->fn);
    return 0;
}

static void
CallbackSizeof_dealloc(CallbackSizeof *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    CallbackSizeof_clear(self);
    tp->tp_free((PyObject *)self);
}

static int
CallbackSizeof_init(CallbackSizeof *self, PyObject *args, PyObject *kw)
{
    PyObject *fn;
    (void)kw;
    if (!PyArg_ParseTuple(args, "O:CallbackSizeof", &fn)) {
        return -1;
    }
    Py_INCREF(fn);
    Py_XSETREF(self->fn, fn);
    return 0;
}

static PyObject *
CallbackSizeof_sizeof(CallbackSizeof *self, PyObject *Py_UNUSED(ignored))
{
    if (self->fn == NULL) {
        return PyLong_FromSsize_t(Py_TYPE(self)->tp_basicsize);
    }
    /* held across the call: fn may drop self's last reference to itself */
    PyObject *fn = self->fn;
    Py_INCREF(fn);
    PyObject *res = PyObject_CallOneArg(fn, (PyObject *)self);
    Py_DECREF(fn);
    return res;
}

static PyMethodDef CallbackSizeof_methods[] = {
    {"__sizeof__", (PyCFunction)CallbackSizeof_sizeof, METH_NOARGS,
     PyDoc_STR("__sizeof__($self, /)\n--\n\nfn(self), whatever it returns or raises.")},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CallbackSizeof_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memlens._testcore.CallbackSizeof",
    .tp_doc = PyDoc_STR("CallbackSizeof(fn)\n--\n\nA C __sizeof__ that returns fn(self)."),
    .tp_basicsize = sizeof(CallbackSizeof),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)CallbackSizeof_init,
    .tp_traverse = (traverseproc)CallbackSizeof_traverse,
    .tp_clear = (inquiry)CallbackSizeof_clear,
    .tp_dealloc = (destructor)CallbackSizeof_dealloc,
    .tp_methods = CallbackSizeof_methods,
};

/* ---- ObjectBuffer -------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD PyObject **items; /* owned references, PyMem */
    Py_ssize_t n;
    PyObject *on_getbuffer; /* called before each export, or NULL */
    Py_ssize_t shape, stride;
} ObjectBuffer;

static void
ObjectBuffer_dealloc(ObjectBuffer *self)
{
    for (Py_ssize_t i = 0; i < self->n; i++) {
        Py_XDECREF(self->items[i]);
    }
    PyMem_Free(self->items);
    Py_XDECREF(self->on_getbuffer);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
ObjectBuffer_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"items", "on_getbuffer", NULL};
    PyObject *items, *cb = Py_None, *seq = NULL;
    ObjectBuffer *self = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:ObjectBuffer", kwlist, &items, &cb)) {
        return NULL;
    }
    seq = PySequence_Fast(items, "items must be a sequence");
    if (seq == NULL) {
        goto error;
    }
    self = (ObjectBuffer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        goto error;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    self->items = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(PyObject *));
    if (self->items == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = PySequence_Fast_GET_ITEM(seq, i);
        Py_INCREF(x);
        self->items[i] = x;
    }
    self->n = n;
    if (cb != Py_None) {
        Py_INCREF(cb);
        self->on_getbuffer = cb;
    }
    Py_DECREF(seq);
    return (PyObject *)self;

error:
    Py_XDECREF(seq);
    Py_XDECREF(self);
    return NULL;
}

static int
ObjectBuffer_getbuffer(ObjectBuffer *self, Py_buffer *view, int flags)
{
    if (self->on_getbuffer != NULL) {
        PyObject *cb = self->on_getbuffer;
        Py_INCREF(cb);
        PyObject *r = PyObject_CallOneArg(cb, (PyObject *)self);
        Py_DECREF(cb);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    if ((flags & PyBUF_WRITABLE) == PyBUF_WRITABLE) {
        PyErr_SetString(PyExc_BufferError, "read-only");
        return -1;
    }
    self->shape = self->n;
    self->stride = sizeof(PyObject *);
    view->buf = self->items;
    view->obj = (PyObject *)self;
    Py_INCREF(self);
    view->len = self->n * (Py_ssize_t)sizeof(PyObject *);
    view->itemsize = sizeof(PyObject *);
    view->readonly = 1;
    view->ndim = 1;
    view->format = (flags & PyBUF_FORMAT) ? "O" : NULL;
    view->shape = (flags & PyBUF_ND) ? &self->shape : NULL;
    view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? &self->stride : NULL;
    view->suboffsets = NULL;
    view->internal = NULL;
    return 0;
}

static PyObject *
ObjectBuffer_sizeof(ObjectBuffer *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(Py_TYPE(self)->tp_basicsize
                              + self->n * (Py_ssize_t)sizeof(PyObject *));
}

static PyMethodDef ObjectBuffer_methods[] = {
    {"__sizeof__", (PyCFunction)ObjectBuffer_sizeof, METH_NOARGS,
     PyDoc_STR("__sizeof__($self, /)\n--\n\nThe header and the item array.")},
    {NULL, NULL, 0, NULL},
};

static PyBufferProcs ObjectBuffer_as_buffer = {(getbufferproc)ObjectBuffer_getbuffer, NULL};

static PyTypeObject ObjectBuffer_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memlens._testcore.ObjectBuffer",
    .tp_doc = PyDoc_STR("ObjectBuffer(items, on_getbuffer=None)\n--\n\n"
                        "Items exported as a buffer of format \"O\"; not a GC type."),
    .tp_basicsize = sizeof(ObjectBuffer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = ObjectBuffer_new,
    .tp_dealloc = (destructor)ObjectBuffer_dealloc,
    .tp_as_buffer = &ObjectBuffer_as_buffer,
    .tp_methods = ObjectBuffer_methods,
};

int
testcore_sizing_exec(PyObject *m)
{
    if (PyType_Ready(&CallbackSizeof_Type) < 0 || PyType_Ready(&ObjectBuffer_Type) < 0) {
        return -1;
    }
    Py_INCREF(&CallbackSizeof_Type);
    if (PyModule_AddObject(m, "CallbackSizeof", (PyObject *)&CallbackSizeof_Type) < 0) {
        Py_DECREF(&CallbackSizeof_Type);
        return -1;
    }
    Py_INCREF(&ObjectBuffer_Type);
    if (PyModule_AddObject(m, "ObjectBuffer", (PyObject *)&ObjectBuffer_Type) < 0) {
        Py_DECREF(&ObjectBuffer_Type);
        return -1;
    }
    return 0;
}
