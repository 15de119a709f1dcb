/* census_module.c: the Python binding of the whole-heap census, retained
 * sizes and "why is this alive".  Prefix census_.
 *
 * Arguments arrive validated from memlens/census.py; this file converts
 * them, runs the walker (heap/walk.h) or the heap graph (census_graph.h)
 * with its dominator tree (census_dom.h), sums rows per type
 * (heap/walk_typetab.h), and builds result objects only at the end (a few
 * per type, never one per visited object); why_alive is census_why.h's.
 * Scratch memory is malloc'd and freed before returning.
 */
#include "bindings.h"
#include "census/census_dom.h"
#include "census/census_frames.h"
#include "census/census_graph.h"
#include "census/census_why.h"
#include "cpython/cpy_layout.h"
#include "heap/walk.h"
#include "heap/walk_size.h"
#include "heap/walk_typetab.h"

#include <stdlib.h>
#include <string.h>

/* ---- per-type rows ----------------------------------------------------- */

/* A row of the census table.  The table holds a reference to the type:
 * census(retained=True) lets go of the instances before the rows are
 * made, and a __sizeof__ may drop a class during the walk. */
typedef struct {
    PyTypeObject *type; /* the key */
    size_t count;
    size_t bytes;
    uint64_t retained;
    uint32_t open; /* instances on the current dominator-tree path */
    uint32_t id;   /* census(retained=True): index in the byid list */
} census_row;
WALK_TYPETAB_TALLY(census_row);
WALK_TYPETAB_ROW(census_row);

/* Slots the table starts with: a typical program's heap holds a few
 * hundred classes. */
#define CENSUS_TYPE_SLOTS 256

static int
census_table_init(walk_typetab *t)
{
    return walk_typetab_init(t, sizeof(census_row), CENSUS_TYPE_SLOTS);
}

/* [(type, count, bytes, retained or -1), ...] */
static PyObject *
census_rows_list(walk_typetab *t, int with_retained)
{
    PyObject *res = PyList_New(0);
    if (res == NULL) {
        return NULL;
    }
    size_t pos = 0;
    for (census_row *r; (r = walk_typetab_next(t, &pos)) != NULL;) {
        if (r->count == 0) {
            continue;
        }
        PyObject *row =
            Py_BuildValue("(OnnL)", (PyObject *)r->type, (Py_ssize_t)r->count, (Py_ssize_t)r->bytes,
                          with_retained ? (long long)r->retained : -1LL);
        if (row == NULL || PyList_Append(res, row) < 0) {
            Py_XDECREF(row);
            Py_DECREF(res);
            return NULL;
        }
        Py_DECREF(row);
    }
    return res;
}

/* ---- census without retained sizes: one walk ----------------------------- */

