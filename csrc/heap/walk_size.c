/* walk_size.c: exact per-object sizes (size_; see walk_size.h). */
#include "heap/walk_size.h"
#include "cpython/cpy_layout.h"
#include "heap/walk_buffer.h"

#include <string.h>

/* Facts about the running interpreter, read once at import.  They are the
 * addresses of objects the interpreter never frees (the small-int cache, the
 * empty dict keys, builtin types' __sizeof__ descriptors), identical for
 * every module instance, so they are process-wide statics rather than module
 * state.  Written only during module exec, under the GIL. */
static struct {
    int ready;
    uintptr_t small_int_lo, small_int_hi; /* [&int(-5), &int(256)] */
    void *empty_keys;                     /* keys of every empty dict */
    PyObject *object_sizeof;              /* object.__sizeof__ */
    PyObject *str_sizeof;                 /* "__sizeof__" (interned) */
    destructor subtype_dealloc;           /* tp_dealloc of every class a
                                           * class statement makes */
} size_g;

int
size_init_globals(void)
{
    PyObject *lo = NULL, *hi = NULL, *d = NULL, *probe = NULL;
    int rc = -1;

    if (size_g.ready) {
        return 0;
    }
    lo = PyLong_FromLong(-5);
    hi = PyLong_FromLong(256);
    d = PyDict_New();
    if (lo == NULL || hi == NULL || d == NULL) {
        goto error;
    }
    /* The cache is one array in every supported version, so an int is a
     * cached one exactly when its address falls inside it. */
    size_g.small_int_lo = (uintptr_t)lo;
    size_g.small_int_hi = (uintptr_t)hi;
    if (size_g.small_int_lo > size_g.small_int_hi) {
        uintptr_t t = size_g.small_int_lo;
        size_g.small_int_lo = size_g.small_int_hi;
        size_g.small_int_hi = t;
    }
    size_g.empty_keys = ((PyDictObject *)d)->ma_keys;
    size_g.str_sizeof = PyUnicode_InternFromString("__sizeof__");
    if (size_g.str_sizeof == NULL) {
        goto error;
    }
    size_g.object_sizeof = _PyType_Lookup(&PyBaseObject_Type, size_g.str_sizeof);
    if (size_g.object_sizeof == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "object.__sizeof__ not found");
        goto error;
    }
    /* subtype_dealloc is not exported: read it from a class made the way a
     * class statement makes one (once, at import). */
    probe = PyObject_CallFunction((PyObject *)&PyType_Type, "s(O){}", "_memlens_probe",
                                  (PyObject *)&PyBaseObject_Type);
    if (probe == NULL) {
        goto error;
    }
    size_g.subtype_dealloc = ((PyTypeObject *)probe)->tp_dealloc;
    /* Keep both alive for the life of the process (they are tiny). */
    Py_INCREF(size_g.object_sizeof);
    size_g.ready = 1;
    rc = 0;
error:
    Py_XDECREF(lo);
    Py_XDECREF(hi);
    Py_XDECREF(d);
    Py_XDECREF(probe);
    return rc;
}

/* Is `tp` program structure rather than data? */
static int
size_type_is_program(PyTypeObject *tp)
{
    if (PyType_FastSubclass(tp, Py_TPFLAGS_TYPE_SUBCLASS)) {
        return 1; /* a metaclass: its instances are classes */
    }
    PyTypeObject *const program_types[] = {
        Py_TYPE(Py_None),     Py_TYPE(Py_NotImplemented), &PyModule_Type,
        &PyFunction_Type,     &PyCFunction_Type,          &PyCode_Type,
        &PyMethodDescr_Type,  &PyClassMethodDescr_Type,   &PyGetSetDescr_Type,
        &PyMemberDescr_Type,  &PyWrapperDescr_Type,       &PyProperty_Type,
        &PyStaticMethod_Type, &PyClassMethod_Type,        &PyCMethod_Type,
        &PyBool_Type,         &PyEllipsis_Type,
    };
    for (size_t i = 0; i < sizeof(program_types) / sizeof(program_types[0]); i++) {
        if (tp == program_types[i] || PyType_IsSubtype(tp, program_types[i])) {
            return 1;
        }
    }
    return 0;
}

/* The builtin whose size rule applies to `tp` (itself or a base), or NULL. */
static PyTypeObject *
size_known_base(PyTypeObject *tp, uint8_t *kind)
{
    static const struct {
        PyTypeObject *type;
        uint8_t kind;
    } known[] = {
        {&PyLong_Type, SIZE_LONG},
        {&PyUnicode_Type, SIZE_STR},
        {&PyBytes_Type, SIZE_BYTES},
        {&PyTuple_Type, SIZE_TUPLE},
        {&PyList_Type, SIZE_LIST},
        {&PyDict_Type, SIZE_DICT},
        {&PySet_Type, SIZE_SET},
        {&PyFrozenSet_Type, SIZE_SET},
        {&PyByteArray_Type, SIZE_BYTEARRAY},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (tp == known[i].type || PyType_IsSubtype(tp, known[i].type)) {
            *kind = known[i].kind;
            return known[i].type;
        }
    }
    return NULL;
}

