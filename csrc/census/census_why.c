/* why_: shortest reference chains to an object (see census_why.h). */
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

PyObject *
why_paths(PyObject *obj, Py_ssize_t max_paths, PyObject *modules, PyObject *own_globals)
{
    graph_t g;
    int graph_ready = 0;
    why_named nm = {NULL, NULL, 0, 0, NULL};
    why_named_root *named = NULL;
    size_t nnamed = 0;
    uint32_t *parent = NULL, *dist = NULL, *queue = NULL, *named_of = NULL, *path = NULL;
    uint32_t *cands = NULL;
    PyObject *paths = NULL, *res = NULL;

    /* Nodes: everything, obj and the frames' locals included.  Left out:
     * our list of modules and its (name, globals) pairs, and the frame
     * objects of memlens's own calls (on 3.9/3.10 they report their
     * locals, obj among them). */
    {
        frames_locals cl;
        if (frames_locals_collect(&cl, own_globals, 1) < 0) {
            return NULL;
        }
        Py_DECREF(cl.vals[0]);
        Py_INCREF(obj);
        cl.vals[0] = obj;
        Py_ssize_t nmod = PyList_GET_SIZE(modules);
        size_t nex = cl.nown + 1 + (size_t)nmod;
        PyObject **ex = malloc(nex * sizeof(PyObject *));
        if (ex == NULL) {
            frames_locals_free(&cl);
            return PyErr_NoMemory();
        }
        size_t k = 0;
        ex[k++] = modules;
        for (Py_ssize_t i = 0; i < nmod; i++) {
            ex[k++] = PyList_GET_ITEM(modules, i);
        }
        for (size_t i = 0; i < cl.nown; i++) {
            ex[k++] = cl.own[i];
        }
        int rc = graph_build(&g, cl.vals, (Py_ssize_t)cl.n, ex, (Py_ssize_t)k);
        free(ex);
        frames_locals_free(&cl);
        if (rc < 0) {
            return NULL;
        }
    }
    graph_ready = 1;
    size_t n = g.n;
    uint32_t t = graph_node(&g, obj);
    if (t == GRAPH_NONE) {
        PyErr_SetString(PyExc_RuntimeError, "object disappeared during the heap walk");
        goto done;
    }

    /* named roots: module globals, then the locals of every frame, read
     * again now that no more Python code runs (frames may have returned
     * while a __sizeof__ let other threads run) */
    nm.g = &g;
    nm.own_globals = own_globals;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(modules); i++) {
        PyObject *item = PyList_GET_ITEM(modules, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            continue;
        }
        uint32_t j = graph_node(&g, PyTuple_GET_ITEM(item, 1));
        if (j != GRAPH_NONE && why_named_add(&nm, j, PyTuple_GET_ITEM(item, 0), NULL, 0) < 0) {
            goto done;
        }
    }
    if (frames_each(why_named_frame, &nm) < 0) {
        goto done;
    }
    named = nm.named;
    nnamed = nm.n;

    /* multi-source BFS: named roots first, then everything held from
     * outside the graph -- except obj, which our own call holds */
    parent = malloc((n + 1) * sizeof(uint32_t));
    dist = malloc((n + 1) * sizeof(uint32_t));
    queue = malloc((n + 1) * sizeof(uint32_t));
    named_of = malloc((n + 1) * sizeof(uint32_t));
    if (parent == NULL || dist == NULL || queue == NULL || named_of == NULL) {
        goto nomem;
    }
    memset(parent, 0xff, (n + 1) * sizeof(uint32_t));
    memset(named_of, 0xff, (n + 1) * sizeof(uint32_t));
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < nnamed; i++) {
        uint32_t j = named[i].node;
        if (parent[j] == GRAPH_NONE) {
            parent[j] = j;
            dist[j] = 0;
            named_of[j] = (uint32_t)i;
            queue[tail++] = j;
        }
    }
    for (size_t j = 0; j < n; j++) {
        if ((g.flags[j] & GRAPH_F_ROOT) && j != t && parent[j] == GRAPH_NONE) {
            parent[j] = (uint32_t)j;
            dist[j] = 0;
            queue[tail++] = (uint32_t)j;
        }
    }
    while (head < tail) {
        uint32_t u = queue[head++];
        if (u == t) {
            continue; /* paths to obj never pass through obj */
        }
        for (uint32_t e = g.off[u]; e < g.off[u + 1]; e++) {
            uint32_t x = g.edges[e];
            if (parent[x] == GRAPH_NONE) {
                parent[x] = u;
                dist[x] = dist[u] + 1;
                queue[tail++] = x;
            }
        }
    }

    /* referrers of obj, nearest first */
    size_t nref = 0, nreached = 0, ncand = 0, cap_cand = 16;
    cands = malloc(cap_cand * sizeof(uint32_t));
    if (cands == NULL) {
        goto nomem;
    }
    for (size_t u = 0; u < n; u++) {
        for (uint32_t e = g.off[u]; e < g.off[u + 1]; e++) {
            if (g.edges[e] != t || u == t) {
                continue;
            }
            nref++;
            if (parent[u] == GRAPH_NONE) {
                continue;
            }
            nreached++;
            if (ncand == cap_cand) {
                cap_cand *= 2;
                uint32_t *nc = realloc(cands, cap_cand * sizeof(uint32_t));
                if (nc == NULL) {
                    goto nomem;
                }
                cands = nc;
            }
            cands[ncand++] = (uint32_t)u;
            break; /* one per referrer, even if it refers twice */
        }
    }
    /* a few at a time: selection of the nearest max_paths */
    paths = PyList_New(0);
    if (paths == NULL) {
        goto done;
    }
    path = malloc((n + 2) * sizeof(uint32_t));
    if (path == NULL) {
        goto nomem;
    }
    if (named_of[t] != GRAPH_NONE && max_paths > 0) {
        /* obj is itself a module's globals or a frame's local */
        path[0] = t;
        PyObject *s = why_render_path(&g, path, 1, &named[named_of[t]]);
        if (s == NULL || PyList_Append(paths, s) < 0) {
            Py_XDECREF(s);
            goto done;
        }
        Py_DECREF(s);
    }
    while (PyList_GET_SIZE(paths) < max_paths && ncand > 0) {
        size_t best = 0;
        for (size_t i = 1; i < ncand; i++) {
            if (dist[cands[i]] < dist[cands[best]]) {
                best = i;
            }
        }
        uint32_t u = cands[best];
        cands[best] = cands[--ncand];
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
        PyObject *s = why_render_path(&g, path, len, nr);
        if (s == NULL || PyList_Append(paths, s) < 0) {
            Py_XDECREF(s);
            goto done;
        }
        Py_DECREF(s);
    }
    res = Py_BuildValue("(Onn)", paths, (Py_ssize_t)nref, (Py_ssize_t)nreached);
    goto done;

nomem:
    PyErr_NoMemory();
done:
    Py_XDECREF(paths);
    for (size_t i = 0; i < nm.n; i++) {
        Py_XDECREF(nm.named[i].code);
    }
    free(nm.named);
    free(parent);
    free(dist);
    free(queue);
    free(named_of);
    free(path);
    free(cands);
    if (graph_ready) {
        graph_free(&g);
    }
    return res;
}