static PyObject *
census_fast(PyObject *own_globals)
{
    walk_t w;
    int walk_ready = 0, locals_ready = 0;
    walk_typetab t = {NULL, 0, 0, 0};
    PyObject *tracked = NULL, *rows = NULL, *res = NULL;
    frames_locals cl;

    if (census_table_init(&t) < 0) {
        return PyErr_NoMemory();
    }
    tracked = graph_tracked_objects();
    if (tracked == NULL) {
        goto done;
    }
    if (walk_init(&w, 1) < 0) {
        goto done;
    }
    walk_ready = 1;
    /* our own list of the tracked objects is not part of the heap */
    if (walk_exclude(&w, tracked) < 0) {
        goto done;
    }
    if (frames_locals_collect(&cl, own_globals, 0) < 0) {
        goto done;
    }
    locals_ready = 1;
    /* nor are memlens's own frames: objects on 3.9/3.10, which the walk
     * reaches if anything holds one (a __sizeof__ keeping
     * sys._getframe(1)), and with them every caller's frame through f_back;
     * census(retained=True) leaves them out too (graph_build's exclude) */
    for (size_t i = 0; i < cl.nown; i++) {
        if (walk_exclude(&w, cl.own[i]) < 0) {
            goto done;
        }
    }
    Py_ssize_t n = PyList_GET_SIZE(tracked);
    /* Instances with a materialized __dict__ first, so that each dict is
     * folded into its owner's row even when the gc lists put the dict
     * before the instance (the dict is younger). */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *op = PyList_GET_ITEM(tracked, i);
        PyTypeObject *tp = Py_TYPE(op);
        const size_typeinfo *ti = walk_typeinfo(&w, tp);
        if ((ti->flags & SIZE_F_INSTANCE) && layout_instance_dict(op, tp) != NULL) {
            if (walk_run(&w, &op, 1, NULL, walk_typetab_tally, &t) < 0) {
                goto done;
            }
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *op = PyList_GET_ITEM(tracked, i);
        if (walk_run(&w, &op, 1, NULL, walk_typetab_tally, &t) < 0) {
            goto done;
        }
    }
    for (size_t i = 0; i < cl.n; i++) {
        if (walk_run(&w, &cl.vals[i], 1, NULL, walk_typetab_tally, &t) < 0) {
            goto done;
        }
    }
    /* rows before dropping the list: it keeps the types alive */
    rows = census_rows_list(&t, 0);
    if (rows == NULL) {
        goto done;
    }
    size_t scratch = walk_scratch_bytes(&w);
    /* the list is scratch too: one pointer per tracked object */
    scratch += (size_t)n * sizeof(PyObject *);
    res = Py_BuildValue("(Onnnnn)", rows, (Py_ssize_t)w.count, (Py_ssize_t)w.total,
                        (Py_ssize_t)scratch, (Py_ssize_t)w.warnings, (Py_ssize_t)n);
done:
    if (walk_ready) {
        walk_free(&w);
    }
    Py_XDECREF(rows);
    Py_XDECREF(tracked);
    walk_typetab_free(&t);
    if (locals_ready) {
        frames_locals_free(&cl);
    }
    return res;
}

/* ---- census with retained sizes: heap graph + dominator tree ---------- */

/* Per-class retained bytes: what would be freed if every instance of the
 * class went away, taken as the union of the dominator subtrees of its
 * instances -- an instance counts unless another instance of the same
 * class dominates it (then it is inside that one's subtree already).  One
 * walk over the dominator tree, counting per row how many instances are
 * open on the current path.  The tree is threaded (first child, next
 * sibling, and idom to climb back), so the walk needs no stack however
 * deep or wide the tree is.  Returns the scratch bytes it adds, or 0 if
 * out of memory. */
static size_t
census_class_retained(const dom_tree *d, census_row *const *byid)
{
    size_t m = d->m;
    uint32_t *first = malloc(m * sizeof(uint32_t));
    uint32_t *next = malloc(m * sizeof(uint32_t));
    size_t peak = 0;

    if (first == NULL || next == NULL) {
        goto done;
    }
    memset(first, 0xff, m * sizeof(uint32_t));
    for (size_t k = m - 1; k >= 1; k--) {
        uint32_t p = d->idom[k];
        next[k] = first[p];
        first[p] = (uint32_t)k;
    }
    uint32_t k = 0;
    for (;;) {
        /* enter k */
        uint32_t tag = dom_tag(d, k);
        if (tag != DOM_NOTAG) {
            census_row *r = byid[tag];
            if (r->open == 0) {
                r->retained = size_add(r->retained, d->retained[k]);
            }
            r->open++;
        }
        if (first[k] != UINT32_MAX) {
            k = first[k];
            continue;
        }
        /* leave k, and its ancestors whose last child it was */
        for (;;) {
            tag = dom_tag(d, k);
            if (tag != DOM_NOTAG) {
                byid[tag]->open--;
            }
            if (k == 0 || next[k] != UINT32_MAX) {
                break;
            }
            k = d->idom[k];
        }
        if (k == 0) {
            break;
        }
        k = next[k];
    }
    peak = 2 * m * sizeof(uint32_t);
done:
    free(first);
    free(next);
    return peak;
}