PyTypeObject *
size_c_base(PyTypeObject *tp)
{
    while (tp != NULL && (tp->tp_flags & Py_TPFLAGS_HEAPTYPE)
           && tp->tp_dealloc == size_g.subtype_dealloc) {
        tp = tp->tp_base;
    }
    return tp;
}

/* staticmethod and classmethod objects: the callable they wrap is their
 * first field in every supported version (Objects/funcobject.c, 3.9-3.13). */
typedef struct {
    PyObject_HEAD PyObject *callable;
} size_wrapper_mirror;

/* Is `fn`, found as a class's __sizeof__, written in Python? */
static int
size_is_python_level(PyObject *fn)
{
    if (PyObject_TypeCheck(fn, &PyStaticMethod_Type)
        || PyObject_TypeCheck(fn, &PyClassMethod_Type)) {
        fn = ((size_wrapper_mirror *)fn)->callable;
    }
    else if (PyMethod_Check(fn)) {
        fn = PyMethod_GET_FUNCTION(fn);
    }
    return fn != NULL && PyFunction_Check(fn);
}

/* The __sizeof__ `tp` is sized by (see walk_size.h): the first one in its
 * MRO not written in Python.  Borrowed (from a class dict in the MRO), or
 * NULL.  Runs no Python code: type dicts are read, nothing is called. */
static PyObject *
size_find_sizeof(PyTypeObject *tp)
{
    PyObject *fn = _PyType_Lookup(tp, size_g.str_sizeof);
    if (fn == NULL || !size_is_python_level(fn)) {
        return fn; /* the common case: _PyType_Lookup's cache */
    }
    PyObject *mro = tp->tp_mro;
    if (mro == NULL || !PyTuple_Check(mro)) {
        return NULL;
    }
    fn = NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro) && fn == NULL; i++) {
        PyTypeObject *b = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
#if PY_VERSION_HEX >= 0x030C0000
        /* 3.12+: static builtin types keep their dict in the interpreter
         * (tp_dict is NULL); PyType_GetDict returns a new reference to it */
        PyObject *dict = PyType_GetDict(b);
#else
        PyObject *dict = b->tp_dict;
        Py_XINCREF(dict);
#endif
        if (dict == NULL) {
            continue;
        }
        PyObject *v = PyDict_GetItemWithError(dict, size_g.str_sizeof);
        if (v == NULL) {
            PyErr_Clear();
        }
        else if (!size_is_python_level(v)) {
            fn = v; /* borrowed: the class dict holds it, the MRO the class */
        }
        Py_DECREF(dict);
    }
    return fn;
}

/* Is `tp` _sre's Pattern?  Matched by name (the type is not exported, and
 * importing re is not the walker's business), with the shape every
 * supported version gives it: var-sized in 4-byte code units, not
 * subclassable (a class statement's type always is, so a Python class
 * named "re.Pattern" does not match).  3.9: a static type; 3.10+: a heap
 * type from a spec. */
static int
size_is_sre_pattern(PyTypeObject *tp)
{
    return tp->tp_itemsize == 4 && !(tp->tp_flags & Py_TPFLAGS_BASETYPE)
           && strcmp(tp->tp_name, "re.Pattern") == 0;
}

void
size_typeinfo_init(size_typeinfo *ti, PyTypeObject *tp)
{
    uint8_t kind = SIZE_GENERIC;
    PyTypeObject *base;
    PyObject *fn;

    ti->type = tp;
    ti->flags = 0;
    if (size_type_is_program(tp)) {
        ti->flags |= SIZE_F_PROGRAM;
    }
    if (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) {
        ti->flags |= SIZE_F_INSTANCE;
        if (tp->tp_itemsize != 0 && tp->tp_alloc == PyType_GenericAlloc) {
            ti->flags |= SIZE_F_SPARE;
        }
    }
    ti->flags |= (uint8_t)walkbuf_type_flags(tp);
    base = size_known_base(tp, &kind);
    if (base == tp) {
        ti->flags |= SIZE_F_EXACT;
    }
    if (base == NULL && size_is_sre_pattern(tp)) {
        /* its __sizeof__ (3.11+) counts sizeof(PatternObject), which holds
         * one code unit already, plus every code unit, and leaves out the
         * rounding of _PyObject_VAR_SIZE */
        ti->kind = SIZE_SRE_PATTERN;
        return;
    }
    /* Which __sizeof__ does this type really use?  The builtin rule only
     * applies while the builtin's own method is the one found. */
    fn = size_find_sizeof(tp);
    if (base != NULL) {
        if (fn != NULL && fn != _PyType_Lookup(base, size_g.str_sizeof)) {
            kind = SIZE_CALL;
        }
    }
    else if (fn != NULL && fn != size_g.object_sizeof) {
        kind = SIZE_CALL;
    }
    ti->kind = kind;
}

