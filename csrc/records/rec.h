/* rec.h: compact records -- class instances whose int/float/bool fields are
 * stored unboxed inside the instance.  Prefix rec_.
 *
 * Four files:
 *   rec_type.c     the metaclass (RecordMeta): reads the fields of a class
 *                  statement, lays the instance out, patches the new type.
 *   rec_instance.c the instances: allocation, construction, by-name field
 *                  reads, repr/eq/hash/order, pickling.
 *   rec_field.c    the descriptor of unboxed fields.
 *   rec_module.c   the binding: registers the types and memlens.Record.
 *
 * Instance layout (64-bit):  [PyObject header 16 B][fields of the root-most
 * record class][fields of the next subclass]...[weakref slot, if asked].
 * Within one class statement the 8-byte fields come first (declaration
 * order), then the 1-byte bools, then padding to 8 so that a subclass's
 * doubles stay aligned.  A record with no object field has no GC header.
 */
#ifndef MEMLENS_REC_H
#define MEMLENS_REC_H

#include "core.h"

#include <stddef.h> /* offsetof: 3.13's Python.h no longer brings it */

#if PY_VERSION_HEX < 0x030C0000
/* PyMemberDef and T_OBJECT_EX; 3.12+ has them in Python.h as Py_T_*. */
#include <structmember.h>
#define REC_T_OBJECT_EX T_OBJECT_EX
#else
#define REC_T_OBJECT_EX Py_T_OBJECT_EX
#endif

/* Py_NewRef on 3.9: see core.h. */

/* How a field is stored.  The numbers are also what memlens.records
 * (the Python helper that reads annotations) returns. */
typedef enum {
    REC_OBJECT = 0, /* PyObject * (strong reference, may be NULL after del) */
    REC_INT = 1,    /* long long (int64) */
    REC_FLOAT = 2,  /* double */
    REC_BOOL = 3,   /* char, 0 or 1 */
} rec_kind;

typedef union {
    long long i;
    double d;
    char b;
} rec_raw;

typedef struct {
    PyObject *name;        /* interned str */
    PyObject *annotation;  /* as written in the class (may be a str) */
    PyObject *default_obj; /* the default as given; NULL if required */
    rec_raw raw_default;   /* the default, converted, for unboxed kinds */
    Py_ssize_t offset;     /* byte offset inside the instance */
    int kind;              /* rec_kind */
    int has_default;
    int kw_only;
} rec_field;

/* rec_type.flags */
#define REC_FROZEN 0x01
#define REC_ORDER 0x02
#define REC_WEAKREF 0x04
#define REC_READY 0x08 /* set once the class is fully built */
#define REC_ROOT 0x10  /* memlens.Record itself: no field, any options below */

/* A record class: the heap type object, extended with its field table.
 * RecordMeta's tp_basicsize is sizeof(rec_type), so type_new() allocates
 * this for every class statement.  The C arrays are written once, while
 * the class is built (under the GIL), and only read afterwards; they are
 * freed by rec_meta_dealloc, after every instance is gone (instances own
 * a reference to their class). */
typedef struct {
    PyHeapTypeObject ht;
    rec_field *fields; /* all fields, base classes' first */
    Py_ssize_t nfields;
    Py_ssize_t *pos; /* field index of each positional parameter */
    Py_ssize_t npos;
    Py_ssize_t *obj_offsets; /* offsets of every REC_OBJECT field */
    Py_ssize_t nobj;
    PyMemberDef *members;     /* this class's own object fields (descriptors point here) */
    PyTypeObject *rec_base;   /* memlens._core._RecordBase (strong) */
    PyTypeObject *descr_type; /* the unboxed field descriptor type (strong) */
    unsigned int flags;
} rec_type;

#define REC_TYPE(tp) ((rec_type *)(tp))

/* rec_type.c */
extern PyType_Spec rec_meta_spec;
int rec_is_record_type(PyTypeObject *tp);

/* rec_instance.c */
extern PyType_Spec rec_base_spec;
extern PyMethodDef rec_functions[];
/* rec_type.c: _record_layout(), the layout figures (read-only) */
extern PyMethodDef rec_layout_functions[];
const char *rec_kind_name(int kind);

PyObject *rec_new(PyTypeObject *tp, PyObject *args, PyObject *kwds);
PyObject *rec_vectorcall(PyObject *cls, PyObject *const *args, size_t nargsf, PyObject *kwnames);
void rec_dealloc_plain(PyObject *self);
void rec_dealloc_gc(PyObject *self);
int rec_traverse(PyObject *self, visitproc visit, void *arg);
int rec_clear(PyObject *self);
PyObject *rec_getattro_unboxed(PyObject *self, PyObject *name);
int rec_frozen_setattro(PyObject *self, PyObject *name, PyObject *value);
/* Convert `value` for a field of kind `kind` named `name` of class `tp`;
 * 0 and *out set, or -1 with TypeError/OverflowError naming class and field. */
int rec_convert(PyTypeObject *tp, PyObject *name, int kind, PyObject *value, rec_raw *out);

/* Store an already converted unboxed value at `p` (an int64, double or
 * bool slot, by `kind`). */
static inline void
rec_write_raw(char *p, int kind, rec_raw raw)
{
    switch (kind) {
    case REC_INT:
        *(long long *)p = raw.i;
        break;
    case REC_FLOAT:
        *(double *)p = raw.d;
        break;
    default:
        *p = raw.b;
        break;
    }
}
/* rec_field.c */
extern PyType_Spec rec_descr_spec;
/* A new unboxed-field descriptor for field `f` of `owner`. */
PyObject *rec_descr_new(PyTypeObject *descr_type, PyTypeObject *owner, const rec_field *f);

#endif /* MEMLENS_REC_H */
