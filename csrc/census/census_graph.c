/* census_graph.c: the whole heap as a compact graph (graph_; see
 * census_graph.h). */
#include "census/census_graph.h"
#include "cpython/cpy_layout.h"
#include "heap/walk.h"

#include <stdlib.h>
#include <string.h>

/* ---- which dict keys dict_traverse skips ------------------------------- */

#if PY_VERSION_HEX < 0x030B0000
/* 3.9/3.10: dict_traverse visits keys only when the keys use the generic
 * lookdict(); its address is private, so it is read once from a dict that
 * has an int key (which always switches a dict to lookdict).  Process-wide:
 * the function is the same for every module instance; written once under
 * the GIL. */
typedef struct {
    Py_ssize_t dk_refcnt;
    Py_ssize_t dk_size;
    void *dk_lookup;
} graph_keys39;
static void *graph_lookdict;

static int
graph_init_lookdict(void)
{
    if (graph_lookdict != NULL) {
        return 0;
    }
    PyObject *d = PyDict_New();
    PyObject *k = PyLong_FromLong(12345);
    int rc = -1;
    if (d != NULL && k != NULL && PyDict_SetItem(d, k, Py_None) == 0) {
        graph_lookdict = ((graph_keys39 *)((PyDictObject *)d)->ma_keys)->dk_lookup;
        rc = 0;
    }
    Py_XDECREF(d);
    Py_XDECREF(k);
    return rc;
}
#endif

/* 1 if dict_traverse does not report this dict's keys (all-str keys), so
 * the graph must add them itself. */
static int
graph_dict_skips_keys(PyObject *d)
{
#if PY_VERSION_HEX < 0x030B0000
    return ((graph_keys39 *)((PyDictObject *)d)->ma_keys)->dk_lookup != graph_lookdict;
#else
    return layout_dict_keys(d)->dk_kind != LAYOUT_DICT_KEYS_GENERAL;
#endif
}

/* ---- building ------------------------------------------------------------ */

/* What the walk found, in visiting order: every object, and the own size
 * the walk computed for it (its __sizeof__ runs once, there), kept like
 * graph_t.sizes: 2 bytes, or GRAPH_WIDE and the size in big[] (by visiting
 * index). */
typedef struct {
    PyObject **objs;
    uint16_t *sizes;
    size_t n, cap;
    graph_wide *big;
    size_t nbig, bigcap;
} graph_objvec;

static int
graph_collect(walk_t *w, PyObject *obj, size_t size, size_t tag, size_t *child_tag, void *arg)
{
    (void)w;
    (void)tag;
    (void)child_tag;
    graph_objvec *v = arg;
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 4096;
        PyObject **no = realloc(v->objs, ncap * sizeof(PyObject *));
        if (no == NULL) {
            goto nomem;
        }
        v->objs = no;
        uint16_t *ns = realloc(v->sizes, ncap * sizeof(uint16_t));
        if (ns == NULL) {
            goto nomem;
        }
        v->sizes = ns;
        v->cap = ncap;
    }
    if (v->n >= UINT32_MAX) {
        goto nomem; /* nodes are 4-byte indices */
    }
    if (size >= GRAPH_WIDE) {
        if (graph_wide_add(&v->big, &v->nbig, &v->bigcap, (uint32_t)v->n, size) < 0) {
            goto nomem;
        }
        v->sizes[v->n] = GRAPH_WIDE;
    }
    else {
        v->sizes[v->n] = (uint16_t)size;
    }
    Py_INCREF(obj);
    v->objs[v->n++] = obj;
    return 0;

nomem:
    PyErr_NoMemory();
    return -1;
}

/* References seen per node, 2 bytes each: a count that reaches
 * UINT16_MAX goes on in a small hash table (types, None, interned strings:
 * few nodes have 65535 referrers). */
typedef struct {
    uint16_t *low;     /* [n] the count, or UINT16_MAX: + more[] */
    uint32_t *keys;    /* node + 1 (0: free), open addressing */
    size_t *more;      /* parallel to keys: references past UINT16_MAX */
    size_t mask, used; /* mask + 1 slots, 0 before the first overflow */
} graph_incoming;

