/* walk_module.c: the Python binding of sizing -- sizeof, deep_size,
 * size_by_type, breakdown.  Prefix api_.  Arguments arrive validated from
 * memlens/sizing.py; this file only converts them, runs the walker, and
 * builds the result objects at the end (never one per visited object). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* qsort_r; pyconfig.h usually defines it already */
#endif
#include "bindings.h"
#include "cpython/cpy_layout.h"
#include "heap/walk.h"
#include "heap/walk_edges.h"
#include "heap/walk_size.h"
#include "heap/walk_typetab.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- deep_size ---------------------------------------------------------- */

PyDoc_STRVAR(api_deep_size_doc, "deep_size($module, objs, shared, /)\n--\n\n"
                                "Walk everything reachable from the tuple `objs` once; return\n"
                                "(bytes, count, warnings, scratch_bytes).");

static PyObject *
api_deep_size(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    walk_t w;
    PyObject *res = NULL;

    if (nargs != 2 || !PyTuple_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "deep_size(objs: tuple, shared: bool)");
        return NULL;
    }
    int shared = PyObject_IsTrue(args[1]);
    if (shared < 0) {
        return NULL;
    }
    if (walk_init(&w, shared) < 0) {
        return NULL;
    }
    if (walk_run(&w, &PyTuple_GET_ITEM(args[0], 0), PyTuple_GET_SIZE(args[0]), NULL, NULL, NULL)
        < 0) {
        goto done;
    }
    size_t scratch = walk_scratch_bytes(&w);
    res = Py_BuildValue("(nnnn)", (Py_ssize_t)w.total, (Py_ssize_t)w.count, (Py_ssize_t)w.warnings,
                        (Py_ssize_t)scratch);
done:
    walk_free(&w);
    return res;
}

/* ---- size_by_type ------------------------------------------------------- */

/* A row of the size_by_type table: the per-type tally. */
typedef walk_type_tally api_type_row;
WALK_TYPETAB_ROW(api_type_row);

/* Slots the table starts with: most object graphs hold few types. */
#define API_TYPE_SLOTS 64

PyDoc_STRVAR(api_size_by_type_doc,
             "size_by_type($module, objs, shared, /)\n--\n\n"
             "Per-type totals over everything reachable from `objs`, as an unsorted\n"
             "list of (type, count, bytes).");

static PyObject *
api_size_by_type(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    walk_t w;
    walk_typetab t;
    PyObject *res = NULL;

    if (nargs != 2 || !PyTuple_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "size_by_type(objs: tuple, shared: bool)");
        return NULL;
    }
    int shared = PyObject_IsTrue(args[1]);
    if (shared < 0) {
        return NULL;
    }
    if (walk_typetab_init(&t, sizeof(api_type_row), API_TYPE_SLOTS) < 0) {
        return PyErr_NoMemory();
    }
    if (walk_init(&w, shared) < 0) {
        walk_typetab_free(&t);
        return NULL;
    }
    if (walk_run(&w, &PyTuple_GET_ITEM(args[0], 0), PyTuple_GET_SIZE(args[0]), NULL,
                 walk_typetab_tally, &t)
        < 0) {
        goto done;
    }
    res = PyList_New(0);
    if (res == NULL) {
        goto done;
    }
    size_t pos = 0;
    for (api_type_row *r; (r = walk_typetab_next(&t, &pos)) != NULL;) {
        PyObject *row =
            Py_BuildValue("(Onn)", (PyObject *)r->type, (Py_ssize_t)r->count, (Py_ssize_t)r->bytes);
        if (row == NULL || PyList_Append(res, row) < 0) {
            Py_XDECREF(row);
            Py_CLEAR(res);
            goto done;
        }
        Py_DECREF(row);
    }
done:
    walk_free(&w);
    walk_typetab_free(&t);
    return res;
}

/* ---- breakdown ---------------------------------------------------------- */

/* A node of the breakdown tree: an object at depth <= the asked depth.
 * Objects deeper than that add their bytes to their nearest node. */
typedef struct {
    PyObject *obj; /* strong reference */
    size_t parent; /* index, or SIZE_MAX for the root */
    size_t own;
    size_t deep;  /* own + everything it owns in the walk's tree */
    size_t count; /* objects in `deep` */
    int depth;
} api_node;

typedef struct {
    api_node *nodes;
    size_t n, cap;
    int max_depth;
} api_tree;

#define API_ROOT_TAG SIZE_MAX

