/* memlens._core: module definition, state, and the list of subsystems. */
#include "core.h"
#include "bindings.h"
#include "testapi.h"

PyDoc_STRVAR(core_doc, "memlens._core -- the C engine of memlens.\n\n"
                       "Use the public API in the `memlens` package; this module's functions take\n"
                       "already-validated arguments and may change between releases.");

core_state *
core_get_state(PyObject *module)
{
    return (core_state *)PyModule_GetState(module);
}

PyObject *
core_tp_new_refused(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwds))
{
    PyErr_Format(PyExc_TypeError, "cannot create '%.100s' instances: memlens makes them",
                 type->tp_name);
    return NULL;
}

static int
core_exec(PyObject *m)
{
    /* One line per subsystem.  Order matters only where a subsystem uses
     * another's types; keep it the same as the list in bindings.h. */
    if (walk_module_exec(m) < 0) {
        goto error;
    }
    if (rec_module_exec(m) < 0) {
        goto error;
    }
    if (advise_module_exec(m) < 0) {
        goto error;
    }
    if (census_module_exec(m) < 0) {
        goto error;
    }
    if (trace_module_exec(m) < 0) {
        goto error;
    }
    if (cap_module_exec(m) < 0) {
        goto error;
    }
    if (lp_module_exec(m) < 0) {
        goto error;
    }
    if (testapi_module_exec(m) < 0) {
        goto error;
    }
    return 0;

error:
    return -1;
}

/* traverse/clear list the state fields in the order of core_state. */
static int
core_traverse(PyObject *m, visitproc visit, void *arg)
{
    core_state *st = core_get_state(m);
    Py_VISIT(st->rec_meta_type);
    Py_VISIT(st->rec_field_type);
    Py_VISIT(st->rec_base_type);
    Py_VISIT(st->rec_restore);
    Py_VISIT(st->trace_table_type);
    return 0;
}

static int
core_clear(PyObject *m)
{
    core_state *st = core_get_state(m);
    Py_CLEAR(st->rec_meta_type);
    Py_CLEAR(st->rec_field_type);
    Py_CLEAR(st->rec_base_type);
    Py_CLEAR(st->rec_restore);
    Py_CLEAR(st->trace_table_type);
    return 0;
}

static void
core_free(void *m)
{
    (void)core_clear((PyObject *)m);
}

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, (void *)core_exec},
#if PY_VERSION_HEX >= 0x030C0000
    /* 3.12+: the allocator hooks of the tracer are process-wide, so one
     * interpreter at a time. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,        .m_name = "memlens._core", .m_doc = core_doc,
    .m_size = sizeof(core_state), .m_methods = NULL,         .m_slots = core_slots,
    .m_traverse = core_traverse,  .m_clear = core_clear,     .m_free = core_free,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&core_module);
}
