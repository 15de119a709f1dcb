/* rec_instance.c: record instances -- allocation, construction, field
 * access, repr/eq/order/hash and pickling.  Prefix rec_.  The class side is
 * rec_type.c, the descriptor of unboxed fields rec_field.c. */
#include "records/rec.h"

#include <string.h>

/* ------------------------------------------------------------------ */
/* Field values                                                         */

const char *
rec_kind_name(int kind)
{
    switch (kind) {
    case REC_INT:
        return "int";
    case REC_FLOAT:
        return "float";
    case REC_BOOL:
        return "bool";
    default:
        return "object";
    }
}

int
rec_convert(PyTypeObject *tp, PyObject *name, int kind, PyObject *value, rec_raw *out)
{
    PyNumberMethods *nb = Py_TYPE(value)->tp_as_number;

    switch (kind) {
    case REC_INT: {
        PyObject *index = NULL;
        int overflow = 0;
        long long x;

        if (PyLong_Check(value)) {
            index = Py_NewRef(value);
        }
        else if (nb != NULL && nb->nb_index != NULL && !PyFloat_Check(value)) {
            /* numpy integers and other __index__ implementers */
            index = PyNumber_Index(value);
            if (index == NULL) {
                return -1;
            }
        }
        else {
            goto wrong_type;
        }
        x = PyLong_AsLongLongAndOverflow(index, &overflow);
        Py_DECREF(index);
        if (overflow != 0) {
            PyErr_Format(PyExc_OverflowError, "%s.%U: %R does not fit in int64", tp->tp_name, name,
                         value);
            return -1;
        }
        if (x == -1 && PyErr_Occurred()) {
            return -1;
        }
        out->i = x;
        return 0;
    }
    case REC_FLOAT: {
        double d;

        if (PyFloat_Check(value)) {
            d = PyFloat_AS_DOUBLE(value);
        }
        else if (PyLong_Check(value)) {
            d = PyLong_AsDouble(value);
            if (d == -1.0 && PyErr_Occurred()) {
                return -1;
            }
        }
        else if (nb != NULL && (nb->nb_float != NULL || nb->nb_index != NULL)) {
            d = PyFloat_AsDouble(value);
            if (d == -1.0 && PyErr_Occurred()) {
                return -1;
            }
        }
        else {
            goto wrong_type;
        }
        out->d = d;
        return 0;
    }
    case REC_BOOL:
        if (value == Py_True) {
            out->b = 1;
            return 0;
        }
        if (value == Py_False) {
            out->b = 0;
            return 0;
        }
        goto wrong_type;
    default:
        PyErr_SetString(PyExc_SystemError, "rec_convert: not an unboxed kind");
        return -1;
    }

wrong_type:
    PyErr_Format(PyExc_TypeError, "%s.%U must be %s, not %.200s", tp->tp_name, name,
                 rec_kind_name(kind), Py_TYPE(value)->tp_name);
    return -1;
}

/* Store a converted value.  The slot is only written on success, so a
 * failed assignment leaves the field unchanged. */
static int
rec_store(PyTypeObject *tp, PyObject *self, const rec_field *f, PyObject *value)
{
    char *p = (char *)self + f->offset;
    rec_raw raw;

    if (f->kind == REC_OBJECT) {
        Py_XSETREF(*(PyObject **)p, Py_NewRef(value));
        return 0;
    }
    if (rec_convert(tp, f->name, f->kind, value, &raw) < 0) {
        return -1;
    }
    rec_write_raw(p, f->kind, raw);
    return 0;
}

/* rec_store with the common exact types inlined (construction's hot
 * loop); anything else takes the checked path. */
static inline int
rec_store_fast(PyTypeObject *tp, PyObject *self, const rec_field *f, PyObject *value)
{
    char *p = (char *)self + f->offset;

    switch (f->kind) {
    case REC_OBJECT:
        Py_INCREF(value);
        Py_XSETREF(*(PyObject **)p, value);
        return 0;
    case REC_FLOAT:
        if (PyFloat_CheckExact(value)) {
            *(double *)p = PyFloat_AS_DOUBLE(value);
            return 0;
        }
        break;
    case REC_BOOL:
        if (value == Py_True || value == Py_False) {
            *p = value == Py_True;
            return 0;
        }
        break;
    default:
        break;
    }
    return rec_store(tp, self, f, value);
}

