/* testcore_module.c: memlens._testcore's module, the raw-allocator calls,
 * and the benchmarks' floors (see testcore.h). */
#include "testcore/testcore.h"
#include "testapi.h"

#include <stdlib.h>

#if PY_VERSION_HEX < 0x030C0000
#include <frameobject.h>
#endif

/* The engine's test API (testapi.h), fetched from memlens._core when this
 * module is executed; constant afterwards.  Process-wide like the state it
 * reaches. */
static const testapi *testcore_api;

/* ---- direct calls into the RAW domain ------------------------------------- */

PyDoc_STRVAR(raw_malloc_doc, "raw_malloc(n, /)\n--\n\nPyMem_RawMalloc(n) -> address.");

static PyObject *
raw_malloc_py(PyObject *Py_UNUSED(m), PyObject *arg)
{
    size_t n = PyLong_AsSize_t(arg);
    if (n == (size_t)-1 && PyErr_Occurred()) {
        return NULL;
    }
    void *p = PyMem_RawMalloc(n);
    if (p == NULL) {
        return PyErr_NoMemory();
    }
    return PyLong_FromVoidPtr(p);
}

PyDoc_STRVAR(raw_realloc_doc,
             "raw_realloc(address, n, /)\n--\n\nPyMem_RawRealloc(address, n) -> address.");

static PyObject *
raw_realloc_py(PyObject *Py_UNUSED(m), PyObject *args)
{
    PyObject *addr;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "On:raw_realloc", &addr, &n)) {
        return NULL;
    }
    void *p = PyLong_AsVoidPtr(addr);
    if (p == NULL && PyErr_Occurred()) {
        return NULL;
    }
    void *q = PyMem_RawRealloc(p, (size_t)n);
    if (q == NULL) {
        return PyErr_NoMemory();
    }
    return PyLong_FromVoidPtr(q);
}

PyDoc_STRVAR(raw_free_doc, "raw_free(address, /)\n--\n\nPyMem_RawFree(address).");

