/* census_dom.c: the dominator tree of a heap graph (dom_; see census_dom.h). */
#include "census/census_dom.h"
#include "heap/walk_size.h" /* size_add */

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

/* dom_build's state.  Each array lives only as long as its phase needs it
 * (census_dom.h explains the layout); a step frees what it was the last
 * to read and sets the pointer to NULL, so that dom_work_free frees what
 * an early failure left. */
typedef struct {
    /* inputs */
    graph_t *g;       /* released graph: its arrays are consumed phase by phase */
    size_t n;         /* graph nodes; the super-root is node n */
    uint16_t *tag;    /* [n] the caller's tags by node (owned; freed in step 3) */
    graph_wide *wtag; /* the caller's wide tags (owned; renumbered in step 3) */
    size_t nwtag, wcap;

    /* temporary state */
    uint32_t *pre;    /* steps 1-2: [n + 1] preorder number, DOM_UNSET: unreached */
    dom_frame *stack; /* step 1: the DFS stack, scap frames */
    size_t scap;
    /* steps 2-5: [m + 1] predecessor offsets (CSR); step 4 stores each
     * node's DFS parent in poff[w + 1] */
    uint32_t *poff;
    /* steps 2-5: [npreds + 1] predecessors, by preorder; step 4 stores
     * the semidominators at the tail */
    uint32_t *preds;
    size_t npreds;
    uint16_t *psize;  /* steps 3-6: [m] own sizes, by preorder */
    uint32_t *label;  /* step 4: [m] least semidominator on the path; becomes idom */
    uint32_t *anc;    /* step 4: [m] forest ancestor, DOM_UNSET: a forest root */
    uint32_t *cstack; /* step 4: the path-compression stack, ccap entries */
    size_t ccap;
    size_t held, peak; /* bytes held now / at most, the graph's arrays included */

    /* outputs, moved into the dom_tree at the end */
    size_t m;           /* reached nodes, super-root included */
    uint16_t *ptag;     /* [m] the tags, by preorder */
    uint32_t *idom;     /* [m] immediate dominators, by preorder */
    uint64_t *retained; /* [m] dominator subtree bytes */
} dom_work;

/* Initial entries of the DFS and path-compression stacks; both double as
 * needed (a linked list of a million nodes is a million deep). */
#define DOM_STACK_START 1024

static void
dom_hold(dom_work *wk, size_t bytes)
{
    wk->held += bytes;
    if (wk->held > wk->peak) {
        wk->peak = wk->held;
    }
}

static void
dom_drop(dom_work *wk, size_t bytes)
{
    wk->held -= bytes;
}

static void
dom_work_free(dom_work *wk)
{
    free(wk->tag);
    free(wk->wtag);
    free(wk->pre);
    free(wk->stack);
    free(wk->poff);
    free(wk->preds);
    free(wk->psize);
    free(wk->label);
    free(wk->anc);
    free(wk->cstack);
    free(wk->ptag);
    free(wk->idom);
    free(wk->retained);
    memset(wk, 0, sizeof(*wk));
}

/* Step 1: DFS preorder from the super-root, whose children are the roots;
 * fills pre[] and m.  -1 if out of memory. */
static int
dom_dfs_preorder(dom_work *wk)
{
    const graph_t *g = wk->g;
    size_t n = wk->n;
    uint32_t sr = (uint32_t)n;

    wk->scap = DOM_STACK_START;
    wk->pre = malloc((n + 1) * sizeof(uint32_t));
    wk->stack = malloc(wk->scap * sizeof(dom_frame));
    if (wk->pre == NULL || wk->stack == NULL) {
        return -1;
    }
    dom_hold(wk, (n + 1) * sizeof(uint32_t) + wk->scap * sizeof(dom_frame));
    memset(wk->pre, 0xff, (n + 1) * sizeof(uint32_t));

    uint32_t *pre = wk->pre;
    size_t depth = 0, m = 1;
    pre[sr] = 0;
    wk->stack[depth].node = sr;
    wk->stack[depth].pos = 0;
    depth++;
    while (depth > 0) {
        dom_frame *f = &wk->stack[depth - 1];
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
        if (depth == wk->scap) {
            dom_frame *ns = realloc(wk->stack, 2 * wk->scap * sizeof(dom_frame));
            if (ns == NULL) {
                return -1;
            }
            dom_hold(wk, wk->scap * sizeof(dom_frame));
            wk->stack = ns;
            wk->scap *= 2;
        }
        wk->stack[depth].node = next;
        wk->stack[depth].pos = 0;
        depth++;
    }
    wk->m = m;
    free(wk->stack);
    wk->stack = NULL;
    dom_drop(wk, wk->scap * sizeof(dom_frame));
    return 0;
}

/* Step 2a: count the predecessors of each reached node into poff[k + 1],
 * walking the forward edges in node order.  To hold one node -> preorder
 * map at a time, not two, this rewrites each edge's target as its preorder
 * number (DOM_GONE if unreached) and marks the first edge of each node
 * (DOM_FIRST); off[] then becomes the map itself (preorder number,
 * DOM_ROOT, DOM_NONEMPTY: the node's edges start at the next DOM_FIRST),
 * and pre[] and the flags are freed.  -1 if out of memory. */