static int
rec_store_default(PyObject *self, const rec_field *f)
{
    char *p = (char *)self + f->offset;

    switch (f->kind) {
    case REC_OBJECT:
        if (f->default_obj == NULL) {
            return -1; /* cleared by the GC while the class was dying */
        }
        Py_XSETREF(*(PyObject **)p, Py_NewRef(f->default_obj));
        break;
    default:
        rec_write_raw(p, f->kind, f->raw_default);
        break;
    }
    return 0;
}

/* New reference to the value of field `f`, boxing unboxed kinds; NULL with
 * AttributeError if an object field was deleted. */
static PyObject *
rec_load(PyObject *self, const rec_field *f)
{
    const char *p = (const char *)self + f->offset;

    switch (f->kind) {
    case REC_OBJECT: {
        PyObject *v = *(PyObject *const *)p;
        if (v == NULL) {
            PyErr_Format(PyExc_AttributeError, "%.200s record has no value for field '%U'",
                         Py_TYPE(self)->tp_name, f->name);
            return NULL;
        }
        return Py_NewRef(v);
    }
    case REC_INT:
        return PyLong_FromLongLong(*(const long long *)p);
    case REC_FLOAT:
        return PyFloat_FromDouble(*(const double *)p);
    default:
        return PyBool_FromLong(*p);
    }
}

/* ------------------------------------------------------------------ */
/* Allocation and deallocation                                          */

/* A zero-filled instance of record class `tp`, not yet GC-tracked.
 * Bypasses tp_alloc: records never override it, and the generic
 * allocator's checks cost about a tenth of a construction. */
static PyObject *
rec_alloc(PyTypeObject *tp)
{
    PyObject *self;
    size_t size = (size_t)tp->tp_basicsize;

    if (PyType_IS_GC(tp)) {
        self = _PyObject_GC_New(tp); /* initialises header, increfs heap type */
    }
    else {
        self = PyObject_Malloc(size);
        if (self == NULL) {
            return PyErr_NoMemory();
        }
        (void)PyObject_Init(self, tp); /* increfs heap type */
    }
    if (self == NULL) {
        return NULL;
    }
    memset((char *)self + sizeof(PyObject), 0, size - sizeof(PyObject));
    return self;
}

static void
rec_clear_fields(PyObject *self, const rec_type *rt)
{
    for (Py_ssize_t i = 0; i < rt->nobj; i++) {
        Py_CLEAR(*(PyObject **)((char *)self + rt->obj_offsets[i]));
    }
}

/* Records without object fields: nothing to untrack or release but the
 * type reference every heap-type instance owns. */
void
rec_dealloc_plain(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    if (tp->tp_finalize != NULL) {
        if (PyObject_CallFinalizerFromDealloc(self) < 0) {
            return; /* resurrected */
        }
    }
    if (tp->tp_weaklistoffset > 0) {
        PyObject_ClearWeakRefs(self);
    }
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* Records with object fields.  The trashcan turns the dealloc of a long
 * chain of records (a linked list) into a loop instead of C recursion. */
void
rec_dealloc_gc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    if (tp->tp_finalize != NULL) {
        /* still tracked here, as a resurrecting finalizer requires */
        if (PyObject_CallFinalizerFromDealloc(self) < 0) {
            return;
        }
    }
    PyObject_GC_UnTrack(self);
    Py_TRASHCAN_BEGIN(self, rec_dealloc_gc) if (tp->tp_weaklistoffset > 0)
    {
        PyObject_ClearWeakRefs(self);
    }
    rec_clear_fields(self, REC_TYPE(tp));
    tp->tp_free(self);
    Py_DECREF(tp);
    Py_TRASHCAN_END
}

