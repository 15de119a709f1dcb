/* walk_edges.h: naming a reference, for paths a user can read.  Prefix
 * edge_.
 *
 * edge_label(parent, child) names how `parent` refers to `child` the way
 * Python code would reach it: "[3]" for a list/tuple item, "['key']" for a
 * dict value, "<key 'k'>" for a dict key, ".attr" for an instance
 * attribute or slot (read in place: values arrays and slots, never creating
 * a __dict__), ".__dict__" for a class's or module's namespace,
 * ".cell_contents", "{item}" for a set member, and "<type>" when nothing
 * better is known.  Keys are shown with repr() only for builtin scalars
 * (repr of anything else could run user code).
 */
#ifndef MEMLENS_WALK_EDGES_H
#define MEMLENS_WALK_EDGES_H

#include "core.h"

/* A new str; NULL with an exception set on failure. */
PyObject *edge_label(PyObject *parent, PyObject *child);

/* The ".attr" / "['key']" label of dict `d` holding `child` as a value
 * (as_attr: ".key" when the key is a str), "<key ...>" as a key, or NULL
 * without an exception when it holds neither. */
PyObject *edge_dict_label(PyObject *d, PyObject *child, int as_attr);

#endif /* MEMLENS_WALK_EDGES_H */