static int
api_tree_visit(walk_t *w, PyObject *obj, size_t size, size_t tag, size_t *child_tag, void *arg)
{
    (void)w;
    api_tree *t = arg;
    /* tag = (owner << 1) | 1 when obj is a direct child of node `owner`
     * that becomes a node itself; (owner << 1) when obj only adds to it. */
    if (tag == API_ROOT_TAG || (tag & 1)) {
        if (t->n == t->cap) {
            size_t ncap = t->cap ? t->cap * 2 : 64;
            api_node *nn = realloc(t->nodes, ncap * sizeof(api_node));
            if (nn == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            t->nodes = nn;
            t->cap = ncap;
        }
        size_t idx = t->n++;
        api_node *nd = &t->nodes[idx];
        Py_INCREF(obj);
        nd->obj = obj;
        nd->parent = tag == API_ROOT_TAG ? SIZE_MAX : (tag >> 1);
        nd->depth = tag == API_ROOT_TAG ? 0 : t->nodes[tag >> 1].depth + 1;
        nd->own = size;
        nd->deep = size;
        nd->count = 1;
        *child_tag = (idx << 1) | (nd->depth < t->max_depth ? 1 : 0);
    }
    else {
        api_node *nd = &t->nodes[tag >> 1];
        nd->deep = size_add(nd->deep, size);
        nd->count++;
        *child_tag = tag & ~(size_t)1;
    }
    return 0;
}

/* qsort_r comparator: child indices by deep size, largest first */
static int
api_cmp_deep(const void *a, const void *b, void *arg)
{
    const api_node *nodes = arg;
    size_t x = nodes[*(const size_t *)a].deep;
    size_t y = nodes[*(const size_t *)b].deep;
    if (x != y) {
        return x < y ? 1 : -1;
    }
    return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

/* Emit the kept nodes breadth-first as a flat list of
 * (parent_row, label, type_name, own, deep, count, more_count, more_bytes)
 * rows, parent_row being the row index of the parent (-1 for the root).
 * Iterative: a deep tree never recurses on the C stack. */
static PyObject *
api_emit(api_tree *t, size_t *kids, size_t *first, size_t *nkids, Py_ssize_t limit)
{
    PyObject *rows = PyList_New(0);
    size_t *queue = malloc((t->n + 1) * sizeof(size_t));        /* node index */
    Py_ssize_t *qrow = malloc((t->n + 1) * sizeof(Py_ssize_t)); /* parent row */
    PyObject *label = NULL;
    size_t head = 0, tail = 0;

    if (rows == NULL || queue == NULL || qrow == NULL) {
        if (rows != NULL) {
            PyErr_NoMemory();
        }
        goto error;
    }
    queue[tail] = 0;
    qrow[tail++] = -1;
    while (head < tail) {
        size_t i = queue[head];
        Py_ssize_t prow = qrow[head++];
        api_node *nd = &t->nodes[i];
        size_t more_count = 0, more_bytes = 0;
        Py_ssize_t my_row = PyList_GET_SIZE(rows);

        size_t *ks = kids + first[i];
        qsort_r(ks, nkids[i], sizeof(size_t), api_cmp_deep, t->nodes);
        for (size_t j = 0; j < nkids[i]; j++) {
            size_t k = ks[j];
            if ((Py_ssize_t)j >= limit) {
                more_count += t->nodes[k].count;
                more_bytes = size_add(more_bytes, t->nodes[k].deep);
                continue;
            }
            queue[tail] = k;
            qrow[tail++] = my_row;
        }
        if (prow < 0) {
            label = PyUnicode_FromString("");
        }
        else {
            label = edge_label(t->nodes[nd->parent].obj, nd->obj);
        }
        if (label == NULL) {
            goto error;
        }
        PyObject *row =
            Py_BuildValue("(nOsnnnnn)", prow, label, Py_TYPE(nd->obj)->tp_name, (Py_ssize_t)nd->own,
                          (Py_ssize_t)nd->deep, (Py_ssize_t)nd->count, (Py_ssize_t)more_count,
                          (Py_ssize_t)more_bytes);
        Py_CLEAR(label);
        if (row == NULL || PyList_Append(rows, row) < 0) {
            Py_XDECREF(row);
            goto error;
        }
        Py_DECREF(row);
    }
    free(queue);
    free(qrow);
    return rows;

error:
    Py_XDECREF(label);
    Py_XDECREF(rows);
    free(queue);
    free(qrow);
    return NULL;
}

PyDoc_STRVAR(api_breakdown_doc,
             "breakdown($module, obj, depth, limit, shared, /)\n--\n\n"
             "The tree under `obj`, breadth first, as a flat list of rows\n"
             "(parent_row, label, type_name, own, deep, count, more_count, more_bytes);\n"
             "parent_row is -1 for the root, more_* sum the children past `limit`.");

static PyObject *
api_breakdown(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    walk_t w;
    api_tree t = {NULL, 0, 0, 0};
    size_t *kids = NULL, *first = NULL, *nkids = NULL;
    PyObject *res = NULL;
    int walk_ready = 0;

    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "breakdown(obj, depth, limit, shared)");
        return NULL;
    }
    long depth = PyLong_AsLong(args[1]);
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    int shared = PyObject_IsTrue(args[3]);
    if (PyErr_Occurred() || shared < 0) {
        return NULL;
    }
    if (depth < 0 || depth > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "depth must be >= 0");
        return NULL;
    }
    t.max_depth = (int)depth;
    if (walk_init(&w, shared) < 0) {
        return NULL;
    }
    walk_ready = 1;
    size_t root_tag = API_ROOT_TAG;
    if (walk_run(&w, &args[0], 1, &root_tag, api_tree_visit, &t) < 0) {
        goto done;
    }
    walk_free(&w);
    walk_ready = 0;

    /* deep sizes: children were created after their parents */
    for (size_t i = t.n; i-- > 1;) {
        t.nodes[t.nodes[i].parent].deep =
            size_add(t.nodes[t.nodes[i].parent].deep, t.nodes[i].deep);
        t.nodes[t.nodes[i].parent].count += t.nodes[i].count;
    }
    /* children lists, by counting */
    kids = malloc((t.n + 1) * sizeof(size_t));
    first = calloc(t.n + 1, sizeof(size_t));
    nkids = calloc(t.n + 1, sizeof(size_t));
    if (kids == NULL || first == NULL || nkids == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t i = 1; i < t.n; i++) {
        nkids[t.nodes[i].parent]++;
    }
    for (size_t i = 0, acc = 0; i < t.n; i++) {
        first[i] = acc;
        acc += nkids[i];
        nkids[i] = 0;
    }
    for (size_t i = 1; i < t.n; i++) {
        size_t p = t.nodes[i].parent;
        kids[first[p] + nkids[p]++] = i;
    }
    if (t.n > 0) {
        res = api_emit(&t, kids, first, nkids, limit);
    }
    else {
        res = PyList_New(0);
    }
