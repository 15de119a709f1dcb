/* cpy_object.h: CPython object layouts that differ between versions.
 *
 * With cpy_frame.h (running frames) this is the one place that knows
 * CPython's private structures: the dict keys and values, the words in
 * front of an object (GC header, 3.11+ pre-header), ints.  Each is
 * mirrored once, as a typed struct or a named offset per version, behind
 * small inline functions with PY_VERSION_HEX guards, so that the rest of
 * the engine asks questions ("where is this instance's dict?", "how many
 * bytes did the allocator give this values array?") instead of poking at
 * offsets.  tests/engine/test_layout.py checks every accessor against the
 * interpreter on each version it exists for (memlens._testcore's
 * layout_object() reads them).
 *
 * None of these functions allocate, take locks, or run Python code.
 */
#ifndef MEMLENS_CPY_OBJECT_H
#define MEMLENS_CPY_OBJECT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>

#if PY_VERSION_HEX < 0x03090000 || PY_VERSION_HEX >= 0x030E0000
#error "memlens supports CPython 3.9 to 3.13"
#endif

/* The GC header in front of every tracked object: two words (_gc_next,
 * _gc_prev) in every supported version; the struct itself is private since
 * 3.11. */
typedef struct {
    uintptr_t gc_next;
    uintptr_t gc_prev;
} layout_gc_head;
#define LAYOUT_GC_HEAD_SIZE sizeof(layout_gc_head)

/* ---- dict keys objects (Objects/dict-common.h, pycore_dict.h) ---------- */

#if PY_VERSION_HEX < 0x030B0000
/* 3.9 / 3.10 */
typedef struct {
    Py_ssize_t dk_refcnt;
    Py_ssize_t dk_size;
    void *dk_lookup;
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    char dk_indices[];
} layout_dictkeys;
#else
/* 3.11 - 3.13 (default build; the free-threaded 3.13t adds a mutex and is
 * not supported). */
typedef struct {
    Py_ssize_t dk_refcnt;
    uint8_t dk_log2_size;
    uint8_t dk_log2_index_bytes;
    uint8_t dk_kind;
    uint32_t dk_version;
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    char dk_indices[];
} layout_dictkeys;
/* dk_kind of a table whose keys may be any object: entries of three words
 * (hash, key, value); the unicode-only kinds drop the hash. */
#define LAYOUT_DICT_KEYS_GENERAL 0
#endif

/* USABLE_FRACTION in dictobject.c: a table of n slots holds 2n/3 entries. */
static inline Py_ssize_t
layout_usable_fraction(Py_ssize_t n)
{
    return (n << 1) / 3;
}

/* Bytes the allocator gave this keys object (its header, index table and
 * entries), as new_keys_object() computed them. */
static inline size_t
layout_dictkeys_size(const layout_dictkeys *dk)
{
#if PY_VERSION_HEX < 0x030B0000
    Py_ssize_t n = dk->dk_size;
    size_t es = n <= 0xff ? 1 : n <= 0xffff ? 2 : n <= 0xffffffffLL ? 4 : 8;
    return sizeof(layout_dictkeys) + es * (size_t)n
           + 3 * sizeof(PyObject *) * (size_t)layout_usable_fraction(n);
#else
    Py_ssize_t n = (Py_ssize_t)1 << dk->dk_log2_size;
    size_t entry =
        dk->dk_kind == LAYOUT_DICT_KEYS_GENERAL ? 3 * sizeof(PyObject *) : 2 * sizeof(PyObject *);
    return sizeof(layout_dictkeys) + ((size_t)1 << dk->dk_log2_index_bytes)
           + entry * (size_t)layout_usable_fraction(n);
#endif
}

/* Number of value slots that a values array made for these shared keys has
 * (shared_keys_usable_size() in CPython 3.11+). */
static inline Py_ssize_t
layout_shared_usable(const layout_dictkeys *dk)
{
#if PY_VERSION_HEX < 0x030B0000
    return layout_usable_fraction(dk->dk_size);
#else
    return dk->dk_nentries + dk->dk_usable;
#endif
}