int
rec_traverse(PyObject *self, visitproc visit, void *arg)
{
    const rec_type *rt = REC_TYPE(Py_TYPE(self));

    for (Py_ssize_t i = 0; i < rt->nobj; i++) {
        Py_VISIT(*(PyObject **)((char *)self + rt->obj_offsets[i]));
    }
    /* 3.9+: instances of heap types own a reference to their type. */
    Py_VISIT(Py_TYPE(self));
    return 0;
}

int
rec_clear(PyObject *self)
{
    rec_clear_fields(self, REC_TYPE(Py_TYPE(self)));
    return 0;
}

/* ------------------------------------------------------------------ */
/* Construction                                                         */

static Py_ssize_t
rec_find_field(const rec_type *rt, PyObject *name)
{
    /* keyword names are almost always interned: pointer compare first */
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        if (rt->fields[i].name == name) {
            return i;
        }
    }
    if (!PyUnicode_Check(name)) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        if (PyUnicode_Compare(rt->fields[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}

static void
rec_missing_error(PyTypeObject *tp, const rec_type *rt, const char *seen)
{
    PyObject *names = PyList_New(0);
    PyObject *joined = NULL, *sep = NULL;
    Py_ssize_t n;

    if (names == NULL) {
        return;
    }
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        const rec_field *f = &rt->fields[i];
        if (seen[i] || (f->has_default && (f->kind != REC_OBJECT || f->default_obj != NULL))) {
            continue;
        }
        PyObject *quoted = PyUnicode_FromFormat("'%U'", f->name);
        if (quoted == NULL || PyList_Append(names, quoted) < 0) {
            Py_XDECREF(quoted);
            goto done;
        }
        Py_DECREF(quoted);
    }
    n = PyList_GET_SIZE(names);
    sep = PyUnicode_FromString(", ");
    if (sep == NULL) {
        goto done;
    }
    joined = PyUnicode_Join(sep, names);
    if (joined == NULL) {
        goto done;
    }
    PyErr_Format(PyExc_TypeError, "%s() missing %zd required argument%s: %U", tp->tp_name, n,
                 n == 1 ? "" : "s", joined);
done:
    Py_XDECREF(joined);
    Py_XDECREF(sep);
    Py_DECREF(names);
}

/* Fill the fields of a fresh (zeroed) instance from vectorcall-style
 * arguments: args[0:nargs] positional, then one value per kwnames item. */
static int
rec_fill(PyTypeObject *tp, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
         PyObject *kwnames)
{
    const rec_type *rt = REC_TYPE(tp);
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    char seen_small[64];
    char *seen = seen_small;
    int rc = -1;

    if (nargs > rt->npos) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd positional argument%s but %zd %s given",
                     tp->tp_name, rt->npos, rt->npos == 1 ? "" : "s", nargs,
                     nargs == 1 ? "was" : "were");
        return -1;
    }
    /* Fast path: every field given positionally. */
    if (nkw == 0 && nargs == rt->nfields) {
        for (Py_ssize_t i = 0; i < nargs; i++) {
            if (rec_store_fast(tp, self, &rt->fields[rt->pos[i]], args[i]) < 0) {
                return -1;
            }
        }
        return 0;
    }
    if (rt->nfields > (Py_ssize_t)sizeof(seen_small)) {
        seen = PyMem_Calloc((size_t)rt->nfields, 1);
        if (seen == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    else {
        memset(seen_small, 0, sizeof(seen_small));
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_ssize_t fi = rt->pos[i];
        if (rec_store_fast(tp, self, &rt->fields[fi], args[i]) < 0) {
            goto done;
        }
        seen[fi] = 1;
    }
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t fi = rec_find_field(rt, key);
        if (fi < 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%S'",
                         tp->tp_name, key);
            goto done;
        }
        if (seen[fi]) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%U'", tp->tp_name,
                         rt->fields[fi].name);
            goto done;
        }
        if (rec_store_fast(tp, self, &rt->fields[fi], args[nargs + k]) < 0) {
            goto done;
        }
        seen[fi] = 1;
    }
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        if (seen[i]) {
            continue;
        }
        if (!rt->fields[i].has_default || rec_store_default(self, &rt->fields[i]) < 0) {
            rec_missing_error(tp, rt, seen);
            goto done;
        }
        seen[i] = 1;
    }
    rc = 0;