static PyObject *
raw_free_py(PyObject *Py_UNUSED(m), PyObject *arg)
{
    void *p = PyLong_AsVoidPtr(arg);
    if (p == NULL && PyErr_Occurred()) {
        return NULL;
    }
    PyMem_RawFree(p);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(raw_churn_nogil_doc,
             "raw_churn_nogil(rounds, size, keep, /)\n--\n\n"
             "With the GIL released: `rounds` times RAW malloc(size), realloc to twice\n"
             "the size and free; then `keep` more blocks of `size` bytes that stay\n"
             "allocated, returned as a list of addresses for raw_free().");

static PyObject *
raw_churn_nogil_py(PyObject *Py_UNUSED(m), PyObject *args)
{
    Py_ssize_t rounds, size, keep;
    PyObject *out = NULL;
    if (!PyArg_ParseTuple(args, "nnn:raw_churn_nogil", &rounds, &size, &keep)) {
        return NULL;
    }
    /* The C heap, not PyMem: the list of kept blocks is not what the
     * tracer under test should see. */
    void **kept = calloc((size_t)(keep > 0 ? keep : 1), sizeof(void *));
    if (kept == NULL) {
        return PyErr_NoMemory();
    }
    PyThreadState *save = PyEval_SaveThread();
    for (Py_ssize_t i = 0; i < rounds; i++) {
        void *p = PyMem_RawMalloc((size_t)size);
        p = PyMem_RawRealloc(p, (size_t)size * 2);
        PyMem_RawFree(p);
    }
    for (Py_ssize_t i = 0; i < keep; i++) {
        kept[i] = PyMem_RawMalloc((size_t)size);
    }
    PyEval_RestoreThread(save);
    out = PyList_New(keep > 0 ? keep : 0);
    for (Py_ssize_t i = 0; out != NULL && i < keep; i++) {
        PyObject *a = PyLong_FromVoidPtr(kept[i]);
        if (a == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, a);
    }
    free(kept);
    return out;
}

/* ---- floors for the benchmarks --------------------------------------------- */

PyDoc_STRVAR(trace_chain_only_doc,
             "trace_chain_only(on, /)\n--\n\n"
             "Install (or remove) PEP 445 hooks that only call the allocator below:\n"
             "benchmarks/bench_tracer.py's floor under a tracer.  RuntimeError while\n"
             "the tracer runs, or when other hooks were installed above them.");

static PyObject *
trace_chain_only_py(PyObject *Py_UNUSED(m), PyObject *on)
{
    int r = PyObject_IsTrue(on);
    if (r < 0 || testcore_api->trace_chain_only(r) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

#if PY_VERSION_HEX < 0x030C0000
/* 3.9-3.11, for benchmarks/bench_lines.py --floor: what CPython's own line
 * events cost, with a C trace function that does nothing -- the floor under
 * any tool that counts lines by tracing (3.12+: the benchmark registers a
 * builtin with sys.monitoring instead). */
static int
null_tracefunc(PyObject *Py_UNUSED(obj), PyFrameObject *Py_UNUSED(f), int Py_UNUSED(what),
               PyObject *Py_UNUSED(arg))
{
    return 0;
}

PyDoc_STRVAR(lineprof_null_trace_doc,
             "lineprof_null_trace(on, /)\n--\n\n"
             "Install (or remove) a C trace function that does nothing, on this thread\n"
             "(benchmarks: the cost of CPython's line events alone).  RuntimeError while\n"
             "memlens' line profiler runs.");

static PyObject *
lineprof_null_trace_py(PyObject *Py_UNUSED(m), PyObject *on)
{
    int r = PyObject_IsTrue(on);
    if (r < 0) {
        return NULL;
    }
    if (testcore_api->lineprof_is_active()) {
        /* Its trace function is the thread's: neither replace nor remove it. */
        PyErr_SetString(PyExc_RuntimeError, "the line profiler is running");
        return NULL;
    }
    PyEval_SetTrace(r ? null_tracefunc : NULL, NULL);
    Py_RETURN_NONE;
}
#endif

static PyMethodDef testcore_methods[] = {
    {"raw_malloc", raw_malloc_py, METH_O, raw_malloc_doc},
    {"raw_realloc", raw_realloc_py, METH_VARARGS, raw_realloc_doc},
    {"raw_free", raw_free_py, METH_O, raw_free_doc},
    {"raw_churn_nogil", raw_churn_nogil_py, METH_VARARGS, raw_churn_nogil_doc},
    {"trace_chain_only", trace_chain_only_py, METH_O, trace_chain_only_doc},
#if PY_VERSION_HEX < 0x030C0000
    {"lineprof_null_trace", lineprof_null_trace_py, METH_O, lineprof_null_trace_doc},
#endif
    {NULL, NULL, 0, NULL},
};

/* ---- the module -------------------------------------------------------------- */

static int
testcore_exec(PyObject *m)
{
    const testapi *api = PyCapsule_Import(TESTAPI_CAPSULE, 0);
    if (api == NULL) {
        return -1;
    }
    if (api->version != TESTAPI_VERSION) {
        PyErr_Format(PyExc_ImportError,
                     "memlens._testcore was built for test API %u, memlens._core has %u: "
                     "rebuild both",
                     (unsigned)TESTAPI_VERSION, api->version);
        return -1;
    }
    testcore_api = api;
    if (PyModule_AddFunctions(m, testcore_methods) < 0) {
        return -1;
    }
    if (testcore_sizing_exec(m) < 0) {
        return -1;
    }
    if (testcore_native_exec(m) < 0) {
        return -1;
    }
    return testcore_layout_exec(m);
}

PyDoc_STRVAR(testcore_doc,
             "memlens._testcore -- test-only entry points of the memlens engine.\n\n"
             "For memlens' own tests and benchmarks: raw allocator calls, the floors the\n"
             "benchmarks measure against, and probes of CPython's structures as memlens\n"
             "reads them.  Not part of the API.");

static PyModuleDef_Slot testcore_slots[] = {
    {Py_mod_exec, (void *)testcore_exec},
#if PY_VERSION_HEX >= 0x030C0000
    /* 3.12+: like memlens._core, whose process-wide hooks it reaches. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef testcore_module = {
    PyModuleDef_HEAD_INIT, .m_name = "memlens._testcore", .m_doc = testcore_doc,
    .m_size = 0,           .m_slots = testcore_slots,
};

PyMODINIT_FUNC
PyInit__testcore(void)
{
    return PyModuleDef_Init(&testcore_module);
}