static void
graph_incoming_free(graph_incoming *in)
{
    free(in->low);
    free(in->keys);
    free(in->more);
    memset(in, 0, sizeof(*in));
}

static size_t
graph_incoming_bytes(const graph_incoming *in, size_t n)
{
    size_t slots = in->keys != NULL ? in->mask + 1 : 0;
    return n * sizeof(uint16_t) + slots * (sizeof(uint32_t) + sizeof(size_t));
}

/* Slot of node j in the overflow table (its key is 0 if j has none). */
static size_t
graph_incoming_slot(const graph_incoming *in, uint32_t j)
{
    size_t i = (j * (size_t)2654435761u) & in->mask;
    while (in->keys[i] != 0 && in->keys[i] != j + 1) {
        i = (i + 1) & in->mask;
    }
    return i;
}

/* One more reference to j, whose 2-byte count is full; -1 if out of
 * memory. */
static int
graph_incoming_more(graph_incoming *in, uint32_t j)
{
    if (in->keys == NULL || (in->used + 1) * 2 > in->mask + 1) {
        size_t nmask = in->keys != NULL ? in->mask * 2 + 1 : 63;
        uint32_t *nk = calloc(nmask + 1, sizeof(uint32_t));
        size_t *nm = calloc(nmask + 1, sizeof(size_t));
        if (nk == NULL || nm == NULL) {
            free(nk);
            free(nm);
            return -1;
        }
        graph_incoming old = *in;
        in->keys = nk;
        in->more = nm;
        in->mask = nmask;
        if (old.keys != NULL) {
            for (size_t i = 0; i <= old.mask; i++) {
                if (old.keys[i] != 0) {
                    size_t k = graph_incoming_slot(in, old.keys[i] - 1);
                    in->keys[k] = old.keys[i];
                    in->more[k] = old.more[i];
                }
            }
        }
        free(old.keys);
        free(old.more);
    }
    size_t k = graph_incoming_slot(in, j);
    if (in->keys[k] == 0) {
        in->keys[k] = j + 1;
        in->used++;
    }
    in->more[k]++;
    return 0;
}

static size_t
graph_incoming_get(const graph_incoming *in, uint32_t j)
{
    size_t c = in->low[j];
    if (c == UINT16_MAX && in->keys != NULL) {
        c += in->more[graph_incoming_slot(in, j)];
    }
    return c;
}

typedef struct {
    graph_t *g;
    graph_incoming *incoming; /* references seen, per node */
    size_t cap;               /* of g->edges */
    int oom;
} graph_edge_ctx;

/* Edges the edge array has room for beyond the walk's count of references
 * before it first doubles. */
#define GRAPH_EDGE_SLACK 1024

static inline int
graph_add_edge(graph_edge_ctx *c, PyObject *child)
{
    graph_t *g = c->g;
    uint32_t j = visit_rank(&g->index, child);
    if (j == GRAPH_NONE) {
        return 0; /* not a node: made after the walk, or excluded */
    }
    if (g->nedges == c->cap) {
        size_t ncap = c->cap * 2;
        if (ncap >= UINT32_MAX) {
            c->oom = 1;
            return -1;
        }
        uint32_t *ne = realloc(g->edges, ncap * sizeof(uint32_t));
        if (ne == NULL) {
            c->oom = 1;
            return -1;
        }
        g->edges = ne;
        c->cap = ncap;
    }
    g->edges[g->nedges++] = j;
    if (c->incoming->low[j] != UINT16_MAX) {
        c->incoming->low[j]++;
    }
    else if (graph_incoming_more(c->incoming, j) < 0) {
        c->oom = 1;
        return -1;
    }
    return 0;
}

static int
graph_visitproc(PyObject *obj, void *arg)
{
    if (obj == NULL) {
        return 0; /* a careless extension tp_traverse calling visit(NULL) */
    }
    return graph_add_edge((graph_edge_ctx *)arg, obj);
}

