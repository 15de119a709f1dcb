/* census_frames.c: the running frames of every thread (frames_; see
 * census_frames.h). */
#include "census/census_frames.h"

#include <stdlib.h>
#include <string.h>

int
frames_each(frames_fn fn, void *arg)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        for (layout_frame *f = layout_thread_frame(ts); f != NULL; f = layout_frame_back(f)) {
            PyCodeObject *co = layout_frame_code(f);
            if (co != NULL && fn(arg, f, co) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

static int
frames_push(PyObject ***arr, size_t *n, size_t *cap, PyObject *o)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        PyObject **na = realloc(*arr, ncap * sizeof(PyObject *));
        if (na == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *arr = na;
        *cap = ncap;
    }
    Py_INCREF(o);
    (*arr)[(*n)++] = o;
    return 0;
}

static int
frames_locals_add(void *arg, layout_frame *f, PyCodeObject *co)
{
    frames_locals *cl = arg;
    if (layout_frame_globals(f) == cl->own_globals) {
        /* our own frames: on 3.9/3.10 they are objects reporting their
         * locals (the very object asked about), so they are left out */
        PyObject *fo = layout_frame_object(f);
        return fo == NULL ? 0 : frames_push(&cl->own, &cl->nown, &cl->capown, fo);
    }
    PyObject **locals = layout_frame_locals(f);
    Py_ssize_t nl = layout_code_nlocalsplus(co);
    for (Py_ssize_t i = 0; i < nl; i++) {
        if (locals[i] != NULL && frames_push(&cl->vals, &cl->n, &cl->cap, locals[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

void
frames_locals_free(frames_locals *cl)
{
    for (size_t i = 0; i < cl->n; i++) {
        Py_DECREF(cl->vals[i]);
    }
    for (size_t i = 0; i < cl->nown; i++) {
        Py_DECREF(cl->own[i]);
    }
    free(cl->vals);
    free(cl->own);
    memset(cl, 0, sizeof(*cl));
}

int
frames_locals_collect(frames_locals *cl, PyObject *own_globals, size_t first)
{
    memset(cl, 0, sizeof(*cl));
    cl->own_globals = own_globals;
    for (size_t i = 0; i < first; i++) {
        if (frames_push(&cl->vals, &cl->n, &cl->cap, Py_None) < 0) {
            frames_locals_free(cl);
            return -1;
        }
    }
    if (frames_each(frames_locals_add, cl) < 0) {
        frames_locals_free(cl);
        return -1;
    }
    return 0;
}
