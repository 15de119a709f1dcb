/* dom_: dominator tree of a heap graph (see census_dom.h). */
#include "census/census_dom.h"

#include <stdlib.h>
#include <string.h>

#define DOM_UNSET UINT32_MAX
/* Bits of the 4-byte words of step 2: preorder numbers stay below
 * DOM_NUM (n < DOM_NUM - 1 is checked on entry). */
#define DOM_ROOT 0x80000000u     /* pre[], map[]: the node is a root */
#define DOM_NONEMPTY 0x40000000u /* map[]: the node has edges */
#define DOM_NUM \
    0x3fffffffu               /* map[]: the preorder number (all ones:
                                   * unreached) */
#define DOM_FIRST 0x80000000u /* edges[]: first edge of its node */
#define DOM_GONE 0x7fffffffu  /* edges[]: the target is unreached */

void
dom_free(dom_tree *d)
{
    free(d->idom);
    free(d->tag);
    free(d->wtag);
    free(d->retained);
    memset(d, 0, sizeof(*d));
}

/* Children of node u of the graph, the super-root's being the roots. */
typedef struct {
    uint32_t node;
    uint32_t pos; /* next edge (or, for the super-root, next node) */
} dom_frame;

static int
dom_wide_cmp(const void *a, const void *b)
{
    uint32_t x = ((const graph_wide *)a)->node, y = ((const graph_wide *)b)->node;
    return x < y ? -1 : x > y;
}

/* A side table from node numbers to preorder numbers (map: see step 2);
 * unreached nodes get DOM_NUM and sort last. */
static void
dom_wide_renumber(graph_wide *t, size_t nt, const uint32_t *map)
{
    if (nt == 0) {
        return; /* t may be NULL, which qsort may not be given */
    }
    for (size_t i = 0; i < nt; i++) {
        t[i].node = map[t[i].node] & DOM_NUM;
    }
    qsort(t, nt, sizeof(graph_wide), dom_wide_cmp);
}

