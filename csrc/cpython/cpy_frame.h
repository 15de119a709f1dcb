/* cpy_frame.h: a thread's running Python frames, read in place, for every
 * supported CPython version.
 *
 * The one mirror of CPython's frame structures (cpy_object.h has the
 * objects).  Readers never create objects: an allocator hook may not, and
 * sys._current_frames() / f_back would create a frame object for every
 * frame on 3.11+ (which then lives as long as the frame), changing the heap
 * being looked at.  So a raw frame is read directly:
 *   3.9/3.10:  the PyFrameObject itself (public, cpython/frameobject.h);
 *   3.11-3.13: the _PyInterpreterFrame, mirrored below from each version's
 *              Include/internal/pycore_frame.h (head of the struct up to
 *              localsplus; the layouts differ per minor version).
 * Everything else goes through the accessors below; the tracer's stack
 * capture (tracer/trace_hooks.c) calls them on every allocation, so they
 * are plain loads.  tests/engine/test_layout.py checks each accessor
 * against sys._getframe() on each version it exists for
 * (memlens._testcore's layout_stack() reads them).
 */
#ifndef MEMLENS_CPY_FRAME_H
#define MEMLENS_CPY_FRAME_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#if PY_VERSION_HEX < 0x030B0000
#include <frameobject.h> /* 3.9/3.10: the PyFrameObject layout */
#endif

#if PY_VERSION_HEX < 0x03090000 || PY_VERSION_HEX >= 0x030E0000
#error "memlens supports CPython 3.9 to 3.13"
#endif
#ifdef Py_GIL_DISABLED
#error "memlens reads frames under the GIL: free-threaded builds are not supported"
#endif

/* ---- the mirror ---------------------------------------------------------- */

#if PY_VERSION_HEX >= 0x030B0000
#if PY_VERSION_HEX >= 0x030D0000
/* 3.13 */
struct layout_iframe {
    PyObject *f_executable; /* code object; None for the C-stack shim */
    struct layout_iframe *previous;
    PyObject *f_funcobj;
    PyObject *f_globals;
    PyObject *f_builtins;
    PyObject *f_locals;
    PyObject *frame_obj;
    uint16_t *instr_ptr; /* instruction executing or about to begin */
    int stacktop;
    uint16_t return_offset;
    char owner;
    PyObject *localsplus[];
};
#define LAYOUT_IFRAME_CODE_FIELD f_executable
#define LAYOUT_IFRAME_INSTR_FIELD instr_ptr
#define LAYOUT_IFRAME_OWNER_OFFSET 70
#elif PY_VERSION_HEX >= 0x030C0000
/* 3.12 */
struct layout_iframe {
    PyCodeObject *f_code; /* the interpreter's trampoline for the shim */
    struct layout_iframe *previous;
    PyObject *f_funcobj;
    PyObject *f_globals;
    PyObject *f_builtins;
    PyObject *f_locals;
    PyObject *frame_obj;
    uint16_t *prev_instr; /* code unit before the next instruction */
    int stacktop;
    uint16_t return_offset;
    char owner;
    PyObject *localsplus[];
};
#define LAYOUT_IFRAME_CODE_FIELD f_code
#define LAYOUT_IFRAME_INSTR_FIELD prev_instr
#define LAYOUT_IFRAME_OWNER_OFFSET 70
#else
/* 3.11 */
struct layout_iframe {
    PyObject *f_func;
    PyObject *f_globals;
    PyObject *f_builtins;
    PyObject *f_locals;
    PyCodeObject *f_code;
    PyObject *frame_obj;
    struct layout_iframe *previous;
    uint16_t *prev_instr; /* code unit before the next instruction */
    int stacktop;
    _Bool is_entry;
    char owner;
    PyObject *localsplus[];
};
#define LAYOUT_IFRAME_CODE_FIELD f_code
#define LAYOUT_IFRAME_INSTR_FIELD prev_instr
#define LAYOUT_IFRAME_OWNER_OFFSET 69
#endif
/* Where the fast locals start, the same in 3.11-3.13. */
#define LAYOUT_IFRAME_LOCALSPLUS_OFFSET 72
_Static_assert(offsetof(struct layout_iframe, owner) == LAYOUT_IFRAME_OWNER_OFFSET,
               "_PyInterpreterFrame.owner");
