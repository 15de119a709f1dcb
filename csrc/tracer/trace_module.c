/* trace_module.c: Python binding of the allocation tracer and of the
 * timeline sampler (memlens._core.trace_* and timeline_* functions);
 * argument conversion only, the work is in trace_hooks.c, trace_snapshot.c
 * and trace_timeline.c; the TraceTable type is trace_table.c's.  trace_load (reading a capture) is
 * capture/cap_module.c's. */
#include "bindings.h"
#include "tracer/trace_stack.h"
#include "tracer/trace_hooks.h"
#include "tracer/trace_native.h"
#include "tracer/trace_snapshot.h"
#include "tracer/trace_table.h"
#include "tracer/trace_timeline.h"

PyDoc_STRVAR(trace_start_doc,
             "trace_start(frames, sample_bytes, native=1) -- install the allocator hooks.\n\n"
             "frames: 1..512 frames per stack (0: no stacks, totals only -- the line\n"
             "profiler's mode; the public start() asks for 1 or more); sample_bytes: 0 for\n"
             "exact tracing, else\n"
             "the mean of the Poisson sampling interval in bytes; native: also the\n"
             "malloc and mmap calls of C extensions and the libraries they load.");

static PyObject *
trace_start_py(PyObject *Py_UNUSED(m), PyObject *args)
{
    int frames;
    unsigned long long sample_bytes;
    int native = 1;
    if (!PyArg_ParseTuple(args, "iK|p:trace_start", &frames, &sample_bytes, &native)) {
        return NULL;
    }
    if (frames < 0 || frames > STACK_MAX_FRAMES) {
        PyErr_Format(PyExc_ValueError, "frames must be between 0 and %d, not %d", STACK_MAX_FRAMES,
                     frames);
        return NULL;
    }
    if (sample_bytes > ((unsigned long long)1 << 50)) {
        PyErr_SetString(PyExc_ValueError, "sample_bytes must be at most 2**50");
        return NULL;
    }
    if (trace_start(frames, (uint64_t)sample_bytes, native) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(trace_native_stats_doc,
             "trace_native_stats() -> (what, objects, entries, skipped)\n\n"
             "What the last patching pass did: what it patched (1: PyTraceMalloc_Track,\n"
             "2: the malloc and mmap families; 0: nothing, GOT patching unsupported\n"
             "here), the shared objects it patched, the GOT entries it wrote, and the\n"
             "entries it left alone (bound to another definition).");

static PyObject *
trace_native_stats_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    trace_native_stats st;
    trace_native_get_stats(&st);
    return Py_BuildValue("(iiii)", st.what, st.objects, st.entries, st.skipped);
}

static PyObject *
trace_stop_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    trace_stop();
    Py_RETURN_NONE;
}

static PyObject *
trace_is_tracing_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(trace_is_tracing());
}

static PyObject *
trace_sample_bytes_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    trace_view v;
    trace_view_get(&v);
    return PyLong_FromUnsignedLongLong(v.tracing ? (unsigned long long)v.sample_bytes : 0);
}

static PyObject *
trace_traced_memory_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    uint64_t cur, peak;
    trace_get_traced_memory(&cur, &peak);
    return Py_BuildValue("(KK)", (unsigned long long)cur, (unsigned long long)peak);
}

static PyObject *
trace_native_memory_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    uint64_t cur, at_peak;
    trace_get_native_memory(&cur, &at_peak);
    return Py_BuildValue("(KK)", (unsigned long long)cur, (unsigned long long)at_peak);
}

static PyObject *
trace_reset_peak_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    trace_reset_peak();
    Py_RETURN_NONE;
}

static PyObject *
trace_tracer_memory_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSize_t(trace_tracer_memory());
}

static PyObject *
trace_live_blocks_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLongLong(trace_live_blocks());
}

static PyObject *
trace_take_snapshot_py(PyObject *m, PyObject *Py_UNUSED(ignored))
{
    return snap_take(core_get_state(m)->trace_table_type);
}

/* ---- the timeline sampler of `memlens run` (trace_timeline.c) ---------- */

PyDoc_STRVAR(timeline_start_doc,
             "timeline_start(interval_ms[, max_samples]) -- start the sampler thread.\n\n"
             "Records traced bytes, their peak and RSS every interval_ms milliseconds\n"
             "(and once right away).  When max_samples (default and most: 32768) are\n"
             "kept, neighbours are merged\n"
             "and the interval doubles.  RuntimeError if a sampler is already running.");