static inline layout_dictkeys *
layout_dict_keys(PyObject *dict)
{
    return (layout_dictkeys *)((PyDictObject *)dict)->ma_keys;
}

/* ---- values arrays of split dicts and instances ------------------------ */

#if PY_VERSION_HEX >= 0x030D0000
/* 3.13: struct _dictvalues (pycore_dict.h).  The insertion-order bytes
 * follow the `capacity` value pointers. */
typedef struct {
    uint8_t capacity; /* value slots */
    uint8_t size;     /* slots in use */
    uint8_t embedded; /* part of its owner object (inline values) */
    uint8_t valid;
    PyObject *values[];
} layout_values;
#elif PY_VERSION_HEX >= 0x030B0000
/* 3.11/3.12: the value pointers, preceded by a prefix of insertion-order
 * bytes whose last byte holds the prefix's own length (new_values()):
 * prefix = round_up(n + LAYOUT_VALUES_PREFIX_EXTRA, sizeof(PyObject *)). */
typedef struct {
    PyObject *values[1];
} layout_values;
#define LAYOUT_VALUES_PREFIX_EXTRA 2

static inline size_t
layout_values_prefix_size(const layout_values *v)
{
    return ((const uint8_t *)v)[-1];
}
#else
/* 3.9/3.10: a plain array of value pointers (PyMem_NEW(PyObject *, n)). */
typedef struct {
    PyObject *values[1];
} layout_values;
#endif

/* Bytes of a values array that belongs to a split dict or (3.11/3.12) to an
 * instance, given the shared keys it was sized for.
 *
 * 3.9/3.10: new_values(n) = PyMem_NEW(PyObject *, n), n = USABLE(dk_size).
 * 3.11/3.12: new_values(n) allocates prefix + n pointers (see
 *   layout_values).  n was the keys' usable size when the array was made;
 *   that size only shrinks (each new instance takes one off until it
 *   reaches the used size), so n is at least today's size and within the
 *   recorded prefix's range: we take the smallest n consistent with both,
 *   which is exact once a class's shared keys have settled (every instance
 *   after its first few).
 * 3.13: the values struct records its capacity; a separately allocated one
 *   is capacity + 1 pointers plus the insertion-order bytes rounded to 8.
 *   (Embedded values are part of their object, see layout_inline_values.) */
static inline size_t
layout_values_size(void *values, const layout_dictkeys *keys)
{
    if (values == NULL) {
        return 0;
    }
#if PY_VERSION_HEX < 0x030B0000
    return (size_t)layout_shared_usable(keys) * sizeof(PyObject *);
#elif PY_VERSION_HEX < 0x030D0000
    size_t prefix = layout_values_prefix_size(values);
    /* round_up(n + EXTRA, 8) == prefix  <=>  prefix - 7 - EXTRA <= n <= prefix - EXTRA */
    Py_ssize_t lo =
        (Py_ssize_t)prefix - (Py_ssize_t)(sizeof(PyObject *) - 1) - LAYOUT_VALUES_PREFIX_EXTRA;
    Py_ssize_t hi = (Py_ssize_t)prefix - LAYOUT_VALUES_PREFIX_EXTRA;
    Py_ssize_t n = keys ? layout_shared_usable(keys) : lo;
    if (n < lo) {
        n = lo;
    }
    if (n > hi) {
        n = hi;
    }
    if (n < 1) {
        n = 1;
    }
    return prefix + (size_t)n * sizeof(PyObject *);
#else
    (void)keys;
    size_t cap = ((layout_values *)values)->capacity;
    return (cap + 1) * sizeof(PyObject *) + ((cap + 7) & ~(size_t)7);
#endif
}

/* ---- instances: managed dicts, values, pre-headers --------------------- */

#if PY_VERSION_HEX >= 0x030B0000
/* 3.11+: the two words CPython puts in front of the GC header of an object
 * whose type has a managed dict (3.12+: or a managed weakref list) --
 * _PyObject_ManagedDictPointer(obj) is the word three back from the
 * object, the other one is four back.  The whole struct ends where the
 * object starts. */