static int
dom_count_preds(dom_work *wk)
{
    graph_t *g = wk->g;
    size_t n = wk->n;
    uint32_t *pre = wk->pre;

    for (size_t u = 0; u < n; u++) {
        if ((g->flags[u] & GRAPH_F_ROOT) && pre[u] != DOM_UNSET) {
            pre[u] |= DOM_ROOT;
        }
    }
    free(g->flags);
    g->flags = NULL;
    dom_drop(wk, n + 1);
    wk->poff = calloc(wk->m + 1, sizeof(uint32_t));
    if (wk->poff == NULL) {
        return -1;
    }
    dom_hold(wk, (wk->m + 1) * sizeof(uint32_t));
    uint32_t *poff = wk->poff;
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
    free(wk->pre);
    wk->pre = NULL;
    dom_drop(wk, (n + 1) * sizeof(uint32_t));
    return 0;
}

/* Step 2b: the predecessor lists, by preorder number (CSR: prefix sums,
 * fill with poff[] as the cursor, shift back), from the rewritten forward
 * edges, which are freed.  -1 if out of memory. */
static int
dom_fill_preds(dom_work *wk)
{
    graph_t *g = wk->g;
    size_t n = wk->n, m = wk->m;
    const uint32_t *map = g->off; /* node -> preorder | DOM_ROOT | DOM_NONEMPTY */
    uint32_t *poff = wk->poff;

    for (size_t k = 0; k < m; k++) {
        poff[k + 1] += poff[k];
    }
    wk->npreds = poff[m];
    wk->preds = malloc((wk->npreds + 1) * sizeof(uint32_t));
    if (wk->preds == NULL) {
        return -1;
    }
    dom_hold(wk, (wk->npreds + 1) * sizeof(uint32_t));
    uint32_t *preds = wk->preds;
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
    for (size_t k = m; k > 0; k--) {
        poff[k] = poff[k - 1];
    }
    poff[0] = 0;
    /* the forward edges are no longer needed */
    dom_drop(wk, (g->nedges + 1) * sizeof(uint32_t));
    free(g->edges);
    g->edges = NULL;
    g->nedges = 0;
    return 0;
}

/* Step 3: sizes and tags into preorder, one array at a time, then the map
 * (off[]) is freed; the rare sizes of 64 KiB and more (big[]) and the wide
 * tags are renumbered too.  -1 if out of memory. */
static int
dom_into_preorder(dom_work *wk)
{
    graph_t *g = wk->g;
    size_t n = wk->n, m = wk->m;
    const uint32_t *map = g->off;

    wk->psize = malloc(m * sizeof(uint16_t));
    if (wk->psize == NULL) {
        return -1;
    }
    dom_hold(wk, m * sizeof(uint16_t));
    wk->psize[0] = 0;
    for (size_t u = 0; u < n; u++) {
        uint32_t k = map[u] & DOM_NUM;
        if (k != DOM_NUM) {
            wk->psize[k] = g->sizes[u];
        }
    }
    free(g->sizes);
    g->sizes = NULL;
    dom_drop(wk, (n + 1) * sizeof(uint16_t));
    dom_wide_renumber(g->big, g->nbig, map);
    wk->ptag = malloc(m * sizeof(uint16_t));
    if (wk->ptag == NULL) {
        return -1;
    }
    dom_hold(wk, m * sizeof(uint16_t));
    wk->ptag[0] = DOM_TAG_NONE;
    for (size_t u = 0; u < n; u++) {
        uint32_t k = map[u] & DOM_NUM;
        if (k != DOM_NUM) {
            wk->ptag[k] = wk->tag[u];
        }
    }
    free(wk->tag);
    wk->tag = NULL;
    dom_drop(wk, n * sizeof(uint16_t));
    dom_wide_renumber(wk->wtag, wk->nwtag, map);
    free(g->off);
    g->off = NULL;
    dom_drop(wk, (n + 1) * sizeof(uint32_t));
    return 0;
}

/* Step 4's path compression: from v to the root of its forest tree, each
 * node's label becomes the least on its path and its ancestor the root.
 * -1 if out of memory. */
static int
dom_compress(dom_work *wk, uint32_t v)
{
    uint32_t *anc = wk->anc, *label = wk->label;
    size_t sp = 0;
    uint32_t u = v;

    while (anc[anc[u]] != DOM_UNSET) {
        if (sp == wk->ccap) {
            uint32_t *nc = realloc(wk->cstack, 2 * wk->ccap * sizeof(uint32_t));
            if (nc == NULL) {
                return -1;
            }
            dom_hold(wk, wk->ccap * sizeof(uint32_t));
            wk->cstack = nc;
            wk->ccap *= 2;
        }
        wk->cstack[sp++] = u;
        u = anc[u];
    }
    while (sp > 0) {
        u = wk->cstack[--sp];
        uint32_t a = anc[u];
        if (label[a] < label[u]) {
            label[u] = label[a];
        }
        anc[u] = anc[a];
    }
    return 0;
}

