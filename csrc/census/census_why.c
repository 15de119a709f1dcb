/* census_why.c: shortest reference chains to an object (why_; see
 * census_why.h). */
#include "census/census_why.h"
#include "heap/walk_edges.h"
#include "census/census_frames.h"
#include "census/census_graph.h"
#include "cpython/cpy_layout.h"

#include <stdlib.h>
#include <string.h>

/* A root with a name: a module's globals or a frame's local variable. */
typedef struct {
    uint32_t node;
    PyObject *label;    /* borrowed module name, or NULL for a frame local */
    PyCodeObject *code; /* strong reference, for a frame local */
    Py_ssize_t slot;    /* fast-local index */
} why_named_root;

typedef struct {
    graph_t *g;
    why_named_root *named;
    size_t n, cap;
    PyObject *own_globals;
} why_named;

static int
why_named_add(why_named *nm, uint32_t node, PyObject *label, PyCodeObject *code, Py_ssize_t slot)
{
    if (nm->n == nm->cap) {
        size_t ncap = nm->cap ? nm->cap * 2 : 256;
        why_named_root *nn = realloc(nm->named, ncap * sizeof(why_named_root));
        if (nn == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        nm->named = nn;
        nm->cap = ncap;
    }
    Py_XINCREF(code);
    nm->named[nm->n].node = node;
    nm->named[nm->n].label = label;
    nm->named[nm->n].code = code;
    nm->named[nm->n].slot = slot;
    nm->n++;
    return 0;
}

/* frames_fn: every local variable that is a node becomes a named
 * root (a cell's contents for a variable captured by a closure). */
static int
why_named_frame(void *arg, layout_frame *f, PyCodeObject *co)
{
    why_named *nm = arg;
    if (layout_frame_globals(f) == nm->own_globals) {
        return 0;
    }
    PyObject **locals = layout_frame_locals(f);
    Py_ssize_t nl = layout_code_nlocalsplus(co);
    for (Py_ssize_t s = 0; s < nl; s++) {
        PyObject *v = locals[s];
        if (v != NULL && PyCell_Check(v) && PyCell_GET(v) != NULL) {
            v = PyCell_GET(v);
        }
        uint32_t j = v == NULL ? GRAPH_NONE : graph_node(nm->g, v);
        if (j != GRAPH_NONE && why_named_add(nm, j, NULL, co, s) < 0) {
            return -1;
        }
    }
    return 0;
}

static PyObject *
why_root_label(graph_t *g, const why_named_root *nr, uint32_t node)
{
    if (nr == NULL) {
        PyObject *op = g->objs[node];
        return PyUnicode_FromFormat("<%s object at %p>", Py_TYPE(op)->tp_name, (void *)op);
    }
    if (nr->label != NULL) {
        return PyUnicode_FromFormat("%U", nr->label);
    }
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *fname = nr->code->co_qualname;
#else
    PyObject *fname = nr->code->co_name;
#endif
    return PyUnicode_FromFormat("<frame %U() local '%U'>", fname,
                                layout_code_localname(nr->code, nr->slot));
}

/* Render the chain path[0..len) (path[0] a root) as an expression. */
static PyObject *
why_render_path(graph_t *g, const uint32_t *path, size_t len, const why_named_root *nr)
{
    PyObject *parts = PyList_New(0), *lab = NULL, *res = NULL;
    if (parts == NULL) {
        return NULL;
    }
    lab = why_root_label(g, nr, path[0]);
    if (lab == NULL || PyList_Append(parts, lab) < 0) {
        goto done;
    }
    Py_CLEAR(lab);
    for (size_t i = 1; i < len; i++) {
        PyObject *parent = g->objs[path[i - 1]];
        PyObject *child = g->objs[path[i]];
        PyTypeObject *ptp = Py_TYPE(parent);
        PyObject *ns = NULL;
        if ((ptp->tp_flags & Py_TPFLAGS_HEAPTYPE) && !PyType_Check(parent)
            && layout_instance_dict(parent, ptp) == child) {
            ns = child; /* instance -> its __dict__ -> value: ".attr" */
        }
        else if (PyModule_Check(parent) && PyModule_GetDict(parent) == child) {
            ns = child; /* module -> its dict -> value: ".name" */
        }
        if (i == 1 && nr != NULL && nr->label != NULL) {
            /* a module's globals: "mod.name" */
            lab = edge_dict_label(parent, child, 1);
        }
        else if (ns != NULL && i + 1 < len) {
            /* two hops in one label, when the next child is in the
             * namespace; otherwise (a dict subclass's own attribute) this
             * hop is labelled alone below and the next one follows */
            lab = edge_dict_label(ns, g->objs[path[i + 1]], 1);
            if (lab != NULL) {
                i++;
            }
        }
        else {
            lab = edge_label(parent, child);
        }
        if (lab == NULL && !PyErr_Occurred()) {
            lab = edge_label(parent, child);
        }
        if (lab == NULL || PyList_Append(parts, lab) < 0) {
            goto done;
        }
        Py_CLEAR(lab);
    }
    {
        PyObject *empty = PyUnicode_FromString("");
        if (empty == NULL) {
            goto done;
        }
        res = PyUnicode_Join(empty, parts);
        Py_DECREF(empty);
    }
done:
    Py_XDECREF(lab);
    Py_DECREF(parts);
    return res;
}

/* why_paths's state. */
typedef struct {
    /* inputs */
    PyObject *obj;         /* borrowed: the caller's argument */
    Py_ssize_t max_paths;  /* chains to render at most */
    PyObject *modules;     /* borrowed: [(name, globals dict)] */
    PyObject *own_globals; /* borrowed: memlens's own globals */

    /* temporary state */
    graph_t g; /* valid once graph_ready */
    int graph_ready;
    uint32_t t;         /* obj's node */
    why_named nm;       /* named roots: module globals, frame locals */
    uint32_t *parent;   /* [n + 1] BFS tree; GRAPH_NONE: unreached, a root is its own */
    uint32_t *dist;     /* [n + 1] hops from the nearest root */
    uint32_t *queue;    /* [n + 1] BFS queue */
    uint32_t *named_of; /* [n + 1] index in nm.named of a named root, or GRAPH_NONE */
    uint32_t *cands;    /* obj's referrers that a root reaches, one each */
    size_t ncand;
    uint32_t *path; /* [n + 2] the chain being rendered */

    /* outputs */
    size_t nref, nreached; /* obj's referrers, and those a root reaches */
    PyObject *paths;       /* [str] */
} why_work;

/* Referrer candidates the list starts with; it doubles as needed. */
#define WHY_CANDS_START 16

static void
why_work_free(why_work *wk)
{
    Py_CLEAR(wk->paths);
    for (size_t i = 0; i < wk->nm.n; i++) {
        Py_XDECREF(wk->nm.named[i].code);
    }
    free(wk->nm.named);
    free(wk->parent);
    free(wk->dist);
    free(wk->queue);
    free(wk->named_of);
    free(wk->path);
    free(wk->cands);
    if (wk->graph_ready) {
        graph_free(&wk->g);
    }
    memset(wk, 0, sizeof(*wk));
}

/* Step 1: the graph, and obj's node in it.  Nodes: everything, obj and
 * the frames' locals included.  Left out: our list of modules and its
 * (name, globals) pairs, and the frame objects of memlens's own calls (on
 * 3.9/3.10 they report their locals, obj among them).  0, or -1 with an
 * exception set. */
static int
why_build_graph(why_work *wk)
{
    frames_locals cl;
    if (frames_locals_collect(&cl, wk->own_globals, 1) < 0) {
        return -1;
    }
    Py_DECREF(cl.vals[0]);
    Py_INCREF(wk->obj);
    cl.vals[0] = wk->obj;
    Py_ssize_t nmod = PyList_GET_SIZE(wk->modules);
    size_t nex = cl.nown + 1 + (size_t)nmod;
    PyObject **ex = malloc(nex * sizeof(PyObject *));
    if (ex == NULL) {
        frames_locals_free(&cl);
        PyErr_NoMemory();
        return -1;
    }
    size_t k = 0;
    ex[k++] = wk->modules;
    for (Py_ssize_t i = 0; i < nmod; i++) {
        ex[k++] = PyList_GET_ITEM(wk->modules, i);
    }
    for (size_t i = 0; i < cl.nown; i++) {
        ex[k++] = cl.own[i];
    }
    int rc = graph_build(&wk->g, cl.vals, (Py_ssize_t)cl.n, ex, (Py_ssize_t)k);
    free(ex);
    frames_locals_free(&cl);
    if (rc < 0) {
        return -1;
    }
    wk->graph_ready = 1;
    wk->t = graph_node(&wk->g, wk->obj);
    if (wk->t == GRAPH_NONE) {
        PyErr_SetString(PyExc_RuntimeError, "object disappeared during the heap walk");
        return -1;
    }
    return 0;
}

/* Step 2: the named roots -- module globals, then the locals of every
 * frame, read again now that no more Python code runs (frames may have
 * returned while a __sizeof__ let other threads run).  0, or -1 with an
 * exception set. */
static int
why_collect_named(why_work *wk)
{
    why_named *nm = &wk->nm;

    nm->g = &wk->g;
    nm->own_globals = wk->own_globals;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(wk->modules); i++) {
        PyObject *item = PyList_GET_ITEM(wk->modules, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            continue;
        }
        uint32_t j = graph_node(&wk->g, PyTuple_GET_ITEM(item, 1));
        if (j != GRAPH_NONE && why_named_add(nm, j, PyTuple_GET_ITEM(item, 0), NULL, 0) < 0) {
            return -1;
        }
    }
    return frames_each(why_named_frame, nm);
}