PyObject *
graph_tracked_objects(void)
{
    PyObject *gc = PyImport_ImportModule("gc");
    if (gc == NULL) {
        return NULL;
    }
    PyObject *lst = PyObject_CallMethod(gc, "get_objects", NULL);
    Py_DECREF(gc);
    if (lst != NULL && !PyList_CheckExact(lst)) {
        Py_DECREF(lst);
        PyErr_SetString(PyExc_RuntimeError, "gc.get_objects() did not return a list");
        return NULL;
    }
    return lst;
}

void
graph_release(graph_t *g)
{
    PyObject **objs = g->objs;
    size_t n = g->n;
    /* cleared first: a finalizer run by the loop below must not find a
     * half-released graph (nothing reaches it, but stay safe) */
    g->objs = NULL;
    visit_free(&g->index);
    if (objs != NULL) {
        for (size_t i = 0; i < n; i++) {
            Py_DECREF(objs[i]);
        }
    }
    free(objs);
}

void
graph_free(graph_t *g)
{
    graph_release(g);
    free(g->sizes);
    free(g->big);
    free(g->off);
    free(g->edges);
    free(g->flags);
    memset(g, 0, sizeof(*g));
}

size_t
graph_held_bytes(const graph_t *g)
{
    size_t n = g->index.bytes + g->bigcap * sizeof(graph_wide);
    if (g->objs != NULL) {
        n += g->n * sizeof(PyObject *);
    }
    if (g->sizes != NULL) {
        n += (g->n + 1) * sizeof(uint16_t);
    }
    if (g->flags != NULL) {
        n += g->n + 1;
    }
    if (g->off != NULL) {
        n += (g->n + 1) * sizeof(uint32_t);
    }
    if (g->edges != NULL) {
        n += (g->nedges + 1) * sizeof(uint32_t);
    }
    return n;
}

uint64_t
graph_wide_get(const graph_wide *t, size_t nt, uint32_t i)
{
    size_t lo = 0, hi = nt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t[mid].node < i) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo < nt && t[lo].node == i ? t[lo].value : UINT64_MAX;
}

int
graph_wide_add(graph_wide **t, size_t *nt, size_t *cap, uint32_t i, uint64_t value)
{
    if (*nt == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        graph_wide *nw = realloc(*t, ncap * sizeof(graph_wide));
        if (nw == NULL) {
            return -1;
        }
        *t = nw;
        *cap = ncap;
    }
    (*t)[*nt].node = i;
    (*t)[*nt].value = value;
    (*nt)++;
    return 0;
}

/* qsort: side-table entries by node */
static int
graph_wide_cmp(const void *a, const void *b)
{
    uint32_t x = ((const graph_wide *)a)->node, y = ((const graph_wide *)b)->node;
    return x < y ? -1 : x > y;
}

size_t
graph_size(const graph_t *g, uint32_t i)
{
    if (g->sizes[i] != GRAPH_WIDE) {
        return g->sizes[i];
    }
    return (size_t)graph_wide_get(g->big, g->nbig, i);
}

/* graph_build's state. */
typedef struct {
    /* inputs */
    graph_t *g;             /* the output, filled in step by step */
    PyObject *const *extra; /* nodes even if nothing tracked reaches them */
    Py_ssize_t nextra;
    PyObject *const *exclude; /* neither nodes nor entered */
    Py_ssize_t nexclude;

    /* temporary state */
    graph_objvec v;          /* steps 1-3: what the walk found (strong references) */
    graph_incoming incoming; /* steps 4-5: references seen, per node */
    size_t ecap;             /* capacity of g->edges: first the walk's count
                              * of references, then as the edge pass grew it */
    size_t scatter_peak;     /* scratch bytes while step 3 holds both orders */
} graph_work;

static void
graph_work_free(graph_work *wk)
{
    for (size_t i = 0; i < wk->v.n; i++) {
        Py_DECREF(wk->v.objs[i]);
    }
    free(wk->v.objs);
    free(wk->v.sizes);
    free(wk->v.big);
    memset(&wk->v, 0, sizeof(wk->v));
    graph_incoming_free(&wk->incoming);
}

