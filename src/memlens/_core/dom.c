/* dom_: dominator tree of a heap graph (see dom.h). */
#include "dom.h"

#include <stdlib.h>
#include <string.h>

#define DOM_UNSET UINT32_MAX

void
dom_free(dom_tree *d)
{
    free(d->vert);
    free(d->idom);
    free(d->retained);
    memset(d, 0, sizeof(*d));
}

/* Children of node u of the graph, the super-root's being the roots. */
typedef struct {
    uint32_t node;
    uint32_t pos;   /* next edge (or, for the super-root, next node) */
} dom_frame;

int
dom_build(dom_tree *d, graph_t *g, int consume)
{
    size_t n = g->n;
    uint32_t sr = (uint32_t)n;
    uint32_t *pre = NULL, *parent = NULL, *semi = NULL, *label = NULL, *anc = NULL;
    uint32_t *poff = NULL, *preds = NULL, *cstack = NULL;
    dom_frame *stack = NULL;
    size_t m = 0, held = 0, peak = 0;

    /* bytes held now: ours plus the graph's */
#define DOM_HOLD(bytes)                                                        \
    do {                                                                       \
        held += (bytes);                                                       \
        if (held + graph_held_bytes(g) > peak) {                               \
            peak = held + graph_held_bytes(g);                                 \
        }                                                                      \
    } while (0)

    memset(d, 0, sizeof(*d));
    size_t scap = 1024;
    pre = malloc((n + 1) * sizeof(uint32_t));
    d->vert = malloc((n + 1) * sizeof(uint32_t));
    parent = malloc((n + 1) * sizeof(uint32_t));
    stack = malloc(scap * sizeof(dom_frame));
    if (pre == NULL || d->vert == NULL || parent == NULL || stack == NULL) {
        goto nomem;
    }
    DOM_HOLD((n + 1) * 3 * sizeof(uint32_t) + scap * sizeof(dom_frame));
    memset(pre, 0xff, (n + 1) * sizeof(uint32_t));

    /* 1. DFS preorder from the super-root; the stack grows as needed (a
     * linked list of a million nodes is a million deep) */
    size_t depth = 0;
    pre[sr] = 0;
    d->vert[0] = sr;
    parent[0] = 0;
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
        d->vert[m] = next;
        parent[m] = pre[f->node];
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
    held -= scap * sizeof(dom_frame);

    /* 2. predecessors, by preorder number, of the reached nodes (CSR: count,
     * prefix sums, fill with poff[] as the cursor, shift back) */
    poff = calloc(m + 1, sizeof(uint32_t));
    if (poff == NULL) {
        goto nomem;
    }
    DOM_HOLD((m + 1) * sizeof(uint32_t));
    for (size_t k = 1; k < m; k++) {
        uint32_t u = d->vert[k];
        for (uint32_t e = g->off[u]; e < g->off[u + 1]; e++) {
            uint32_t pv = pre[g->edges[e]];
            if (pv != DOM_UNSET) {
                poff[pv + 1]++;
            }
        }
        if (g->flags[u] & GRAPH_F_ROOT) {
            poff[k + 1]++;  /* from the super-root */
        }
    }
    for (size_t k = 0; k < m; k++) {
        poff[k + 1] += poff[k];
    }
    preds = malloc((poff[m] + 1) * sizeof(uint32_t));
    if (preds == NULL) {
        goto nomem;
    }
    DOM_HOLD((poff[m] + 1) * sizeof(uint32_t));
    for (size_t k = 1; k < m; k++) {
        uint32_t u = d->vert[k];
        for (uint32_t e = g->off[u]; e < g->off[u + 1]; e++) {
            uint32_t pv = pre[g->edges[e]];
            if (pv != DOM_UNSET) {
                preds[poff[pv]++] = (uint32_t)k;
            }
        }
        if (g->flags[u] & GRAPH_F_ROOT) {
            preds[poff[k]++] = 0;
        }
    }
    for (size_t k = m; k > 0; k--) {
        poff[k] = poff[k - 1];
    }
    poff[0] = 0;
    free(pre);
    pre = NULL;
    held -= (n + 1) * sizeof(uint32_t);
    if (consume) {
        free(g->edges);
        g->edges = NULL;
        free(g->off);
        g->off = NULL;
        g->nedges = 0;
    }
    /* the path-compression stack: as deep as the longest path compressed */
    size_t ccap = 1024;
    cstack = malloc(ccap * sizeof(uint32_t));
    if (cstack == NULL) {
        goto nomem;
    }
    DOM_HOLD(ccap * sizeof(uint32_t));

    /* 3. semidominators, reverse preorder, label = min semi on the path */
    semi = malloc(m * sizeof(uint32_t));
    label = malloc(m * sizeof(uint32_t));
    anc = malloc(m * sizeof(uint32_t));
    if (semi == NULL || label == NULL || anc == NULL) {
        goto nomem;
    }
    DOM_HOLD(3 * m * sizeof(uint32_t));
    for (size_t k = 0; k < m; k++) {
        semi[k] = (uint32_t)k;
        label[k] = (uint32_t)k;
        anc[k] = DOM_UNSET;
    }
    for (size_t w = m - 1; w >= 1; w--) {
        uint32_t s = semi[w];
        for (uint32_t e = poff[w]; e < poff[w + 1]; e++) {
            uint32_t v = preds[e];
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
        semi[w] = s;
        label[w] = s;
        anc[w] = parent[w];
    }
    free(preds);
    preds = NULL;
    free(poff);
    poff = NULL;
    free(anc);
    anc = NULL;
    free(cstack);
    cstack = NULL;

    /* 4. idom = nearest common ancestor of parent and semi (in label) */
    uint32_t *idom = label;
    idom[0] = 0;
    for (size_t w = 1; w < m; w++) {
        uint32_t x = parent[w];
        while (x > semi[w]) {
            x = idom[x];
        }
        idom[w] = x;
    }
    d->idom = idom;
    label = NULL;
    free(semi);
    semi = NULL;
    free(parent);
    parent = NULL;

    /* 5. retained = own + dominated, children after their idom in preorder */
    d->retained = malloc(m * sizeof(uint64_t));
    if (d->retained == NULL) {
        goto nomem;
    }
    held = (n + 1 + m) * sizeof(uint32_t) + m * sizeof(uint64_t);
    if (held + graph_held_bytes(g) > peak) {
        peak = held + graph_held_bytes(g);
    }
    d->retained[0] = 0;
    for (size_t k = 1; k < m; k++) {
        d->retained[k] = graph_size(g, d->vert[k]);
    }
    for (size_t k = m - 1; k >= 1; k--) {
        d->retained[idom[k]] += d->retained[k];
    }
    d->scratch = peak;
    return 0;
#undef DOM_HOLD

nomem:
    free(cstack);
    free(pre);
    free(parent);
    free(stack);
    free(poff);
    free(preds);
    free(semi);
    free(label);
    free(anc);
    dom_free(d);
    return -1;
}
