/* census_api: Python bindings of the whole-heap census, retained sizes and
 * reference paths (memlens/census.py is the public API). */
#ifndef MEMLENS_CENSUS_API_H
#define MEMLENS_CENSUS_API_H

#include "module.h"

int census_api_module_exec(PyObject *m);

#endif /* MEMLENS_CENSUS_API_H */
