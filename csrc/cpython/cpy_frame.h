/* cpy_frame.h: read the running Python stack of a thread without
 * allocating, for every supported CPython version.
 *
 * An allocator hook may not create objects, so PyThreadState_GetFrame()
 * (which materialises a PyFrameObject on 3.11+) is off limits.  Instead the
 * few fields we need are mirrored here from each version's
 * Include/internal/pycore_frame.h; each branch is exercised by
 * tests/test_tracer.py on that version.  Frames are reported as
 * (code object, instruction offset in code units); the line number is only
 * computed at report time (stack_frame_lineno()).
 */
#ifndef MEMLENS_CPY_FRAME_H
#define MEMLENS_CPY_FRAME_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#if PY_VERSION_HEX < 0x030B0000
#include <frameobject.h> /* 3.9/3.10: the PyFrameObject layout */
#endif

#ifdef Py_GIL_DISABLED
#error "memlens' tracer needs the GIL: free-threaded builds are not supported"
#endif

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

#if PY_VERSION_HEX >= 0x030B0000
/* 3.11-3.13: mirror of the head of _PyInterpreterFrame.  Only the fields up
 * to `owner` are read; the layouts differ per minor version. */
#if PY_VERSION_HEX >= 0x030D0000
typedef struct stack_iframe {
    PyObject *f_executable; /* code object, or None for shim frames */
    struct stack_iframe *previous;
    PyObject *f_funcobj;
    PyObject *f_globals;
    PyObject *f_builtins;
    PyObject *f_locals;
    PyObject *frame_obj;
    uint16_t *instr_ptr; /* instruction executing or about to begin */
    int stacktop;
    uint16_t return_offset;
    char owner;
} stack_iframe;
#define STACK_IFRAME_CODE(f) ((f)->f_executable)
#define STACK_IFRAME_INSTR(f) ((f)->instr_ptr)
#elif PY_VERSION_HEX >= 0x030C0000
typedef struct stack_iframe {
    PyCodeObject *f_code;
    struct stack_iframe *previous;
    PyObject *f_funcobj;
    PyObject *f_globals;
    PyObject *f_builtins;
    PyObject *f_locals;
    PyObject *frame_obj;
    uint16_t *prev_instr; /* code unit before the next instruction */
    int stacktop;
    uint16_t return_offset;
    char owner;
} stack_iframe;
#define STACK_IFRAME_CODE(f) ((PyObject *)(f)->f_code)
#define STACK_IFRAME_INSTR(f) ((f)->prev_instr)
#else /* 3.11 */
typedef struct stack_iframe {
    PyObject *f_func;
    PyObject *f_globals;
    PyObject *f_builtins;
    PyObject *f_locals;
    PyCodeObject *f_code;
    PyObject *frame_obj;
    struct stack_iframe *previous;
    uint16_t *prev_instr; /* code unit before the next instruction */
    int stacktop;
    _Bool is_entry;
    char owner;
} stack_iframe;
#define STACK_IFRAME_CODE(f) ((PyObject *)(f)->f_code)
#define STACK_IFRAME_INSTR(f) ((f)->prev_instr)
#endif

/* Values of _PyInterpreterFrame.owner (identical in 3.11-3.13). */
#define STACK_OWNED_BY_GENERATOR 1
#define STACK_OWNED_BY_CSTACK 3 /* 3.12+: shim frame of a C call */

/* Innermost raw frame of `tstate` (GIL held by its thread), or NULL. */
static inline void *
stack_compat_top(PyThreadState *tstate)
{
#if PY_VERSION_HEX >= 0x030D0000
    return tstate->current_frame;
#else
    /* 3.11/3.12: the frame hangs off the current C frame record. */
    if (tstate->cframe == NULL) {
        return NULL;
    }
    return tstate->cframe->current_frame;
#endif
}

static inline void *
stack_compat_prev(void *f)
{
    return ((stack_iframe *)f)->previous;
}

static inline void
stack_compat_sig(void *f, stack_sig *s)
{
    stack_iframe *fr = f;
    s->frame = f;
    s->code = NULL;
    s->instr = (intptr_t)STACK_IFRAME_INSTR(fr);
}

/* The (code, offset) of raw frame `f`; 0 if it is not a frame to report:
 * a shim frame (3.12+) or one that has not run its first traceable
 * instruction yet ("incomplete", skipped by CPython's tracebacks too). */
static inline int
stack_compat_decode(void *f, PyCodeObject **code, int32_t *offset)
{
    stack_iframe *fr = f;
#if PY_VERSION_HEX >= 0x030C0000
    if (fr->owner == STACK_OWNED_BY_CSTACK) {
        return 0;
    }
#endif
    PyObject *co = STACK_IFRAME_CODE(fr);
#if PY_VERSION_HEX >= 0x030D0000
    if (!PyCode_Check(co)) {
        return 0;
    }
#endif
    char *start = ((PyCodeObject *)co)->co_code_adaptive;
    char *instr = (char *)STACK_IFRAME_INSTR(fr);
    if (fr->owner != STACK_OWNED_BY_GENERATOR
        && instr < start + 2 * (Py_ssize_t)((PyCodeObject *)co)->_co_firsttraceable) {
        return 0;
    }
    *code = (PyCodeObject *)co;
    *offset = (int32_t)((instr - start) / 2);
    return 1;
}

#else /* 3.9, 3.10: the thread state points at the innermost PyFrameObject. */

static inline void *
stack_compat_top(PyThreadState *tstate)
{
    return tstate->frame;
}

static inline void *
stack_compat_prev(void *f)
{
    return ((PyFrameObject *)f)->f_back;
}

static inline void
stack_compat_sig(void *f, stack_sig *s)
{
    PyFrameObject *fr = f;
    s->frame = f;
    s->code = fr->f_code;
    s->instr = fr->f_lasti;
}

static inline int
stack_compat_decode(void *f, PyCodeObject **code, int32_t *offset)
{
    PyFrameObject *fr = f;
    *code = fr->f_code;
#if PY_VERSION_HEX >= 0x030A0000
    *offset = fr->f_lasti; /* 3.10: in code units, -1 before the first */
#else
    *offset = fr->f_lasti < 0 ? -1 : fr->f_lasti / 2; /* 3.9: in bytes */
#endif
    return 1;
}
#endif

/* Line number of a captured frame (report time only; needs the GIL). */
static inline int
stack_frame_lineno(PyCodeObject *code, int32_t offset)
{
    if (offset < 0) {
        return code->co_firstlineno;
    }
    return PyCode_Addr2Line(code, offset * 2);
}

#endif /* MEMLENS_CPY_FRAME_H */
