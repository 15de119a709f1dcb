/* census_why.h: "why is this object alive" -- the shortest reference
 * chains from the roots of the heap graph (census_graph.h) to one object.
 * Prefix why_.
 *
 * Roots: module globals and the locals of every thread's running frames
 * (named: the chain starts "mod.NAME" or "<frame f() local 'x'>"), then
 * every object held from outside the graph (anonymous: "<list object at
 * 0x...>").  A multi-source breadth-first search from them, never passing
 * through the object itself, gives each node its nearest root; one chain
 * is kept per direct referrer of the object, nearest first, and rendered
 * edge by edge with edge_label (walk_edges.h), an instance's or module's
 * __dict__ hop folded into ".name".
 */
#ifndef MEMLENS_CENSUS_WHY_H
#define MEMLENS_CENSUS_WHY_H

#include "core.h"

/* (paths: [str], referrers: int, reached: int) -- referrers counts the
 * objects that refer to obj directly, reached those of them a root
 * reaches.  modules: [(name, globals dict)]; own_globals: the globals of
 * memlens's own code, whose frames are left out.  NULL with an exception
 * set on failure. */
PyObject *why_paths(PyObject *obj, Py_ssize_t max_paths, PyObject *modules, PyObject *own_globals);

#endif /* MEMLENS_CENSUS_WHY_H */
