/* testcore_layout.c: probes that read CPython's structures through
 * memlens' mirrors of them (cpython/cpy_object.h, cpython/cpy_frame.h), for
 * tests/engine/test_layout.py to compare with what the interpreter itself
 * says (sys._getframe(), sys.getsizeof, tracemalloc). */
#include "testcore/testcore.h"
#include "cpython/cpy_layout.h"

/* Set d[key] = value and drop the reference to value; -1 if value is NULL
 * or the store fails. */
static int
probe_put(PyObject *d, const char *key, PyObject *value)
{
    if (value == NULL) {
        return -1;
    }
    int r = PyDict_SetItemString(d, key, value);
    Py_DECREF(value);
    return r;
}

/* A new reference to o, or to None for NULL (3.9 has no Py_NewRef). */
static PyObject *
probe_obj_or_none(PyObject *o)
{
    if (o == NULL) {
        o = Py_None;
    }
    Py_INCREF(o);
    return o;
}

/* The fast locals that hold a value, by name. */
static PyObject *
probe_frame_locals(layout_frame *f, PyCodeObject *co)
{
    PyObject *out = PyDict_New();
    if (out == NULL) {
        return NULL;
    }
    PyObject **locals = layout_frame_locals(f);
    Py_ssize_t n = layout_code_nlocalsplus(co);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (locals[i] == NULL) {
            continue;
        }
        if (PyDict_SetItem(out, layout_code_localname(co, i), locals[i]) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

/* Everything the mirror says about one raw frame. */
static PyObject *
probe_frame(layout_frame *f)
{
    PyObject *d = PyDict_New();
    PyCodeObject *co = layout_frame_code(f);
    PyCodeObject *dcode = NULL;
    int32_t offset = 0;
    stack_sig sig;
    if (d == NULL) {
        goto error;
    }
    if (probe_put(d, "address", PyLong_FromVoidPtr(f)) < 0
        || probe_put(d, "code", probe_obj_or_none((PyObject *)co)) < 0) {
        goto error;
    }
    if (layout_frame_decode(f, &dcode, &offset)) {
        if (probe_put(d, "decoded", Py_BuildValue("(Oi)", dcode, (int)offset)) < 0
            || probe_put(d, "lineno", PyLong_FromLong(layout_code_lineno(dcode, offset))) < 0) {
            goto error;
        }
    }
    else if (probe_put(d, "decoded", probe_obj_or_none(NULL)) < 0) {
        goto error;
    }
    layout_frame_sig(f, &sig);
    if (probe_put(d, "sig",
                  Py_BuildValue("(NNn)", PyLong_FromVoidPtr((void *)sig.frame),
                                probe_obj_or_none((PyObject *)sig.code), (Py_ssize_t)sig.instr))
        < 0) {
        goto error;
    }
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *exe = layout_frame_executable(f);
    if (probe_put(d, "owner", PyLong_FromLong(layout_frame_owner(f))) < 0
        || probe_put(d, "executable", probe_obj_or_none(exe)) < 0
        || probe_put(d, "instr", PyLong_FromVoidPtr((void *)layout_frame_instr(f))) < 0) {
        goto error;
    }
    if (exe != NULL && PyCode_Check(exe)) {
        PyCodeObject *ec = (PyCodeObject *)exe;
        if (probe_put(d, "code_units", PyLong_FromVoidPtr((void *)layout_code_units(ec))) < 0
            || probe_put(d, "first_traceable", PyLong_FromLong(layout_code_first_traceable(ec)))
                   < 0) {
            goto error;
        }
    }
#endif
    if (co != NULL) {
        /* Not a shim: the other fields are valid. */
        if (probe_put(d, "globals", probe_obj_or_none(layout_frame_globals(f))) < 0
            || probe_put(d, "frame_object", probe_obj_or_none(layout_frame_object(f))) < 0
            || probe_put(d, "nlocalsplus", PyLong_FromSsize_t(layout_code_nlocalsplus(co))) < 0
            || probe_put(d, "locals", probe_frame_locals(f, co)) < 0) {
            goto error;
        }
    }
    return d;

error:
    Py_XDECREF(d);
    return NULL;
}

PyDoc_STRVAR(layout_stack_doc,
             "layout_stack(callback, /)\n--\n\n"
             "Read this thread's raw frames through memlens' frame mirror, innermost\n"
             "first, then call callback() (which sees the same frames suspended where\n"
             "they were read); return ([frame dicts], callback's result).");

static PyObject *
layout_stack_py(PyObject *Py_UNUSED(m), PyObject *callback)
{
    PyObject *frames = PyList_New(0);
    PyObject *item = NULL;
    PyObject *view = NULL;
    PyObject *result = NULL;
    if (frames == NULL) {
        goto cleanup;
    }
    /* Nothing below runs Python code of this thread's frames: the chain
     * stays as it is while it is walked. */
    for (layout_frame *f = layout_thread_frame(PyThreadState_Get()); f != NULL;
         f = layout_frame_back(f)) {
        item = probe_frame(f);
        if (item == NULL || PyList_Append(frames, item) < 0) {
            goto cleanup;
        }
        Py_CLEAR(item);
    }
    view = PyObject_CallNoArgs(callback);
    if (view == NULL) {
        goto cleanup;
    }
    result = PyTuple_Pack(2, frames, view);

cleanup:
    Py_XDECREF(item);
    Py_XDECREF(view);
    Py_XDECREF(frames);
    return result;
}

PyDoc_STRVAR(layout_object_doc,
             "layout_object(obj, /)\n--\n\n"
             "What memlens' object mirror says about obj: its pre-header, instance dict,\n"
             "values, weak references, and the int and dict fields it reads.");

static PyObject *
layout_object_py(PyObject *Py_UNUSED(m), PyObject *obj)
{
    PyTypeObject *tp = Py_TYPE(obj);
    PyObject *d = PyDict_New();
    if (d == NULL) {
        goto error;
    }
    void *values = layout_instance_values(obj, tp);
    layout_dictkeys *cached = layout_cached_keys(tp);
    if (probe_put(d, "preheader_size", PyLong_FromSize_t(layout_preheader_size(obj, tp))) < 0
        || probe_put(d, "instance_dict", probe_obj_or_none(layout_instance_dict(obj, tp))) < 0
        || probe_put(d, "has_instance_values", PyBool_FromLong(values != NULL)) < 0
        || probe_put(d, "instance_values_size",
                     PyLong_FromSize_t(layout_values_size(values, cached)))
               < 0
        || probe_put(d, "inline_values_size", PyLong_FromSize_t(layout_inline_values_size(obj, tp)))
               < 0
        || probe_put(d, "weakref_list", probe_obj_or_none(layout_weakref_list(obj, tp))) < 0
        || probe_put(d, "has_cached_keys", PyBool_FromLong(cached != NULL)) < 0
        || probe_put(d, "immortal", PyBool_FromLong(layout_is_immortal(obj))) < 0) {
        goto error;
    }
    if (PyLong_CheckExact(obj)) {
        if (probe_put(d, "long_ndigits", PyLong_FromSize_t(layout_long_ndigits(obj))) < 0
            || probe_put(d, "long_size", PyLong_FromSize_t(layout_long_size(obj))) < 0) {
            goto error;
        }
    }
    if (PyDict_Check(obj)) {
        void *dv = layout_dict_values(obj);
        if (probe_put(d, "dict_keys_size",
                      PyLong_FromSize_t(layout_dictkeys_size(layout_dict_keys(obj))))
                < 0
            || probe_put(d, "dict_has_values", PyBool_FromLong(dv != NULL)) < 0
            || probe_put(d, "dict_values_embedded", PyBool_FromLong(layout_values_embedded(dv)))
                   < 0) {
            goto error;
        }
    }
    return d;

error:
    Py_XDECREF(d);
    return NULL;
}

#if PY_VERSION_HEX < 0x030C0000
PyDoc_STRVAR(layout_set_trace_lines_doc,
             "layout_set_trace_lines(frame, on, /)\n--\n\n"
             "3.9-3.11: set frame.f_trace_lines through memlens' frame-object mirror\n"
             "(what the line profiler's trace function does).");

static PyObject *
layout_set_trace_lines_py(PyObject *Py_UNUSED(m), PyObject *args)
{
    PyObject *frame;
    int on;
    if (!PyArg_ParseTuple(args, "O!p:layout_set_trace_lines", &PyFrame_Type, &frame, &on)) {
        return NULL;
    }
    layout_frameobject_set_trace_lines((PyFrameObject *)frame, on);
    Py_RETURN_NONE;
}
#endif

static PyMethodDef testcore_layout_methods[] = {
    {"layout_stack", layout_stack_py, METH_O, layout_stack_doc},
    {"layout_object", layout_object_py, METH_O, layout_object_doc},
#if PY_VERSION_HEX < 0x030C0000
    {"layout_set_trace_lines", layout_set_trace_lines_py, METH_VARARGS, layout_set_trace_lines_doc},
#endif
    {NULL, NULL, 0, NULL},
};

int
testcore_layout_exec(PyObject *m)
{
    return PyModule_AddFunctions(m, testcore_layout_methods);
}
