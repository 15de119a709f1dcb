/* trace_timeline.h: the memory timeline of `memlens run`.
 *
 * A background thread (plain pthread, never a Python thread: it holds no
 * GIL and creates no Python objects) wakes every `interval` and records
 * one sample: time since start, the tracer's current and peak traced bytes
 * and their native share (trace_peek_memory) and the process RSS
 * (/proc/self/statm).
 * Samples live in a C array of fixed-size records.  When the array reaches
 * TL_MAX_SAMPLES it is halved by merging neighbours (keeping the maxima, so
 * no peak disappears) and the interval doubles: a run of any length keeps
 * a timeline of at most TL_MAX_SAMPLES * 32 bytes.
 *
 * The sampler is process-wide, like the tracer it reads: one at a time.
 */
#ifndef MEMLENS_TRACE_TIMELINE_H
#define MEMLENS_TRACE_TIMELINE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define TL_MAX_SAMPLES 32768u

typedef struct {
    uint64_t t_ns;   /* nanoseconds since timeline_start */
    uint64_t traced; /* traced bytes now */
    uint64_t peak;   /* traced high-water mark so far */
    uint64_t rss;    /* resident set size, bytes (0 if unreadable) */
    uint64_t native; /* the native blocks' share of `traced` */
} tl_sample;

/* Once, at module exec: keep fork() from inheriting a held lock.  0, or -1
 * with an exception set. */
int trace_timeline_init(void);

/* Start the sampler thread, sampling every `ms` milliseconds (0.1 ms .. one
 * hour) into at most `max_samples` (4 .. TL_MAX_SAMPLES) samples; the
 * caller checked both ranges.  0, or -1 with an exception set
 * (RuntimeError when a sampler runs or is stopping, OSError, MemoryError). */
int trace_timeline_start(double ms, unsigned int max_samples);

/* Take a last sample, stop and join the sampler thread (with the GIL
 * released).  1: *samples is a malloc'd buffer of *nbytes bytes, records of
 * four little-endian u64 (t_ns, traced, peak, rss), the caller frees it;
 * and if `native` is not NULL, *native a malloc'd buffer of one
 * little-endian u64 per sample, the native share of `traced` (the caller
 * frees it too); *interval_ms is the final interval.  0: no sampler ran or
 * another thread is stopping it (outputs zero/NULL).  -1: MemoryError set
 * (the sampler is stopped all the same). */
int trace_timeline_stop(double *interval_ms, unsigned char **samples, size_t *nbytes,
                        unsigned char **native);

#endif /* MEMLENS_TRACE_TIMELINE_H */
