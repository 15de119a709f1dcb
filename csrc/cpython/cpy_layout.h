/* layout_: CPython object layouts that differ between versions.
 *
 * Everything memlens knows about private CPython structures lives here,
 * behind small inline functions with PY_VERSION_HEX guards, so that the rest
 * of the engine asks questions ("where is this instance's dict?", "how many
 * bytes did the allocator give this values array?") instead of poking at
 * offsets.  The mirrored structs are checked against the interpreter by
 * tests/test_layout.py on every supported version (3.9-3.13).
 *
 * None of these functions allocate, take locks, or run Python code.
 */
#ifndef MEMLENS_CPY_LAYOUT_H
#define MEMLENS_CPY_LAYOUT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#if PY_VERSION_HEX < 0x030B0000
#include <frameobject.h> /* PyFrameObject and PyCodeObject fields, 3.9/3.10 */
#endif
#include <stddef.h>
#include <stdint.h>

#if PY_VERSION_HEX < 0x03090000 || PY_VERSION_HEX >= 0x030E0000
#error "memlens supports CPython 3.9 to 3.13"
#endif

/* The GC header in front of every tracked object: two words (_gc_next,
 * _gc_prev) in every supported version; the struct itself is private since
 * 3.11. */
#define LAYOUT_GC_HEAD_SIZE (2 * sizeof(uintptr_t))

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

/* Bytes of a values array that belongs to a split dict or (3.11/3.12) to an
 * instance, given the shared keys it was sized for.
 *
 * 3.9/3.10: new_values(n) = PyMem_NEW(PyObject *, n), n = USABLE(dk_size).
 * 3.11/3.12: new_values(n) allocates prefix + n pointers, the prefix being
 *   round_up(n + 2, 8) bytes whose last byte records its own length.  n was
 *   the keys' usable size when the array was made; that size only shrinks
 *   (each new instance takes one off until it reaches the used size), so n is
 *   at least today's size and within the recorded prefix's range: we take
 *   the smallest n consistent with both, which is exact once a class's
 *   shared keys have settled (every instance after its first few).
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
    size_t prefix = ((uint8_t *)values)[-1];
    Py_ssize_t lo = (Py_ssize_t)prefix - 9;
    Py_ssize_t n = keys ? layout_shared_usable(keys) : lo;
    if (n < lo) {
        n = lo;
    }
    if (n > (Py_ssize_t)prefix - 2) {
        n = (Py_ssize_t)prefix - 2;
    }
    if (n < 1) {
        n = 1;
    }
    return prefix + (size_t)n * sizeof(PyObject *);
#else
    (void)keys;
    size_t cap = ((uint8_t *)values)[0];
    return (cap + 1) * sizeof(PyObject *) + ((cap + 7) & ~(size_t)7);
#endif
}

/* ---- instances: managed dicts, values, pre-headers --------------------- */

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
        n += 2 * sizeof(PyObject *);
    }
#elif PY_VERSION_HEX >= 0x030B0000
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        n += 2 * sizeof(PyObject *);
    }
#endif
    return n;
}

/* The instance's materialized __dict__, or NULL.  Never creates one (on
 * 3.11+ `obj.__dict__` and _PyObject_GetDictPtr would). */
static inline PyObject *
layout_instance_dict(PyObject *op, PyTypeObject *tp)
{
#if PY_VERSION_HEX >= 0x030D0000
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        return ((PyObject **)op)[-3];
    }
#elif PY_VERSION_HEX >= 0x030C0000
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        uintptr_t dorv = ((uintptr_t *)op)[-3];
        return (dorv & 1) ? NULL : (PyObject *)dorv;
    }
#elif PY_VERSION_HEX >= 0x030B0000
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        return ((PyObject **)op)[-3];
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
        uintptr_t dorv = ((uintptr_t *)op)[-3];
        return (dorv & 1) ? (void *)(dorv + 1) : NULL;
    }
