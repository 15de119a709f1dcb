/* cap_run.c: writer and validated reader of run captures (see cap_run.h). */
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
    /* The type is looked up on the module, as trace_snapshot.c does: it is
     * a heap type of this module instance. */
    PyObject *tp = PyObject_GetAttrString(m, "TraceTable");
    if (tp == NULL) {
        goto done;
    }
    int ok = PyType_Check(tp) && PyObject_TypeCheck(table, (PyTypeObject *)tp);
    Py_DECREF(tp);
    if (!ok) {
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
    if (cap_put_table(&w, table) < 0) {
        goto done;
    }

    if (cap_begin_section(&w, CAP_TAG_RUNM) < 0
        || cap_put_u32(&w, (uint32_t)PyDict_GET_SIZE(meta)) < 0) {
        goto done;
    }
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(meta, &pos, &k, &v)) {
        if (cap_put_str(&w, k) < 0 || cap_put_str(&w, v) < 0) {
            goto done;
        }
    }
    cap_end_section(&w);

    if (cap_begin_section(&w, CAP_TAG_TMLN) < 0
        || cap_put_u64(&w, (uint64_t)(interval_ms * 1e6)) < 0
        || cap_put_u32(&w, (uint32_t)(tl.len / 32)) < 0
        || cap_put(&w, tl.buf, (size_t)tl.len) < 0) {
        goto done;
    }
    cap_end_section(&w);

    if (classes != Py_None) {
        Py_ssize_t n = PyList_GET_SIZE(classes);
        if (cap_begin_section(&w, CAP_TAG_CLSS) < 0 || cap_put_u32(&w, (uint32_t)n) < 0) {
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *row = PyList_GET_ITEM(classes, i);
            PyObject *name;
            unsigned long long count, nbytes;
            if (!PyTuple_Check(row)
                || !PyArg_ParseTuple(row, "UKK:class row", &name, &count, &nbytes)) {
                if (!PyErr_Occurred()) {
                    PyErr_SetString(PyExc_TypeError, "class rows must be (name, instances, bytes)");
                }
                goto done;
            }
            if (cap_put_str(&w, name) < 0 || cap_put_u64(&w, count) < 0
                || cap_put_u64(&w, nbytes) < 0) {
                goto done;
            }
        }
        cap_end_section(&w);
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
    table = cap_file_table(m, &f);
    if (table == NULL) {
        goto done;
    }
    meta = PyDict_New();
    if (meta == NULL) {
        goto done;
    }

    const cap_section *sec = cap_file_find(&f, CAP_TAG_RUNM);
    if (sec != NULL) {
        cap_reader s = {sec->payload, sec->payload + sec->len};
        uint32_t cnt;
        if (cap_get_u32(&s, &cnt) < 0 || (uint64_t)cnt * 8 > sec->len) {
            cap_corrupt(path, "bad run metadata");
            goto done;
        }
        for (uint32_t i = 0; i < cnt; i++) {
            PyObject *k = cap_get_str(&s, path, "short run section");
            PyObject *v = k ? cap_get_str(&s, path, "short run section") : NULL;
            int rc = (k && v) ? PyDict_SetItem(meta, k, v) : -1;
            Py_XDECREF(k);
            Py_XDECREF(v);
            if (rc < 0) {
                goto done;
            }
        }
    }

    sec = cap_file_find(&f, CAP_TAG_TMLN);
    if (sec != NULL) {
        cap_reader s = {sec->payload, sec->payload + sec->len};
        uint32_t cnt;
        const unsigned char *p;
        if (cap_get_u64(&s, &interval_ns) < 0 || cap_get_u32(&s, &cnt) < 0
            || (uint64_t)cnt * 32 != (uint64_t)(s.end - s.p)
            || cap_get_bytes(&s, (size_t)cnt * 32, &p) < 0) {
            cap_corrupt(path, "bad timeline");
            goto done;
        }
        timeline = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)cnt * 32);
    }
    else {
        timeline = PyBytes_FromStringAndSize("", 0);
    }
    if (timeline == NULL) {
        goto done;
    }

    sec = cap_file_find(&f, CAP_TAG_CLSS);
    if (sec != NULL) {
        cap_reader s = {sec->payload, sec->payload + sec->len};
        uint32_t cnt;
        if (cap_get_u32(&s, &cnt) < 0 || (uint64_t)cnt * 20 > sec->len) {
            cap_corrupt(path, "bad class table");
            goto done;
        }
        classes = PyList_New(cnt);
        if (classes == NULL) {
            goto done;
        }
        for (uint32_t i = 0; i < cnt; i++) {
            uint64_t c, b;
            PyObject *name = cap_get_str(&s, path, "short run section");
            if (name == NULL) {
                goto done;
            }
            if (cap_get_u64(&s, &c) < 0 || cap_get_u64(&s, &b) < 0) {
                Py_DECREF(name);
                cap_corrupt(path, "bad class table");
                goto done;
            }
            PyObject *row =
                Py_BuildValue("(NKK)", name, (unsigned long long)c, (unsigned long long)b);
            if (row == NULL) {
                goto done;
            }
            PyList_SET_ITEM(classes, i, row);
        }
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

static PyMethodDef cap_run_methods[] = {
    {"cap_run_write", cap_run_write_py, METH_VARARGS, cap_run_write_doc},
    {"cap_run_read", cap_run_read_py, METH_O, cap_run_read_doc},
    {NULL, NULL, 0, NULL},
};

int
cap_run_module_exec(PyObject *m)
{
    return PyModule_AddFunctions(m, cap_run_methods);
}
