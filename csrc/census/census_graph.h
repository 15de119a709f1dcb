/* census_graph.h: the whole heap as a compact graph, for retained sizes,
 * dominators and "why is this alive".  Prefix graph_.
 *
 * Nodes are every object the census walk reaches (every GC-tracked object,
 * plus the untracked ones reachable from them), numbered 0..n-1 through a
 * rank index over the walk's address bitmap (visit_rank), so an edge is a
 * 4-byte index, not a pointer.  Edges are the references the cyclic GC sees
 * (tp_traverse) plus the dict keys dict_traverse leaves out.  An instance's
 * __dict__ is a node of its own here (flagged GRAPH_F_FOLDED when its owner
 * is a node), so that a reference to the dict from elsewhere is not lost.
 *
 * Roots follow the cyclic GC's own test (subtract_refs in gcmodule.c): a
 * node whose refcount exceeds the references the graph can see is held from
 * outside it -- the C stack, C globals, an executing frame's locals (3.11+),
 * an object we do not traverse -- and is a root.
 *
 * All arrays come from malloc.  The graph holds a strong reference to every
 * node while it exists, so Python code run by a __sizeof__ cannot free one
 * under it; that reference is subtracted when roots are computed.
 */
#ifndef MEMLENS_CENSUS_GRAPH_H
#define MEMLENS_CENSUS_GRAPH_H

#include "core.h"
#include "heap/walk_visit.h"
#include <stdint.h>

#define GRAPH_NONE UINT32_MAX

/* graph_t.flags[i] */
#define GRAPH_F_ROOT 0x01   /* held from outside the graph */
#define GRAPH_F_FOLDED 0x02 /* the materialized __dict__ of an instance node */
#define GRAPH_F_MARK 0x04   /* scratch for searches */

/* A per-node value too wide for its 2-byte array (sizes[]: objects of
 * 64 KiB and more; the census's class tags past 65533 classes), kept
 * sorted by node in a side table: most nodes are small objects of a few
 * classes, so the arrays stay at 2 bytes a node. */
typedef struct {
    uint32_t node;
    uint64_t value;
} graph_wide;

#define GRAPH_WIDE UINT16_MAX /* in a 2-byte array: look in the side table */

typedef struct {
    size_t n;        /* nodes */
    PyObject **objs; /* [n] strong references, in rank order; NULL
                          * after graph_release() */
    uint16_t *sizes; /* [n] own size (sizeof rules, no dict folded);
                          * GRAPH_WIDE: 64 KiB or more, the size is in big[] */
    graph_wide *big; /* [nbig] those sizes, by node */
    size_t nbig, bigcap;
    uint32_t *off;   /* [n + 1] CSR offsets into edges */
    uint32_t *edges; /* [nedges] target node of each reference */
    size_t nedges;
    uint8_t *flags;  /* [n] GRAPH_F_* */
    visit_set index; /* address -> node (visit_rank) */
    size_t warnings; /* objects whose __sizeof__ failed */
    size_t scratch;  /* peak bytes while building (incoming counts and
                          * the edge array's spare capacity included) */
} graph_t;

/* Build the graph of everything reachable from the GC-tracked objects and
 * from `extra` (objects that must be nodes even if nothing tracked reaches
 * them), leaving out `exclude` (the caller's own temporaries: they are
 * neither nodes nor entered, so what only they hold is not reached through
 * them, and what they hold looks held from outside).  0, or -1 with an
 * exception set (the graph is then empty). */
int graph_build(graph_t *g, PyObject *const *extra, Py_ssize_t nextra, PyObject *const *exclude,
                Py_ssize_t nexclude);
void graph_free(graph_t *g);

/* A new list of every GC-tracked object (gc.get_objects(); the list does
 * not contain itself), or NULL with an exception set. */
PyObject *graph_tracked_objects(void);

/* Node of `obj`, or GRAPH_NONE. */
static inline uint32_t
graph_node(graph_t *g, PyObject *obj)
{
    return visit_rank(&g->index, obj);
}

/* Scratch bytes the built graph holds now. */
size_t graph_held_bytes(const graph_t *g);

/* Own size of node i (no object is touched: sizes are taken at build). */
size_t graph_size(const graph_t *g, uint32_t i);

/* The value of node i in a side table sorted by node (graph_build makes
 * big[] so; dom_build renumbers it), or UINT64_MAX if it has none. */
uint64_t graph_wide_get(const graph_wide *t, size_t nt, uint32_t i);

/* Append (i, value) to a side table, nodes in increasing order; -1 if out
 * of memory. */
int graph_wide_add(graph_wide **t, size_t *nt, size_t *cap, uint32_t i, uint64_t value);

/* Drop the graph's references to the nodes and its address index: from
 * then on only sizes, flags and the edges remain -- enough for dominators
 * -- and no node may be dereferenced or looked up (objs is NULL).  The
 * caller must hold what it still needs of the objects (their types) itself:
 * a node whose last reference was ours is freed here, and its finalizer may
 * run Python code. */
void graph_release(graph_t *g);

/* Bytes that would be freed if node t became unreachable: the size of what
 * t reaches that the roots cannot reach without passing through t.  Uses
 * GRAPH_F_MARK; *count gets the number of objects.  -1 if out of memory. */
int graph_retained(graph_t *g, uint32_t t, size_t *bytes, size_t *count);

/* The same for the set of `k` distinct nodes `ts` together: what would be
 * freed if all of them became unreachable at once. */
int graph_retained_set(graph_t *g, const uint32_t *ts, size_t k, size_t *bytes, size_t *count);

#endif /* MEMLENS_CENSUS_GRAPH_H */
