/* size_: exact per-object sizes. */
#include "size.h"

int
size_module_exec(PyObject *m)
{
    (void)m;
    return 0;
}
