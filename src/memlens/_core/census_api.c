/* census_api: whole-heap census, retained sizes, "why is this alive".
 *
 * Arguments arrive validated from memlens/census.py; this file converts
 * them, runs the walker / heap graph / dominator tree, and builds result
 * objects only at the end (a few per type or per path, never one per
 * visited object).  Scratch memory is malloc'd and freed before returning.
 */
#include "census_api.h"
#include "dom.h"
#include "edges.h"
#include "graph.h"
#include "layout.h"
#include "size.h"
#include "walk.h"

#include <stdlib.h>
#include <string.h>

PyObject *graph_tracked_objects(void);

/* ---- per-type rows ----------------------------------------------------- */

typedef struct {
    PyTypeObject *type;   /* borrowed: alive while the walk/graph holds its
                           * instances */
    size_t count;
    size_t bytes;
    uint64_t retained;
    uint32_t open;        /* instances on the current dominator-tree path */
} census_row;

typedef struct {
    census_row *rows;     /* open addressing on the type pointer */
    size_t mask;
    size_t used;
} census_table;

static int
census_table_init(census_table *t)
{
    t->mask = 255;
    t->used = 0;
    t->rows = calloc(t->mask + 1, sizeof(census_row));
    return t->rows == NULL ? -1 : 0;
}

/* The row of `tp`, created if needed; NULL if out of memory. */
static census_row *
census_table_get(census_table *t, PyTypeObject *tp)
{
    size_t i = ((uintptr_t)tp >> 4) & t->mask;
    while (t->rows[i].type != NULL && t->rows[i].type != tp) {
        i = (i + 1) & t->mask;
    }
    if (t->rows[i].type == tp) {
        return &t->rows[i];
    }
    if ((t->used + 1) * 2 > t->mask + 1) {
        size_t nmask = t->mask * 2 + 1;
        census_row *nr = calloc(nmask + 1, sizeof(census_row));
        if (nr == NULL) {
            return NULL;
        }
        for (size_t j = 0; j <= t->mask; j++) {
            if (t->rows[j].type == NULL) {
                continue;
            }
            size_t k = ((uintptr_t)t->rows[j].type >> 4) & nmask;
            while (nr[k].type != NULL) {
                k = (k + 1) & nmask;
            }
            nr[k] = t->rows[j];
        }
        free(t->rows);
        t->rows = nr;
        t->mask = nmask;
        i = ((uintptr_t)tp >> 4) & t->mask;
        while (t->rows[i].type != NULL) {
            i = (i + 1) & t->mask;
        }
    }
    t->rows[i].type = tp;
    t->used++;
    return &t->rows[i];
}

