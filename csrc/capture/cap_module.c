/* cap_module.c: Python binding of the capture files: cap_run_write /
 * cap_run_read (`memlens run` captures), trace_dump / TraceTable.dump and
 * trace_load (a snapshot capture from and into a TraceTable).  Argument checks and result tuples only; the format
 * is cap_format.c, the run sections cap_run.c. */
#include "bindings.h"
#include "capture/cap_format.h"
#include "capture/cap_run.h"
#include "tracer/trace_hooks.h"

PyDoc_STRVAR(cap_run_write_doc,
             "cap_run_write(path, table, meta, interval_ms, timeline, classes, native=b'')\n\n"
             "Write a run capture: the TraceTable `table`, `meta` (dict str -> str),\n"
             "the timeline as returned by timeline_stop() and `classes` (None or a list\n"
             "of (name, instances, bytes)); `native`, timeline_stop(True)'s third item\n"
             "(one u64 per sample; b'': none).  Every argument is checked before the file\n"
             "is opened: an error leaves no file behind.");

static PyObject *
cap_run_write_py(PyObject *m, PyObject *args)
{
    PyObject *path_bytes = NULL; /* os.fsencode(path) */
    PyObject *table, *meta, *classes;
    double interval_ms;
    Py_buffer tl = {NULL, NULL};
    cap_writer w;
    int w_ready = 0;
    int paused = 0;
    PyObject *result = NULL;

    Py_buffer native = {0};
    if (!PyArg_ParseTuple(args, "O&OO!dy*O|y*:cap_run_write", PyUnicode_FSConverter, &path_bytes,
                          &table, &PyDict_Type, &meta, &interval_ms, &tl, &classes, &native)) {
        return NULL;
    }
    const char *path = PyBytes_AS_STRING(path_bytes);
    /* Stored as whole nanoseconds: refuse what would not convert. */
    if (!(interval_ms >= 0.0 && interval_ms <= 1e12)) {
        PyErr_SetString(PyExc_ValueError, "interval_ms must be between 0 and 1e12");
        goto done;
    }
    if (!PyObject_TypeCheck(table, core_get_state(m)->trace_table_type)) {
        PyErr_SetString(PyExc_TypeError, "table must be a memlens._core.TraceTable");
        goto done;
    }
    if (tl.len % 32 != 0 || tl.len / 32 > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "timeline must be a whole number of 32-byte samples");
        goto done;
    }
    if (native.buf != NULL && native.len != 0 && (size_t)native.len != (size_t)tl.len / 32 * 8) {
        PyErr_SetString(PyExc_ValueError, "native timeline must hold one u64 per timeline sample");
        goto done;
    }
    if (classes != Py_None && !PyList_Check(classes)) {
        PyErr_SetString(PyExc_TypeError, "classes must be None or a list");
        goto done;
    }

    /* The whole file is built in memory, snapshot sections first (so that
     * Snapshot.load() reads a run capture too), and written only once every
     * meta entry and class row has been accepted.  Not traced: a process
     * of a run writes its capture while it is traced (the periodic writes
     * of a followed child, _follow.py), and memlens' buffer is not the
     * program's memory. */
    trace_thread_pause();
    paused = 1;
    if (cap_writer_init(&w) < 0) {
        goto done;
    }
    w_ready = 1;
    if (cap_put_table(&w, table) < 0 || cap_run_put_meta(&w, meta) < 0
        || cap_run_put_timeline(&w, (uint64_t)(interval_ms * 1e6), tl.buf, (uint32_t)(tl.len / 32))
               < 0) {
        goto done;
    }
    if (classes != Py_None && cap_run_put_classes(&w, classes) < 0) {
        goto done;
    }
    if (native.buf != NULL && native.len != 0
        && cap_run_put_native_timeline(&w, native.buf, (uint32_t)(tl.len / 32)) < 0) {
        goto done;
    }
    if (cap_finish_to_file(&w, path) < 0) {
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);

done:
    if (w_ready) {
        cap_writer_free(&w);
    }
    if (paused) {
        trace_thread_resume();
    }
    PyBuffer_Release(&tl);
    if (native.buf != NULL) {
        PyBuffer_Release(&native);
    }
    Py_XDECREF(path_bytes);
    return result;
}

PyDoc_STRVAR(cap_run_read_doc,
             "cap_run_read(path, native=False) -> (table, meta, interval_ms, timeline, classes[, "
             "native])\n\n"
             "Read and validate a capture.  `timeline` is bytes of 32-byte samples\n"
             "(see timeline_stop), `native` (when asked for) one u64 per sample, the\n"
             "native share of traced, or b''; `meta` is {} and `classes` None when the\n"
             "file has no such section.  ValueError for a file that is not a valid capture.");

