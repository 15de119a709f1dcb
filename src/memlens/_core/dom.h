/* dom_: dominator tree of a heap graph (graph.h), for retained sizes.
 *
 * A node d dominates x when every path from the roots to x passes through
 * d; the objects d dominates are exactly what would be freed if d became
 * unreachable, so d's retained size is the sum of its dominator subtree.
 *
 * Algorithm: Semi-NCA (Georgiadis' simplification of Lengauer-Tarjan):
 * one DFS from a virtual super-root whose children are the graph's roots,
 * semidominators with path compression in reverse preorder, then each
 * idom as the nearest common ancestor of parent and semidominator in the
 * tree built so far.  Near-linear, iterative (no C recursion), malloc'd
 * 4-byte arrays.
 */
#ifndef MEMLENS_DOM_H
#define MEMLENS_DOM_H

#include "graph.h"

typedef struct {
    size_t m;          /* nodes reached from the roots, super-root included */
    uint32_t *vert;    /* [m] preorder number -> node (vert[0] = super-root,
                        * numbered g->n) */
    uint32_t *idom;    /* [m] preorder number of the immediate dominator */
    uint64_t *retained;/* [m] bytes of the dominator subtree */
    size_t scratch;    /* peak bytes held while computing, the graph's
                        * own arrays included */
} dom_tree;

/* 0, or -1 if out of memory (no exception set).  With `consume`, the
 * graph's edges are freed as soon as the predecessor lists exist (the
 * graph can then only answer node questions: objs, sizes, flags), which
 * lowers the peak by the size of the edge arrays. */
int dom_build(dom_tree *d, graph_t *g, int consume);
void dom_free(dom_tree *d);

#endif /* MEMLENS_DOM_H */