/* basic size + items, with the spare item PyType_GenericAlloc adds */
static inline size_t
size_body(const size_typeinfo *ti, PyTypeObject *tp, size_t nitems)
{
    if (tp->tp_itemsize != 0 && (ti->flags & SIZE_F_SPARE)) {
        nitems += 1;
    }
    size_t n = (size_t)tp->tp_basicsize + nitems * (size_t)tp->tp_itemsize;
    if (ti->flags & SIZE_F_SPARE) {
        /* _PyObject_VAR_SIZE rounds var-sized allocations up to a pointer */
        n = (n + sizeof(void *) - 1) & ~(sizeof(void *) - 1);
    }
    return n;
}

static inline size_t
size_abs_ob_size(PyObject *op)
{
    Py_ssize_t n = Py_SIZE(op);
    return (size_t)(n < 0 ? -n : n);
}

size_t
size_dict(PyObject *op, PyTypeObject *tp)
{
    size_t n = layout_preheader_size(op, tp) + (size_t)tp->tp_basicsize;
    layout_dictkeys *keys = layout_dict_keys(op);
    void *values = layout_dict_values(op);

    if (keys != NULL && (void *)keys != size_g.empty_keys && keys->dk_refcnt == 1) {
        n += layout_dictkeys_size(keys);
    }
    if (values != NULL && !layout_values_embedded(values)) {
        n += layout_values_size(values, keys);
    }
    return n;
}

static size_t
size_str(PyObject *op)
{
    size_t len = (size_t)PyUnicode_GET_LENGTH(op);
    size_t n;

    if (PyUnicode_IS_COMPACT_ASCII(op)) {
        n = sizeof(PyASCIIObject) + len + 1;
    }
    else if (PyUnicode_IS_COMPACT(op)) {
        n = sizeof(PyCompactUnicodeObject) + (len + 1) * PyUnicode_KIND(op);
        PyCompactUnicodeObject *cu = (PyCompactUnicodeObject *)op;
        if (cu->utf8 != NULL && cu->utf8 != PyUnicode_DATA(op)) {
            n += (size_t)cu->utf8_length + 1;
        }
    }
    else {
        /* legacy (two-block) strings: str subclasses built the old way */
        n = sizeof(PyUnicodeObject);
        if (((PyUnicodeObject *)op)->data.any != NULL) {
            n += (len + 1) * PyUnicode_KIND(op);
        }
        PyCompactUnicodeObject *cu = (PyCompactUnicodeObject *)op;
        if (cu->utf8 != NULL && cu->utf8 != PyUnicode_DATA(op)) {
            n += (size_t)cu->utf8_length + 1;
        }
    }
#if PY_VERSION_HEX < 0x030C0000
    /* 3.9-3.11: a cached wchar_t copy, when it is not the data itself */
    {
        PyASCIIObject *a = (PyASCIIObject *)op;
        if (a->wstr != NULL
            && (PyUnicode_IS_COMPACT_ASCII(op) || (void *)a->wstr != PyUnicode_DATA(op))) {
            n += (((PyCompactUnicodeObject *)op)->wstr_length + 1) * sizeof(wchar_t);
        }
    }
#endif
    return n;
}

/* The type's own __sizeof__; *ok = 0 when it failed or gave nonsense. */
static size_t
size_call(PyObject *op, int *ok)
{
    PyObject *args[1] = {op};
    PyObject *res;
    Py_ssize_t v = -1;

    *ok = 0;
    /* Looked up now, not cached with the type's facts: a __sizeof__ run
     * earlier in the walk may have rebound cls.__sizeof__, freeing the
     * function the cache would still point to.  The lookup is borrowed from
     * the type's MRO; keep it alive while Python code runs. */
    PyObject *fn = size_find_sizeof(Py_TYPE(op));
    if (fn == NULL) {
        return 0;
    }
    Py_INCREF(fn);
    res = PyObject_Vectorcall(fn, args, 1, NULL);
    Py_DECREF(fn);
    if (res != NULL && PyLong_Check(res)) {
        v = PyLong_AsSsize_t(res);
    }
    Py_XDECREF(res);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        v = -1;
    }
    if (v < 0 || (size_t)v > SIZE_CALL_MAX) {
        return 0;
    }
    *ok = 1;
    return (size_t)v;
}

