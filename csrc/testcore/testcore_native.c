/* testcore_native.c: direct calls to the C allocator and to mmap, as a C
 * extension makes them (this object's GOT is what memlens patches), from
 * the calling thread or from native threads that never hold the GIL, for
 * the native-memory tests.  Addresses travel as ints. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* mremap, pvalloc (as pyconfig.h defines it) */
#endif
#include "testcore/testcore.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static PyObject *
tn_addr(void *p)
{
    if (p == NULL) {
        return PyErr_NoMemory();
    }
    return PyLong_FromVoidPtr(p);
}

static PyObject *
native_call_py(PyObject *Py_UNUSED(m), PyObject *args)
{
    const char *fn;
    unsigned long long a = 0, b = 0, c = 0;
    if (!PyArg_ParseTuple(args, "s|KKK:native_call", &fn, &a, &b, &c)) {
        return NULL;
    }
    void *pa = (void *)(uintptr_t)a;
    if (strcmp(fn, "malloc") == 0) {
        return tn_addr(malloc((size_t)a));
    }
    if (strcmp(fn, "calloc") == 0) {
        return tn_addr(calloc((size_t)a, (size_t)b));
    }
    if (strcmp(fn, "realloc") == 0) {
        return tn_addr(realloc(pa, (size_t)b));
    }
    if (strcmp(fn, "reallocarray") == 0) {
        return tn_addr(reallocarray(pa, (size_t)b, (size_t)c));
    }
    if (strcmp(fn, "free") == 0) {
        free(pa);
        Py_RETURN_NONE;
    }
    if (strcmp(fn, "posix_memalign") == 0) {
        void *p = NULL;
        if (posix_memalign(&p, (size_t)a, (size_t)b) != 0) {
            return PyErr_NoMemory();
        }
        return tn_addr(p);
    }
    if (strcmp(fn, "aligned_alloc") == 0) {
        return tn_addr(aligned_alloc((size_t)a, (size_t)b));
    }
    if (strcmp(fn, "memalign") == 0) {
        return tn_addr(memalign((size_t)a, (size_t)b));
    }
    if (strcmp(fn, "valloc") == 0) {
        return tn_addr(valloc((size_t)a));
    }
    if (strcmp(fn, "pvalloc") == 0) {
        return tn_addr(pvalloc((size_t)a));
    }
    if (strcmp(fn, "mmap") == 0) {
        void *p = mmap(NULL, (size_t)a, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return tn_addr(p == MAP_FAILED ? NULL : p);
    }
    if (strcmp(fn, "munmap") == 0) {
        if (munmap(pa, (size_t)b) != 0) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        Py_RETURN_NONE;
    }
    if (strcmp(fn, "mremap") == 0) {
        void *p = mremap(pa, (size_t)b, (size_t)c, MREMAP_MAYMOVE);
        return tn_addr(p == MAP_FAILED ? NULL : p);
    }
    if (strcmp(fn, "track") == 0) {
        return PyLong_FromLong(PyTraceMalloc_Track(0, (uintptr_t)a, (size_t)b));
    }
    if (strcmp(fn, "untrack") == 0) {
        return PyLong_FromLong(PyTraceMalloc_Untrack(0, (uintptr_t)a));
    }
    PyErr_Format(PyExc_ValueError, "no such call: %s", fn);
    return NULL;
}

PyDoc_STRVAR(native_call_doc,
             "native_call(fn, a=0, b=0, c=0, /)\n--\n\n"
             "Call the C library's `fn` directly: malloc(a), calloc(a, b), realloc(a, b),\n"
             "reallocarray(a, b, c), free(a), posix_memalign(a, b), aligned_alloc(a, b),\n"
             "memalign(a, b), valloc(a), pvalloc(a), mmap(a) (anonymous, private),\n"
             "munmap(a, b), mremap(a, b, c), track(a, b) (PyTraceMalloc_Track),\n"
             "untrack(a).  Returns the address, or None.");

static PyObject *
native_malloc_nogil_py(PyObject *Py_UNUSED(m), PyObject *arg)
{
    size_t n = PyLong_AsSize_t(arg);
    if (n == (size_t)-1 && PyErr_Occurred()) {
        return NULL;
    }
    void *p;
    Py_BEGIN_ALLOW_THREADS;
    p = malloc(n);
    Py_END_ALLOW_THREADS;
    return tn_addr(p);
}

PyDoc_STRVAR(native_malloc_nogil_doc,
             "native_malloc_nogil(n, /)\n--\n\n"
             "malloc(n) with the GIL released around it, as C code doing long work does.");

/* ---- native threads ------------------------------------------------------ */

typedef struct {
    size_t n, size;
    void **blocks;
    int free_them;
} tn_job;

static void *
tn_thread_main(void *arg)
{
    tn_job *job = arg;
    for (size_t i = 0; i < job->n; i++) {
        if (job->free_them) {
            free(job->blocks[i]);
            job->blocks[i] = NULL;
        }
        else {
            job->blocks[i] = malloc(job->size);
            if (job->blocks[i] != NULL) {
                memset(job->blocks[i], 1, job->size);
            }
        }
    }
    return NULL;
}

/* Blocks allocated by native_thread_malloc(), freed by native_thread_free(). */
static void **tn_thread_blocks;
static size_t tn_thread_n;

static int
tn_run_thread(tn_job *job)
{
    pthread_t t;
    int err;
    Py_BEGIN_ALLOW_THREADS;
    err = pthread_create(&t, NULL, tn_thread_main, job);
    if (err == 0) {
        (void)pthread_join(t, NULL);
    }
    Py_END_ALLOW_THREADS;
    if (err != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_create failed");
        return -1;
    }
    return 0;
}

static PyObject *
native_thread_malloc_py(PyObject *Py_UNUSED(m), PyObject *args)
{
    Py_ssize_t n, size;
    if (!PyArg_ParseTuple(args, "nn:native_thread_malloc", &n, &size)) {
        return NULL;
    }
    if (tn_thread_blocks != NULL || n <= 0 || size <= 0) {
        PyErr_SetString(PyExc_ValueError, "blocks already allocated, or n/size not positive");
        return NULL;
    }
    tn_thread_blocks = PyMem_RawCalloc((size_t)n, sizeof(void *));
    if (tn_thread_blocks == NULL) {
        return PyErr_NoMemory();
    }
    tn_thread_n = (size_t)n;
    tn_job job = {(size_t)n, (size_t)size, tn_thread_blocks, 0};
    if (tn_run_thread(&job) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
native_thread_free_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    if (tn_thread_blocks == NULL) {
        Py_RETURN_NONE;
    }
    tn_job job = {tn_thread_n, 0, tn_thread_blocks, 1};
    if (tn_run_thread(&job) < 0) {
        return NULL;
    }
    PyMem_RawFree(tn_thread_blocks);
    tn_thread_blocks = NULL;
    tn_thread_n = 0;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(native_thread_malloc_doc,
             "native_thread_malloc(n, size, /)\n--\n\n"
             "A new native thread (never registered with Python) mallocs n blocks of\n"
             "`size` bytes, kept until native_thread_free(); waits for it (GIL released).");
PyDoc_STRVAR(native_thread_free_doc,
             "native_thread_free()\n--\n\n"
             "A new native thread frees the blocks of native_thread_malloc().");

/* Allocates and frees in a loop with the GIL released until told to stop:
 * the stop()-while-C-allocates tests. */
static atomic_int tn_churn_run;
static pthread_t tn_churn_thread;
static int tn_churn_started;

static void *
tn_churn_main(void *arg)
{
    (void)arg;
    while (atomic_load(&tn_churn_run)) {
        void *p = malloc(100);
        void *q = calloc(3, 1000);
        p = realloc(p, 5000);
        void *r = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (r != MAP_FAILED) {
            (void)munmap(r, 8192);
        }
        free(p);
        free(q);
    }
    return NULL;
}

static PyObject *
native_churn_py(PyObject *Py_UNUSED(m), PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0) {
        return NULL;
    }
    if (on && !tn_churn_started) {
        atomic_store(&tn_churn_run, 1);
        if (pthread_create(&tn_churn_thread, NULL, tn_churn_main, NULL) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_create failed");
            return NULL;
        }
        tn_churn_started = 1;
    }
    else if (!on && tn_churn_started) {
        atomic_store(&tn_churn_run, 0);
        Py_BEGIN_ALLOW_THREADS;
        (void)pthread_join(tn_churn_thread, NULL);
        Py_END_ALLOW_THREADS;
        tn_churn_started = 0;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(native_churn_doc,
             "native_churn(on, /)\n--\n\n"
             "Start (True) or stop and join (False) a native thread that mallocs,\n"
             "callocs, reallocs, mmaps and frees in a loop without the GIL.");

static PyMethodDef testcore_native_methods[] = {
    {"native_call", native_call_py, METH_VARARGS, native_call_doc},
    {"native_malloc_nogil", native_malloc_nogil_py, METH_O, native_malloc_nogil_doc},
    {"native_thread_malloc", native_thread_malloc_py, METH_VARARGS, native_thread_malloc_doc},
    {"native_thread_free", native_thread_free_py, METH_NOARGS, native_thread_free_doc},
    {"native_churn", native_churn_py, METH_O, native_churn_doc},
    {NULL, NULL, 0, NULL},
};

int
testcore_native_exec(PyObject *m)
{
    return PyModule_AddFunctions(m, testcore_native_methods);
}
