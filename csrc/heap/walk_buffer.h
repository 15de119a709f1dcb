/* walk_buffer.h: references the collector is not told about, found through
 * the buffer protocol -- the items of object arrays.  Prefix walkbuf_.
 *
 * numpy's ndarray is not a GC type: an array of dtype=object holds a
 * reference per item that no tp_traverse reports, so a walk through
 * tp_traverse alone sees the pointer array (8 bytes an item) and none of
 * the objects.  Any C type outside the collector that exports a buffer may
 * do the same, so the walker asks such objects for a PyBUF_RECORDS_RO
 * buffer: format "O" means the items are PyObject pointers, walked with the
 * buffer's shape and strides; the buffer is released right away.
 *
 * Only C code is asked: the exporter is a type outside the collector (GC
 * types report what they hold through tp_traverse) whose bf_getbuffer is
 * an extension's, not a class's __buffer__ (3.12+).  Another extension's
 * bf_getbuffer may still run Python code, so the walker pins what it holds
 * first, as for a __sizeof__ (walk.h); numpy's runs none.
 *
 * numpy arrays are recognised by their type's name and read through the
 * public ABI of their header (PyArrayObject_fields and the first fields of
 * PyArray_Descr, the same in numpy 1.x and 2.x), without importing numpy:
 *   - only arrays whose dtype may hold objects ('O', 'V') are asked for a
 *     buffer -- numpy caches a buffer description on an array the first time
 *     it exports one (about 72 bytes, freed with the array), so asking every
 *     array would grow the heap being measured;
 *   - an array's `base` (the array or buffer a view keeps alive) is a
 *     reference too, which the walk follows;
 *   - a StringDType array ('T') keeps its strings in an arena that neither
 *     its __sizeof__ nor any object shows: memory the walk cannot see.
 */
#ifndef MEMLENS_WALK_BUFFER_H
#define MEMLENS_WALK_BUFFER_H

#include "core.h"
#include <stdint.h>

/* The size_typeinfo flags for `tp`'s buffers: SIZE_F_BUFFER, plus
 * SIZE_F_NDARRAY for numpy arrays, or 0. */
unsigned walkbuf_type_flags(PyTypeObject *tp);

typedef enum {
    WALKBUF_NONE = 0, /* no object items: nothing to ask */
    WALKBUF_ASK,      /* ask for the buffer (walkbuf_visit_items) */
    WALKBUF_UNSEEN,   /* holds memory the walk cannot see */
} walkbuf_plan_t;

/* What to do for `op`, whose type has SIZE_F_BUFFER in `flags`.  Reads
 * only the object's header; runs no code. */
walkbuf_plan_t walkbuf_plan(PyObject *op, unsigned flags);

/* An ndarray's base (borrowed), or NULL; `flags` as above. */
PyObject *walkbuf_ndarray_base(PyObject *op, unsigned flags);

/* Ask `op` for a PyBUF_RECORDS_RO buffer.  1: `v` holds a buffer of
 * object pointers ("O"), to be visited and then released with
 * walkbuf_release; 0: nothing to visit (no buffer is held).  *unseen is
 * set to 1 when object items cannot be followed (objects inside records,
 * a numpy array that may hold objects refusing to export them).  The
 * exporter may run code: the caller pins first.  Never leaves an exception
 * set. */
int walkbuf_get(PyObject *op, unsigned flags, Py_buffer *v, int *unseen);

/* visit(item, arg) for every non-NULL item of `v`, with its shape and
 * strides.  0, or visit's -1.  Runs no code. */
int walkbuf_visit(const Py_buffer *v, visitproc visit, void *arg);

/* Release what walkbuf_get returned 1 for (may run the exporter's code). */
void walkbuf_release(Py_buffer *v);

#endif /* MEMLENS_WALK_BUFFER_H */