static int
census_visit(walk_t *w, PyObject *obj, size_t size, size_t tag,
             size_t *child_tag, void *arg)
{
    (void)w;
    (void)tag;
    (void)child_tag;
    census_row *r = census_table_get((census_table *)arg, Py_TYPE(obj));
    if (r == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    r->count++;
    r->bytes += size;
    return 0;
}

/* Call fn for every running frame of every thread of this interpreter,
 * innermost first, skipping the 3.12+ C-stack shims.  Frames are read in
 * place (layout.h): no frame object is created.  We hold the GIL, so no
 * other thread's frames change under us; the thread list itself is
 * protected by the runtime's private HEAD_LOCK, which we cannot take: a
 * thread state is only unlinked by a thread holding the GIL, and one
 * linked concurrently goes in at the head, which a walk that has started
 * never revisits.  fn returns 0 to go on, -1 to stop (exception set). */
typedef int (*census_frame_fn)(void *arg, layout_frame *f, PyCodeObject *co);

static int
census_each_frame(census_frame_fn fn, void *arg)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        for (layout_frame *f = layout_thread_frame(ts); f != NULL; f = layout_frame_back(f)) {
            PyCodeObject *co = layout_frame_code(f);
            if (co != NULL && fn(arg, f, co) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* Strong references to the locals of every running frame outside
 * memlens's own code, and to the frame objects of memlens's own frames. */
typedef struct {
    PyObject *own_globals;  /* borrowed: memlens.census's globals */
    PyObject **vals;        /* strong references */
    size_t n, cap;
    PyObject **own;         /* strong references: our own frame objects */
    size_t nown, capown;
} census_locals;

static int
census_push(PyObject ***arr, size_t *n, size_t *cap, PyObject *o)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        PyObject **na = realloc(*arr, ncap * sizeof(PyObject *));
        if (na == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *arr = na;
        *cap = ncap;
    }
    Py_INCREF(o);
    (*arr)[(*n)++] = o;
    return 0;
}

static int
census_locals_add(void *arg, layout_frame *f, PyCodeObject *co)
{
    census_locals *cl = arg;
    if (layout_frame_globals(f) == cl->own_globals) {
        /* our own frames: on 3.9/3.10 they are objects reporting their
         * locals (the very object asked about), so they are left out */
        PyObject *fo = layout_frame_object(f);
        return fo == NULL ? 0 : census_push(&cl->own, &cl->nown, &cl->capown, fo);
    }
    PyObject **locals = layout_frame_locals(f);
    Py_ssize_t nl = layout_code_nlocalsplus(co);
    for (Py_ssize_t i = 0; i < nl; i++) {
        if (locals[i] != NULL && census_push(&cl->vals, &cl->n, &cl->cap, locals[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

static void
census_locals_free(census_locals *cl)
{
    for (size_t i = 0; i < cl->n; i++) {
        Py_DECREF(cl->vals[i]);
    }
    for (size_t i = 0; i < cl->nown; i++) {
        Py_DECREF(cl->own[i]);
    }
    free(cl->vals);
    free(cl->own);
    memset(cl, 0, sizeof(*cl));
}

/* Collect the locals; `first` leading slots of vals are left for the
 * caller (filled with None until then). */
static int
census_locals_collect(census_locals *cl, PyObject *own_globals, size_t first)
{
    memset(cl, 0, sizeof(*cl));
    cl->own_globals = own_globals;
    for (size_t i = 0; i < first; i++) {
        if (census_push(&cl->vals, &cl->n, &cl->cap, Py_None) < 0) {
            census_locals_free(cl);
            return -1;
        }
    }
    if (census_each_frame(census_locals_add, cl) < 0) {
        census_locals_free(cl);
        return -1;
    }
    return 0;
}

/* [(type, count, bytes, retained or -1), ...] */
static PyObject *
census_rows_list(census_table *t, int with_retained)
{
    PyObject *res = PyList_New(0);
    if (res == NULL) {
        return NULL;
    }
    for (size_t i = 0; i <= t->mask; i++) {
        census_row *r = &t->rows[i];
        if (r->type == NULL || r->count == 0) {
            continue;
        }
        PyObject *row = Py_BuildValue("(OnnL)", (PyObject *)r->type, (Py_ssize_t)r->count,
                                      (Py_ssize_t)r->bytes,
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
    census_table t = {NULL, 0, 0};
    PyObject *tracked = NULL, *rows = NULL, *res = NULL;
    census_locals cl;

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
    if (census_locals_collect(&cl, own_globals, 0) < 0) {
        goto done;
    }
    locals_ready = 1;
    Py_ssize_t n = PyList_GET_SIZE(tracked);
    /* Instances with a materialized __dict__ first, so that each dict is
     * folded into its owner's row even when the gc lists put the dict
     * before the instance (the dict is younger). */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *op = PyList_GET_ITEM(tracked, i);
        PyTypeObject *tp = Py_TYPE(op);
        const size_typeinfo *ti = walk_typeinfo(&w, tp);
        if ((ti->flags & SIZE_F_INSTANCE) && layout_instance_dict(op, tp) != NULL) {
            if (walk_run(&w, &op, 1, NULL, census_visit, &t) < 0) {
                goto done;
            }
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *op = PyList_GET_ITEM(tracked, i);
        if (walk_run(&w, &op, 1, NULL, census_visit, &t) < 0) {
            goto done;
        }
    }
    for (size_t i = 0; i < cl.n; i++) {
        if (walk_run(&w, &cl.vals[i], 1, NULL, census_visit, &t) < 0) {
            goto done;
        }
    }
    /* rows before dropping the list: it keeps the types alive */
    rows = census_rows_list(&t, 0);
    if (rows == NULL) {
        goto done;
    }
    size_t scratch = walk_scratch_bytes(&w);
    if (w.peak_scratch > scratch) {
        scratch = w.peak_scratch;
    }
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
    free(t.rows);
    if (locals_ready) {
        census_locals_free(&cl);
    }
    return res;
}

/* ---- census with retained sizes: heap graph + dominator tree ---------- */

/* Per-class retained bytes: what would be freed if every instance of the
 * class went away, taken as the union of the dominator subtrees of its
 * instances -- an instance counts unless another instance of the same
 * class dominates it (then it is inside that one's subtree already). One
 * iterative DFS over the dominator tree, counting per row how many
 * instances are open on the current path.  Returns the peak scratch bytes,
 * or 0 if out of memory. */
static size_t
census_class_retained(dom_tree *d, graph_t *g, census_table *t)
{
    size_t m = d->m;
    size_t scap = 1024, sp = 0, peak = 0;
    uint32_t *koff = calloc(m + 1, sizeof(uint32_t));
    uint32_t *kids = malloc((m + 1) * sizeof(uint32_t));
    uint32_t *stack = malloc(scap * sizeof(uint32_t));

    if (koff == NULL || kids == NULL || stack == NULL) {
        goto done;
    }
    for (size_t k = 1; k < m; k++) {
        koff[d->idom[k] + 1]++;
    }
    for (size_t k = 0; k < m; k++) {
        koff[k + 1] += koff[k];
    }
    for (size_t k = 1; k < m; k++) {
        kids[koff[d->idom[k]]++] = (uint32_t)k;
    }
    for (size_t k = m; k > 0; k--) {
        koff[k] = koff[k - 1];
    }
    koff[0] = 0;
    stack[sp++] = 0;
    while (sp > 0) {
        uint32_t x = stack[--sp];
        int leaving = (x & 0x80000000u) != 0;
        uint32_t k = x & 0x7fffffffu;
        census_row *r = NULL;
        if (k != 0 && !(g->flags[d->vert[k]] & GRAPH_F_FOLDED)) {
            /* every row exists already: this only looks up */
            r = census_table_get(t, Py_TYPE(g->objs[d->vert[k]]));
        }
        if (leaving) {
            if (r != NULL) {
                r->open--;
            }
            continue;
        }
        if (r != NULL) {
            if (r->open == 0) {
                r->retained += d->retained[k];
            }
            r->open++;
        }
        size_t need = sp + 1 + (koff[k + 1] - koff[k]);
        if (need > scap) {
            while (need > scap) {
                scap *= 2;
            }
            uint32_t *ns = realloc(stack, scap * sizeof(uint32_t));
            if (ns == NULL) {
                goto done;
            }
            stack = ns;
        }
        stack[sp++] = k | 0x80000000u;
        for (uint32_t e = koff[k]; e < koff[k + 1]; e++) {
            stack[sp++] = kids[e];
        }
    }
    peak = 2 * (m + 1) * sizeof(uint32_t) + scap * sizeof(uint32_t);
done:
    free(koff);
    free(kids);
    free(stack);
    return peak;
}

static PyObject *
census_with_retained(PyObject *own_globals)
{
    graph_t g;
    dom_tree d;
    int dom_ready = 0;
    census_table t = {NULL, 0, 0};
    PyObject *rows = NULL, *res = NULL;
    size_t total = 0, count = 0;

    if (census_table_init(&t) < 0) {
        return PyErr_NoMemory();
    }
    {
        census_locals cl;
        if (census_locals_collect(&cl, own_globals, 0) < 0) {
            free(t.rows);
            return NULL;
        }
        int rc = graph_build(&g, cl.vals, (Py_ssize_t)cl.n, cl.own, (Py_ssize_t)cl.nown);
        census_locals_free(&cl);
        if (rc < 0) {
            free(t.rows);
            return NULL;
        }
    }
    /* first create every row, so that the table no longer moves */
    for (size_t i = 0; i < g.n; i++) {
        if (!(g.flags[i] & GRAPH_F_FOLDED) && census_table_get(&t, Py_TYPE(g.objs[i])) == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    /* rows: a folded __dict__ belongs to its owner's row */
    for (size_t i = 0; i < g.n; i++) {
        if (g.flags[i] & GRAPH_F_FOLDED) {
            continue;
        }
        PyObject *op = g.objs[i];
        PyTypeObject *tp = Py_TYPE(op);
        census_row *r = census_table_get(&t, tp);
        size_t sz = graph_size(&g, (uint32_t)i);
        if (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) {
            PyObject *dict = layout_instance_dict(op, tp);
            if (dict != NULL) {
                uint32_t j = graph_node(&g, dict);
                if (j != GRAPH_NONE && (g.flags[j] & GRAPH_F_FOLDED)) {
                    sz += graph_size(&g, j);
                }
            }
        }
        r->count++;
        r->bytes += sz;
        total += sz;
        count++;
    }
    if (dom_build(&d, &g, 1) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    dom_ready = 1;
    size_t class_peak = census_class_retained(&d, &g, &t);
    if (class_peak == 0) {
        PyErr_NoMemory();
        goto done;
    }
    rows = census_rows_list(&t, 1);
    if (rows == NULL) {
        goto done;
    }
    /* peak: building the graph, or the graph plus the dominator phase
     * (plus the tree's arrays while classes are summed) */
    size_t held = graph_held_bytes(&g);
    size_t dom_kept = (g.n + 1 + d.m) * sizeof(uint32_t) + d.m * sizeof(uint64_t);
    size_t scratch = g.scratch;
    if (d.scratch > scratch) {
        scratch = d.scratch;
    }
    if (held + dom_kept + class_peak > scratch) {
        scratch = held + dom_kept + class_peak;
    }
    res = Py_BuildValue("(Onnnnn)", rows, (Py_ssize_t)count, (Py_ssize_t)total,
                        (Py_ssize_t)scratch, (Py_ssize_t)g.warnings, (Py_ssize_t)d.m - 1);
done:
    if (dom_ready) {
        dom_free(&d);
    }
    Py_XDECREF(rows);
    free(t.rows);
    graph_free(&g);
    return res;
}

PyDoc_STRVAR(census_census_doc,
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

PyDoc_STRVAR(census_retained_doc,
"retained_size(obj, /) -> (bytes, count)\n--\n\n"
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

/* A root with a name: a module's globals or a frame's local variable. */
typedef struct {
    uint32_t node;
    PyObject *label;    /* borrowed module name, or NULL for a frame local */
    PyCodeObject *code; /* strong reference, for a frame local */
    Py_ssize_t slot;    /* fast-local index */
} census_named_root;

typedef struct {
    graph_t *g;
    census_named_root *named;
    size_t n, cap;
    PyObject *own_globals;
} census_named;

static int
census_named_add(census_named *nm, uint32_t node, PyObject *label, PyCodeObject *code,
                 Py_ssize_t slot)
{
    if (nm->n == nm->cap) {
        size_t ncap = nm->cap ? nm->cap * 2 : 256;
        census_named_root *nn = realloc(nm->named, ncap * sizeof(census_named_root));
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

/* census_frame_fn: every local variable that is a node becomes a named
 * root (a cell's contents for a variable captured by a closure). */
static int
census_named_frame(void *arg, layout_frame *f, PyCodeObject *co)
{
    census_named *nm = arg;
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
        if (j != GRAPH_NONE && census_named_add(nm, j, NULL, co, s) < 0) {
            return -1;
        }
    }
    return 0;
}

static PyObject *
census_root_label(graph_t *g, const census_named_root *nr, uint32_t node)
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
census_render_path(graph_t *g, const uint32_t *path, size_t len,
                   const census_named_root *nr)
{
    PyObject *parts = PyList_New(0), *lab = NULL, *res = NULL;
    if (parts == NULL) {
        return NULL;
    }
    lab = census_root_label(g, nr, path[0]);
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
            ns = child;  /* instance -> its __dict__ -> value: ".attr" */
        }
        else if (PyModule_Check(parent) && PyModule_GetDict(parent) == child) {
            ns = child;  /* module -> its dict -> value: ".name" */
        }
        if (i == 1 && nr != NULL && nr->label != NULL) {
            /* a module's globals: "mod.name" */
            lab = edge_dict_label(parent, child, 1);
        }
        else if (ns != NULL && i + 1 < len) {
            lab = edge_dict_label(ns, g->objs[path[i + 1]], 1);
            i++;
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

PyDoc_STRVAR(census_why_doc,
"why_alive(obj, max_paths, modules, own_globals, /) -> (paths, referrers, reached)\n--\n\n"
"modules: [(name, globals dict)]; own_globals: the globals of memlens's own\n"
"code, whose frames are left out.  paths: the shortest reference chains\n"
"from a root to obj, rendered as expressions.");

static PyObject *
census_why_alive(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    graph_t g;
    int graph_ready = 0;
    census_named nm = {NULL, NULL, 0, 0, NULL};
    census_named_root *named = NULL;
    size_t nnamed = 0;
    uint32_t *parent = NULL, *dist = NULL, *queue = NULL, *named_of = NULL, *path = NULL;
    uint32_t *cands = NULL;
    PyObject *paths = NULL, *res = NULL;

    if (nargs != 4 || !PyList_Check(args[2]) || !PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "why_alive(obj, max_paths, modules: list, own_globals: dict)");
        return NULL;
    }
    PyObject *obj = args[0];
    Py_ssize_t max_paths = PyLong_AsSsize_t(args[1]);
    if (max_paths < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "max_paths must be >= 0");
        }
        return NULL;
    }
    PyObject *modules = args[2], *own_globals = args[3];
    /* Nodes: everything, obj and the frames' locals included.  Left out:
     * our list of modules and its (name, globals) pairs, and the frame
     * objects of memlens's own calls (on 3.9/3.10 they report their
     * locals, obj among them). */
    {
        census_locals cl;
        if (census_locals_collect(&cl, own_globals, 1) < 0) {
            return NULL;
        }
        Py_DECREF(cl.vals[0]);
        Py_INCREF(obj);
        cl.vals[0] = obj;
        Py_ssize_t nmod = PyList_GET_SIZE(modules);
        size_t nex = cl.nown + 1 + (size_t)nmod;
        PyObject **ex = malloc(nex * sizeof(PyObject *));
        if (ex == NULL) {
            census_locals_free(&cl);
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
        census_locals_free(&cl);
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
        if (j != GRAPH_NONE && census_named_add(&nm, j, PyTuple_GET_ITEM(item, 0), NULL, 0) < 0) {
            goto done;
        }
    }
    if (census_each_frame(census_named_frame, &nm) < 0) {
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
        PyObject *s = census_render_path(&g, path, 1, &named[named_of[t]]);
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
        const census_named_root *nr = named_of[root] == GRAPH_NONE ? NULL : &named[named_of[root]];
        PyObject *s = census_render_path(&g, path, len, nr);
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

static PyMethodDef census_methods[] = {
    {"census", (PyCFunction)(void (*)(void))census_census, METH_FASTCALL, census_census_doc},
    {"retained_size", (PyCFunction)census_retained, METH_O, census_retained_doc},
    {"why_alive", (PyCFunction)(void (*)(void))census_why_alive, METH_FASTCALL, census_why_doc},
    {NULL, NULL, 0, NULL},
};

int
census_api_module_exec(PyObject *m)
{
    return PyModule_AddFunctions(m, census_methods);
}
