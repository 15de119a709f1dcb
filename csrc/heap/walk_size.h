/* walk_size.h: exact per-object sizes -- the bytes the allocator really
 * handed out for an object, not what __sizeof__ says.  Prefix size_.
 *
 * An object's own size is:
 *   its pre-header (GC header for tracked types; on 3.11+ the managed
 *   dict/weakref words),
 * + its body (basic size + items; heap subtypes of var-sized types get one
 *   spare item from PyType_GenericAlloc),
 * + memory it owns that is not an object: a list's item array, a dict's keys
 *   table and values, a set's table, a bytearray's buffer, a str's cached
 *   UTF-8 copy, an instance's values array (3.11/3.12) or inline values (3.13).
 * An instance's materialized __dict__ is a separate object; the walker folds
 * it into its owner (walk.h).
 *
 * Per-type facts are computed once per type into a size_typeinfo, which the
 * walker caches, so sizing an object is a switch on a small integer.
 */
#ifndef MEMLENS_WALK_SIZE_H
#define MEMLENS_WALK_SIZE_H

#include "core.h"
#include <stdint.h>

typedef enum {
    SIZE_GENERIC = 0, /* basic size + item size * |ob_size| */
    SIZE_CALL,        /* the type's own __sizeof__, one not written in Python
                       * (see size_typeinfo_init) */
    SIZE_LONG,
    SIZE_STR,
    SIZE_BYTES,
    SIZE_TUPLE,
    SIZE_LIST,
    SIZE_DICT,
    SIZE_SET,
    SIZE_BYTEARRAY,
    SIZE_SRE_PATTERN, /* re.Pattern: _PyObject_VAR_SIZE of its code units */
} size_kind;

/* size_typeinfo.flags */
#define SIZE_F_PROGRAM \
    0x01                     /* program structure: type, module, function,
                                * code, descriptor, singleton type */
#define SIZE_F_INSTANCE 0x02 /* may own a __dict__ / values (heap type) */
#define SIZE_F_SPARE \
    0x04                  /* heap subtype of a var-sized type: one
                                * spare item (PyType_GenericAlloc) */
#define SIZE_F_EXACT 0x08 /* exactly the builtin type of `kind` */
#define SIZE_F_BUFFER \
    0x10 /* a C type outside the collector exporting a buffer:
          * its items may be object pointers tp_traverse does
          * not report (walk_buffer.h) */
#define SIZE_F_NDARRAY \
    0x20 /* numpy.ndarray or a subclass: SIZE_F_BUFFER, and
          * the header is read as numpy's (walk_buffer.h) */

typedef struct {
    PyTypeObject *type; /* borrowed: the type these facts are for, only
                          * compared as a cache key, never dereferenced */
    uint8_t kind;
    uint8_t flags;
    uint32_t gen; /* the walker's types_gen these facts were read in */
} size_typeinfo;

/* Fill `ti` for `tp`.  Never fails: unknown types become SIZE_GENERIC or
 * SIZE_CALL.
 *
 * A __sizeof__ written in Python -- a function, or a staticmethod,
 * classmethod or bound method wrapping one -- is not taken as the object's
 * own allocation: it is a program's view of its object (pandas' returns
 * memory_usage(deep=True), the arrays the walk reaches anyway), so the first
 * __sizeof__ in the MRO that is not written in Python decides instead: the
 * builtin rule when it is the builtin's own (or object's), else SIZE_CALL.
 * C methods, Cython functions and other callables are the type's own. */
void size_typeinfo_init(size_typeinfo *ti, PyTypeObject *tp);

/* Own size of `op` (see above).  May run the object's __sizeof__ when
 * ti->kind is SIZE_CALL (looked up on each call by size_typeinfo_init's
 * rule: an earlier __sizeof__ may have rebound it and freed the old one); a
 * failure there (exception, non-int, negative) falls back to the generic
 * rule and increments *warnings.  Never leaves an exception set. */
size_t size_of(const size_typeinfo *ti, PyObject *op, size_t *warnings);

/* The largest own size a __sizeof__ may claim: past the 47-bit user
 * address space of x86-64 and AArch64 Linux no object can be, so a larger
 * answer counts as a failure (a warning, and the generic rule). */
#define SIZE_CALL_MAX ((size_t)1 << 47)

/* a + b, saturating at PY_SSIZE_T_MAX: byte sums are handed to Python as
 * Py_ssize_t, and hostile __sizeof__ results must not wrap them negative. */
static inline size_t
size_add(size_t a, size_t b)
{
    size_t max = (size_t)PY_SSIZE_T_MAX;
    return (a > max - (b > max ? max : b)) ? max : a + b;
}

/* Own size of a dict object (header, keys if it owns them, values if it
 * owns them), for dicts folded into their instance. */
size_t size_dict(PyObject *op, PyTypeObject *tp);

/* 1 if `op` is an object the interpreter shares or caches rather than one
 * a structure owns: small ints, interned strs, one-character strs and
 * bytes, the empty tuple, and immortal objects (3.12+). */
int size_is_shared_value(PyObject *op, PyTypeObject *tp);

/* The nearest type in tp's base chain that is not a class statement's
 * (a heap type whose instances subtype_dealloc frees): tp itself for
 * static and extension heap types, NULL only if none is. */
PyTypeObject *size_c_base(PyTypeObject *tp);

/* Called once from module exec: records the singletons size_is_shared_value
 * compares against. */
int size_init_globals(void);

#endif /* MEMLENS_WALK_SIZE_H */