done:
    if (seen != seen_small) {
        PyMem_Free(seen);
    }
    return rc;
}

static PyObject *
rec_not_ready(PyTypeObject *tp)
{
    PyErr_Format(PyExc_TypeError, "cannot create '%.200s' instances: not a complete record class",
                 tp->tp_name);
    return NULL;
}

static PyObject *
rec_finish(PyObject *self)
{
    if (PyType_IS_GC(Py_TYPE(self))) {
        PyObject_GC_Track(self);
    }
    return self;
}

/* tp_vectorcall of record classes whose __new__/__init__ are ours: the
 * whole construction without building an args tuple or kwargs dict. */
PyObject *
rec_vectorcall(PyObject *cls, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyTypeObject *tp = (PyTypeObject *)cls;
    PyObject *self;

    /* A subclass may inherit this slot while type_new runs (and calls
     * __init_subclass__) before its own layout is set. */
    if (!(REC_TYPE(tp)->flags & REC_READY)) {
        return rec_not_ready(tp);
    }
    self = rec_alloc(tp);
    if (self == NULL) {
        return NULL;
    }
    if (rec_fill(tp, self, args, PyVectorcall_NARGS(nargsf), kwnames) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return rec_finish(self);
}

/* tp_new: the path taken when a subclass overrides __init__ or __new__
 * (and by cls.__new__(cls, ...)).  Converts to the vectorcall layout. */
PyObject *
rec_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    Py_ssize_t nkw = kwds == NULL ? 0 : PyDict_GET_SIZE(kwds);
    PyObject **stack = NULL;
    PyObject *kwnames = NULL, *self = NULL, *key, *value;
    Py_ssize_t pos = 0, k = 0;

    if (!rec_is_record_type(tp) || !(REC_TYPE(tp)->flags & REC_READY)) {
        return rec_not_ready(tp);
    }
    stack = PyMem_Malloc((size_t)(nargs + nkw + 1) * sizeof(PyObject *));
    if (stack == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        stack[i] = PyTuple_GET_ITEM(args, i);
    }
    if (nkw > 0) {
        kwnames = PyTuple_New(nkw);
        if (kwnames == NULL) {
            goto error;
        }
        while (PyDict_Next(kwds, &pos, &key, &value)) {
            PyTuple_SET_ITEM(kwnames, k, Py_NewRef(key));
            stack[nargs + k] = value;
            k++;
        }
    }
    self = rec_alloc(tp);
    if (self == NULL) {
        goto error;
    }
    if (rec_fill(tp, self, stack, nargs, kwnames) < 0) {
        Py_CLEAR(self);
        goto error;
    }
    self = rec_finish(self);
error:
    PyMem_Free(stack);
    Py_XDECREF(kwnames);
    return self;
}

/* tp_getattro of records whose fields are all unboxed.  CPython cannot
 * specialise LOAD_ATTR for a custom descriptor, so a read would go through
 * the whole generic lookup (type cache, data-descriptor test, call) before
 * boxing; this finds the field by its interned name first.  Not used when
 * the class has object fields: those keep the generic getattro, which
 * 3.11+ specialises into a direct slot load (LOAD_ATTR_SLOT). */
PyObject *
rec_getattro_unboxed(PyObject *self, PyObject *name)
{
    const rec_type *rt = REC_TYPE(Py_TYPE(self));

    const rec_field *f = rt->fields;
    const rec_field *end = f + rt->nfields;

    for (; f < end; f++) {
        if (f->name == name) {
            const char *p = (const char *)self + f->offset;
            if (f->kind == REC_FLOAT) {
                return PyFloat_FromDouble(*(const double *)p);
            }
            if (f->kind == REC_INT) {
                return PyLong_FromLongLong(*(const long long *)p);
            }
            return PyBool_FromLong(*p);
        }
    }
    return PyObject_GenericGetAttr(self, name);
}

