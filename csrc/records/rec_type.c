/* rec_type.c: RecordMeta, the metaclass of memlens.Record.  Prefix rec_.
 *
 * A class statement goes through type_new() as usual (so methods,
 * __init_subclass__, __set_name__, __qualname__ ... behave normally) with
 * `__slots__ = ()` forced into the namespace; then rec_build_class() reads
 * the annotations, extends tp_basicsize by the packed fields, installs one
 * descriptor per field and replaces the layout-dependent slots (dealloc,
 * traverse, GC flag, vectorcall).  No instance can exist before that point
 * except through __init_subclass__, which rec_new refuses (REC_READY). */
#include "records/rec.h"

#include "cpython/cpy_layout.h" /* LAYOUT_GC_HEAD_SIZE */

#include <string.h>

static void rec_meta_dealloc(PyObject *self);

/* True if `tp` was made by RecordMeta (or a subclass of it).  The
 * metaclass is recognised by its dealloc function rather than a stored
 * pointer, so no global or module-state lookup is needed on hot paths. */
int
rec_is_record_type(PyTypeObject *tp)
{
    for (PyTypeObject *meta = Py_TYPE(tp); meta != NULL; meta = meta->tp_base) {
        if (meta->tp_dealloc == rec_meta_dealloc) {
            return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Metaclass GC support                                                 */

static int
rec_meta_traverse(PyObject *self, visitproc visit, void *arg)
{
    rec_type *rt = REC_TYPE(self);

    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        Py_VISIT(rt->fields[i].annotation);
        Py_VISIT(rt->fields[i].default_obj);
    }
    Py_VISIT(rt->rec_base);
    Py_VISIT(rt->descr_type);
    /* type_traverse does not visit the metaclass; a heap metaclass must
     * (3.9+), and subtype_traverse skips it when our traverse is the base. */
    Py_VISIT(Py_TYPE(self));
    return PyType_Type.tp_traverse(self, visit, arg);
}

/* Only Python objects that can form cycles are cleared; the C layout
 * (offsets, kinds, names) stays valid until dealloc because instances
 * still being torn down by the same collection need it. */
static int
rec_meta_clear(PyObject *self)
{
    rec_type *rt = REC_TYPE(self);

    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        Py_CLEAR(rt->fields[i].annotation);
        Py_CLEAR(rt->fields[i].default_obj);
    }
    Py_CLEAR(rt->rec_base);
    Py_CLEAR(rt->descr_type);
    return PyType_Type.tp_clear(self);
}

static void
rec_free_fields(rec_field *fields, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_XDECREF(fields[i].name);
        Py_XDECREF(fields[i].annotation);
        Py_XDECREF(fields[i].default_obj);
    }
    PyMem_Free(fields);
}

static void
rec_meta_dealloc(PyObject *self)
{
    rec_type *rt = REC_TYPE(self);
    PyTypeObject *meta = Py_TYPE(self);
    rec_field *fields = rt->fields;
    Py_ssize_t nfields = rt->nfields;

    /* detach first so a GC pass triggered by the decrefs sees nothing */
    rt->fields = NULL;
    rt->nfields = 0;
    rec_free_fields(fields, nfields);
    PyMem_Free(rt->pos);
    rt->pos = NULL;
    PyMem_Free(rt->obj_offsets);
    rt->obj_offsets = NULL;
    Py_CLEAR(rt->rec_base);
    Py_CLEAR(rt->descr_type);
    /* Descriptors in tp_dict point into `members`; they only read it
     * through the type they keep alive, so it can go before the dict. */
    PyMem_Free(rt->members);
    rt->members = NULL;
    PyType_Type.tp_dealloc(self);
    /* type_dealloc does not release the metaclass; heap metaclasses must. */
    Py_DECREF(meta);
}

/* ------------------------------------------------------------------ */
/* Building a record class                                              */

typedef struct {
    int frozen; /* -1: not given */
    int order;
    int kw_only;
    int weakref; /* -1: not given */
} rec_options;

