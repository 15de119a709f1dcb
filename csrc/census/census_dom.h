/* census_dom.h: the dominator tree of a heap graph (census_graph.h), for
 * retained sizes.  Prefix dom_.
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
 * 4-byte node indices.
 *
 * Memory is the point of the layout (the census(retained=True) budget: at
 * most 32 bytes of scratch per object, the graph's own arrays included), so
 * no array lives longer than its phase and no mapping is kept twice:
 *   - the DFS keeps only the preorder number of each node (no parent and
 *     no preorder -> node array): the DFS parent of w is recovered later as
 *     its largest predecessor below w (an edge v -> w with v < w in
 *     preorder is a tree or forward edge, so v is an ancestor of w, and the
 *     parent is the deepest one);
 *   - predecessor lists are built straight from the forward edges, node by
 *     node, after the forward targets were rewritten as preorder numbers in
 *     place, so that the node -> preorder map lives in the offsets array
 *     and not beside it; the forward edges are freed at once;
 *   - per-node sizes and the caller's tags (2 bytes each, wide values in
 *     sorted side tables) are moved into preorder, so that the node
 *     numbering can be forgotten;
 *   - the reverse-preorder pass writes each node's DFS parent and
 *     semidominator into predecessor slots it has read, and idom[] is
 *     written over label[] once that is done with.
 * So building the graph, not the dominator phase, sets the census's peak.
 */
#ifndef MEMLENS_CENSUS_DOM_H
#define MEMLENS_CENSUS_DOM_H

#include "census/census_graph.h"

/* Tags: one 2-byte value per node, below DOM_TAG_NONE; DOM_TAG_NONE for
 * none; GRAPH_WIDE sends to the side table.  dom_tag() gives the value,
 * or DOM_NOTAG for none. */
#define DOM_TAG_NONE (GRAPH_WIDE - 1)
#define DOM_NOTAG UINT32_MAX

typedef struct {
    size_t m;         /* nodes reached from the roots, super-root included;
                        * they are numbered in DFS preorder, super-root 0 */
    uint32_t *idom;   /* [m] preorder number of the immediate dominator
                        * (idom[k] < k) */
    uint16_t *tag;    /* [m] the caller's tag of each node (DOM_TAG_NONE
                        * for the super-root) */
    graph_wide *wtag; /* [nwtag] the tags too wide for tag[], by preorder */
    size_t nwtag;
    uint64_t *retained; /* [m] bytes of the dominator subtree */
    size_t held;        /* bytes the arrays above hold */
    size_t scratch;     /* peak bytes held while computing, the graph's
                        * own arrays and the tags included */
} dom_tree;

/* The tag of tree node k. */
static inline uint32_t
dom_tag(const dom_tree *d, uint32_t k)
{
    if (d->tag[k] == DOM_TAG_NONE) {
        return DOM_NOTAG;
    }
    if (d->tag[k] != GRAPH_WIDE) {
        return d->tag[k];
    }
    return (uint32_t)graph_wide_get(d->wtag, d->nwtag, k);
}

/* Consumes the graph's arrays (sizes, flags, offsets, edges; the graph must
 * have been released by graph_release, so only n remains meaningful) and
 * the caller's tags: `tag` ([n], malloc'd, one 2-byte value per node that
 * the caller wants back per tree node -- a class, say) with `wtag` (the
 * values GRAPH_WIDE stands for, by node, malloc'd, `wcap` allocated).
 * Both are taken over, even on failure.  0, or -1 if out of memory (no
 * exception set). */
int dom_build(dom_tree *d, graph_t *g, uint16_t *tag, graph_wide *wtag, size_t nwtag, size_t wcap);
void dom_free(dom_tree *d);

#endif /* MEMLENS_CENSUS_DOM_H */