done:
    if (walk_ready) {
        walk_free(&w);
    }
    for (size_t i = 0; i < t.n; i++) {
        Py_DECREF(t.nodes[i].obj);
    }
    free(t.nodes);
    free(kids);
    free(first);
    free(nkids);
    return res;
}

PyDoc_STRVAR(api_sizeof_doc, "sizeof($module, obj, /)\n--\n\n"
                             "Bytes (an int) the allocator handed out for this one object (see\n"
                             "memlens.sizeof).");

static PyObject *
api_sizeof(PyObject *module, PyObject *obj)
{
    (void)module;
    size_typeinfo ti;
    size_t warnings = 0;
    size_typeinfo_init(&ti, Py_TYPE(obj));
    size_t n = size_of(&ti, obj, &warnings);
    /* An instance's materialized __dict__ is part of its footprint. */
    if (ti.flags & SIZE_F_INSTANCE) {
        PyObject *d = layout_instance_dict(obj, Py_TYPE(obj));
        if (d != NULL && PyDict_Check(d)) {
            n += size_dict(d, Py_TYPE(d));
        }
    }
    return PyLong_FromSize_t(n);
}

static PyMethodDef api_methods[] = {
    {"sizeof", (PyCFunction)api_sizeof, METH_O, api_sizeof_doc},
    {"deep_size", (PyCFunction)(void (*)(void))api_deep_size, METH_FASTCALL, api_deep_size_doc},
    {"size_by_type", (PyCFunction)(void (*)(void))api_size_by_type, METH_FASTCALL,
     api_size_by_type_doc},
    {"breakdown", (PyCFunction)(void (*)(void))api_breakdown, METH_FASTCALL, api_breakdown_doc},
    {NULL, NULL, 0, NULL},
};

int
walk_module_exec(PyObject *m)
{
    /* the interpreter facts the size rules read, before any sizing call */
    if (size_init_globals() < 0) {
        return -1;
    }
    return PyModule_AddFunctions(m, api_methods);
}
