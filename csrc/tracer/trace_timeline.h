/* timeline.h: the memory timeline of `memlens run`.
 *
 * A background thread (plain pthread, never a Python thread: it holds no
 * GIL and creates no Python objects) wakes every `interval` and records
 * one sample: time since start, the tracer's current and peak traced bytes
 * (trace_get_traced_memory) and the process RSS (/proc/self/statm).
 * Samples live in a C array of fixed-size records.  When the array reaches
 * TL_MAX_SAMPLES it is halved by merging neighbours (keeping the maxima, so
 * no peak disappears) and the interval doubles: a run of any length keeps
 * a timeline of at most TL_MAX_SAMPLES * 32 bytes.
 *
 * The sampler is process-wide, like the tracer it reads: one at a time.
 */
#ifndef MEMLENS_TIMELINE_H
#define MEMLENS_TIMELINE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define TL_MAX_SAMPLES 32768u

typedef struct {
    uint64_t t_ns;   /* nanoseconds since timeline_start */
    uint64_t traced; /* traced bytes now */
    uint64_t peak;   /* traced high-water mark so far */
    uint64_t rss;    /* resident set size, bytes (0 if unreadable) */
} tl_sample;

int timeline_module_exec(PyObject *m);

#endif /* MEMLENS_TIMELINE_H */