/* Step 1: every object once, held strongly from now on, with its own size
 * (its __sizeof__, which may run Python code, runs here and only here).
 * 0, or -1 with an exception set. */
static int
graph_collect_nodes(graph_work *wk)
{
    walk_t w;
    int walk_ready = 0, rc = -1;
    PyObject *tracked = graph_tracked_objects();

    if (tracked == NULL) {
        goto done;
    }
    if (walk_init(&w, 1) < 0) {
        goto done;
    }
    walk_ready = 1;
    w.nofold = 1;
    /* our own list is not part of the heap we describe */
    if (walk_exclude(&w, tracked) < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < wk->nexclude; i++) {
        if (walk_exclude(&w, wk->exclude[i]) < 0) {
            goto done;
        }
    }
    if (wk->nextra > 0 && walk_run(&w, wk->extra, wk->nextra, NULL, graph_collect, &wk->v) < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tracked); i++) {
        PyObject *op = PyList_GET_ITEM(tracked, i);
        if (walk_run(&w, &op, 1, NULL, graph_collect, &wk->v) < 0) {
            goto done;
        }
    }
    wk->g->warnings = w.warnings;
    /* The walk followed the same references the edge pass will (and a few
     * more: the roots' instance dicts twice, every key of every dict), so
     * its count is the edge array's size; if Python code run by a
     * __sizeof__ adds references in between, the array doubles. */
    wk->ecap = w.refs + GRAPH_EDGE_SLACK;
    rc = 0;
done:
    if (walk_ready) {
        walk_free(&w);
    }
    Py_XDECREF(tracked);
    return rc;
}

/* Step 2: number the nodes, by a rank over an address bitmap of exactly
 * them.  0, or -1 with MemoryError set. */
static int
graph_number_nodes(graph_work *wk)
{
    graph_t *g = wk->g;

    if (visit_init(&g->index) < 0) {
        goto nomem;
    }
    for (size_t i = 0; i < wk->v.n; i++) {
        if (visit_add(&g->index, wk->v.objs[i]) < 0) {
            goto nomem;
        }
    }
    size_t n = visit_rank_build(&g->index);
    if (n == (size_t)-1 || n != wk->v.n || n >= UINT32_MAX) {
        goto nomem;
    }
    return 0;

nomem:
    PyErr_NoMemory();
    return -1;
}

/* Step 3: the same references and sizes, scattered into rank order, become
 * the graph's objs[] and sizes[].  The bitmap only knows 16-byte granules,
 * and static objects may be 8-aligned, so the pointers must come from the
 * objects, not from the bits.  A scatter into a second array costs 8 bytes
 * per object for a moment, but its cache misses overlap; permuting in
 * place would follow cycles, one dependent miss at a time.  0, or -1 with
 * MemoryError set. */
static int
graph_scatter(graph_work *wk)
{
    graph_t *g = wk->g;
    graph_objvec *v = &wk->v;
    size_t n = v->n;

    /* the walk's arrays grew by doubling: give back the unused tail
     * before the scatter doubles them (failing to shrink is harmless) */
    PyObject **fo = realloc(v->objs, (n + 1) * sizeof(PyObject *));
    if (fo != NULL) {
        v->objs = fo;
    }
    uint16_t *fs = realloc(v->sizes, (n + 1) * sizeof(uint16_t));
    if (fs != NULL) {
        v->sizes = fs;
    }
    if (fo != NULL && fs != NULL) {
        v->cap = n + 1;
    }
    PyObject **ranked = malloc((n + 1) * sizeof(PyObject *));
    g->sizes = malloc((n + 1) * sizeof(uint16_t));
    if (ranked == NULL || g->sizes == NULL) {
        free(ranked);
        PyErr_NoMemory();
        return -1;
    }
    for (size_t k = 0; k < n; k++) {
        uint32_t i = visit_rank(&g->index, v->objs[k]);
        ranked[i] = v->objs[k];
        g->sizes[i] = v->sizes[k];
    }
    /* the few sizes of 64 KiB and more: renumbered, then sorted by node as
     * graph_wide_get needs */
    for (size_t j = 0; j < v->nbig; j++) {
        v->big[j].node = visit_rank(&g->index, v->objs[v->big[j].node]);
    }
    if (v->nbig > 1) {
        qsort(v->big, v->nbig, sizeof(graph_wide), graph_wide_cmp);
    }
    g->big = v->big;
    g->nbig = v->nbig;
    g->bigcap = v->bigcap;
    v->big = NULL;
    v->nbig = v->bigcap = 0;
    wk->scatter_peak = g->index.bytes + g->bigcap * sizeof(graph_wide)
                       + v->cap * (sizeof(PyObject *) + sizeof(uint16_t))
                       + n * (sizeof(PyObject *) + sizeof(uint16_t));
    /* the graph holds the references now */
    free(v->objs);
    free(v->sizes);
    v->objs = NULL;
    v->sizes = NULL;
    v->n = v->cap = 0;
    g->objs = ranked;
    g->n = n;
    return 0;
}