static PyObject *
cap_run_read_py(PyObject *m, PyObject *args)
{
    PyObject *bytes_path = NULL, *table = NULL, *meta = NULL, *classes = NULL, *timeline = NULL;
    PyObject *native = NULL;
    PyObject *result = NULL;
    cap_file f;
    int f_open = 0;
    uint64_t interval_ns = 0;
    int with_native = 0;

    if (!PyArg_ParseTuple(args, "O&|p:cap_run_read", PyUnicode_FSConverter, &bytes_path,
                          &with_native)) {
        return NULL;
    }
    const char *path = PyBytes_AS_STRING(bytes_path);
    /* One read of the file: cap_file_open checks magic, version, framing
     * and checksum, the tracer's reader the snapshot sections; only the run
     * sections are left to check here. */
    if (cap_file_open(&f, path) < 0) {
        goto done;
    }
    f_open = 1;
    table = cap_file_table(core_get_state(m)->trace_table_type, &f);
    if (table == NULL) {
        goto done;
    }
    meta = cap_run_get_meta(&f, path);
    if (meta == NULL) {
        goto done;
    }
    timeline = cap_run_get_timeline(&f, path, &interval_ns);
    if (timeline == NULL) {
        goto done;
    }
    if (cap_run_get_classes(&f, path, &classes) < 0) {
        goto done;
    }
    native = cap_run_get_native_timeline(&f, path, (uint32_t)(PyBytes_GET_SIZE(timeline) / 32));
    if (native == NULL) {
        goto done;
    }
    if (with_native) {
        result = Py_BuildValue("(OOdOOO)", table, meta, (double)interval_ns / 1e6, timeline,
                               classes ? classes : Py_None, native);
    }
    else {
        result = Py_BuildValue("(OOdOO)", table, meta, (double)interval_ns / 1e6, timeline,
                               classes ? classes : Py_None);
    }

done:
    if (f_open) {
        cap_file_free(&f);
    }
    Py_XDECREF(bytes_path);
    Py_XDECREF(table);
    Py_XDECREF(meta);
    Py_XDECREF(timeline);
    Py_XDECREF(classes);
    Py_XDECREF(native);
    return result;
}

/* ---- writing a TraceTable --------------------------------------------------
 *
 * The tracer's TraceTable type (tracer/trace_table.c) knows nothing of the
 * capture format: the tracer must not depend on capture/.  Writing one is
 * this binding's: the module function trace_dump(table, path), and
 * TraceTable.dump(path), which cap_module_exec() adds to the type. */

static PyObject *
cap_dump(PyObject *table, PyObject *path_arg)
{
    PyObject *path = NULL;
    if (!PyUnicode_FSConverter(path_arg, &path)) {
        return NULL;
    }
    int rc = cap_write_table(PyBytes_AS_STRING(path), table);
    Py_DECREF(path);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(trace_dump_doc,
             "trace_dump(table, path) -- write the TraceTable `table` to `path` in\n"
             "memlens' binary capture format.");

static PyObject *
trace_dump_py(PyObject *m, PyObject *args)
{
    PyObject *table, *path;
    if (!PyArg_ParseTuple(args, "O!O:trace_dump", core_get_state(m)->trace_table_type, &table,
                          &path)) {
        return NULL;
    }
    return cap_dump(table, path);
}

static PyMethodDef cap_table_dump_def = {
    "dump", cap_dump, METH_O,
    "dump(path) -- write the table to `path` in memlens' binary capture format."};

/* Add TraceTable.dump.  The type is immutable to Python code, not to its
 * module: the method goes into its dict before any instance exists. */
static int
cap_add_table_dump(PyTypeObject *tp)
{
    PyObject *descr = PyDescr_NewMethod(tp, &cap_table_dump_def);
    if (descr == NULL) {
        return -1;
    }
    int rc = PyDict_SetItemString(tp->tp_dict, cap_table_dump_def.ml_name, descr);
    Py_DECREF(descr);
    if (rc == 0) {
        PyType_Modified(tp);
    }
    return rc;
}

static PyObject *
trace_load_py(PyObject *m, PyObject *arg)
{
    PyObject *path = NULL;
    if (!PyUnicode_FSConverter(arg, &path)) {
        return NULL;
    }
    PyObject *t = cap_read_table(core_get_state(m)->trace_table_type, PyBytes_AS_STRING(path));
    Py_DECREF(path);
    return t;
}

static PyMethodDef cap_methods[] = {
    {"cap_run_write", cap_run_write_py, METH_VARARGS, cap_run_write_doc},
    {"cap_run_read", cap_run_read_py, METH_VARARGS, cap_run_read_doc},
    {"trace_dump", trace_dump_py, METH_VARARGS, trace_dump_doc},
    {"trace_load", trace_load_py, METH_O,
     "trace_load(path) -> TraceTable read from a capture file"},
    {NULL, NULL, 0, NULL},
};

int
cap_module_exec(PyObject *m)
{
    if (cap_add_table_dump(core_get_state(m)->trace_table_type) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(m, cap_methods);
}
