/* trace_table.h: the TraceTable type (memlens._core.TraceTable), the
 * Python face of a snapshot's data (trace_snapshot.h): its getters,
 * stacks() and the grouped statistics of group().  Writing one to a
 * capture file is the capture binding's (capture/cap_module.c adds
 * TraceTable.dump), so that the tracer does not depend on capture/.
 */
#ifndef MEMLENS_TRACE_TABLE_H
#define MEMLENS_TRACE_TABLE_H

#include "core.h"

/* Create the type, add it to module `m` and keep it in the module state
 * (core_state.trace_table_type); 0, or -1 with an exception set.  Called
 * from trace_module_exec(). */
int trace_table_module_exec(PyObject *m);

#endif /* MEMLENS_TRACE_TABLE_H */