/* Step 4: the edges (CSR) and the references seen per node.  No Python
 * code runs: only tp_traverse and PyDict_Next.  0, or -1 with MemoryError
 * set. */
static int
graph_take_edges(graph_work *wk)
{
    graph_t *g = wk->g;
    size_t n = g->n;

    g->off = malloc((n + 1) * sizeof(uint32_t));
    g->flags = calloc(n + 1, 1);
    wk->incoming.low = calloc(n + 1, sizeof(uint16_t));
    if (wk->ecap >= UINT32_MAX) {
        goto nomem;
    }
    graph_edge_ctx c = {g, &wk->incoming, wk->ecap, 0};
    g->edges = malloc(c.cap * sizeof(uint32_t));
    if (g->off == NULL || g->flags == NULL || wk->incoming.low == NULL || g->edges == NULL) {
        goto nomem;
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *op = g->objs[i];
        PyTypeObject *tp = Py_TYPE(op);
        g->off[i] = (uint32_t)g->nedges;
        if (PyType_IS_GC(tp) && tp->tp_traverse != NULL
            && (tp->tp_is_gc == NULL || tp->tp_is_gc(op))) {
            (void)tp->tp_traverse(op, graph_visitproc, &c);
        }
        if (PyDict_Check(op) && graph_dict_skips_keys(op)) {
            Py_ssize_t pos = 0;
            PyObject *k, *val;
            while (PyDict_Next(op, &pos, &k, &val)) {
                if (graph_add_edge(&c, k) < 0) {
                    break;
                }
            }
        }
        if (c.oom) {
            goto nomem;
        }
    }
    g->off[n] = (uint32_t)g->nedges;
    wk->ecap = c.cap;
    return 0;

nomem:
    PyErr_NoMemory();
    return -1;
}

/* Step 5: the flags.  Roots have more references than the graph can see
 * (our own reference from objs[] taken off); a heap instance's __dict__
 * is folded into its owner. */
static void
graph_flag_nodes(graph_work *wk)
{
    graph_t *g = wk->g;

    for (size_t i = 0; i < g->n; i++) {
        PyObject *op = g->objs[i];
        if ((Py_ssize_t)Py_REFCNT(op) - 1
            > (Py_ssize_t)graph_incoming_get(&wk->incoming, (uint32_t)i)) {
            g->flags[i] |= GRAPH_F_ROOT;
        }
        PyTypeObject *tp = Py_TYPE(op);
        if (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) {
            PyObject *d = layout_instance_dict(op, tp);
            if (d != NULL) {
                uint32_t j = visit_rank(&g->index, d);
                if (j != GRAPH_NONE && PyDict_Check(d)) {
                    g->flags[j] |= GRAPH_F_FOLDED;
                }
            }
        }
    }
}

/* Step 6: the peak scratch, then the incoming counts and the edge array's
 * spare tail go. */
