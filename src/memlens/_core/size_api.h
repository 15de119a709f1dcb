/* size_api: Python-facing sizing functions (deep_size, size_by_type,
 * breakdown) over the walker. */
#ifndef MEMLENS_SIZE_API_H
#define MEMLENS_SIZE_API_H

#include "module.h"

#endif /* MEMLENS_SIZE_API_H */