int
rec_frozen_setattro(PyObject *self, PyObject *name, PyObject *value)
{
    (void)value;
    PyErr_Format(PyExc_AttributeError, "cannot %s field '%S' of frozen record %.200s",
                 value == NULL ? "delete" : "assign to", name, Py_TYPE(self)->tp_name);
    return -1;
}

/* ------------------------------------------------------------------ */
/* repr, comparison, hash                                               */

static PyObject *
rec_repr(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    const rec_type *rt = REC_TYPE(tp);
    PyObject *parts = NULL, *sep = NULL, *body = NULL, *result = NULL;
    PyObject *qualname = ((PyHeapTypeObject *)tp)->ht_qualname;
    int rc;

    if (!rec_is_record_type(tp)) {
        return PyUnicode_FromFormat("<%s object>", tp->tp_name);
    }
    rc = Py_ReprEnter(self);
    if (rc != 0) {
        return rc > 0 ? PyUnicode_FromFormat("%U(...)", qualname) : NULL;
    }
    parts = PyList_New(rt->nfields);
    if (parts == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        PyObject *v = rec_load(self, &rt->fields[i]);
        PyObject *part;
        if (v == NULL) {
            goto done;
        }
        part = PyUnicode_FromFormat("%U=%R", rt->fields[i].name, v);
        Py_DECREF(v);
        if (part == NULL) {
            goto done;
        }
        PyList_SET_ITEM(parts, i, part);
    }
    sep = PyUnicode_FromString(", ");
    if (sep == NULL) {
        goto done;
    }
    body = PyUnicode_Join(sep, parts);
    if (body == NULL) {
        goto done;
    }
    result = PyUnicode_FromFormat("%U(%U)", qualname, body);
done:
    Py_XDECREF(parts);
    Py_XDECREF(sep);
    Py_XDECREF(body);
    Py_ReprLeave(self);
    return result;
}

/* -1 error, 0 different, 1 equal (the raw bytes of unboxed values, or
 * ==, with identity first as tuples do, for objects). */
static int
rec_field_eq(PyObject *a, PyObject *b, const rec_field *f)
{
    const char *pa = (const char *)a + f->offset;
    const char *pb = (const char *)b + f->offset;

    switch (f->kind) {
    case REC_OBJECT: {
        PyObject *va = *(PyObject *const *)pa, *vb = *(PyObject *const *)pb;
        if (va == vb) {
            return 1;
        }
        if (va == NULL || vb == NULL) {
            return 0;
        }
        return PyObject_RichCompareBool(va, vb, Py_EQ);
    }
    case REC_INT:
        return *(const long long *)pa == *(const long long *)pb;
    case REC_FLOAT:
        return *(const double *)pa == *(const double *)pb;
    default:
        return *pa == *pb;
    }
}

/* Records compare like the tuples of their fields, and only with
 * instances of exactly the same class (the rule of dataclasses). */