/* Step 3: multi-source BFS: named roots first, then everything held from
 * outside the graph -- except obj, which our own call holds; paths never
 * pass through obj.  0, or -1 with MemoryError set. */
static int
why_bfs(why_work *wk)
{
    const graph_t *g = &wk->g;
    size_t n = g->n;
    uint32_t t = wk->t;

    wk->parent = malloc((n + 1) * sizeof(uint32_t));
    wk->dist = malloc((n + 1) * sizeof(uint32_t));
    wk->queue = malloc((n + 1) * sizeof(uint32_t));
    wk->named_of = malloc((n + 1) * sizeof(uint32_t));
    if (wk->parent == NULL || wk->dist == NULL || wk->queue == NULL || wk->named_of == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    uint32_t *parent = wk->parent, *dist = wk->dist, *queue = wk->queue;
    memset(parent, 0xff, (n + 1) * sizeof(uint32_t));
    memset(wk->named_of, 0xff, (n + 1) * sizeof(uint32_t));
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < wk->nm.n; i++) {
        uint32_t j = wk->nm.named[i].node;
        if (parent[j] == GRAPH_NONE) {
            parent[j] = j;
            dist[j] = 0;
            wk->named_of[j] = (uint32_t)i;
            queue[tail++] = j;
        }
    }
    for (size_t j = 0; j < n; j++) {
        if ((g->flags[j] & GRAPH_F_ROOT) && j != t && parent[j] == GRAPH_NONE) {
            parent[j] = (uint32_t)j;
            dist[j] = 0;
            queue[tail++] = (uint32_t)j;
        }
    }
    while (head < tail) {
        uint32_t u = queue[head++];
        if (u == t) {
            continue;
        }
        for (uint32_t e = g->off[u]; e < g->off[u + 1]; e++) {
            uint32_t x = g->edges[e];
            if (parent[x] == GRAPH_NONE) {
                parent[x] = u;
                dist[x] = dist[u] + 1;
                queue[tail++] = x;
            }
        }
    }
    return 0;
}