/* Pop a boolean class keyword (`class P(Record, frozen=True)`) so that
 * type_new does not pass it to __init_subclass__. */
static int
rec_pop_option(PyObject *kwds, const char *name, int *out)
{
    PyObject *key = PyUnicode_FromString(name);
    PyObject *value;
    int rc = -1;

    if (key == NULL) {
        return -1;
    }
    value = PyDict_GetItemWithError(kwds, key);
    if (value == NULL) {
        rc = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    *out = PyObject_IsTrue(value);
    if (*out < 0 || PyDict_DelItem(kwds, key) < 0) {
        goto done;
    }
    rc = 0;
done:
    Py_DECREF(key);
    return rc;
}

/* The class's own fields, as read by memlens.records._own_fields (Python:
 * annotation parsing and string-annotation resolution are simpler there).
 * Returns a list of (name, kind, annotation, has_default, default) or NULL. */
static PyObject *
rec_own_fields(PyObject *cls, PyObject *annotations)
{
    PyObject *mod = PyImport_ImportModule("memlens.records");
    PyObject *result;

    if (mod == NULL) {
        return NULL;
    }
    result = PyObject_CallMethod(mod, "_own_fields", "OO", cls, annotations);
    Py_DECREF(mod);
    if (result != NULL && !PyList_Check(result)) {
        PyErr_SetString(PyExc_SystemError, "memlens.records._own_fields must return a list");
        Py_CLEAR(result);
    }
    return result;
}

/* Fields start, and each class statement's fields end, on this boundary,
 * so that a subclass's doubles stay aligned. */
#define REC_ALIGN 8

static Py_ssize_t
rec_align8(Py_ssize_t n)
{
    return (n + REC_ALIGN - 1) & ~(Py_ssize_t)(REC_ALIGN - 1);
}

/* Bytes a field of storage kind `kind` takes inside the instance. */
static Py_ssize_t
rec_kind_size(int kind)
{
    return kind == REC_BOOL ? 1 : 8;
}

static int
rec_check_layout(PyTypeObject *tp, PyTypeObject *parent)
{
    if (tp->tp_itemsize != 0 || tp->tp_dictoffset != 0 || tp->tp_basicsize != parent->tp_basicsize
        || tp->tp_weaklistoffset != parent->tp_weaklistoffset) {
        PyErr_Format(PyExc_TypeError,
                     "%s: a record's other bases must not add instance attributes "
                     "(give mixins __slots__ = ())",
                     tp->tp_name);
        return -1;
    }
#ifdef Py_TPFLAGS_MANAGED_DICT
    /* 3.11+: a managed __dict__ leaves tp_dictoffset at -1, caught above;
     * the flag is checked too in case a later version changes that. */
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        PyErr_Format(PyExc_TypeError, "%s: records cannot have a __dict__", tp->tp_name);
        return -1;
    }
#endif
    return 0;
}

/* rec_build_class's state. */
typedef struct {
    /* configuration */
    PyTypeObject *tp;     /* the class type_new made (borrowed: the caller's) */
    rec_type *rt;         /* tp, as a record class */
    PyObject *ns;         /* borrowed: the class namespace as written */
    rec_options opt;      /* the class keywords, then what the base imposes */
    PyTypeObject *parent; /* tp->tp_base (tp holds it) */
    const rec_type *prt;  /* parent, when it is a record class; else NULL */

    /* temporary state */
    /* strong: the own fields as memlens.records reads them,
     * [(name, kind, annotation, has_default, default)], or NULL */
    PyObject *own;
    Py_ssize_t nparent; /* fields inherited, first in rt->fields */
    Py_ssize_t nown;    /* fields of this class statement */

    /* output values, installed into tp */
    Py_ssize_t basicsize; /* the instance size with this class's fields */
} rec_class_info;

/* Step 1: what the base gives: rec_base and the descriptor type, and the
 * options a record base imposes (frozenness, the weakref slot); then the
 * class's flags.  0, or -1 with TypeError set. */
