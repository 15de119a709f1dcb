/* size_: exact per-object sizes (what the allocator really handed out). */
#ifndef MEMLENS_SIZE_H
#define MEMLENS_SIZE_H

#include "module.h"

#endif /* MEMLENS_SIZE_H */