typedef struct {
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *weakreflist; /* 3.12+ (Py_TPFLAGS_MANAGED_WEAKREF) */
#else
    layout_values *values;    /* 3.11: NULL once a dict is materialized */
#endif
#if PY_VERSION_HEX >= 0x030D0000 || PY_VERSION_HEX < 0x030C0000
    PyObject *dict; /* 3.11, 3.13: the materialized dict, or NULL */
#else
    uintptr_t dict_or_values; /* 3.12: a dict, or values tagged with LAYOUT_DORV_VALUES_TAG */
#endif
    layout_gc_head gc;
} layout_preheader;

#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
/* 3.12 _PyDictOrValues: a values pointer is stored minus one (its low bit
 * set, as values are word-aligned); a dict pointer as is. */
#define LAYOUT_DORV_VALUES_TAG 1u
#endif

_Static_assert(sizeof(layout_preheader) == 4 * sizeof(void *),
               "two pre-header words, then the two-word GC header");

static inline layout_preheader *
layout_preheader_of(PyObject *op)
{
    return (layout_preheader *)op - 1;
}
#endif

/* Bytes in front of the object that belong to it: the GC header for tracked
 * types, and on 3.11+ the two pre-header words (managed dict / values /
 * weakref pointers). */
static inline size_t
layout_preheader_size(PyObject *op, PyTypeObject *tp)
{
    size_t n = 0;
    if (PyType_IS_GC(tp) && (tp->tp_is_gc == NULL || tp->tp_is_gc(op))) {
        n += LAYOUT_GC_HEAD_SIZE;
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (tp->tp_flags & Py_TPFLAGS_PREHEADER) {
        n += sizeof(layout_preheader) - LAYOUT_GC_HEAD_SIZE;
    }
#elif PY_VERSION_HEX >= 0x030B0000
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        n += sizeof(layout_preheader) - LAYOUT_GC_HEAD_SIZE;
    }
#endif
    return n;
}

/* The instance's materialized __dict__, or NULL.  Never creates one (on
 * 3.11+ `obj.__dict__` and _PyObject_GetDictPtr would). */
static inline PyObject *
layout_instance_dict(PyObject *op, PyTypeObject *tp)
{
#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        uintptr_t dorv = layout_preheader_of(op)->dict_or_values;
        return (dorv & LAYOUT_DORV_VALUES_TAG) ? NULL : (PyObject *)dorv;
    }
#elif PY_VERSION_HEX >= 0x030B0000
    /* 3.11, 3.13 */
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        return layout_preheader_of(op)->dict;
    }
#endif
    Py_ssize_t off = tp->tp_dictoffset;
    if (off == 0) {
        return NULL;
    }
    if (off < 0) {
        /* var-sized objects keep the dict after their items */
        Py_ssize_t n = Py_SIZE(op);
        if (n < 0) {
            n = -n;
        }
        size_t sz = (size_t)tp->tp_basicsize + (size_t)n * (size_t)tp->tp_itemsize;
        sz = (sz + sizeof(void *) - 1) & ~(sizeof(void *) - 1);
        off += (Py_ssize_t)sz;
    }
    return *(PyObject **)((char *)op + off);
}

/* The values array the instance owns outside its object (3.11/3.12 only:
 * when no dict has been materialized), or NULL. */
static inline void *
layout_instance_values(PyObject *op, PyTypeObject *tp)
{
#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        uintptr_t dorv = layout_preheader_of(op)->dict_or_values;
        return (dorv & LAYOUT_DORV_VALUES_TAG) ? (void *)(dorv + LAYOUT_DORV_VALUES_TAG) : NULL;
    }
#elif PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        return layout_preheader_of(op)->values;
    }
#else
    (void)op;
    (void)tp;
#endif
    return NULL;
}

/* The head of the instance's weak reference list (NULL when nothing
 * weakly references it).  3.12+ keeps it in the pre-header for classes
 * with a managed weakref slot (tp_weaklistoffset is then negative). */
static inline PyObject *
layout_weakref_list(PyObject *op, PyTypeObject *tp)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_WEAKREF) {
        return layout_preheader_of(op)->weakreflist;
    }
#endif
    if (tp->tp_weaklistoffset > 0) {
        return *(PyObject **)((char *)op + tp->tp_weaklistoffset);
    }
    return NULL;
}

