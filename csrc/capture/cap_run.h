/* cap_run.h: the capture file of `memlens run`.
 *
 * A run capture is a snapshot capture (capture.h: META, STRS, FRMS, STKS,
 * ALOC written by cap_put_table, so memlens.Snapshot.load() reads it too)
 * followed by run sections, then the END checksum over everything:
 *   RUNM: u32 n, n x (u32 len, key UTF-8, u32 len, value UTF-8)
 *         run metadata (command, Python version, exit code, duration ...)
 *   TMLN: u64 interval in nanoseconds, u32 n,
 *         n x (u64 t_ns, u64 traced, u64 peak, u64 rss)
 *   CLSS: u32 n, n x (u32 len, class name UTF-8, u64 instances, u64 bytes)
 *         the census at exit; absent when no census ran.
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

int cap_run_module_exec(PyObject *m);

#endif /* MEMLENS_CAP_RUN_H */