static PyObject *
census_with_retained(PyObject *own_globals)
{
    graph_t g;
    dom_tree d;
    int dom_ready = 0;
    walk_typetab t = {NULL, 0, 0, 0};
    PyObject *rows = NULL, *res = NULL;
    size_t total = 0, count = 0;
    census_row **byid = NULL;
    uint16_t *tag = NULL;
    graph_wide *wtag = NULL;
    size_t nwtag = 0, wcap = 0;

    if (census_table_init(&t) < 0) {
        return PyErr_NoMemory();
    }
    {
        frames_locals cl;
        if (frames_locals_collect(&cl, own_globals, 0) < 0) {
            walk_typetab_free(&t);
            return NULL;
        }
        int rc = graph_build(&g, cl.vals, (Py_ssize_t)cl.n, cl.own, (Py_ssize_t)cl.nown);
        frames_locals_free(&cl);
        if (rc < 0) {
            walk_typetab_free(&t);
            return NULL;
        }
    }
    /* first create every row, so that the table no longer moves */
    for (size_t i = 0; i < g.n; i++) {
        if (!(g.flags[i] & GRAPH_F_FOLDED) && walk_typetab_get(&t, Py_TYPE(g.objs[i])) == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    /* the rows by number: a node's tag is its row's number */
    byid = malloc((t.used + 1) * sizeof(census_row *));
    if (byid == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    {
        uint32_t nid = 0;
        size_t pos = 0;
        for (census_row *r; (r = walk_typetab_next(&t, &pos)) != NULL;) {
            r->id = nid;
            byid[nid++] = r;
        }
    }
    /* rows: a folded __dict__ belongs to its owner's row; each node's row
     * number (2 bytes, a side table past 65533 classes) is all the
     * dominator phase needs to know of the objects */
    tag = malloc((g.n + 1) * sizeof(uint16_t));
    if (tag == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    size_t rows_peak = graph_held_bytes(&g) + g.n * sizeof(uint16_t);
    for (size_t i = 0; i < g.n; i++) {
        if (g.flags[i] & GRAPH_F_FOLDED) {
            tag[i] = DOM_TAG_NONE;
            continue;
        }
        PyObject *op = g.objs[i];
        PyTypeObject *tp = Py_TYPE(op);
        census_row *r = walk_typetab_get(&t, tp);
        if (r->id < DOM_TAG_NONE) {
            tag[i] = (uint16_t)r->id;
        }
        else {
            tag[i] = GRAPH_WIDE;
            if (graph_wide_add(&wtag, &nwtag, &wcap, (uint32_t)i, r->id) < 0) {
                PyErr_NoMemory();
                goto done;
            }
        }
        size_t sz = graph_size(&g, (uint32_t)i);
        if (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) {
            PyObject *dict = layout_instance_dict(op, tp);
            if (dict != NULL) {
                uint32_t j = graph_node(&g, dict);
                if (j != GRAPH_NONE && (g.flags[j] & GRAPH_F_FOLDED)) {
                    sz = size_add(sz, graph_size(&g, j));
                }
            }
        }
        r->count++;
        r->bytes = size_add(r->bytes, sz);
        total = size_add(total, sz);
        count++;
    }
    rows_peak += wcap * sizeof(graph_wide);
    /* From here on no object is read: the rows hold their types, and the
     * graph's 8-byte references are the largest array it has.  Dropping
     * them may free objects that died while the graph was built (their
     * finalizers run now, touching nothing of ours). */
    graph_release(&g);
    int rc = dom_build(&d, &g, tag, wtag, nwtag, wcap);
    tag = NULL; /* dom_build took them */
    wtag = NULL;
    if (rc < 0) {
        PyErr_NoMemory();
        goto done;
    }
    dom_ready = 1;
    size_t class_peak = census_class_retained(&d, byid);
    if (class_peak == 0) {
        PyErr_NoMemory();
        goto done;
    }
    rows = census_rows_list(&t, 1);
    if (rows == NULL) {
        goto done;
    }
    /* peak: building the graph, summing rows, the dominator phase, or the
     * tree plus the class walk */
    size_t scratch = g.scratch;
    if (rows_peak > scratch) {
        scratch = rows_peak;
    }
    if (d.scratch > scratch) {
        scratch = d.scratch;
    }
    if (graph_held_bytes(&g) + d.held + class_peak > scratch) {
        scratch = graph_held_bytes(&g) + d.held + class_peak;
    }
    res = Py_BuildValue("(Onnnnn)", rows, (Py_ssize_t)count, (Py_ssize_t)total, (Py_ssize_t)scratch,
                        (Py_ssize_t)g.warnings, (Py_ssize_t)d.m - 1);
done:
    if (dom_ready) {
        dom_free(&d);
    }
    free(tag);
    free(wtag);
    free(byid);
    Py_XDECREF(rows);
    walk_typetab_free(&t);
    graph_free(&g);
    return res;
}

PyDoc_STRVAR(
    census_census_doc,
    "census(retained, own_globals, /) -> (rows, count, bytes, scratch, warnings, n)\n--\n\n"
    "rows: [(type, count, bytes, retained or -1)].  own_globals: the globals of\n"
    "memlens's own Python code, whose frames are left out.  n: tracked objects\n"
    "(retained=False) or objects reachable from the roots (retained=True).");

static PyObject *
census_census(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "census(retained: bool, own_globals: dict)");
        return NULL;
    }
    int retained = PyObject_IsTrue(args[0]);
    if (retained < 0) {
        return NULL;
    }
    return retained ? census_with_retained(args[1]) : census_fast(args[1]);
}

/* ---- retained_size ---------------------------------------------------- */

PyDoc_STRVAR(census_retained_doc, "retained_size(obj, /) -> (bytes, count)\n--\n\n"
                                  "What would be freed if obj became unreachable.");

static PyObject *
census_retained(PyObject *module, PyObject *obj)
{
    (void)module;
    graph_t g;
    size_t bytes = 0, count = 0;
    PyObject *res = NULL;

    if (graph_build(&g, &obj, 1, NULL, 0) < 0) {
        return NULL;
    }
    uint32_t t = graph_node(&g, obj);
    if (t == GRAPH_NONE) {
        PyErr_SetString(PyExc_RuntimeError, "object disappeared during the heap walk");
        goto done;
    }
    if (graph_retained(&g, t, &bytes, &count) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    res = Py_BuildValue("(nn)", (Py_ssize_t)bytes, (Py_ssize_t)count);
done:
    graph_free(&g);
    return res;
}

/* ---- why_alive -------------------------------------------------------- */

PyDoc_STRVAR(
    census_why_doc,
    "why_alive(obj, max_paths, modules, own_globals, /) -> (paths, referrers, reached)\n--\n\n"
    "modules: [(name, globals dict)]; own_globals: the globals of memlens's own\n"
    "code, whose frames are left out.  paths: the shortest reference chains\n"
    "from a root to obj, rendered as expressions.");

static PyObject *
census_why_alive(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4 || !PyList_Check(args[2]) || !PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "why_alive(obj, max_paths, modules: list, own_globals: dict)");
        return NULL;
    }
    Py_ssize_t max_paths = PyLong_AsSsize_t(args[1]);
    if (max_paths < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "max_paths must be >= 0");
        }
        return NULL;
    }
    return why_paths(args[0], max_paths, args[2], args[3]);
}

static PyMethodDef census_methods[] = {
    {"census", (PyCFunction)(void (*)(void))census_census, METH_FASTCALL, census_census_doc},
    {"retained_size", (PyCFunction)census_retained, METH_O, census_retained_doc},
    {"why_alive", (PyCFunction)(void (*)(void))census_why_alive, METH_FASTCALL, census_why_doc},
    {NULL, NULL, 0, NULL},
};

int
census_module_exec(PyObject *m)
{
    return PyModule_AddFunctions(m, census_methods);
}
