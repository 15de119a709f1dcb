/* lp_module.c: Python binding of the line profiler (memlens._core.lineprof_*
 * functions): argument conversion and result lists; the event machinery
 * and the records are lp_events.c's. */
#include "bindings.h"
#include "lineprof/lp_events.h"
#include "tracer/trace_hooks.h"

PyDoc_STRVAR(lineprof_register_doc,
             "lineprof_register(code) -- profile the lines of this code object.");

static PyObject *
lineprof_register_py(PyObject *Py_UNUSED(m), PyObject *code)
{
    if (!PyCode_Check(code)) {
        PyErr_Format(PyExc_TypeError, "expected a code object, not %.100s", Py_TYPE(code)->tp_name);
        return NULL;
    }
    if (lp_register(code) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(lineprof_enable_doc,
             "lineprof_enable(rss) -- start charging line events (3.9-3.11: installs the\n"
             "C trace function on this thread).  rss: Mem usage from RSS.");

static PyObject *
lineprof_enable_py(PyObject *Py_UNUSED(m), PyObject *rss)
{
    int r = PyObject_IsTrue(rss);
    if (r < 0) {
        return NULL;
    }
    lp_enable(r);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(lineprof_disable_doc,
             "lineprof_disable() -- stop charging line events (records are kept).");

static PyObject *
lineprof_disable_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    lp_disable();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(lineprof_reset_doc,
             "lineprof_reset() -- zero every line record (registrations are kept).");

static PyObject *
lineprof_reset_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    lp_reset();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(lineprof_clear_doc,
             "lineprof_clear() -- forget every registered code object and record.");

static PyObject *
lineprof_clear_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    lp_clear();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(lineprof_stats_doc,
             "lineprof_stats() -- [(code, calls, [(line, occurrences, increment, allocated,\n"
             "freed, peak, mem_usage), ...]), ...] for every registered code object, lines\n"
             "that were charged only.");

static PyObject *
lineprof_stats_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyList_New(0);
    PyObject *lines = NULL;
    PyObject *item = NULL;
    if (out == NULL) {
        goto error;
    }
    Py_ssize_t ncodes;
    lp_code *const *codes = lp_records(&ncodes);
    for (Py_ssize_t k = 0; k < ncodes; k++) {
        lp_code *r = codes[k];
        lines = PyList_New(0);
        if (lines == NULL) {
            goto error;
        }
        for (int i = 0; i < r->nlines; i++) {
            lp_line *l = &r->lines[i];
            if (!l->seen) {
                continue;
            }
            item = Py_BuildValue("(iKLKKLK)", r->firstline + i, (unsigned long long)l->occurrences,
                                 (long long)l->increment, (unsigned long long)l->allocated,
                                 (unsigned long long)l->freed, (long long)l->peak,
                                 (unsigned long long)l->mem_usage);
            if (item == NULL || PyList_Append(lines, item) < 0) {
                goto error;
            }
            Py_CLEAR(item);
        }
        item = Py_BuildValue("(OKO)", r->code, (unsigned long long)r->calls, lines);
        if (item == NULL || PyList_Append(out, item) < 0) {
            goto error;
        }
        Py_CLEAR(item);
        Py_CLEAR(lines);
    }
    return out;

error:
    Py_XDECREF(item);
    Py_XDECREF(lines);
    Py_XDECREF(out);
    return NULL;
}

PyDoc_STRVAR(lineprof_failed_doc,
             "lineprof_failed() -- True if the profiler ran out of memory for its records.");

static PyObject *
lineprof_failed_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(lp_has_failed());
}

PyDoc_STRVAR(lineprof_thread_counters_doc,
             "lineprof_thread_counters(reset_peak) -- (allocated, freed, peak_net) of this\n"
             "thread (trace_hooks.h), peak_net the highest allocated - freed since the last\n"
             "reset (line boundaries of profiled code do not lower it); with reset_peak,\n"
             "then restarts it at the current net.");

static PyObject *
lineprof_thread_counters_py(PyObject *Py_UNUSED(m), PyObject *reset)
{
    int r = PyObject_IsTrue(reset);
    if (r < 0) {
        return NULL;
    }
    trace_thread_counters *c = trace_thread_counters_ptr();
    uint64_t allocated = c->allocated;
    uint64_t freed = c->freed;
    int64_t peak = c->peak_net > c->peak_held ? c->peak_net : c->peak_held;
    if (r) {
        c->peak_net = c->peak_held = (int64_t)(allocated - freed);
    }
    return Py_BuildValue("(KKL)", (unsigned long long)allocated, (unsigned long long)freed,
                         (long long)peak);
}

static PyMethodDef lineprof_methods[] = {
    {"lineprof_thread_counters", lineprof_thread_counters_py, METH_O, lineprof_thread_counters_doc},
    {"lineprof_register", lineprof_register_py, METH_O, lineprof_register_doc},
    {"lineprof_enable", lineprof_enable_py, METH_O, lineprof_enable_doc},
    {"lineprof_disable", lineprof_disable_py, METH_NOARGS, lineprof_disable_doc},
    {"lineprof_reset", lineprof_reset_py, METH_NOARGS, lineprof_reset_doc},
    {"lineprof_clear", lineprof_clear_py, METH_NOARGS, lineprof_clear_doc},
    {"lineprof_stats", lineprof_stats_py, METH_NOARGS, lineprof_stats_doc},
    {"lineprof_failed", lineprof_failed_py, METH_NOARGS, lineprof_failed_doc},
#if PY_VERSION_HEX >= 0x030C0000
    {"lineprof_mon_start", (PyCFunction)(void (*)(void))lp_mon_start, METH_FASTCALL,
     "sys.monitoring PY_START callback."},
    {"lineprof_mon_resume", (PyCFunction)(void (*)(void))lp_mon_resume, METH_FASTCALL,
     "sys.monitoring PY_RESUME / PY_THROW callback."},
    {"lineprof_mon_leave", (PyCFunction)(void (*)(void))lp_mon_leave, METH_FASTCALL,
     "sys.monitoring PY_RETURN / PY_YIELD / PY_UNWIND callback."},
    {"lineprof_mon_line", (PyCFunction)(void (*)(void))lp_mon_line, METH_FASTCALL,
     "sys.monitoring LINE callback."},
#else
    {"lineprof_thread_hook", lp_thread_hook, METH_VARARGS,
     "threading.settrace() hook: installs the C trace function in a new thread."},
#endif
    {NULL, NULL, 0, NULL},
};

int
lp_module_exec(PyObject *m)
{
    if (lp_events_init() < 0) {
        return -1;
    }
    return PyModule_AddFunctions(m, lineprof_methods);
}
