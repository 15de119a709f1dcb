/* walk_attrs.h: an instance's attributes, read in place.  Prefix attrs_.
 *
 * Visits every (name, value) an instance holds -- its __dict__ when one
 * exists, otherwise (3.11+) its values array or inline values with the
 * names from the class's shared keys, and its object slots -- without ever
 * creating a __dict__ (reading `obj.__dict__` on 3.11+ allocates one).
 * No allocation, no Python code; the GIL must be held.
 */
#ifndef MEMLENS_WALK_ATTRS_H
#define MEMLENS_WALK_ATTRS_H

#include "core.h"

#include <structmember.h> /* PyMemberDef and its type codes before 3.12 */

/* 3.12 renamed the member type codes; the values never changed. */
#ifndef Py_T_OBJECT
#define Py_T_OBJECT T_OBJECT
#endif
#ifndef Py_T_OBJECT_EX
#define Py_T_OBJECT_EX T_OBJECT_EX
#endif
#ifndef Py_READONLY
#define Py_READONLY READONLY
#endif

typedef struct {
    PyObject *name;   /* the attribute name (a str) for dict/values
                        * entries; NULL for a slot */
    const char *slot; /* the slot's name for slots; NULL otherwise */
    PyObject *value;  /* borrowed, never NULL */
} attrs_item;

/* Return 0 to go on, non-zero to stop (attrs_foreach then returns it). */
typedef int (*attrs_fn)(const attrs_item *it, void *arg);

/* Visit the attributes of `op` (any object: only heap-type instances have
 * any).  Dict entries with non-str keys are skipped. */
int attrs_foreach(PyObject *op, attrs_fn fn, void *arg);

#endif /* MEMLENS_WALK_ATTRS_H */