int
dom_build(dom_tree *d, graph_t *g, uint16_t *tag, graph_wide *wtag, size_t nwtag, size_t wcap)
{
    size_t n = g->n;
    uint32_t sr = (uint32_t)n;
    uint32_t *pre = NULL, *poff = NULL, *preds = NULL;
    uint16_t *psize = NULL, *ptag = NULL;
    uint32_t *idom = NULL, *label = NULL, *anc = NULL, *cstack = NULL;
    dom_frame *stack = NULL;
    size_t m = 0, held, peak;

    /* bytes held now, the graph's arrays and the tags included */
    held = graph_held_bytes(g) + n * sizeof(uint16_t) + wcap * sizeof(graph_wide);
    peak = held;
#define DOM_HOLD(bytes)    \
    do {                   \
        held += (bytes);   \
        if (held > peak) { \
            peak = held;   \
        }                  \
    } while (0)
#define DOM_DROP(bytes) (held -= (bytes))

    memset(d, 0, sizeof(*d));
    if (n >= DOM_NUM - 1) {
        goto nomem; /* 2^30 objects: a heap of 30 GB and more */
    }
    size_t scap = 1024;
    pre = malloc((n + 1) * sizeof(uint32_t));
    stack = malloc(scap * sizeof(dom_frame));
    if (pre == NULL || stack == NULL) {
        goto nomem;
    }
    DOM_HOLD((n + 1) * sizeof(uint32_t) + scap * sizeof(dom_frame));
    memset(pre, 0xff, (n + 1) * sizeof(uint32_t));

    /* 1. DFS preorder from the super-root; the stack grows as needed (a
     * linked list of a million nodes is a million deep) */
    size_t depth = 0;
    pre[sr] = 0;
    m = 1;
    stack[depth].node = sr;
    stack[depth].pos = 0;
    depth++;
    while (depth > 0) {
        dom_frame *f = &stack[depth - 1];
        uint32_t next = DOM_UNSET;
        if (f->node == sr) {
            while (f->pos < n) {
                uint32_t v = f->pos++;
                if ((g->flags[v] & GRAPH_F_ROOT) && pre[v] == DOM_UNSET) {
                    next = v;
                    break;
                }
            }
        }
        else {
            uint32_t end = g->off[f->node + 1];
            uint32_t e = g->off[f->node] + f->pos;
            while (e < end) {
                uint32_t v = g->edges[e++];
                if (pre[v] == DOM_UNSET) {
                    next = v;
                    break;
                }
            }
            f->pos = e - g->off[f->node];
        }
        if (next == DOM_UNSET) {
            depth--;
            continue;
        }
        pre[next] = (uint32_t)m;
        m++;
        if (depth == scap) {
            dom_frame *ns = realloc(stack, 2 * scap * sizeof(dom_frame));
            if (ns == NULL) {
                goto nomem;
            }
            DOM_HOLD(scap * sizeof(dom_frame));
            stack = ns;
            scap *= 2;
        }
        stack[depth].node = next;
        stack[depth].pos = 0;
        depth++;
    }
    d->m = m;
    free(stack);
    stack = NULL;
    DOM_DROP(scap * sizeof(dom_frame));
    /* 2. predecessors, by preorder number, of the reached nodes (CSR: count,
     * prefix sums, fill with poff[] as the cursor, shift back), walking the
     * forward edges in node order.  To hold one node -> preorder map at a
     * time, not two, the count pass rewrites each edge's target as its
     * preorder number (DOM_GONE if unreached) and marks the first edge of
     * each node (DOM_FIRST); off[] then becomes the map itself (preorder
     * number, DOM_ROOT, DOM_NONEMPTY: the node's edges start at the next
     * DOM_FIRST), and pre[] is freed before the predecessors are. */
    for (size_t u = 0; u < n; u++) {
        if ((g->flags[u] & GRAPH_F_ROOT) && pre[u] != DOM_UNSET) {
            pre[u] |= DOM_ROOT;
        }
    }
    free(g->flags);
    g->flags = NULL;
    DOM_DROP(n + 1);
    poff = calloc(m + 1, sizeof(uint32_t));
    if (poff == NULL) {
        goto nomem;
    }
    DOM_HOLD((m + 1) * sizeof(uint32_t));
    for (size_t u = 0; u < n; u++) {
        uint32_t pu = pre[u];
        uint32_t start = g->off[u], end = g->off[u + 1];
        for (uint32_t e = start; e < end; e++) {
            uint32_t t = DOM_GONE;
            if (pu != DOM_UNSET) {
                uint32_t pv = pre[g->edges[e]];
                if (pv != DOM_UNSET) {
                    t = pv & DOM_NUM;
                    poff[t + 1]++;
                }
            }
            g->edges[e] = e == start ? t | DOM_FIRST : t;
        }
        if (pu != DOM_UNSET && (pu & DOM_ROOT)) {
            poff[(pu & DOM_NUM) + 1]++; /* from the super-root */
        }
    }
    for (size_t u = 0; u < n; u++) {
        /* off[u + 1] is still an offset here: only off[u] is rewritten */
        uint32_t x = pre[u] == DOM_UNSET ? DOM_NUM : pre[u];
        if (g->off[u + 1] > g->off[u]) {
            x |= DOM_NONEMPTY;
        }
        g->off[u] = x;
    }
    uint32_t *map = g->off; /* node -> preorder | DOM_ROOT | DOM_NONEMPTY */
    free(pre);
    pre = NULL;
    DOM_DROP((n + 1) * sizeof(uint32_t));
    for (size_t k = 0; k < m; k++) {
        poff[k + 1] += poff[k];
    }
    size_t npreds = poff[m];
    preds = malloc((npreds + 1) * sizeof(uint32_t));
    if (preds == NULL) {
        goto nomem;
    }
    DOM_HOLD((npreds + 1) * sizeof(uint32_t));
    {
        size_t e = 0, ne = g->nedges;
        for (size_t u = 0; u < n; u++) {
            uint32_t x = map[u];
            uint32_t pu = x & DOM_NUM;
            if (x & DOM_NONEMPTY) {
                do {
                    uint32_t t = g->edges[e++] & ~DOM_FIRST;
                    if (pu != DOM_NUM && t != DOM_GONE) {
                        preds[poff[t]++] = pu;
                    }
                } while (e < ne && !(g->edges[e] & DOM_FIRST));
            }
            if ((x & DOM_ROOT) && pu != DOM_NUM) {
                preds[poff[pu]++] = 0;
            }
        }
    }
    for (size_t k = m; k > 0; k--) {
        poff[k] = poff[k - 1];
    }
    poff[0] = 0;
    /* the forward edges are no longer needed */
    DOM_DROP((g->nedges + 1) * sizeof(uint32_t));
    free(g->edges);
    g->edges = NULL;
    g->nedges = 0;

    /* 3. sizes and tags into preorder, one array at a time; the rare sizes
     * of 64 KiB and more (big[]) and the wide tags are renumbered too */
    psize = malloc(m * sizeof(uint16_t));
    if (psize == NULL) {
        goto nomem;
    }
    DOM_HOLD(m * sizeof(uint16_t));
    psize[0] = 0;
    for (size_t u = 0; u < n; u++) {
        uint32_t k = map[u] & DOM_NUM;
        if (k != DOM_NUM) {
            psize[k] = g->sizes[u];
        }
    }
    free(g->sizes);
    g->sizes = NULL;
    DOM_DROP((n + 1) * sizeof(uint16_t));
    dom_wide_renumber(g->big, g->nbig, map);
    ptag = malloc(m * sizeof(uint16_t));
    if (ptag == NULL) {
        goto nomem;
    }
    DOM_HOLD(m * sizeof(uint16_t));
    ptag[0] = DOM_TAG_NONE;
    for (size_t u = 0; u < n; u++) {
        uint32_t k = map[u] & DOM_NUM;
        if (k != DOM_NUM) {
            ptag[k] = tag[u];
        }
    }
    free(tag);
    tag = NULL;
    DOM_DROP(n * sizeof(uint16_t));
    dom_wide_renumber(wtag, nwtag, map);
    free(g->off);
    g->off = NULL;
    map = NULL;
    DOM_DROP((n + 1) * sizeof(uint32_t));

    /* the path-compression stack: as deep as the longest path compressed */
    size_t ccap = 1024;
    cstack = malloc(ccap * sizeof(uint32_t));
    if (cstack == NULL) {
        goto nomem;
    }
    DOM_HOLD(ccap * sizeof(uint32_t));

    /* 4. semidominators, reverse preorder, label = min semi on the path.
     * What step 5 needs of w goes where step 4 has done reading: the DFS
     * parent into poff[w + 1] (w's end and w + 1's start, both read), the
     * semidominator into preds[npreds - m + w] -- the nodes from w up have
     * at least one predecessor each, so that slot is at or after w's first
     * one, in lists already processed. */
    label = malloc(m * sizeof(uint32_t));
    anc = malloc(m * sizeof(uint32_t));
    if (label == NULL || anc == NULL) {
        goto nomem;
    }
    DOM_HOLD(2 * m * sizeof(uint32_t));
    for (size_t k = 0; k < m; k++) {
        label[k] = (uint32_t)k;
        anc[k] = DOM_UNSET;
    }
    for (size_t w = m - 1; w >= 1; w--) {
        uint32_t s = (uint32_t)w, parent = 0;
        uint32_t end = poff[w + 1];
        for (uint32_t e = poff[w]; e < end; e++) {
            uint32_t v = preds[e];
            if (v < w) {
                /* not processed yet: its label is itself; the deepest
                 * such predecessor is the DFS parent */
                if (v > parent) {
                    parent = v;
                }
                if (v < s) {
                    s = v;
                }
                continue;
            }
            if (anc[v] != DOM_UNSET) {
                /* compress the path from v to its forest root */
                size_t sp = 0;
                uint32_t u = v;
                while (anc[anc[u]] != DOM_UNSET) {
                    if (sp == ccap) {
                        uint32_t *nc = realloc(cstack, 2 * ccap * sizeof(uint32_t));
                        if (nc == NULL) {
                            goto nomem;
                        }
                        DOM_HOLD(ccap * sizeof(uint32_t));
                        cstack = nc;
                        ccap *= 2;
                    }
                    cstack[sp++] = u;
                    u = anc[u];
                }
                while (sp > 0) {
                    u = cstack[--sp];
                    uint32_t a = anc[u];
                    if (label[a] < label[u]) {
                        label[u] = label[a];
                    }
                    anc[u] = anc[a];
                }
            }
            if (label[v] < s) {
                s = label[v];
            }
        }
        poff[w + 1] = parent;
        preds[npreds - m + w] = s;
        label[w] = s;
        anc[w] = parent;
    }
    free(anc);
    anc = NULL;
    free(cstack);
    cstack = NULL;
    DOM_DROP(m * sizeof(uint32_t) + ccap * sizeof(uint32_t));

    /* 5. idom = nearest common ancestor of parent and semi, in preorder, so
     * idom[x] is final for every x < w; it overwrites label[], done with */
    idom = label;
    label = NULL;
    idom[0] = 0;
    for (size_t w = 1; w < m; w++) {
        uint32_t x = poff[w + 1];
        uint32_t semi = preds[npreds - m + w];
        while (x > semi) {
            x = idom[x];
        }
        idom[w] = x;
    }
    free(preds);
    preds = NULL;
    free(poff);
    poff = NULL;
    DOM_DROP((npreds + 1) * sizeof(uint32_t) + (m + 1) * sizeof(uint32_t));

    /* 6. retained = own + dominated, children after their idom in preorder */
    d->retained = malloc(m * sizeof(uint64_t));
    if (d->retained == NULL) {
        goto nomem;
    }
    DOM_HOLD(m * sizeof(uint64_t));
    d->retained[0] = 0;
    for (size_t k = 1; k < m; k++) {
        d->retained[k] =
            psize[k] != GRAPH_WIDE ? psize[k] : graph_wide_get(g->big, g->nbig, (uint32_t)k);
    }
    free(psize);
    psize = NULL;
    for (size_t k = m - 1; k >= 1; k--) {
        d->retained[idom[k]] += d->retained[k];
    }
    d->idom = idom;
    d->tag = ptag;
    d->wtag = wtag;
    d->nwtag = nwtag;
    d->held =
        m * (sizeof(uint32_t) + sizeof(uint16_t) + sizeof(uint64_t)) + wcap * sizeof(graph_wide);
    d->scratch = peak;
    return 0;
#undef DOM_HOLD
#undef DOM_DROP

nomem:
    free(tag);
    free(wtag);
    free(cstack);
    free(pre);
    free(stack);
    free(poff);
    free(preds);
    free(psize);
    free(ptag);
    free(idom);
    free(label);
    free(anc);
    dom_free(d);
    return -1;
}
