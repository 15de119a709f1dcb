/* advise_: one walk over the whole heap that gathers what the advisor
 * (memlens/advise.py) turns into advice with exact savings:
 *
 *   - per class: instances, their footprint, how many are weakly
 *     referenced or carry a materialized __dict__, and per attribute how
 *     often it is present and what kinds of values it holds (int in int64
 *     range, float, bool, str, None, other) plus the bytes of boxed values
 *     only that attribute references (refcount 1: they would disappear if
 *     stored unboxed);
 *   - per "site" (a class attribute, dict keys, list items, or elsewhere):
 *     duplicate strs (equal content, distinct objects), duplicate tuples of
 *     scalars, lists that hold only floats or only int64-range ints, empty
 *     containers, and lists' spare capacity.
 *
 * A value is charged to the first site that claims it (an instance
 * attribute, a dict key, a list item); what no site claims is charged to
 * "elsewhere" at the end.  The walk is the sizing walker over every
 * GC-tracked object; scratch tables are malloc'd; nothing is written into
 * the objects (str hashes are computed here, not cached in the strs).
 */
#ifndef MEMLENS_ADVISE_H
#define MEMLENS_ADVISE_H

#include "core.h"

int advise_module_exec(PyObject *m);

#endif /* MEMLENS_ADVISE_H */
