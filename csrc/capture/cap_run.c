/* cap_run.c: the run sections of a `memlens run` capture (see cap_run.h). */
#include "capture/cap_run.h"

/* ---- writer ------------------------------------------------------------ */

int
cap_run_put_meta(cap_writer *w, PyObject *meta)
{
    if (cap_begin_section(w, CAP_TAG_RUNM) < 0
        || cap_put_u32(w, (uint32_t)PyDict_GET_SIZE(meta)) < 0) {
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(meta, &pos, &k, &v)) {
        if (cap_put_str(w, k) < 0 || cap_put_str(w, v) < 0) {
            return -1;
        }
    }
    cap_end_section(w);
    return 0;
}

int
cap_run_put_timeline(cap_writer *w, uint64_t interval_ns, const void *samples, uint32_t n)
{
    if (cap_begin_section(w, CAP_TAG_TMLN) < 0 || cap_put_u64(w, interval_ns) < 0
        || cap_put_u32(w, n) < 0 || cap_put(w, samples, (size_t)n * 32) < 0) {
        return -1;
    }
    cap_end_section(w);
    return 0;
}

int
cap_run_put_native_timeline(cap_writer *w, const void *native, uint32_t n)
{
    if (cap_begin_section(w, CAP_TAG_TMLV) < 0 || cap_put_u32(w, n) < 0
        || cap_put(w, native, (size_t)n * 8) < 0) {
        return -1;
    }
    cap_end_section(w);
    return 0;
}

int
cap_run_put_classes(cap_writer *w, PyObject *classes)
{
    Py_ssize_t n = PyList_GET_SIZE(classes);
    if (cap_begin_section(w, CAP_TAG_CLSS) < 0 || cap_put_u32(w, (uint32_t)n) < 0) {
        return -1;
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
            return -1;
        }
        if (cap_put_str(w, name) < 0 || cap_put_u64(w, count) < 0 || cap_put_u64(w, nbytes) < 0) {
            return -1;
        }
    }
    cap_end_section(w);
    return 0;
}

/* ---- reader ------------------------------------------------------------ */

PyObject *
cap_run_get_meta(const cap_file *f, const char *path)
{
    PyObject *meta = PyDict_New();
    if (meta == NULL) {
        return NULL;
    }
    const cap_section *sec = cap_file_find(f, CAP_TAG_RUNM);
    if (sec != NULL) {
        cap_reader s = {sec->payload, sec->payload + sec->len};
        uint32_t cnt;
        if (cap_get_u32(&s, &cnt) < 0 || (uint64_t)cnt * 8 > sec->len) {
            cap_corrupt(path, "bad run metadata");
            goto error;
        }
        for (uint32_t i = 0; i < cnt; i++) {
            PyObject *k = cap_get_str(&s, path, "short run section");
            PyObject *v = k ? cap_get_str(&s, path, "short run section") : NULL;
            int rc = (k && v) ? PyDict_SetItem(meta, k, v) : -1;
            Py_XDECREF(k);
            Py_XDECREF(v);
            if (rc < 0) {
                goto error;
            }
        }
    }
    return meta;

error:
    Py_DECREF(meta);
    return NULL;
}

PyObject *
cap_run_get_timeline(const cap_file *f, const char *path, uint64_t *interval_ns)
{
    *interval_ns = 0;
    const cap_section *sec = cap_file_find(f, CAP_TAG_TMLN);
    if (sec == NULL) {
        return PyBytes_FromStringAndSize("", 0);
    }
    cap_reader s = {sec->payload, sec->payload + sec->len};
    uint32_t cnt;
    const unsigned char *p;
    if (cap_get_u64(&s, interval_ns) < 0 || cap_get_u32(&s, &cnt) < 0
        || (uint64_t)cnt * 32 != (uint64_t)(s.end - s.p)
        || cap_get_bytes(&s, (size_t)cnt * 32, &p) < 0) {
        cap_corrupt(path, "bad timeline");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)cnt * 32);
}

PyObject *
cap_run_get_native_timeline(const cap_file *f, const char *path, uint32_t samples)
{
    const cap_section *sec = cap_file_find(f, CAP_TAG_TMLV);
    if (sec == NULL) {
        return PyBytes_FromStringAndSize("", 0);
    }
    cap_reader s = {sec->payload, sec->payload + sec->len};
    uint32_t cnt;
    const unsigned char *p;
    if (cap_get_u32(&s, &cnt) < 0 || cnt != samples || (uint64_t)cnt * 8 != (uint64_t)(s.end - s.p)
        || cap_get_bytes(&s, (size_t)cnt * 8, &p) < 0) {
        cap_corrupt(path, "bad native timeline");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)cnt * 8);
}

int
cap_run_get_classes(const cap_file *f, const char *path, PyObject **out)
{
    *out = NULL;
    const cap_section *sec = cap_file_find(f, CAP_TAG_CLSS);
    if (sec == NULL) {
        return 0;
    }
    cap_reader s = {sec->payload, sec->payload + sec->len};
    uint32_t cnt;
    if (cap_get_u32(&s, &cnt) < 0 || (uint64_t)cnt * 20 > sec->len) {
        cap_corrupt(path, "bad class table");
        return -1;
    }
    PyObject *classes = PyList_New(cnt);
    if (classes == NULL) {
        return -1;
    }
    for (uint32_t i = 0; i < cnt; i++) {
        uint64_t c, b;
        PyObject *name = cap_get_str(&s, path, "short run section");
        if (name == NULL) {
            goto error;
        }
        if (cap_get_u64(&s, &c) < 0 || cap_get_u64(&s, &b) < 0) {
            Py_DECREF(name);
            cap_corrupt(path, "bad class table");
            goto error;
        }
        PyObject *row = Py_BuildValue("(NKK)", name, (unsigned long long)c, (unsigned long long)b);
        if (row == NULL) {
            goto error;
        }
        PyList_SET_ITEM(classes, i, row);
    }
    *out = classes;
    return 0;

error:
    Py_DECREF(classes);
    return -1;
}