_Static_assert(offsetof(struct layout_iframe, localsplus) == LAYOUT_IFRAME_LOCALSPLUS_OFFSET,
               "_PyInterpreterFrame.localsplus");

/* Values of _PyInterpreterFrame.owner (enum _frameowner, the same numbers
 * in 3.11-3.13). */
#define LAYOUT_FRAME_OWNED_BY_THREAD 0
#define LAYOUT_FRAME_OWNED_BY_GENERATOR 1
#define LAYOUT_FRAME_OWNED_BY_FRAME_OBJECT 2
#define LAYOUT_FRAME_OWNED_BY_CSTACK 3 /* 3.12+: the shim under a call from C */

/* A raw frame: the interpreter frame on 3.11+, the frame object before. */
typedef struct layout_iframe layout_frame;
#else
typedef PyFrameObject layout_frame;
#endif

/* ---- walking a thread's frames -------------------------------------------- */

/* The innermost running frame of a thread (its GIL held), or NULL. */
static inline layout_frame *
layout_thread_frame(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030D0000
    return (layout_frame *)ts->current_frame;
#elif PY_VERSION_HEX >= 0x030B0000
    /* 3.11/3.12: the frame hangs off the current C frame record. */
    return ts->cframe != NULL ? (layout_frame *)ts->cframe->current_frame : NULL;
#else
    return ts->frame;
#endif
}

/* The calling frame, or NULL.  3.11+: every frame, shims and frames that
 * have not started included (f_back skips those). */
static inline layout_frame *
layout_frame_back(layout_frame *f)
{
#if PY_VERSION_HEX >= 0x030B0000
    return f->previous;
#else
    return f->f_back;
#endif
}

#if PY_VERSION_HEX >= 0x030B0000
/* Who owns the frame's memory (LAYOUT_FRAME_OWNED_BY_*); 3.11+. */
static inline int
layout_frame_owner(const layout_frame *f)
{
    return f->owner;
}

/* The frame's instruction pointer: the instruction running (3.13) or the
 * code unit before the next one (3.11/3.12) -- at a call, the CALL
 * instruction in all three.  3.11+. */
static inline const uint16_t *
layout_frame_instr(const layout_frame *f)
{
    return f->LAYOUT_IFRAME_INSTR_FIELD;
}

/* The frame's code field as stored: a code object, except for the shim of
 * 3.13 (None) -- use layout_frame_code() unless the owner was checked. */
static inline PyObject *
layout_frame_executable(const layout_frame *f)
{
    return (PyObject *)f->LAYOUT_IFRAME_CODE_FIELD;
}

/* The code object's bytecode (as specialized in place), 3.11+. */
static inline const uint16_t *
layout_code_units(PyCodeObject *co)
{
    return (const uint16_t *)co->co_code_adaptive;
}

/* Code units before the first instruction that tracebacks show: a frame
 * whose instruction pointer is below it has not started yet. */
static inline int
layout_code_first_traceable(PyCodeObject *co)
{
    return co->_co_firsttraceable;
}
#endif

/* The frame's code object (borrowed), or NULL for the C-stack shims of
 * 3.12+, whose other fields are not valid. */
static inline PyCodeObject *
layout_frame_code(layout_frame *f)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (layout_frame_owner(f) == LAYOUT_FRAME_OWNED_BY_CSTACK) {
        return NULL;
    }
    PyObject *co = layout_frame_executable(f);
    return co != NULL && PyCode_Check(co) ? (PyCodeObject *)co : NULL;
#else
    return f->f_code;
#endif
}

/* The frame's globals (borrowed). */
static inline PyObject *
layout_frame_globals(layout_frame *f)
{
    return f->f_globals;
}

/* The frame object of this frame if one exists (always on 3.9/3.10). */
static inline PyObject *
layout_frame_object(layout_frame *f)
{
#if PY_VERSION_HEX >= 0x030B0000
    return f->frame_obj;
#else
    return (PyObject *)f;
#endif
}

/* The fast-local slots (layout_code_nlocalsplus of its code). */
static inline PyObject **
layout_frame_locals(layout_frame *f)
{
#if PY_VERSION_HEX >= 0x030B0000
    return f->localsplus;
#else
    return f->f_localsplus;
#endif
}

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

/* ---- the tracer's view: stack frames as (code, offset) ------------------- */