static PyObject *
timeline_start_py(PyObject *Py_UNUSED(m), PyObject *args)
{
    double ms;
    unsigned int max_samples = TL_MAX_SAMPLES;
    if (!PyArg_ParseTuple(args, "d|I:timeline_start", &ms, &max_samples)) {
        return NULL;
    }
    if (max_samples < 4 || max_samples > TL_MAX_SAMPLES) {
        PyErr_Format(PyExc_ValueError, "max_samples must be between 4 and %u", TL_MAX_SAMPLES);
        return NULL;
    }
    if (!(ms >= 0.1 && ms <= 3600000.0)) {
        PyErr_SetString(PyExc_ValueError, "interval must be between 0.1 ms and one hour");
        return NULL;
    }
    if (trace_timeline_start(ms, max_samples) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(timeline_stop_doc,
             "timeline_stop(native=False) -> (interval_ms, samples[, native])\n\n"
             "Take a last sample, stop the sampler thread and return the final interval\n"
             "(it doubles each time the timeline is halved) and the samples as bytes:\n"
             "records of four little-endian u64 (t_ns, traced, peak, rss); with native,\n"
             "also one little-endian u64 per sample, the native share of traced.  A no-op\n"
             "returning (0.0, b''[, b'']) when no sampler runs, or when another thread is\n"
             "already stopping it (that call returns the samples).");

static PyObject *
timeline_stop_py(PyObject *Py_UNUSED(m), PyObject *args)
{
    int with_native = 0;
    if (!PyArg_ParseTuple(args, "|p:timeline_stop", &with_native)) {
        return NULL;
    }
    double interval_ms;
    unsigned char *buf, *native = NULL;
    size_t nbytes;
    int r = trace_timeline_stop(&interval_ms, &buf, &nbytes, with_native ? &native : NULL);
    if (r < 0) {
        return NULL;
    }
    if (r == 0) {
        return with_native ? Py_BuildValue("(dy#y#)", 0.0, "", (Py_ssize_t)0, "", (Py_ssize_t)0)
                           : Py_BuildValue("(dy#)", 0.0, "", (Py_ssize_t)0);
    }
    PyObject *result =
        with_native ? Py_BuildValue("(dy#y#)", interval_ms, (const char *)buf, (Py_ssize_t)nbytes,
                                    (const char *)native, (Py_ssize_t)(nbytes / 32 * 8))
                    : Py_BuildValue("(dy#)", interval_ms, (const char *)buf, (Py_ssize_t)nbytes);
    free(buf);
    free(native);
    return result;
}

static PyMethodDef timeline_methods[] = {
    {"timeline_start", timeline_start_py, METH_VARARGS, timeline_start_doc},
    {"timeline_stop", timeline_stop_py, METH_VARARGS, timeline_stop_doc},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef trace_methods[] = {
    {"trace_start", trace_start_py, METH_VARARGS, trace_start_doc},
    {"trace_native_stats", trace_native_stats_py, METH_NOARGS, trace_native_stats_doc},
    {"trace_stop", trace_stop_py, METH_NOARGS,
     "trace_stop() -- uninstall the hooks, drop the tables."},
    {"trace_is_tracing", trace_is_tracing_py, METH_NOARGS, "trace_is_tracing() -> bool"},
    {"trace_sample_bytes", trace_sample_bytes_py, METH_NOARGS,
     "trace_sample_bytes() -> the running tracer's sample_bytes (0: exact, or not tracing)"},
    {"trace_traced_memory", trace_traced_memory_py, METH_NOARGS,
     "trace_traced_memory() -> (current, peak) in bytes"},
    {"trace_native_memory", trace_native_memory_py, METH_NOARGS,
     "trace_native_memory() -> (current, at_peak): the native blocks' share of\n"
     "trace_traced_memory(), now and at its peak, in bytes"},
    {"trace_reset_peak", trace_reset_peak_py, METH_NOARGS, "trace_reset_peak() -- peak = current"},
    {"trace_tracer_memory", trace_tracer_memory_py, METH_NOARGS,
     "trace_tracer_memory() -> bytes of RAM used by the tracer's tables"},
    {"trace_live_blocks", trace_live_blocks_py, METH_NOARGS,
     "trace_live_blocks() -> number of live traced (or sampled) blocks"},
    {"trace_take_snapshot", trace_take_snapshot_py, METH_NOARGS,
     "trace_take_snapshot() -> TraceTable of the running tracer"},
    {NULL, NULL, 0, NULL},
};

int
trace_module_exec(PyObject *m)
{
    if (trace_hooks_init() < 0) {
        return -1;
    }
    if (trace_table_module_exec(m) < 0) {
        return -1;
    }
    if (PyModule_AddFunctions(m, trace_methods) < 0) {
        return -1;
    }
    if (trace_timeline_init() < 0) {
        return -1;
    }
    return PyModule_AddFunctions(m, timeline_methods);
}
