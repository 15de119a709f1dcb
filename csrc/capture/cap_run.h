/* cap_run.h: the run sections of a `memlens run` capture file.
 *
 * A run capture is a snapshot capture (cap_format.h: META, STRS, FRMS, STKS,
 * ALOC written by cap_put_table, so memlens.Snapshot.load() reads it too)
 * followed by run sections, then the END checksum over everything:
 *   RUNM: u32 n, n x (string key, string value)
 *         run metadata (command, Python version, exit code, duration ...)
 *   TMLN: u64 interval in nanoseconds, u32 n,
 *         n x (u64 t_ns, u64 traced, u64 peak, u64 rss)
 *   CLSS: u32 n, n x (string class name, u64 instances, u64 bytes)
 *         the census at exit; absent when no census ran.
 *   TMLV: u32 n, n x u64: the native share of each TMLN sample's traced
 *         bytes (n is TMLN's); absent when native blocks were not traced.
 * A string is u32 length + bytes, as cap_format.h says (UTF-8, with
 * surrogateescape bytes for names that were not UTF-8).
 * Every run section is optional for the reader: a plain snapshot file
 * reads as a run without metadata, timeline or class table.
 */
#ifndef MEMLENS_CAP_RUN_H
#define MEMLENS_CAP_RUN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "capture/cap_format.h"

#define CAP_TAG_RUNM CAP_TAG('R', 'U', 'N', 'M')
#define CAP_TAG_TMLN CAP_TAG('T', 'M', 'L', 'N')
#define CAP_TAG_CLSS CAP_TAG('C', 'L', 'S', 'S')
#define CAP_TAG_TMLV CAP_TAG('T', 'M', 'L', 'V')

/* Writers: append one section to `w`; 0, or -1 with an exception set.
 * `meta` is a dict str -> str, `samples` n records of 32 bytes, `classes` a
 * list of (name, instances, bytes) rows (TypeError for any other row). */
int cap_run_put_meta(cap_writer *w, PyObject *meta);
int cap_run_put_timeline(cap_writer *w, uint64_t interval_ns, const void *samples, uint32_t n);
int cap_run_put_classes(cap_writer *w, PyObject *classes);
/* `native`: n little-endian u64, one per timeline sample. */
int cap_run_put_native_timeline(cap_writer *w, const void *native, uint32_t n);

/* Readers over an open, checked cap_file (`path` names it in errors).
 * Each section is optional: meta is {} and the timeline b'' (interval 0)
 * when absent; *classes is NULL when absent, else a new list.  NULL / -1
 * with ValueError (cap_corrupt) for a malformed section. */
PyObject *cap_run_get_meta(const cap_file *f, const char *path);
/* The native timeline: bytes of n u64, n the timeline's sample count
 * (`samples`), or b'' when absent. */
PyObject *cap_run_get_native_timeline(const cap_file *f, const char *path, uint32_t samples);
PyObject *cap_run_get_timeline(const cap_file *f, const char *path, uint64_t *interval_ns);
int cap_run_get_classes(const cap_file *f, const char *path, PyObject **classes);

#endif /* MEMLENS_CAP_RUN_H */