/* Step 4: semidominators, in reverse preorder, label = least semi on the
 * path.  What step 5 needs of w goes where this step has done reading:
 * the DFS parent into poff[w + 1] (w's end and w + 1's start, both read),
 * the semidominator into preds[npreds - m + w] -- the nodes from w up have
 * at least one predecessor each, so that slot is at or after w's first
 * one, in lists already processed.  -1 if out of memory. */
static int
dom_semidominators(dom_work *wk)
{
    size_t m = wk->m, npreds = wk->npreds;
    uint32_t *poff = wk->poff, *preds = wk->preds;

    /* the path-compression stack: as deep as the longest path compressed */
    wk->ccap = DOM_STACK_START;
    wk->cstack = malloc(wk->ccap * sizeof(uint32_t));
    if (wk->cstack == NULL) {
        return -1;
    }
    dom_hold(wk, wk->ccap * sizeof(uint32_t));
    wk->label = malloc(m * sizeof(uint32_t));
    wk->anc = malloc(m * sizeof(uint32_t));
    if (wk->label == NULL || wk->anc == NULL) {
        return -1;
    }
    dom_hold(wk, 2 * m * sizeof(uint32_t));
    uint32_t *label = wk->label, *anc = wk->anc;
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
            if (anc[v] != DOM_UNSET && dom_compress(wk, v) < 0) {
                return -1;
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
    free(wk->anc);
    wk->anc = NULL;
    free(wk->cstack);
    wk->cstack = NULL;
    dom_drop(wk, m * sizeof(uint32_t) + wk->ccap * sizeof(uint32_t));
    return 0;
}

/* Step 5: idom = nearest common ancestor of parent and semi, in preorder,
 * so idom[x] is final for every x < w; it overwrites label[], done with,
 * and frees the predecessor lists. */
static void
dom_idoms(dom_work *wk)
{
    size_t m = wk->m, npreds = wk->npreds;
    const uint32_t *poff = wk->poff, *preds = wk->preds;
    uint32_t *idom = wk->label;

    wk->idom = idom;
    wk->label = NULL;
    idom[0] = 0;
    for (size_t w = 1; w < m; w++) {
        uint32_t x = poff[w + 1];
        uint32_t semi = preds[npreds - m + w];
        while (x > semi) {
            x = idom[x];
        }
        idom[w] = x;
    }
    free(wk->preds);
    wk->preds = NULL;
    free(wk->poff);
    wk->poff = NULL;
    dom_drop(wk, (npreds + 1) * sizeof(uint32_t) + (m + 1) * sizeof(uint32_t));
}

/* Step 6: retained = own + dominated, children after their idom in
 * preorder.  -1 if out of memory. */
static int
dom_retained(dom_work *wk)
{
    const graph_t *g = wk->g;
    size_t m = wk->m;

    wk->retained = malloc(m * sizeof(uint64_t));
    if (wk->retained == NULL) {
        return -1;
    }
    dom_hold(wk, m * sizeof(uint64_t));
    uint64_t *retained = wk->retained;
    retained[0] = 0;
    for (size_t k = 1; k < m; k++) {
        retained[k] = wk->psize[k] != GRAPH_WIDE ? wk->psize[k]
                                                 : graph_wide_get(g->big, g->nbig, (uint32_t)k);
    }
    free(wk->psize);
    wk->psize = NULL;
    for (size_t k = m - 1; k >= 1; k--) {
        retained[wk->idom[k]] = size_add(retained[wk->idom[k]], retained[k]);
    }
    return 0;
}

int
dom_build(dom_tree *d, graph_t *g, uint16_t *tag, graph_wide *wtag, size_t nwtag, size_t wcap)
{
    dom_work wk;

    memset(d, 0, sizeof(*d));
    memset(&wk, 0, sizeof(wk));
    wk.g = g;
    wk.n = g->n;
    wk.tag = tag;
    wk.wtag = wtag;
    wk.nwtag = nwtag;
    wk.wcap = wcap;
    /* bytes held now, the graph's arrays and the tags included */
    wk.held = graph_held_bytes(g) + wk.n * sizeof(uint16_t) + wcap * sizeof(graph_wide);
    wk.peak = wk.held;
    if (wk.n >= DOM_NUM - 1) {
        goto nomem; /* 2^30 objects: a heap of 30 GB and more */
    }
    if (dom_dfs_preorder(&wk) < 0 || dom_count_preds(&wk) < 0 || dom_fill_preds(&wk) < 0
        || dom_into_preorder(&wk) < 0 || dom_semidominators(&wk) < 0) {
        goto nomem;
    }
    dom_idoms(&wk);
    if (dom_retained(&wk) < 0) {
        goto nomem;
    }
    d->m = wk.m;
    d->idom = wk.idom;
    d->tag = wk.ptag;
    d->wtag = wk.wtag;
    d->nwtag = wk.nwtag;
    d->retained = wk.retained;
    d->held =
        wk.m * (sizeof(uint32_t) + sizeof(uint16_t) + sizeof(uint64_t)) + wcap * sizeof(graph_wide);
    d->scratch = wk.peak;
    return 0;

nomem:
    dom_work_free(&wk);
    dom_free(d);
    return -1;
}