/* Frames are reported as (code object, instruction offset in code units);
 * the line number is only computed at report time (layout_code_lineno()). */
typedef struct {
    PyCodeObject *code; /* borrowed while capturing; owned once interned */
    int32_t offset;     /* instruction offset in code units (-1: unknown) */
} stack_frame;

/* Identity of a raw interpreter frame as the tracer's per-thread cache
 * compares it: while a frame runs, its callers' frames and their current
 * instructions cannot change, so equal signatures along the chain mean an
 * equal stack.  Reading a signature touches only the frame itself.  On
 * 3.11+ the instruction pointer stands for the code object too: the code
 * objects of the cached frames are kept alive by the stack table, so no
 * other code object can have bytecode at that address. */
typedef struct {
    const void *frame;
    const void *code; /* 3.9, 3.10: the code object (f_lasti is only an
                          index); 3.11+: NULL, as the instruction pointer
                          already points into one code object's bytecode */
    intptr_t instr;   /* instruction pointer (3.11+) / f_lasti (3.9, 3.10) */
} stack_sig;

static inline void
layout_frame_sig(layout_frame *f, stack_sig *s)
{
    s->frame = f;
#if PY_VERSION_HEX >= 0x030B0000
    s->code = NULL;
    s->instr = (intptr_t)layout_frame_instr(f);
#else
    s->code = f->f_code;
    s->instr = f->f_lasti;
#endif
}

/* The (code, offset) of raw frame `f`; 0 if it is not a frame to report:
 * a shim frame (3.12+) or one that has not run its first traceable
 * instruction yet ("incomplete", skipped by CPython's tracebacks too). */
static inline int
layout_frame_decode(layout_frame *f, PyCodeObject **code, int32_t *offset)
{
#if PY_VERSION_HEX >= 0x030B0000
#if PY_VERSION_HEX >= 0x030C0000
    if (layout_frame_owner(f) == LAYOUT_FRAME_OWNED_BY_CSTACK) {
        return 0;
    }
#endif
    PyObject *co = layout_frame_executable(f);
#if PY_VERSION_HEX >= 0x030D0000
    if (!PyCode_Check(co)) {
        return 0;
    }
#endif
    const uint16_t *start = layout_code_units((PyCodeObject *)co);
    const uint16_t *instr = layout_frame_instr(f);
    if (layout_frame_owner(f) != LAYOUT_FRAME_OWNED_BY_GENERATOR
        && instr < start + layout_code_first_traceable((PyCodeObject *)co)) {
        return 0;
    }
    *code = (PyCodeObject *)co;
    *offset = (int32_t)(instr - start);
    return 1;
#else
    *code = f->f_code;
#if PY_VERSION_HEX >= 0x030A0000
    *offset = f->f_lasti; /* 3.10: in code units, -1 before the first */
#else
    *offset = f->f_lasti < 0 ? -1 : f->f_lasti / 2; /* 3.9: in bytes */
#endif
    return 1;
#endif
}

/* Line number of a captured frame (report time only; needs the GIL). */
static inline int
layout_code_lineno(PyCodeObject *code, int32_t offset)
{
    if (offset < 0) {
        return code->co_firstlineno;
    }
    return PyCode_Addr2Line(code, offset * (int)sizeof(uint16_t));
}

/* ---- frame objects --------------------------------------------------------- */

#if PY_VERSION_HEX < 0x030C0000
/* 3.9-3.11 (the line profiler's trace function): switch per-line trace
 * events of a frame on or off.  3.11's PyFrameObject is opaque, so the head
 * of struct _frame (pycore_frame.h) is mirrored; 3.9/3.10's is public. */
#if PY_VERSION_HEX >= 0x030B0000
typedef struct {
    PyObject_HEAD PyFrameObject *f_back;
    struct layout_iframe *f_frame;
    PyObject *f_trace;
    int f_lineno;
    char f_trace_lines;
} layout_frameobject;
#endif

static inline void
layout_frameobject_set_trace_lines(PyFrameObject *f, int on)
{
#if PY_VERSION_HEX >= 0x030B0000
    ((layout_frameobject *)f)->f_trace_lines = (char)on;
#else
    f->f_trace_lines = (char)on;
#endif
}
#endif

#endif /* MEMLENS_CPY_FRAME_H */