static PyObject *
rec_richcompare(PyObject *self, PyObject *other, int op)
{
    PyTypeObject *tp = Py_TYPE(self);
    const rec_type *rt;
    Py_ssize_t i;

    if (Py_TYPE(other) != tp || !rec_is_record_type(tp)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    rt = REC_TYPE(tp);
    if (op != Py_EQ && op != Py_NE && !(rt->flags & REC_ORDER)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    for (i = 0; i < rt->nfields; i++) {
        int eq = rec_field_eq(self, other, &rt->fields[i]);
        if (eq < 0) {
            return NULL;
        }
        if (!eq) {
            break;
        }
    }
    if (i == rt->nfields) {
        /* all equal */
        int r = op == Py_EQ || op == Py_LE || op == Py_GE;
        return PyBool_FromLong(r);
    }
    if (op == Py_EQ) {
        Py_RETURN_FALSE;
    }
    if (op == Py_NE) {
        Py_RETURN_TRUE;
    }
    /* the first differing field decides */
    {
        PyObject *a = rec_load(self, &rt->fields[i]);
        PyObject *b = a == NULL ? NULL : rec_load(other, &rt->fields[i]);
        PyObject *r = NULL;
        if (b != NULL) {
            r = PyObject_RichCompare(a, b, op);
        }
        Py_XDECREF(a);
        Py_XDECREF(b);
        return r;
    }
}

/* Only reached for frozen classes (others have __hash__ = None).  Mixes
 * the hash of each (boxed) value, so equal records hash equal. */
static Py_hash_t
rec_hash(PyObject *self)
{
    const rec_type *rt = REC_TYPE(Py_TYPE(self));
    Py_uhash_t acc = (Py_uhash_t)0x27D4EB2F165667C5ULL;

    if (!rec_is_record_type(Py_TYPE(self))) {
        return PyObject_HashNotImplemented(self);
    }
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        PyObject *v = rec_load(self, &rt->fields[i]);
        Py_hash_t h;
        if (v == NULL) {
            return -1;
        }
        h = PyObject_Hash(v);
        Py_DECREF(v);
        if (h == -1) {
            return -1;
        }
        acc += (Py_uhash_t)h * (Py_uhash_t)0xC2B2AE3D27D4EB4FULL;
        acc = (acc << 31) | (acc >> (8 * sizeof(acc) - 31));
        acc *= (Py_uhash_t)0x9E3779B185EBCA87ULL;
    }
    acc ^= (Py_uhash_t)rt->nfields;
    if (acc == (Py_uhash_t)-1) {
        return 1546275796;
    }
    return (Py_hash_t)acc;
}

/* ------------------------------------------------------------------ */
/* Pickling and value access                                            */

static PyObject *
rec_values_tuple(PyObject *self, Py_ssize_t prefix)
{
    const rec_type *rt = REC_TYPE(Py_TYPE(self));
    PyObject *t = PyTuple_New(prefix + rt->nfields);

    if (t == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        PyObject *v = rec_load(self, &rt->fields[i]);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, prefix + i, v);
    }
    return t;
}

/* __reduce__ -> (memlens._core._record_restore, (cls, *values)).  The
 * restore function sets the fields directly, so it works for kw_only
 * fields and for classes that override __init__ (as copyreg.__newobj__
 * plus __setstate__ would). */
static PyObject *
rec_reduce(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *restore = NULL, *args = NULL, *mod, *result = NULL;

    if (!rec_is_record_type(Py_TYPE(self))) {
        PyErr_SetString(PyExc_TypeError, "not a record");
        return NULL;
    }
    /* _RecordBase was made by PyType_FromModuleAndSpec: its module is
     * this module (no import on every pickle/copy). */
    if (REC_TYPE(Py_TYPE(self))->rec_base == NULL) {
        /* the class was cleared by the collector while dying */
        PyErr_SetString(PyExc_TypeError, "cannot pickle a record of a class being destroyed");
        return NULL;
    }
    mod = PyType_GetModule(REC_TYPE(Py_TYPE(self))->rec_base);
    if (mod == NULL) {
        goto done;
    }
    restore = Py_NewRef(core_get_state(mod)->rec_restore);
    args = rec_values_tuple(self, 1);
    if (args == NULL) {
        goto done;
    }
    PyTuple_SET_ITEM(args, 0, Py_NewRef((PyObject *)Py_TYPE(self)));
    result = PyTuple_Pack(2, restore, args);
done:
    Py_XDECREF(restore);
    Py_XDECREF(args);
    return result;
}