/* Step 4: obj's referrers (counted), and those a root reaches as the
 * candidates, one per referrer even if it refers twice.  0, or -1 with
 * MemoryError set. */
static int
why_referrers(why_work *wk)
{
    const graph_t *g = &wk->g;
    uint32_t t = wk->t;
    size_t cap = WHY_CANDS_START;

    wk->cands = malloc(cap * sizeof(uint32_t));
    if (wk->cands == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t u = 0; u < g->n; u++) {
        for (uint32_t e = g->off[u]; e < g->off[u + 1]; e++) {
            if (g->edges[e] != t || u == t) {
                continue;
            }
            wk->nref++;
            if (wk->parent[u] == GRAPH_NONE) {
                continue;
            }
            wk->nreached++;
            if (wk->ncand == cap) {
                cap *= 2;
                uint32_t *nc = realloc(wk->cands, cap * sizeof(uint32_t));
                if (nc == NULL) {
                    PyErr_NoMemory();
                    return -1;
                }
                wk->cands = nc;
            }
            wk->cands[wk->ncand++] = (uint32_t)u;
            break;
        }
    }
    return 0;
}

/* Render path[0..len) and append it to wk->paths.  0, or -1 with an
 * exception set. */
static int
why_append_path(why_work *wk, size_t len, const why_named_root *nr)
{
    PyObject *s = why_render_path(&wk->g, wk->path, len, nr);
    if (s == NULL || PyList_Append(wk->paths, s) < 0) {
        Py_XDECREF(s);
        return -1;
    }
    Py_DECREF(s);
    return 0;
}