static void
graph_finish(graph_work *wk)
{
    graph_t *g = wk->g;
    size_t n = g->n;

    /* peak while building: objs, sizes, off, flags, incoming, edges */
    g->scratch = g->index.bytes + g->bigcap * sizeof(graph_wide)
                 + n * (sizeof(PyObject *) + sizeof(uint16_t) + sizeof(uint32_t) + 1)
                 + graph_incoming_bytes(&wk->incoming, n) + wk->ecap * sizeof(uint32_t);
    if (wk->scatter_peak > g->scratch) {
        g->scratch = wk->scatter_peak;
    }
    graph_incoming_free(&wk->incoming);
    /* the edge array grew by doubling: give back the unused tail */
    uint32_t *fit = realloc(g->edges, (g->nedges + 1) * sizeof(uint32_t));
    if (fit != NULL) {
        g->edges = fit;
    }
}

int
graph_build(graph_t *g, PyObject *const *extra, Py_ssize_t nextra, PyObject *const *exclude,
            Py_ssize_t nexclude)
{
    graph_work wk;

    memset(g, 0, sizeof(*g));
    memset(&wk, 0, sizeof(wk));
    wk.g = g;
    wk.extra = extra;
    wk.nextra = nextra;
    wk.exclude = exclude;
    wk.nexclude = nexclude;
#if PY_VERSION_HEX < 0x030B0000
    if (graph_init_lookdict() < 0) {
        return -1;
    }
#endif
    if (graph_collect_nodes(&wk) < 0 || graph_number_nodes(&wk) < 0 || graph_scatter(&wk) < 0
        || graph_take_edges(&wk) < 0) {
        goto error;
    }
    graph_flag_nodes(&wk);
    graph_finish(&wk);
    return 0;

error:
    graph_work_free(&wk);
    graph_free(g);
    return -1;
}

/* ---- retained size of one node --------------------------------------- */

/* Breadth first from the `tail` nodes queued (already marked), mark every
 * unmarked node they reach; return how many, and add their sizes to
 * *bytes if given.  `queue` has room for every node. */
static size_t
graph_mark_reached(graph_t *g, uint32_t *queue, size_t tail, size_t *bytes)
{
    size_t head = 0, start = tail;
    while (head < tail) {
        uint32_t u = queue[head++];
        for (uint32_t e = g->off[u]; e < g->off[u + 1]; e++) {
            uint32_t x = g->edges[e];
            if (!(g->flags[x] & GRAPH_F_MARK)) {
                g->flags[x] |= GRAPH_F_MARK;
                queue[tail++] = x;
                if (bytes != NULL) {
                    *bytes += graph_size(g, x);
                }
            }
        }
    }
    return tail - start;
}

int
graph_retained(graph_t *g, uint32_t t, size_t *bytes, size_t *count)
{
    return graph_retained_set(g, &t, 1, bytes, count);
}

int
graph_retained_set(graph_t *g, const uint32_t *ts, size_t k, size_t *bytes, size_t *count)
{
    size_t n = g->n;
    uint32_t *queue = malloc((n + 1) * sizeof(uint32_t));
    size_t tail = 0;

    if (queue == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        g->flags[i] &= (uint8_t)~GRAPH_F_MARK;
    }
    /* everything the roots reach without passing through the set (its
     * members are marked first, so that one held from outside the graph
     * is not a root either: the caller may hold them itself) */
    for (size_t i = 0; i < k; i++) {
        g->flags[ts[i]] |= GRAPH_F_MARK;
    }
    for (size_t i = 0; i < n; i++) {
        if ((g->flags[i] & (GRAPH_F_ROOT | GRAPH_F_MARK)) == GRAPH_F_ROOT) {
            g->flags[i] |= GRAPH_F_MARK;
            queue[tail++] = (uint32_t)i;
        }
    }
    (void)graph_mark_reached(g, queue, tail, NULL);
    /* what the set reaches beyond that is what it alone keeps alive */
    size_t total = 0;
    for (size_t i = 0; i < k; i++) {
        queue[i] = ts[i];
        total += graph_size(g, ts[i]);
    }
    size_t cnt = k + graph_mark_reached(g, queue, k, &total);
    free(queue);
    *bytes = total;
    *count = cnt;
    return 0;
}
