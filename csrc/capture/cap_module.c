/* cap_module.c: Python binding of the capture files: cap_run_write /
 * cap_run_read (`memlens run` captures) and trace_load (a snapshot capture
 * into a TraceTable).  Argument checks and result tuples only; the format
 * is cap_format.c, the run sections cap_run.c. */
#include "bindings.h"
#include "capture/cap_format.h"
#include "capture/cap_run.h"

PyDoc_STRVAR(cap_run_write_doc,
             "cap_run_write(path, table, meta, interval_ms, timeline, classes)\n\n"
             "Write a run capture: the TraceTable `table`, `meta` (dict str -> str),\n"
             "the timeline as returned by timeline_stop() and `classes` (None or a list\n"
             "of (name, instances, bytes)).  Every argument is checked before the file\n"
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
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "O&OO!dy*O:cap_run_write", PyUnicode_FSConverter, &path_bytes,
                          &table, &PyDict_Type, &meta, &interval_ms, &tl, &classes)) {
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
    if (classes != Py_None && !PyList_Check(classes)) {
        PyErr_SetString(PyExc_TypeError, "classes must be None or a list");
        goto done;
    }

    /* The whole file is built in memory, snapshot sections first (so that
     * Snapshot.load() reads a run capture too), and written only once every
     * meta entry and class row has been accepted. */
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
    if (cap_finish_to_file(&w, path) < 0) {
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);

done:
    if (w_ready) {
        cap_writer_free(&w);
    }
    PyBuffer_Release(&tl);
    Py_XDECREF(path_bytes);
    return result;
}

PyDoc_STRVAR(cap_run_read_doc,
             "cap_run_read(path) -> (table, meta, interval_ms, timeline, classes)\n\n"
             "Read and validate a capture.  `timeline` is bytes of 32-byte samples\n"
             "(see timeline_stop); `meta` is {} and `classes` None when the file has no\n"
             "such section.  ValueError for a file that is not a valid capture.");

static PyObject *
cap_run_read_py(PyObject *m, PyObject *arg)
{
    PyObject *bytes_path = NULL, *table = NULL, *meta = NULL, *classes = NULL, *timeline = NULL;
    PyObject *result = NULL;
    cap_file f;
    int f_open = 0;
    uint64_t interval_ns = 0;

    if (!PyUnicode_FSConverter(arg, &bytes_path)) {
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
    result = Py_BuildValue("(OOdOO)", table, meta, (double)interval_ns / 1e6, timeline,
                           classes ? classes : Py_None);

done:
    if (f_open) {
        cap_file_free(&f);
    }
    Py_XDECREF(bytes_path);
    Py_XDECREF(table);
    Py_XDECREF(meta);
    Py_XDECREF(timeline);
    Py_XDECREF(classes);
    return result;
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
    {"cap_run_read", cap_run_read_py, METH_O, cap_run_read_doc},
    {"trace_load", trace_load_py, METH_O,
     "trace_load(path) -> TraceTable read from a capture file"},
    {NULL, NULL, 0, NULL},
};

int
cap_module_exec(PyObject *m)
{
    return PyModule_AddFunctions(m, cap_methods);
}