/* Step 5: the chains, nearest referrer first, up to max_paths: obj itself
 * if it is a named root, then a few at a time by selection of the
 * nearest candidate.  0, or -1 with an exception set. */
static int
why_render_paths(why_work *wk)
{
    size_t n = wk->g.n;
    uint32_t t = wk->t;
    const uint32_t *dist = wk->dist, *parent = wk->parent, *named_of = wk->named_of;
    const why_named_root *named = wk->nm.named;

    wk->paths = PyList_New(0);
    if (wk->paths == NULL) {
        return -1;
    }
    wk->path = malloc((n + 2) * sizeof(uint32_t));
    if (wk->path == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    uint32_t *path = wk->path;
    if (named_of[t] != GRAPH_NONE && wk->max_paths > 0) {
        /* obj is itself a module's globals or a frame's local */
        path[0] = t;
        if (why_append_path(wk, 1, &named[named_of[t]]) < 0) {
            return -1;
        }
    }
    while (PyList_GET_SIZE(wk->paths) < wk->max_paths && wk->ncand > 0) {
        uint32_t *cands = wk->cands;
        size_t best = 0;
        for (size_t i = 1; i < wk->ncand; i++) {
            if (dist[cands[i]] < dist[cands[best]]) {
                best = i;
            }
        }
        uint32_t u = cands[best];
        cands[best] = cands[--wk->ncand];
        /* the chain root..u, then obj */
        size_t len = (size_t)dist[u] + 2;
        path[len - 1] = t;
        uint32_t x = u;
        for (size_t k = len - 1; k-- > 0;) {
            path[k] = x;
            x = parent[x];
        }
        uint32_t root = path[0];
        const why_named_root *nr = named_of[root] == GRAPH_NONE ? NULL : &named[named_of[root]];
        if (why_append_path(wk, len, nr) < 0) {
            return -1;
        }
    }
    return 0;
}

PyObject *
why_paths(PyObject *obj, Py_ssize_t max_paths, PyObject *modules, PyObject *own_globals)
{
    why_work wk;
    PyObject *res = NULL;

    memset(&wk, 0, sizeof(wk));
    wk.obj = obj;
    wk.max_paths = max_paths;
    wk.modules = modules;
    wk.own_globals = own_globals;
    if (why_build_graph(&wk) < 0 || why_collect_named(&wk) < 0 || why_bfs(&wk) < 0
        || why_referrers(&wk) < 0 || why_render_paths(&wk) < 0) {
        goto done;
    }
    res = Py_BuildValue("(Onn)", wk.paths, (Py_ssize_t)wk.nref, (Py_ssize_t)wk.nreached);
done:
    why_work_free(&wk);
    return res;
}
