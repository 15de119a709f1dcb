/* cpy_layout.h: everything memlens mirrors of CPython's private structures,
 * for engine files that need both halves: objects (cpy_object.h) and
 * running frames (cpy_frame.h).  Each structure is mirrored once, in one
 * of the two. */
#ifndef MEMLENS_CPY_LAYOUT_H
#define MEMLENS_CPY_LAYOUT_H

#include "cpython/cpy_object.h"
#include "cpython/cpy_frame.h"

#endif /* MEMLENS_CPY_LAYOUT_H */