/* The keys a class's instances share (ht_cached_keys), or NULL. */
static inline layout_dictkeys *
layout_cached_keys(PyTypeObject *tp)
{
    if (!(tp->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        return NULL;
    }
    return (layout_dictkeys *)((PyHeapTypeObject *)tp)->ht_cached_keys;
}

/* 3.13: bytes of the values stored inline after the object header
 * (_PyInlineValuesSize at allocation time; 3.13's _PyObject_InlineValues
 * puts them right after the object header, such types having no other
 * fields).  The type's keys lose one usable slot per new
 * instance until one is left, so an instance allocated with n slots
 * records capacity n - 1, unless its keys had already settled (then
 * capacity == today's size and nothing was taken off). */
static inline size_t
layout_inline_values_size(PyObject *op, PyTypeObject *tp)
{
#if PY_VERSION_HEX >= 0x030D0000
    if (!(tp->tp_flags & Py_TPFLAGS_INLINE_VALUES)) {
        return 0;
    }
    layout_dictkeys *keys = layout_cached_keys(tp);
    const layout_values *iv = (const layout_values *)((char *)op + sizeof(PyObject));
    size_t cap = iv->capacity;
    size_t n = cap;
    if (keys == NULL || !(keys->dk_usable <= 1 && (Py_ssize_t)cap == layout_shared_usable(keys))) {
        n = cap + 1;
    }
    return ((n + 7) & ~(size_t)7) + (n + 1) * sizeof(PyObject *);
#else
    (void)op;
    (void)tp;
    return 0;
#endif
}

/* Values embedded in their owner (3.13 inline values) are counted with the
 * owner, never with the dict that points at them. */
static inline int
layout_values_embedded(void *values)
{
#if PY_VERSION_HEX >= 0x030D0000
    return values != NULL && ((layout_values *)values)->embedded != 0;
#else
    (void)values;
    return 0;
#endif
}

/* The values array of a split dict (ma_values), or NULL. */
static inline void *
layout_dict_values(PyObject *dict)
{
    return (void *)((PyDictObject *)dict)->ma_values;
}

/* ---- ints -------------------------------------------------------------- */

#if PY_VERSION_HEX >= 0x030C0000
/* 3.12+: lv_tag holds the digit count above its sign and flag bits
 * (_PyLong_NON_SIZE_BITS, pycore_long.h). */
#define LAYOUT_LONG_NON_SIZE_BITS 3
#endif

/* Number of 30-bit digits in an int's value (0 for zero). */
static inline size_t
layout_long_ndigits(PyObject *op)
{
#if PY_VERSION_HEX >= 0x030C0000
    return (size_t)(((PyLongObject *)op)->long_value.lv_tag >> LAYOUT_LONG_NON_SIZE_BITS);
#else
    Py_ssize_t n = Py_SIZE(op);
    return (size_t)(n < 0 ? -n : n);
#endif
}

/* Bytes an exact int object was allocated with.  3.11+ allocate every int
 * of one digit as a full PyLongObject (_PyLong_FromMedium: 32 bytes, not
 * the 28 that __sizeof__ reports); larger ones get exactly their digits. */
static inline size_t
layout_long_size(PyObject *op)
{
    size_t nd = layout_long_ndigits(op);
#if PY_VERSION_HEX >= 0x030C0000
    size_t head = offsetof(PyLongObject, long_value.ob_digit);
#else
    size_t head = offsetof(PyLongObject, ob_digit);
#endif
#if PY_VERSION_HEX >= 0x030B0000
    if (nd <= 1) {
        return sizeof(PyLongObject);
    }
#else
    if (nd == 0) {
        nd = 1; /* zero is cached, but a stray one still has a digit */
    }
#endif
    return head + nd * sizeof(digit);
}

/* ---- immortality (3.12+) ----------------------------------------------- */

static inline int
layout_is_immortal(PyObject *op)
{
#if PY_VERSION_HEX >= 0x030C0000
    return _Py_IsImmortal(op);
#else
    (void)op;
    return 0;
#endif
}

#endif /* MEMLENS_CPY_OBJECT_H */
