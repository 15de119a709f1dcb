/* walk_buffer.c: object items behind buffers (walkbuf_; see walk_buffer.h). */
#include "heap/walk_buffer.h"
#include "heap/walk_size.h"

#include <string.h>

/* numpy's PyArrayObject_fields, as far as read here: public ABI since numpy
 * 1.7, unchanged in 2.x (numpy/ndarraytypes.h). */
typedef struct {
    PyObject_HEAD char *data;
    int nd;
    Py_ssize_t *dimensions;
    Py_ssize_t *strides;
    PyObject *base;  /* the object a view keeps alive, or NULL */
    PyObject *descr; /* PyArray_Descr * */
} walkbuf_ndarray;

/* PyArray_Descr's first fields, the same in numpy 1.x and 2.x. */
typedef struct {
    PyObject_HEAD PyTypeObject *typeobj;
    char kind; /* 'O' object, 'V' void/records, 'T' StringDType, ... */
} walkbuf_descr;

unsigned
walkbuf_type_flags(PyTypeObject *tp)
{
    PyTypeObject *cb = size_c_base(tp);
    unsigned flags = SIZE_F_BUFFER;

    if (cb == NULL || cb->tp_as_buffer == NULL || cb->tp_as_buffer->bf_getbuffer == NULL) {
        return 0;
    }
    /* a class defining __buffer__ (3.12+) has slot_bf_getbuffer: Python */
    if (tp->tp_as_buffer == NULL
        || tp->tp_as_buffer->bf_getbuffer != cb->tp_as_buffer->bf_getbuffer) {
        return 0;
    }
    if (PyType_IS_GC(cb)) {
        return 0; /* its tp_traverse reports what it holds */
    }
    if (PyType_IsSubtype(cb, &PyBytes_Type) || PyType_IsSubtype(cb, &PyByteArray_Type)) {
        return 0; /* bytes, never objects */
    }
    for (PyTypeObject *t = cb; t != NULL; t = t->tp_base) {
        if (!(t->tp_flags & Py_TPFLAGS_HEAPTYPE) && strcmp(t->tp_name, "numpy.ndarray") == 0
            && (size_t)t->tp_basicsize >= sizeof(walkbuf_ndarray)) {
            flags |= SIZE_F_NDARRAY;
            break;
        }
    }
    return flags;
}

walkbuf_plan_t
walkbuf_plan(PyObject *op, unsigned flags)
{
    if (!(flags & SIZE_F_BUFFER)) {
        return WALKBUF_NONE;
    }
    if (!(flags & SIZE_F_NDARRAY)) {
        return WALKBUF_ASK;
    }
    const walkbuf_descr *d = (const walkbuf_descr *)((walkbuf_ndarray *)op)->descr;
    if (d == NULL) {
        return WALKBUF_NONE;
    }
    switch (d->kind) {
    case 'O': /* objects */
    case 'V': /* records, which may hold objects */
        return WALKBUF_ASK;
    case 'T': /* numpy 2 StringDType: strings in an arena of the dtype's */
        return WALKBUF_UNSEEN;
    default:
        return WALKBUF_NONE;
    }
}

PyObject *
walkbuf_ndarray_base(PyObject *op, unsigned flags)
{
    if (!(flags & SIZE_F_NDARRAY)) {
        return NULL;
    }
    return ((walkbuf_ndarray *)op)->base;
}

/* Is `fmt` a single native PyObject pointer? */
static int
walkbuf_is_object_format(const char *fmt)
{
    if (fmt == NULL) {
        return 0;
    }
    if (fmt[0] == '@') {
        fmt++;
    }
    return fmt[0] == 'O' && fmt[1] == '\0';
}

/* Does struct-module format `fmt` have an object code outside field names
 * ("T{B:a:O:b:}" has one; "T{d:Order:}" has none)? */
static int
walkbuf_format_has_objects(const char *fmt)
{
    int in_name = 0;
    for (; fmt != NULL && *fmt != '\0'; fmt++) {
        if (*fmt == ':') {
            in_name = !in_name;
        }
        else if (!in_name && *fmt == 'O') {
            return 1;
        }
    }
    return 0;
}

int
walkbuf_get(PyObject *op, unsigned flags, Py_buffer *v, int *unseen)
{
    *unseen = 0;
    if (PyObject_GetBuffer(op, v, PyBUF_RECORDS_RO) < 0) {
        PyErr_Clear();
        /* a numpy array whose dtype may hold objects and that refuses to
         * export them; other exporters refuse for reasons of their own */
        *unseen = (flags & SIZE_F_NDARRAY) != 0;
        return 0;
    }
    if (walkbuf_is_object_format(v->format) && v->itemsize == (Py_ssize_t)sizeof(PyObject *)
        && v->suboffsets == NULL && v->ndim >= 0 && v->ndim <= PyBUF_MAX_NDIM
        && (v->ndim == 0 || v->shape != NULL)) {
        return 1;
    }
    if (walkbuf_format_has_objects(v->format)) {
        *unseen = 1; /* objects inside records: not parsed, said so */
    }
    walkbuf_release(v);
    return 0;
}

void
walkbuf_release(Py_buffer *v)
{
    PyBuffer_Release(v);
    if (PyErr_Occurred()) {
        PyErr_Clear(); /* a bf_releasebuffer that raised */
    }
}

int
walkbuf_visit(const Py_buffer *v, visitproc visit, void *arg)
{
    Py_ssize_t idx[PyBUF_MAX_NDIM];
    Py_ssize_t cstrides[PyBUF_MAX_NDIM];
    const Py_ssize_t *shape = v->shape;
    const Py_ssize_t *strides = v->strides;
    int nd = v->ndim;
    PyObject *item;

    if (nd == 0) {
        memcpy(&item, v->buf, sizeof(item));
        return item != NULL ? visit(item, arg) : 0;
    }
    if (strides == NULL) {
        /* C-contiguous, by the protocol's rule */
        Py_ssize_t sd = v->itemsize;
        for (int k = nd - 1; k >= 0; k--) {
            cstrides[k] = sd;
            sd *= shape[k];
        }
        strides = cstrides;
    }
    for (int k = 0; k < nd; k++) {
        if (shape[k] <= 0) {
            return 0;
        }
        idx[k] = 0;
    }
    const char *row = v->buf;
    for (;;) {
        /* the innermost dimension in one run */
        const char *p = row;
        for (Py_ssize_t i = 0; i < shape[nd - 1]; i++, p += strides[nd - 1]) {
            /* memcpy: a field of packed records may be unaligned */
            memcpy(&item, p, sizeof(item));
            if (item != NULL && visit(item, arg) < 0) {
                return -1;
            }
        }
        /* the odometer over the outer dimensions */
        int k = nd - 2;
        for (; k >= 0; k--) {
            row += strides[k];
            if (++idx[k] < shape[k]) {
                break;
            }
            row -= strides[k] * shape[k];
            idx[k] = 0;
        }
        if (k < 0) {
            return 0;
        }
    }
}
