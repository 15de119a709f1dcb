/* trace_snapshot.h: an immutable copy of the tracer's per-stack table,
 * the data of a memlens._core.TraceTable, and snap_take() which fills it.
 *
 * A table holds unique resolved frames (filename, function, line) and, per
 * stack, the live size/count, the size/count at the high-water mark and the
 * cumulative size/count allocated (absent from older capture files).  It
 * is what take_snapshot() returns, what the capture format reads and
 * writes, and what the CLI and line profiler build on.  The Python type,
 * with stacks() and the grouped statistics, is trace_table.h's.
 */
#ifndef MEMLENS_TRACE_SNAPSHOT_H
#define MEMLENS_TRACE_SNAPSHOT_H

#include "core.h" /* Python.h and the 3.9 shims */
#include <stdint.h>

typedef struct {
    PyObject *filename; /* str */
    PyObject *name;     /* str */
    int lineno;
} snap_frame;

typedef struct {
    uint32_t first; /* index into frame_idx */
    uint32_t nframes;
    uint64_t size;
    uint64_t count; /* in STACK_COUNT_ONE units (fractional when sampled) */
    uint64_t peak_size;
    uint64_t peak_count;
    uint64_t alloc_size;  /* allocated since start(), freed or not */
    uint64_t alloc_count; /* STACK_COUNT_ONE units */
} snap_stack;

typedef struct {
    PyObject_HEAD snap_frame *frames; /* unique frames; strong refs */
    uint32_t nframes;
    snap_stack *stacks;
    uint32_t nstacks;
    uint32_t *frame_idx; /* frames of each stack, innermost first */
    uint64_t total;
    uint64_t peak;
    uint64_t sample_bytes;
    uint32_t max_frames;
    uint32_t flags; /* SNAP_FLAG_* */
    int has_alloc;  /* alloc_size/alloc_count are known (a capture
                             written before memlens kept them has none) */
} snap_table;

#define SNAP_FLAG_INCOMPLETE 1u /* the tracer lost some bookkeeping */

/* Allocate an empty table of `type` (the module's TraceTable type, from
 * its state) with room for the given numbers of frames, stacks and frame
 * indices (arrays zeroed). */
snap_table *snap_table_new(PyTypeObject *type, uint32_t nframes, uint32_t nstacks, uint64_t nidx);
/* Snapshot of the running tracer as a new table of `type` (GIL held); NULL
 * with an exception. */
PyObject *snap_take(PyTypeObject *type);

/* One filter of snap_filter(): `match` has a byte per unique frame of the
 * table, then one for a stack with no Python frame (tracemalloc's
 * ("<unknown>", 0)), nonzero where the filter's filename pattern and line
 * match; `all_frames`: a stack matches if any of its frames does, not only
 * the innermost. */
typedef struct {
    const unsigned char *match;
    int all_frames;
} snap_filter_spec;

/* A new table (of src's type) with the stacks of `src` that some filter of
 * `incl` matches (any stack if nincl is 0) and no filter of `excl` does;
 * its total and peak are those stacks' sums.  NULL with an exception. */
PyObject *snap_filter(snap_table *src, const snap_filter_spec *incl, size_t nincl,
                      const snap_filter_spec *excl, size_t nexcl);

/* Drop what the table holds (its frames' references and its arrays), for
 * the type's dealloc. */
void snap_table_release(snap_table *t);

#endif /* MEMLENS_TRACE_SNAPSHOT_H */
