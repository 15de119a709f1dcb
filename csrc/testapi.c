/* testapi.c: the memlens._core._testapi capsule (see testapi.h). */
#include "testapi.h"
#include "lineprof/lp_events.h"
#include "tracer/trace_hooks.h"

/* Constant: the capsule points at it for the life of the process. */
static const testapi testapi_table = {
    .version = TESTAPI_VERSION,
    .trace_chain_only = trace_chain_only,
    .lineprof_is_active = lp_is_active,
};

int
testapi_module_exec(PyObject *m)
{
    PyObject *capsule = PyCapsule_New((void *)&testapi_table, TESTAPI_CAPSULE, NULL);
    if (capsule == NULL) {
        return -1;
    }
    if (PyModule_AddObject(m, "_testapi", capsule) < 0) {
        Py_DECREF(capsule);
        return -1;
    }
    return 0;
}