static PyObject *
rec_check_instance(PyObject *obj)
{
    if (!rec_is_record_type(Py_TYPE(obj)) || !(REC_TYPE(Py_TYPE(obj))->flags & REC_READY)) {
        PyErr_Format(PyExc_TypeError, "expected a memlens.Record instance, got %.200s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return obj;
}

PyDoc_STRVAR(rec_record_restore_doc,
             "_record_restore($module, cls, /, *values)\n--\n\n"
             "Rebuild a record from all its field values in declaration order\n"
             "(the pickle reconstructor; does not call __init__).");

static PyObject *
rec_record_restore(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    PyTypeObject *tp;
    const rec_type *rt;
    PyObject *self;

    if (nargs < 1 || !PyType_Check(args[0]) || !rec_is_record_type((PyTypeObject *)args[0])
        || !(REC_TYPE(args[0])->flags & REC_READY)) {
        PyErr_SetString(PyExc_TypeError, "_record_restore: first argument must be a record class");
        return NULL;
    }
    tp = (PyTypeObject *)args[0];
    rt = REC_TYPE(tp);
    if (nargs - 1 != rt->nfields) {
        PyErr_Format(PyExc_TypeError, "_record_restore: %s has %zd fields, got %zd values",
                     tp->tp_name, rt->nfields, nargs - 1);
        return NULL;
    }
    self = rec_alloc(tp);
    if (self == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        if (rec_store(tp, self, &rt->fields[i], args[i + 1]) < 0) {
            Py_DECREF(self);
            return NULL;
        }
    }
    return rec_finish(self);
}

PyDoc_STRVAR(rec_record_values_doc,
             "_record_values($module, record, /)\n--\n\n"
             "Tuple of a record's field values in declaration order (shallow).");

static PyObject *
rec_record_values(PyObject *Py_UNUSED(module), PyObject *obj)
{
    if (rec_check_instance(obj) == NULL) {
        return NULL;
    }
    return rec_values_tuple(obj, 0);
}

PyDoc_STRVAR(rec_record_fields_doc,
             "_record_fields($module, cls, /)\n--\n\n"
             "Tuple of (name, storage, annotation, has_default, default, kw_only,\n"
             "offset) for every field of record class `cls`; storage is one of\n"
             "'object', 'int64', 'double', 'bool'.");

static PyObject *
rec_record_fields(PyObject *Py_UNUSED(module), PyObject *cls)
{
    static const char *storage[] = {"object", "int64", "double", "bool"};
    const rec_type *rt;
    PyObject *result;

    if (!PyType_Check(cls) || !rec_is_record_type((PyTypeObject *)cls)
        || !(REC_TYPE(cls)->flags & REC_READY)) {
        PyErr_Format(PyExc_TypeError, "expected a memlens.Record class, got %R", cls);
        return NULL;
    }
    rt = REC_TYPE(cls);
    result = PyTuple_New(rt->nfields);
    if (result == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        const rec_field *f = &rt->fields[i];
        PyObject *item =
            Py_BuildValue("(OsOiOin)", f->name, storage[f->kind],
                          f->annotation == NULL ? Py_None : f->annotation, f->has_default,
                          f->default_obj == NULL ? Py_None : f->default_obj, f->kw_only, f->offset);
        if (item == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyTuple_SET_ITEM(result, i, item);
    }
    return result;
}

PyMethodDef rec_functions[] = {
    {"_record_restore", (PyCFunction)(void (*)(void))rec_record_restore, METH_FASTCALL,
     rec_record_restore_doc},
    {"_record_values", rec_record_values, METH_O, rec_record_values_doc},
    {"_record_fields", rec_record_fields, METH_O, rec_record_fields_doc},
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------------ */
/* _RecordBase: the hidden C base of memlens.Record                     */

/* Its slots are added to its __dict__ as wrappers by PyType_Ready, which
 * is how every record class created by type_new() inherits them. */

static PyMethodDef rec_methods[] = {
    {"__reduce__", rec_reduce, METH_NOARGS, "Pickle support: (reconstructor, (cls, *values))."},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(rec_base_doc, "C base of memlens.Record (not for direct use).");

static PyType_Slot rec_base_slots[] = {
    {Py_tp_new, rec_new},
    {Py_tp_dealloc, rec_dealloc_plain},
    {Py_tp_repr, rec_repr},
    {Py_tp_richcompare, rec_richcompare},
    {Py_tp_hash, rec_hash},
    {Py_tp_methods, rec_methods},
    {Py_tp_doc, (void *)rec_base_doc},
    {0, NULL},
};

PyType_Spec rec_base_spec = {
    .name = "memlens._core._RecordBase",
    .basicsize = sizeof(PyObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = rec_base_slots,
};