#elif PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        return ((void **)op)[-4];
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
        return ((PyObject **)op)[-4];
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
 * (_PyInlineValuesSize at allocation time).  The type's keys lose one
 * usable slot per new instance until one is left, so an instance allocated
 * with n slots records capacity n - 1, unless its keys had already settled
 * (then capacity == today's size and nothing was taken off). */
static inline size_t
layout_inline_values_size(PyObject *op, PyTypeObject *tp)
{
#if PY_VERSION_HEX >= 0x030D0000
    if (!(tp->tp_flags & Py_TPFLAGS_INLINE_VALUES)) {
        return 0;
    }
    layout_dictkeys *keys = layout_cached_keys(tp);
    size_t cap = ((uint8_t *)op)[sizeof(PyObject)];
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
    return values != NULL && ((uint8_t *)values)[2] != 0;
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

/* Number of 30-bit digits in an int's value (0 for zero). */
static inline size_t
layout_long_ndigits(PyObject *op)
{
#if PY_VERSION_HEX >= 0x030C0000
    return (size_t)(((PyLongObject *)op)->long_value.lv_tag >> 3);
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

/* ---- frames: fast locals of a frame object ------------------------------ */

/* Number of fast-local slots (locals, cells, free vars) of a code object. */
static inline Py_ssize_t
layout_code_nlocalsplus(PyCodeObject *co)
{
#if PY_VERSION_HEX >= 0x030B0000
    return co->co_nlocalsplus;
#else
    return co->co_nlocals + PyTuple_GET_SIZE(co->co_cellvars) + PyTuple_GET_SIZE(co->co_freevars);
#endif
}

/* Name of fast-local slot i (borrowed). */
static inline PyObject *
layout_code_localname(PyCodeObject *co, Py_ssize_t i)
{
#if PY_VERSION_HEX >= 0x030B0000
    return PyTuple_GET_ITEM(co->co_localsplusnames, i);
#else
    if (i < co->co_nlocals) {
        return PyTuple_GET_ITEM(co->co_varnames, i);
    }
    i -= co->co_nlocals;
    if (i < PyTuple_GET_SIZE(co->co_cellvars)) {
        return PyTuple_GET_ITEM(co->co_cellvars, i);
    }
    return PyTuple_GET_ITEM(co->co_freevars, i - PyTuple_GET_SIZE(co->co_cellvars));
#endif
}

/* ---- running frames, read without creating frame objects -------------- */

/* A thread's running frames are walked in place: sys._current_frames() and
 * f_back would create a frame object for every frame on 3.11+ (which then
 * lives as long as the frame), changing the heap being looked at.
 * layout_frame is opaque: a PyFrameObject on 3.9/3.10, an
 * _PyInterpreterFrame on 3.11+ (Include/internal/pycore_frame.h), whose
 * fields are read by word index:
 *   3.11:      f_func, f_globals, f_builtins, f_locals, f_code, frame_obj,
 *              previous, prev_instr; int stacktop; bool is_entry; char owner
 *   3.12/3.13: f_code (3.13: f_executable), previous, f_funcobj, f_globals,
 *              f_builtins, f_locals, frame_obj, prev_instr/instr_ptr;
 *              int stacktop; uint16 return_offset; char owner
 * and localsplus at byte 72 in all three. */
typedef void layout_frame;

#if PY_VERSION_HEX >= 0x030B0000
#define LAYOUT_IFRAME_LOCALSPLUS 72
static inline void *
layout_iframe_word(layout_frame *f, int i)
{
    return ((void **)f)[i];
}
#endif

/* The innermost running frame of a thread, or NULL. */
static inline layout_frame *
layout_thread_frame(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030D0000
    return ts->current_frame;
#elif PY_VERSION_HEX >= 0x030B0000
    return ts->cframe != NULL ? ts->cframe->current_frame : NULL;
#else
    return ts->frame;
#endif
}

/* The calling frame, or NULL. */
static inline layout_frame *
layout_frame_back(layout_frame *f)
{
#if PY_VERSION_HEX >= 0x030C0000
    return layout_iframe_word(f, 1);
#elif PY_VERSION_HEX >= 0x030B0000
    return layout_iframe_word(f, 6);
#else
    return ((PyFrameObject *)f)->f_back;
#endif
}

/* The frame's code object (borrowed), or NULL for the C-stack entry shims
 * of 3.12+ (owner FRAME_OWNED_BY_CSTACK), whose other fields are not
 * valid. */
static inline PyCodeObject *
layout_frame_code(layout_frame *f)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (((char *)f)[70] == 3) {
        return NULL;
    }
    PyObject *co = layout_iframe_word(f, 0);
    return co != NULL && PyCode_Check(co) ? (PyCodeObject *)co : NULL;
#elif PY_VERSION_HEX >= 0x030B0000
    return layout_iframe_word(f, 4);
#else
    return ((PyFrameObject *)f)->f_code;
#endif
}

/* The frame's globals (borrowed). */
static inline PyObject *
layout_frame_globals(layout_frame *f)
{
#if PY_VERSION_HEX >= 0x030C0000
    return layout_iframe_word(f, 3);
#elif PY_VERSION_HEX >= 0x030B0000
    return layout_iframe_word(f, 1);
#else
    return ((PyFrameObject *)f)->f_globals;
#endif
}

/* The frame object of this frame if one exists (always on 3.9/3.10). */
static inline PyObject *
layout_frame_object(layout_frame *f)
{
#if PY_VERSION_HEX >= 0x030C0000
    return layout_iframe_word(f, 6);
#elif PY_VERSION_HEX >= 0x030B0000
    return layout_iframe_word(f, 5);
#else
    return (PyObject *)f;
#endif
}

/* The fast-local slots (layout_code_nlocalsplus of its code). */
static inline PyObject **
layout_frame_locals(layout_frame *f)
{
#if PY_VERSION_HEX >= 0x030B0000
    return (PyObject **)((char *)f + LAYOUT_IFRAME_LOCALSPLUS);
#else
    return ((PyFrameObject *)f)->f_localsplus;
#endif
}

#endif /* MEMLENS_CPY_LAYOUT_H */