static int
rec_class_inherit(rec_class_info *info)
{
    PyTypeObject *tp = info->tp, *parent = info->parent;
    rec_type *rt = info->rt;

    if (parent == NULL) {
        PyErr_SetString(PyExc_TypeError, "record class without a base");
        return -1;
    }
    if (rec_is_record_type(parent)) {
        const rec_type *prt = REC_TYPE(parent);
        info->prt = prt;
        /* rec_base is NULL only if the collector cleared a dying base */
        if (!(prt->flags & REC_READY) || prt->rec_base == NULL || prt->descr_type == NULL) {
            PyErr_Format(PyExc_TypeError, "%s: base %s is not a complete record class", tp->tp_name,
                         parent->tp_name);
            return -1;
        }
        rt->rec_base = (PyTypeObject *)Py_NewRef((PyObject *)prt->rec_base);
        rt->descr_type = (PyTypeObject *)Py_NewRef((PyObject *)prt->descr_type);
        info->nparent = prt->nfields;
        /* As dataclasses, but a base without any field (a mixin of
         * methods, or Record itself) does not impose its frozenness. */
        if (prt->nfields > 0) {
            int parent_frozen = (prt->flags & REC_FROZEN) != 0;
            if (info->opt.frozen >= 0 && info->opt.frozen != parent_frozen) {
                PyErr_Format(PyExc_TypeError, "cannot inherit %s record %s from a %s one",
                             info->opt.frozen ? "frozen" : "non-frozen", tp->tp_name,
                             parent_frozen ? "frozen" : "non-frozen");
                return -1;
            }
            info->opt.frozen = parent_frozen;
        }
        if (prt->flags & REC_WEAKREF) {
            info->opt.weakref = 1;
        }
    }
    else if (parent->tp_new == rec_new) {
        /* memlens.Record itself, whose base is _RecordBase (made by
         * PyType_FromModuleAndSpec: its module's state has the descriptor
         * type) */
        PyObject *mod = PyType_GetModule(parent);
        if (mod == NULL) {
            return -1;
        }
        rt->descr_type = (PyTypeObject *)Py_NewRef(core_get_state(mod)->rec_field_type);
        rt->rec_base = (PyTypeObject *)Py_NewRef((PyObject *)parent);
        rt->flags |= REC_ROOT;
    }
    else {
        PyErr_Format(PyExc_TypeError, "%s: the first base of a record must be a record class",
                     tp->tp_name);
        return -1;
    }
    if (rec_check_layout(tp, parent) < 0) {
        return -1;
    }
    if (info->opt.frozen > 0) {
        rt->flags |= REC_FROZEN;
    }
    if (info->opt.order > 0) {
        rt->flags |= REC_ORDER;
    }
    if (info->opt.weakref > 0) {
        rt->flags |= REC_WEAKREF;
    }
    return 0;
}

/* Step 2: the field table -- the base's fields, then this class's own, as
 * memlens.records reads them from the annotations (Python code: it may
 * resolve string annotations), defaults converted.  0, or -1 with an
 * exception set. */
