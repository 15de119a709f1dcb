/* walk.c: the heap walker (walk_; see walk.h). */
#include "heap/walk.h"
#include "cpython/cpy_layout.h"
#include "heap/walk_buffer.h"

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
    /* Release the pins last: a deallocator may run arbitrary code. */
    PyObject **keep = w->keep;
    size_t nkeep = w->nkeep;
    size_t pinned = w->pinned < w->depth ? w->pinned : w->depth;
    for (size_t i = 0; i < pinned; i++) {
        Py_DECREF(w->stack[i].obj);
    }
    free(w->stack);
    w->stack = NULL;
    w->depth = w->pinned = 0;
    w->keep = NULL;
    w->nkeep = w->keepcap = 0;
    visit_free(&w->seen);
    for (size_t i = 0; i < nkeep; i++) {
        Py_DECREF(keep[i]);
    }
    free(keep);
}

/* Keep `op` alive until walk_free.  -1 if out of memory. */
static int
walk_keep(walk_t *w, PyObject *op)
{
    if (w->nkeep == w->keepcap) {
        size_t ncap = w->keepcap ? w->keepcap * 2 : 64;
        PyObject **nk = realloc(w->keep, ncap * sizeof(PyObject *));
        if (nk == NULL) {
            return -1;
        }
        w->keep = nk;
        w->keepcap = ncap;
    }
    Py_INCREF(op);
    w->keep[w->nkeep++] = op;
    return 0;
}

/* Before running code that may free objects (a type's own __sizeof__):
 * take a strong reference to every stack item not yet pinned, and to `op`,
 * the object being sized. */
static void
walk_pin_stack(walk_t *w)
{
    for (size_t i = w->pinned; i < w->depth; i++) {
        Py_INCREF(w->stack[i].obj);
    }
    w->pinned = w->depth;
}

static int
walk_pin(walk_t *w, PyObject *op)
{
    walk_pin_stack(w);
    return walk_keep(w, op);
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
    if (ti->type != tp || ti->gen != w->types_gen) {
        size_typeinfo_init(ti, tp);
        ti->gen = w->types_gen;
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
    w->refs++;
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
    /* The object is read when popped; start the cache miss now so that it
     * overlaps with the work on its siblings (scattered heaps are bound by
     * memory latency, not by instructions). */
    __builtin_prefetch(obj, 1, 3);
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

/* Push what an object outside the collector holds without telling it
 * (walk_buffer.h): a numpy array's base, and the items of an object
 * buffer.  Counts a warning for memory it cannot follow.  -1 if out of
 * memory. */
static int
walk_push_buffer_items(walk_push_ctx *c, PyObject *op, unsigned flags)
{
    walk_t *w = c->w;
    PyObject *base = walkbuf_ndarray_base(op, flags);
    Py_buffer v;
    int unseen = 0;

    if (base != NULL && walk_push(c, base) < 0) {
        return -1;
    }
    walkbuf_plan_t plan = walkbuf_plan(op, flags);
    if (plan == WALKBUF_UNSEEN) {
        w->warnings++;
        return 0;
    }
    if (plan == WALKBUF_NONE) {
        return 0;
    }
    /* numpy's bf_getbuffer runs no Python code; another extension's may,
     * and its bf_releasebuffer too: pin what the walk holds before each,
     * as for a __sizeof__ (the items pushed in between included) */
    int foreign = !(flags & SIZE_F_NDARRAY);
    if (foreign && walk_pin(w, op) < 0) {
        return -1;
    }
    int got = walkbuf_get(op, flags, &v, &unseen);
    if (got) {
        int r = walkbuf_visit(&v, walk_visitproc, c);
        if (foreign) {
            walk_pin_stack(w);
        }
        walkbuf_release(&v);
        if (r < 0) {
            return -1;
        }
    }
    if (foreign) {
        w->types_gen++; /* that code may have freed a cached type */
    }
    if (unseen) {
        w->warnings++;
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
        return 1; /* per type: classes, modules, functions, ... */
    }
    return size_is_shared_value(op, tp);
}

int
walk_run(walk_t *w, PyObject *const *roots, Py_ssize_t nroots, const size_t *tags, walk_fn fn,
         void *arg)
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
    w->refs -= (size_t)nroots; /* the roots are not references */
    size_t nroot_items = w->depth - base;
    size_t roots_left = nroot_items;

    while (w->depth > base) {
        walk_item it = w->stack[--w->depth];
        PyObject *op = it.obj;
        if (w->depth < w->pinned) {
            /* a pinned item: hand its reference to the keep list, since
             * dropping it now could free its children we are about to push */
            w->pinned = w->depth;
            if (walk_keep(w, op) < 0) {
                goto oom;
            }
            Py_DECREF(op);
        }
        PyTypeObject *tp = Py_TYPE(op);
        const size_typeinfo *ti = walk_typeinfo(w, tp);
        /* Items below the roots' mark were pushed as roots. */
        int is_root = roots_left > 0 && w->depth < base + roots_left;
        if (is_root) {
            roots_left = w->depth - base;
        }

        if (!is_root && walk_is_excluded(w, op, tp, ti)) {
            continue;
        }

        /* A __sizeof__ is about to run: what the walk still holds is pinned,
         * and so is the type, which the rest of this step reads (the call
         * may reassign op.__class__ and free the old class). */
        if (ti->kind == SIZE_CALL && (walk_pin(w, op) < 0 || walk_keep(w, (PyObject *)tp) < 0)) {
            goto oom;
        }
        int runs_code = ti->kind == SIZE_CALL;
        size_t size = size_of(ti, op, &w->warnings);
        if (runs_code) {
            w->types_gen++;
        }
        c.tag = it.tag;

        /* Fold an instance's __dict__ into it (never creating one). */
        PyObject *dict = NULL;
        if ((ti->flags & SIZE_F_INSTANCE) && !w->nofold) {
            dict = layout_instance_dict(op, tp);
            if (dict != NULL && PyDict_Check(dict)) {
                int r = visit_add(&w->seen, dict);
                if (r < 0) {
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
                goto error;
            }
            c.tag = child_tag;
        }
        w->total = size_add(w->total, size);
        w->count++;

        /* Children. */
        if (w->nofold && (ti->flags & SIZE_F_INSTANCE)) {
            /* the dict is a child like any other (tp_traverse reports it on
             * most versions; pushing it again is a no-op) */
            PyObject *d = layout_instance_dict(op, tp);
            if (d != NULL && walk_push(&c, d) < 0) {
                goto oom; /* op is borrowed: nothing to release */
            }
        }
        if (dict != NULL && walk_push_dict_items(&c, dict) < 0) {
            goto oom;
        }
        if (ti->kind == SIZE_DICT) {
            if (walk_push_dict_items(&c, op) < 0) {
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
        if ((ti->flags & SIZE_F_BUFFER) && !c.oom) {
            if (walk_push_buffer_items(&c, op, ti->flags) < 0) {
                goto oom;
            }
        }
        if (c.oom) {
            goto oom;
        }
    }
    return 0;

oom:
    PyErr_NoMemory();
error:
    /* Forget what this run pushed; pinned items go to the keep list, which
     * walk_free releases. */
    while (w->depth > base) {
        w->depth--;
        if (w->depth < w->pinned) {
            w->pinned = w->depth;
            if (walk_keep(w, w->stack[w->depth].obj) == 0) {
                Py_DECREF(w->stack[w->depth].obj);
            }
            /* out of memory here leaks one reference rather than freeing
             * an object that may still be in use */
        }
    }
    return -1;
}
