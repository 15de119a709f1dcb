/* stack_compat.h: read the running Python stack of a thread without
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
#ifndef MEMLENS_STACK_COMPAT_H
#define MEMLENS_STACK_COMPAT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#ifdef Py_GIL_DISABLED
#error "memlens' tracer needs the GIL: free-threaded builds are not supported"
#endif

typedef struct {
    PyCodeObject *code; /* borrowed while capturing; owned once interned */
    int32_t offset;     /* instruction offset in code units (-1: unknown) */
} stack_frame;

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
#endif

/* Values of _PyInterpreterFrame.owner (identical in 3.11-3.13). */
#define STACK_OWNED_BY_GENERATOR 1
#define STACK_OWNED_BY_CSTACK 3 /* 3.12+: shim frame of a C call */

static inline stack_iframe *
stack_compat_top_(PyThreadState *tstate)
{
#if PY_VERSION_HEX >= 0x030D0000
    return (stack_iframe *)tstate->current_frame;
#else
    /* 3.11/3.12: the frame hangs off the current C frame record. */
    if (tstate->cframe == NULL) {
        return NULL;
    }
    return (stack_iframe *)tstate->cframe->current_frame;
#endif
}
#endif /* >= 3.11 */

/* Fill `out` with up to `max` frames of `tstate`, innermost first, and
 * return how many.  Must be called with the GIL held by `tstate`'s thread
 * (the frames belong to it); never allocates, never raises. */
static inline int
stack_compat_capture(PyThreadState *tstate, stack_frame *out, int max)
{
    int n = 0;
#if PY_VERSION_HEX >= 0x030B0000
    stack_iframe *f = stack_compat_top_(tstate);
    while (f != NULL && n < max) {
        PyCodeObject *co;
        char *instr;
#if PY_VERSION_HEX >= 0x030D0000
        if (f->owner == STACK_OWNED_BY_CSTACK || !PyCode_Check(f->f_executable)) {
            f = f->previous;
            continue;
        }
        co = (PyCodeObject *)f->f_executable;
        instr = (char *)f->instr_ptr;
#else
#if PY_VERSION_HEX >= 0x030C0000
        if (f->owner == STACK_OWNED_BY_CSTACK) {
            f = f->previous;
            continue;
        }
#endif
        co = f->f_code;
        instr = (char *)f->prev_instr;
#endif
        /* Skip "incomplete" frames that have not run their first traceable
         * instruction yet, as CPython's own traceback code does. */
        char *start = co->co_code_adaptive;
        if (f->owner != STACK_OWNED_BY_GENERATOR
            && instr < start + 2 * (Py_ssize_t)co->_co_firsttraceable) {
            f = f->previous;
            continue;
        }
        out[n].code = co;
        out[n].offset = (int32_t)((instr - start) / 2);
        n++;
        f = f->previous;
    }
#else
    /* 3.9/3.10: the thread state points at the innermost PyFrameObject. */
    PyFrameObject *f = tstate->frame;
    while (f != NULL && n < max) {
        out[n].code = f->f_code;
#if PY_VERSION_HEX >= 0x030A0000
        out[n].offset = f->f_lasti; /* 3.10: in code units */
#else
        out[n].offset = f->f_lasti < 0 ? -1 : f->f_lasti / 2; /* 3.9: bytes */
#endif
        n++;
        f = f->f_back;
    }
#endif
    return n;
}

/* Line number of a captured frame (report time only; needs the GIL). */
static inline int
stack_frame_lineno(PyCodeObject *code, int32_t offset)
{
    if (offset < 0) {
        return code->co_firstlineno;
    }
    return PyCode_Addr2Line(code, offset * 2);
}

#endif /* MEMLENS_STACK_COMPAT_H */
