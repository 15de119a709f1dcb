/* rec_: the descriptor of unboxed (int64/double/bool) record fields. */
#include "records/rec.h"

/* Object fields use CPython's own member descriptors (T_OBJECT_EX), which
 * 3.11+ specialises in LOAD_ATTR; unboxed fields need their own
 * descriptor to check types, name the class in errors and leave the
 * field unchanged when a conversion fails. */
typedef struct {
    PyObject_HEAD PyTypeObject *owner; /* the record class the field belongs to (strong) */
    PyObject *name;                    /* str (strong) */
    Py_ssize_t offset;
    int kind;
} rec_descr;

PyObject *
rec_descr_new(PyTypeObject *descr_type, PyTypeObject *owner, const rec_field *f)
{
    rec_descr *d = PyObject_GC_New(rec_descr, descr_type);

    if (d == NULL) {
        return NULL;
    }
    d->owner = (PyTypeObject *)Py_NewRef((PyObject *)owner);
    d->name = Py_NewRef(f->name);
    d->offset = f->offset;
    d->kind = f->kind;
    PyObject_GC_Track(d);
    return (PyObject *)d;
}

static int
rec_descr_check(rec_descr *d, PyObject *obj)
{
    if (Py_TYPE(obj) == d->owner || PyType_IsSubtype(Py_TYPE(obj), d->owner)) {
        return 0;
    }
    PyErr_Format(PyExc_TypeError,
                 "field '%U' of '%.100s' records doesn't apply to a '%.100s' object", d->name,
                 d->owner->tp_name, Py_TYPE(obj)->tp_name);
    return -1;
}

static PyObject *
rec_descr_get(PyObject *self, PyObject *obj, PyObject *Py_UNUSED(type))
{
    rec_descr *d = (rec_descr *)self;
    const char *p;

    if (obj == NULL) {
        return Py_NewRef(self); /* accessed on the class */
    }
    if (rec_descr_check(d, obj) < 0) {
        return NULL;
    }
    p = (const char *)obj + d->offset;
    switch (d->kind) {
    case REC_INT:
        return PyLong_FromLongLong(*(const long long *)p);
    case REC_FLOAT:
        return PyFloat_FromDouble(*(const double *)p);
    default:
        return PyBool_FromLong(*p);
    }
}

static int
rec_descr_set(PyObject *self, PyObject *obj, PyObject *value)
{
    rec_descr *d = (rec_descr *)self;
    char *p;
    rec_raw raw;

    if (rec_descr_check(d, obj) < 0) {
        return -1;
    }
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError,
                     "cannot delete field '%U' of %.200s: it is stored unboxed", d->name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (rec_convert(Py_TYPE(obj), d->name, d->kind, value, &raw) < 0) {
        return -1;
    }
    p = (char *)obj + d->offset;
    rec_write_raw(p, d->kind, raw);
    return 0;
}

static PyObject *
rec_descr_repr(PyObject *self)
{
    rec_descr *d = (rec_descr *)self;
    return PyUnicode_FromFormat("<field '%U' (%s, unboxed) of '%s' records>", d->name,
                                rec_kind_name(d->kind), d->owner->tp_name);
}

static int
rec_descr_traverse(PyObject *self, visitproc visit, void *arg)
{
    rec_descr *d = (rec_descr *)self;
    Py_VISIT(d->owner);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int
rec_descr_clear(PyObject *self)
{
    rec_descr *d = (rec_descr *)self;
    Py_CLEAR(d->owner);
    return 0;
}

static void
rec_descr_dealloc(PyObject *self)
{
    rec_descr *d = (rec_descr *)self;
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    Py_CLEAR(d->owner);
    Py_CLEAR(d->name);
    PyObject_GC_Del(self);
    Py_DECREF(tp);
}

static PyObject *
rec_descr_get_owner(PyObject *self, void *Py_UNUSED(closure))
{
    rec_descr *d = (rec_descr *)self;
    if (d->owner == NULL) {
        Py_RETURN_NONE;
    }
    return Py_NewRef((PyObject *)d->owner);
}

static PyObject *
rec_descr_get_name(PyObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(((rec_descr *)self)->name);
}

static PyGetSetDef rec_descr_getset[] = {
    {"__name__", rec_descr_get_name, NULL, NULL, NULL},
    {"__objclass__", rec_descr_get_owner, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot rec_descr_slots[] = {
    {Py_tp_descr_get, rec_descr_get},
    {Py_tp_descr_set, rec_descr_set},
    {Py_tp_repr, rec_descr_repr},
    {Py_tp_traverse, rec_descr_traverse},
    {Py_tp_clear, rec_descr_clear},
    {Py_tp_dealloc, rec_descr_dealloc},
    {Py_tp_getset, rec_descr_getset},
    {Py_tp_new, core_tp_new_refused}, /* a descriptor without field would crash */
    {Py_tp_doc, (void *)"Descriptor of an unboxed (int64/double/bool) record field."},
    {0, NULL},
};

PyType_Spec rec_descr_spec = {
    .name = "memlens._core._RecordField",
    .basicsize = sizeof(rec_descr),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = rec_descr_slots,
};