/* What every object adds to its body: the pre-header, and an instance's
 * values outside a dict. */
static size_t
size_of_tail(const size_typeinfo *ti, PyObject *op, PyTypeObject *tp)
{
    size_t n = layout_preheader_size(op, tp);
    if (ti->flags & SIZE_F_INSTANCE) {
        n += layout_inline_values_size(op, tp);
        void *values = layout_instance_values(op, tp);
        if (values != NULL) {
            n += layout_values_size(values, layout_cached_keys(tp));
        }
    }
    return n;
}

size_t
size_of(const size_typeinfo *ti, PyObject *op, size_t *warnings)
{
    PyTypeObject *tp = Py_TYPE(op);
    size_t n = 0;

    switch ((size_kind)ti->kind) {
    case SIZE_LONG:
        if (ti->flags & SIZE_F_EXACT) {
            n = layout_long_size(op);
        }
        else {
            size_t nd = layout_long_ndigits(op);
            n = size_body(ti, tp, nd ? nd : 1);
        }
        break;
    case SIZE_STR:
        if (ti->flags & SIZE_F_EXACT) {
            n = size_str(op);
        }
        else {
            n = size_str(op) + (size_t)tp->tp_basicsize - (size_t)PyUnicode_Type.tp_basicsize;
        }
        break;
    case SIZE_BYTES:
        /* basic size already counts the trailing NUL */
        n = size_body(ti, tp, size_abs_ob_size(op));
        break;
    case SIZE_TUPLE:
        n = size_body(ti, tp, size_abs_ob_size(op));
        break;
    case SIZE_LIST:
        n = size_body(ti, tp, 0) + (size_t)((PyListObject *)op)->allocated * sizeof(PyObject *);
        break;
    case SIZE_DICT:
        n = size_dict(op, tp);
        n -= layout_preheader_size(op, tp); /* added below */
        break;
    case SIZE_SET: {
        PySetObject *so = (PySetObject *)op;
        n = size_body(ti, tp, 0);
        if (so->table != so->smalltable) {
            n += ((size_t)so->mask + 1) * sizeof(setentry);
        }
        break;
    }
    case SIZE_BYTEARRAY:
        n = size_body(ti, tp, 0) + (size_t)((PyByteArrayObject *)op)->ob_alloc;
        break;
    case SIZE_SRE_PATTERN:
        /* PyObject_GC_NewVar(PatternObject, type, n) with ob_size = n code
         * units: _PyObject_VAR_SIZE rounds to a pointer (3.9-3.13) */
        n = (size_t)tp->tp_basicsize + size_abs_ob_size(op) * (size_t)tp->tp_itemsize;
        n = (n + sizeof(void *) - 1) & ~(sizeof(void *) - 1);
        break;
    case SIZE_CALL: {
        /* The __sizeof__ is Python code that may reassign op.__class__ and
         * let the old class be freed: `tp` is used below, so it is held
         * across the call (the class assignment keeps the layouts
         * compatible, so the old type's facts still describe op). */
        int ok;
        Py_INCREF(tp);
        n = size_call(op, &ok);
        if (!ok) {
            (*warnings)++;
            n = size_body(ti, tp, tp->tp_itemsize ? size_abs_ob_size(op) : 0);
        }
        n = size_add(n, size_of_tail(ti, op, tp));
        Py_DECREF(tp);
        return n;
    }
    case SIZE_GENERIC:
    default:
        n = size_body(ti, tp, tp->tp_itemsize ? size_abs_ob_size(op) : 0);
        break;
    }
    return n + size_of_tail(ti, op, tp);
}

int
size_is_shared_value(PyObject *op, PyTypeObject *tp)
{
    if (layout_is_immortal(op)) {
        return 1;
    }
    if (tp == &PyLong_Type) {
        uintptr_t a = (uintptr_t)op;
        return a >= size_g.small_int_lo && a <= size_g.small_int_hi;
    }
    if (tp == &PyUnicode_Type) {
        if (PyUnicode_CHECK_INTERNED(op)) {
            return 1;
        }
        /* CPython hands out one cached object per Latin-1 character */
        Py_ssize_t len = PyUnicode_GET_LENGTH(op);
        return len == 0 || (len == 1 && PyUnicode_KIND(op) == PyUnicode_1BYTE_KIND);
    }
    if (tp == &PyBytes_Type) {
        return PyBytes_GET_SIZE(op) <= 1;
    }
    if (tp == &PyTuple_Type) {
        return PyTuple_GET_SIZE(op) == 0;
    }
    return 0;
}