static int
rec_class_collect_fields(rec_class_info *info)
{
    PyTypeObject *tp = info->tp;
    rec_type *rt = info->rt;
    Py_ssize_t nparent = info->nparent;

    PyObject *annotations = PyDict_GetItemString(info->ns, "__annotations__");
    if (annotations != NULL && PyDict_Check(annotations) && PyDict_GET_SIZE(annotations) > 0) {
        info->own = rec_own_fields((PyObject *)tp, annotations);
        if (info->own == NULL) {
            return -1;
        }
        info->nown = PyList_GET_SIZE(info->own);
    }
    Py_ssize_t n = nparent + info->nown;
    size_t nalloc = (size_t)(n > 0 ? n : 1);
    rt->fields = PyMem_Calloc(nalloc, sizeof(rec_field));
    rt->pos = PyMem_Calloc(nalloc, sizeof(Py_ssize_t));
    rt->obj_offsets = PyMem_Calloc(nalloc, sizeof(Py_ssize_t));
    rt->members = PyMem_Calloc((size_t)info->nown + 1, sizeof(PyMemberDef));
    if (rt->fields == NULL || rt->pos == NULL || rt->obj_offsets == NULL || rt->members == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < nparent; i++) {
        rec_field *f = &rt->fields[i];
        *f = info->prt->fields[i];
        Py_XINCREF(f->name);
        Py_XINCREF(f->annotation);
        Py_XINCREF(f->default_obj);
    }
    rt->nfields = nparent;
    for (Py_ssize_t i = 0; i < info->nown; i++) {
        /* `item` stays alive in info->own; name and default are held by
         * the field before rec_convert may run __index__ */
        PyObject *item = PyList_GET_ITEM(info->own, i);
        PyObject *name, *ann, *dflt;
        int kind, has_default;
        rec_field *f = &rt->fields[nparent + i];

        if (!PyArg_ParseTuple(item, "UiOpO", &name, &kind, &ann, &has_default, &dflt)) {
            return -1;
        }
        if (kind < REC_OBJECT || kind > REC_BOOL) {
            PyErr_Format(PyExc_SystemError, "bad field kind %d", kind);
            return -1;
        }
        for (Py_ssize_t j = 0; j < nparent + i; j++) {
            if (PyUnicode_Compare(rt->fields[j].name, name) == 0) {
                PyErr_Format(PyExc_TypeError, "%s: field '%U' is already defined in a base record",
                             tp->tp_name, name);
                return -1;
            }
        }
        Py_INCREF(name);
        PyUnicode_InternInPlace(&name);
        f->name = name;
        f->annotation = Py_NewRef(ann);
        f->kind = kind;
        f->kw_only = info->opt.kw_only > 0;
        rt->nfields++;
        if (has_default) {
            f->has_default = 1;
            f->default_obj = Py_NewRef(dflt);
            if (kind != REC_OBJECT && rec_convert(tp, name, kind, dflt, &f->raw_default) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* Step 3: offsets of the own fields -- 8-byte ones in declaration order,
 * then the bools, then padding to 8 -- and the weakref slot; sets
 * info->basicsize. */
static void
rec_class_layout(rec_class_info *info)
{
    rec_type *rt = info->rt;
    Py_ssize_t off = rec_align8(info->tp->tp_basicsize);

    for (int pass = 0; pass < 2; pass++) {
        for (Py_ssize_t i = info->nparent; i < rt->nfields; i++) {
            rec_field *f = &rt->fields[i];
            if ((f->kind == REC_BOOL) != (pass == 1)) {
                continue;
            }
            f->offset = off;
            off += rec_kind_size(f->kind);
        }
    }
    off = rec_align8(off);
    if ((rt->flags & REC_WEAKREF) && info->parent->tp_weaklistoffset == 0) {
        info->tp->tp_weaklistoffset = off;
        off += (Py_ssize_t)sizeof(PyObject *);
    }
    info->basicsize = off;
}

/* Step 4: the positional parameters and the object fields' offsets, and
 * the check that no required parameter follows a default.  0, or -1 with
 * TypeError set. */
static int
rec_class_index_fields(rec_class_info *info)
{
    rec_type *rt = info->rt;
    int seen_default = 0;
    Py_ssize_t nobj = 0;

    rt->npos = 0;
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        rec_field *f = &rt->fields[i];
        if (f->kind == REC_OBJECT) {
            rt->obj_offsets[nobj++] = f->offset;
        }
        if (f->kw_only) {
            continue;
        }
        if (f->has_default) {
            seen_default = 1;
        }
        else if (seen_default) {
            PyErr_Format(PyExc_TypeError, "%s: non-default argument '%U' follows default argument",
                         info->tp->tp_name, f->name);
            return -1;
        }
        rt->pos[rt->npos++] = i;
    }
    rt->nobj = nobj;
    return 0;
}

/* Step 5: the new layout and the slots that depend on it.  It takes effect
 * before the descriptors exist, so that no instance can be made with the
 * old size. */
static void
rec_class_install_slots(rec_class_info *info)
{
    PyTypeObject *tp = info->tp;
    const rec_type *rt = info->rt;

    tp->tp_basicsize = info->basicsize;
    tp->tp_alloc = PyType_GenericAlloc;
    if (rt->nobj > 0) {
        tp->tp_flags |= Py_TPFLAGS_HAVE_GC;
        tp->tp_dealloc = rec_dealloc_gc;
        tp->tp_traverse = rec_traverse;
        tp->tp_clear = rec_clear;
        tp->tp_free = PyObject_GC_Del;
    }
    else {
        /* type_new gives every heap type GC support (its instances point to
         * it); records without object fields give that up, like
         * msgspec.Struct(gc=False): no GC header, never tracked. */
        tp->tp_flags &= ~(unsigned long)Py_TPFLAGS_HAVE_GC;
        tp->tp_dealloc = rec_dealloc_plain;
        tp->tp_traverse = NULL;
        tp->tp_clear = NULL;
        tp->tp_free = PyObject_Free;
    }
    if (rt->flags & REC_FROZEN) {
        tp->tp_setattro = rec_frozen_setattro;
    }
    if (rt->nobj == 0 && rt->nfields > 0 && tp->tp_getattro == PyObject_GenericGetAttr) {
        tp->tp_getattro = rec_getattro_unboxed;
    }
}

/* Step 6: one descriptor per own field, replacing the class attribute
 * that held its default; then the fast getattro is kept only while every
 * field name resolves to the field's own descriptor (a subclass may shadow
 * a base field with a plain class attribute).  0, or -1 with an exception
 * set. */
static int
rec_class_install_descriptors(rec_class_info *info)
{
    PyTypeObject *tp = info->tp;
    rec_type *rt = info->rt;
    PyObject *descr = NULL;
    Py_ssize_t k = 0;

    for (Py_ssize_t i = info->nparent; i < rt->nfields; i++) {
        rec_field *f = &rt->fields[i];
        if (f->kind == REC_OBJECT) {
            PyMemberDef *m = &rt->members[k++];
            m->name = PyUnicode_AsUTF8(f->name);
            if (m->name == NULL) {
                return -1;
            }
            m->type = REC_T_OBJECT_EX;
            m->offset = f->offset;
            m->flags = 0;
            descr = PyDescr_NewMember(tp, m);
        }
        else {
            descr = rec_descr_new(rt->descr_type, tp, f);
        }
        if (descr == NULL || PyObject_SetAttr((PyObject *)tp, f->name, descr) < 0) {
            Py_XDECREF(descr);
            return -1;
        }
        Py_DECREF(descr);
    }
    if (tp->tp_getattro == rec_getattro_unboxed) {
        for (Py_ssize_t i = 0; i < rt->nfields; i++) {
            PyObject *found = _PyType_Lookup(tp, rt->fields[i].name);
            if (found == NULL || Py_TYPE(found) != rt->descr_type) {
                tp->tp_getattro = PyObject_GenericGetAttr;
                break;
            }
        }
    }
    return 0;
}

/* Step 7: __hash__ and __match_args__, unless the class body has them.
 * __hash__ comes from the fields if frozen, else None (eq without frozen
 * makes instances unhashable, as in dataclasses).  0, or -1 with an
 * exception set. */
static int
rec_class_install_dunders(rec_class_info *info)
{
    PyTypeObject *tp = info->tp;
    const rec_type *rt = info->rt;
    PyObject *h = NULL, *match_args = NULL;
    int rc = -1;

    if (PyDict_GetItemString(tp->tp_dict, "__hash__") == NULL) {
        if (rt->flags & REC_FROZEN) {
            h = PyDict_GetItemString(rt->rec_base->tp_dict, "__hash__");
            if (h == NULL) {
                PyErr_SetString(PyExc_SystemError, "_RecordBase has no __hash__");
                goto done;
            }
        }
        else {
            h = Py_None;
        }
        /* strong across the call: a metaclass's __setattr__ is Python code */
        Py_INCREF(h);
        if (PyObject_SetAttrString((PyObject *)tp, "__hash__", h) < 0) {
            goto done;
        }
    }
    if (PyDict_GetItemString(info->ns, "__match_args__") == NULL) {
        match_args = PyTuple_New(rt->npos);
        if (match_args == NULL) {
            goto done;
        }
        for (Py_ssize_t i = 0; i < rt->npos; i++) {
            PyTuple_SET_ITEM(match_args, i, Py_NewRef(rt->fields[rt->pos[i]].name));
        }
        if (PyObject_SetAttrString((PyObject *)tp, "__match_args__", match_args) < 0) {
            goto done;
        }
    }
    rc = 0;
done:
    Py_XDECREF(h);
    Py_XDECREF(match_args);
    return rc;
}

/* Everything after type_new: fields, layout, descriptors, slots. */
static int
rec_build_class(PyTypeObject *tp, PyObject *ns, rec_options opt)
{
    rec_class_info info;
    int rc = -1;

    memset(&info, 0, sizeof(info));
    info.tp = tp;
    info.rt = REC_TYPE(tp);
    info.ns = ns;
    info.opt = opt;
    info.parent = tp->tp_base;
    if (rec_class_inherit(&info) < 0 || rec_class_collect_fields(&info) < 0) {
        goto done;
    }
    rec_class_layout(&info);
    if (rec_class_index_fields(&info) < 0) {
        goto done;
    }
    rec_class_install_slots(&info);
    if (rec_class_install_descriptors(&info) < 0 || rec_class_install_dunders(&info) < 0) {
        goto done;
    }
    /* fast construction unless __new__/__init__ are overridden */
    if (tp->tp_new == rec_new && tp->tp_init == PyBaseObject_Type.tp_init) {
        tp->tp_vectorcall = rec_vectorcall;
    }
    else {
        tp->tp_vectorcall = NULL;
    }
    info.rt->flags |= REC_READY;
    PyType_Modified(tp);
    rc = 0;
done:
    Py_XDECREF(info.own);
    return rc;
}

/* Drop the by-name fast getattro from `tp` and every subclass. */
static int
rec_disable_fast_getattro(PyTypeObject *tp)
{
    PyObject *subs;
    int rc = 0;

    if (tp->tp_getattro == rec_getattro_unboxed) {
        tp->tp_getattro = PyObject_GenericGetAttr;
    }
    subs = PyObject_CallMethod((PyObject *)tp, "__subclasses__", NULL);
    if (subs == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(subs) && rc == 0; i++) {
        rc = rec_disable_fast_getattro((PyTypeObject *)PyList_GET_ITEM(subs, i));
    }
    Py_DECREF(subs);
    return rc;
}

/* tp_setattro of record classes: assigning or deleting a class attribute
 * named like a field may change what `instance.field` means, so the
 * by-name fast getattro (rec_getattro_unboxed) is dropped. */
static int
rec_meta_setattro(PyObject *cls, PyObject *name, PyObject *value)
{
    const rec_type *rt = REC_TYPE(cls);

    if (PyType_Type.tp_setattro(cls, name, value) < 0) {
        return -1;
    }
    if (!(rt->flags & REC_READY) || !PyUnicode_Check(name)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        if (PyUnicode_Compare(rt->fields[i].name, name) == 0) {
            return rec_disable_fast_getattro((PyTypeObject *)cls);
        }
    }
    return 0;
}

static PyObject *
rec_meta_new(PyTypeObject *meta, PyObject *args, PyObject *kwds)
{
    PyObject *name, *bases, *ns;
    PyObject *ns2 = NULL, *kw2 = NULL, *newargs = NULL, *cls = NULL, *slots = NULL;
    rec_options opt = {-1, 0, 0, -1};

    if (!PyArg_ParseTuple(args, "UO!O!:RecordMeta", &name, &PyTuple_Type, &bases, &PyDict_Type,
                          &ns)) {
        return NULL;
    }
    if (kwds != NULL) {
        kw2 = PyDict_Copy(kwds);
        if (kw2 == NULL || rec_pop_option(kw2, "frozen", &opt.frozen) < 0
            || rec_pop_option(kw2, "order", &opt.order) < 0
            || rec_pop_option(kw2, "kw_only", &opt.kw_only) < 0
            || rec_pop_option(kw2, "weakref", &opt.weakref) < 0) {
            goto error;
        }
    }
    if (PyDict_GetItemString(ns, "__slots__") != NULL) {
        PyErr_Format(PyExc_TypeError,
                     "%U: records lay out their instances from annotations; "
                     "__slots__ is not allowed",
                     name);
        goto error;
    }
    ns2 = PyDict_Copy(ns);
    slots = PyTuple_New(0);
    if (ns2 == NULL || slots == NULL || PyDict_SetItemString(ns2, "__slots__", slots) < 0) {
        goto error;
    }
    newargs = PyTuple_Pack(3, name, bases, ns2);
    if (newargs == NULL) {
        goto error;
    }
    cls = PyType_Type.tp_new(meta, newargs, kw2);
    if (cls == NULL) {
        goto error;
    }
    if (!rec_is_record_type((PyTypeObject *)cls)) {
        /* type_new picked a more derived, non-record metaclass */
        goto done;
    }
    if (rec_build_class((PyTypeObject *)cls, ns, opt) < 0) {
        Py_CLEAR(cls);
        goto error;
    }
done:
error:
    Py_XDECREF(ns2);
    Py_XDECREF(kw2);
    Py_XDECREF(newargs);
    Py_XDECREF(slots);
    return cls;
}

PyDoc_STRVAR(rec_meta_doc, "RecordMeta(name, bases, namespace, /, *, frozen=False, order=False, "
                           "kw_only=False, weakref=False)\n"
                           "--\n\n"
                           "Metaclass of memlens.Record: lays out instances from the class's\n"
                           "annotations, with int/float/bool fields stored unboxed.");

static PyType_Slot rec_meta_slots[] = {
    {Py_tp_new, rec_meta_new},
    {Py_tp_dealloc, rec_meta_dealloc},
    {Py_tp_traverse, rec_meta_traverse},
    {Py_tp_clear, rec_meta_clear},
    {Py_tp_setattro, rec_meta_setattro},
    {Py_tp_doc, (void *)rec_meta_doc},
    {0, NULL},
};

PyType_Spec rec_meta_spec = {
    .name = "memlens._core.RecordMeta",
    .basicsize = sizeof(rec_type),
    .itemsize = 0, /* inherits type's (PyMemberDef per __slots__ entry) */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = rec_meta_slots,
};

PyDoc_STRVAR(rec_layout_doc,
             "_record_layout()\n--\n\n"
             "The figures record instances are laid out with (a new dict each call):\n"
             "'kinds' the storage kind names by kind number, 'sizes' the bytes of a\n"
             "field of each kind, 'header' the bytes before the first field, 'align'\n"
             "the boundary each class's fields end on, 'pointer' the bytes of an\n"
             "object or weakref slot, 'gc_head' the GC header in front of records\n"
             "with an object field.");

static PyObject *
rec_layout(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("{s:(ssss),s:(nnnn),s:n,s:n,s:n,s:n}", "kinds", rec_kind_name(REC_OBJECT),
                         rec_kind_name(REC_INT), rec_kind_name(REC_FLOAT), rec_kind_name(REC_BOOL),
                         "sizes", rec_kind_size(REC_OBJECT), rec_kind_size(REC_INT),
                         rec_kind_size(REC_FLOAT), rec_kind_size(REC_BOOL), "header",
                         (Py_ssize_t)rec_base_spec.basicsize, "align", (Py_ssize_t)REC_ALIGN,
                         "pointer", (Py_ssize_t)sizeof(PyObject *), "gc_head",
                         (Py_ssize_t)LAYOUT_GC_HEAD_SIZE);
}

PyMethodDef rec_layout_functions[] = {
    {"_record_layout", rec_layout, METH_NOARGS, rec_layout_doc},
    {NULL, NULL, 0, NULL},
};
