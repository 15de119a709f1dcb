/* walk_: the heap walker (see walk.h). */
#include "walk.h"
#include "layout.h"

#include <stdlib.h>
#include <string.h>

int
walk_init(walk_t *w, int shared)
{
    memset(w, 0, sizeof(*w));
    w->shared = shared;
    w->cap = 1024;
    w->stack = malloc(w->cap * sizeof(walk_item));
    if (w->stack == NULL || visit_init(&w->seen) < 0) {
        free(w->stack);
        w->stack = NULL;
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

void
walk_free(walk_t *w)
{
    /* drop the references still held by an interrupted walk */
    while (w->depth > 0) {
        w->depth--;
        Py_DECREF(w->stack[w->depth].obj);
    }
    free(w->stack);
    w->stack = NULL;
    visit_free(&w->seen);
}

size_t
walk_scratch_bytes(const walk_t *w)
{
    return w->seen.bytes + w->cap * sizeof(walk_item);
}

const size_typeinfo *
walk_typeinfo(walk_t *w, PyTypeObject *tp)
{
    size_t h = ((uintptr_t)tp >> 4) & (WALK_TYPE_CACHE - 1);
    size_typeinfo *ti = &w->types[h];
    if (ti->type != tp) {
        size_typeinfo_init(ti, tp);
    }
    return ti;
}

static int
walk_grow(walk_t *w)
{
    size_t ncap = w->cap * 2;
    walk_item *ns = realloc(w->stack, ncap * sizeof(walk_item));
    if (ns == NULL) {
        return -1;
    }
    w->stack = ns;
    w->cap = ncap;
    size_t scratch = walk_scratch_bytes(w);
    if (scratch > w->peak_scratch) {
        w->peak_scratch = scratch;
    }
    return 0;
}

/* State of one visit: the walk, and the tag the children get. */
typedef struct {
    walk_t *w;
    size_t tag;
    int oom;
} walk_push_ctx;

static inline int
walk_push(walk_push_ctx *c, PyObject *obj)
{
    walk_t *w = c->w;
    int r = visit_add(&w->seen, obj);
    if (r <= 0) {
        if (r < 0) {
            c->oom = 1;
            return -1;
        }
        return 0;
    }
    if (w->depth == w->cap && walk_grow(w) < 0) {
        c->oom = 1;
        return -1;
    }
    Py_INCREF(obj);
    w->stack[w->depth].obj = obj;
    w->stack[w->depth].tag = c->tag;
    w->depth++;
    return 0;
}

static int
walk_visitproc(PyObject *obj, void *arg)
{
    if (obj == NULL) {
        return 0; /* a careless extension tp_traverse calling visit(NULL) */
    }
    return walk_push((walk_push_ctx *)arg, obj);
}

/* Push a dict's keys and values.  PyDict_Next allocates nothing. */
static int
walk_push_dict_items(walk_push_ctx *c, PyObject *d)
{
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (walk_push(c, k) < 0 || walk_push(c, v) < 0) {
            return -1;
        }
    }
    return 0;
}

int
walk_exclude(walk_t *w, PyObject *obj)
{
    if (visit_add(&w->seen, obj) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Is `op` something the walk neither counts nor enters by default? */
static inline int
walk_is_excluded(walk_t *w, PyObject *op, PyTypeObject *tp, const size_typeinfo *ti)
{
    if (w->shared) {
        return 0;
    }
    if (ti->flags & SIZE_F_PROGRAM) {
        return 1;
    }
    if (PyType_FastSubclass(tp, Py_TPFLAGS_TYPE_SUBCLASS)) {
        return 1;
    }
    return size_is_shared_value(op, tp);
}

int
walk_run(walk_t *w, PyObject *const *roots, Py_ssize_t nroots,
         const size_t *tags, walk_fn fn, void *arg)
{
    walk_push_ctx c = {w, 0, 0};
    size_t base = w->depth;

    /* Roots go on in reverse so the first root is visited first. */
    for (Py_ssize_t i = nroots - 1; i >= 0; i--) {
        c.tag = tags ? tags[i] : 0;
        if (walk_push(&c, roots[i]) < 0) {
            goto oom;
        }
    }
    size_t nroot_items = w->depth - base;
    size_t roots_left = nroot_items;

    while (w->depth > base) {
        walk_item it = w->stack[--w->depth];
        PyObject *op = it.obj;
        PyTypeObject *tp = Py_TYPE(op);
        const size_typeinfo *ti = walk_typeinfo(w, tp);
        /* Items below the roots' mark were pushed as roots. */
        int is_root = roots_left > 0 && w->depth < base + roots_left;
        if (is_root) {
            roots_left = w->depth - base;
        }

        if (!is_root && walk_is_excluded(w, op, tp, ti)) {
            Py_DECREF(op);
            continue;
        }

        size_t size = size_of(ti, op, &w->warnings);
        c.tag = it.tag;

        /* Fold an instance's __dict__ into it (never creating one). */
        PyObject *dict = NULL;
        if ((ti->flags & SIZE_F_INSTANCE) && !w->nofold) {
            dict = layout_instance_dict(op, tp);
            if (dict != NULL && PyDict_Check(dict)) {
                int r = visit_add(&w->seen, dict);
                if (r < 0) {
                    Py_DECREF(op);
                    goto oom;
                }
                if (r == 0) {
                    dict = NULL; /* already counted elsewhere */
                }
                else {
                    size += size_dict(dict, Py_TYPE(dict));
                }
            }
            else {
                dict = NULL;
            }
        }

        if (fn != NULL) {
            size_t child_tag = it.tag;
            if (fn(w, op, size, it.tag, &child_tag, arg) < 0) {
                Py_DECREF(op);
                goto error;
            }
            c.tag = child_tag;
        }
        w->total += size;
        w->count++;

        /* Children. */
        if (w->nofold && (ti->flags & SIZE_F_INSTANCE)) {
            /* the dict is a child like any other (tp_traverse reports it on
             * most versions; pushing it again is a no-op) */
            PyObject *d = layout_instance_dict(op, tp);
            if (d != NULL && walk_push(&c, d) < 0) {
                Py_DECREF(op);
                goto oom;
            }
        }
        if (dict != NULL && walk_push_dict_items(&c, dict) < 0) {
            Py_DECREF(op);
            goto oom;
        }
        if (ti->kind == SIZE_DICT) {
            if (walk_push_dict_items(&c, op) < 0) {
                Py_DECREF(op);
                goto oom;
            }
            /* a dict subclass's own attributes come from its traverse */
            if (!(ti->flags & SIZE_F_EXACT) && tp->tp_traverse != NULL) {
                (void)tp->tp_traverse(op, walk_visitproc, &c);
            }
        }
        else if (tp->tp_traverse != NULL && PyType_IS_GC(tp)
                 && (tp->tp_is_gc == NULL || tp->tp_is_gc(op))) {
            /* static types are not GC objects: type_traverse asserts */
            (void)tp->tp_traverse(op, walk_visitproc, &c);
        }
        Py_DECREF(op);
        if (c.oom) {
            goto oom;
        }
    }
    return 0;

oom:
    PyErr_NoMemory();
error:
    /* drop what this run pushed */
    while (w->depth > base) {
        w->depth--;
        Py_DECREF(w->stack[w->depth].obj);
    }
    return -1;
}
