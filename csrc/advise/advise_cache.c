/* advise_cache.c: which values of a cache dict only that dict keeps alive,
 * and what they retain (advise_cache.h).  Prefix advc_. */
#include "advise/advise_cache.h"
#include "census/census_graph.h"

#include <stdlib.h>
#include <string.h>

/* Can instances of `t` be weakly referenced?  3.12+ managed weak
 * references use a negative tp_weaklistoffset, so any non-zero offset
 * counts. */
static int
advc_weakrefable(PyTypeObject *t)
{
    return t->tp_weaklistoffset != 0;
}

static void
advc_note_type(advc_row *r, PyTypeObject *t)
{
    for (int i = 0; i < r->ntypes; i++) {
        if (r->unweak_types[i] == t) {
            return;
        }
    }
    if (r->ntypes < ADVC_MAX_TYPES) {
        Py_INCREF(t);
        r->unweak_types[r->ntypes++] = t;
    }
}

/* First pass over one dict: count, and take a strong reference to every
 * value whose only reference is the dict's (weakly referenceable or not:
 * the advice names what would make it so), into
 * (*held)[*nheld...].  No Python code runs while the dict is iterated:
 * only refcounts and types are read.  -1 if out of memory. */
static int
advc_classify(PyObject *d, advc_row *r, PyObject ***held, size_t *nheld, size_t *cap)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;

    while (PyDict_Next(d, &pos, &key, &value)) {
        r->values++;
        if (!advc_weakrefable(Py_TYPE(value))) {
            r->unweak++;
            advc_note_type(r, Py_TYPE(value));
        }
        /* refcount 1: the dict's own reference is the only one (an
         * immortal object on 3.12+ has a huge count: shared) */
        if (Py_REFCNT(value) != 1) {
            r->shared++;
            continue;
        }
        r->held_only++;
        if (*nheld == *cap) {
            size_t ncap = *cap ? *cap * 2 : 64;
            PyObject **grown = realloc(*held, ncap * sizeof(PyObject *));
            if (grown == NULL) {
                return -1;
            }
            *held = grown;
            *cap = ncap;
        }
        Py_INCREF(value);
        (*held)[(*nheld)++] = value;
    }
    return 0;
}

int
advc_check(PyObject *dicts, advc_row *rows)
{
    Py_ssize_t n = PyList_GET_SIZE(dicts);
    PyObject **held = NULL; /* strong: the held-only values of every dict */
    size_t *start = NULL;   /* [n + 1]: dict i's values are held[start[i]..] */
    uint32_t *nodes = NULL;
    size_t nheld = 0, cap = 0;
    int graph_built = 0, rc = -1;
    graph_t g;

    start = calloc((size_t)n + 1, sizeof(size_t));
    if (start == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        start[i] = nheld;
        PyObject *d = PyList_GET_ITEM(dicts, i);
        if (!PyDict_CheckExact(d)) {
            PyErr_SetString(PyExc_TypeError, "advise_caches() needs a list of dicts");
            goto done;
        }
        if (advc_classify(d, &rows[i], &held, &nheld, &cap) < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    start[n] = nheld;
    if (nheld == 0) {
        rc = 0;
        goto done;
    }
    /* The values are nodes of the graph, held from outside it by `held`
     * (graph_retained_set marks the set first, so that does not make them
     * roots).  The list of dicts is the caller's temporary: left out. */
    if (graph_build(&g, NULL, 0, &dicts, 1) < 0) {
        goto done;
    }
    graph_built = 1;
    nodes = malloc(nheld * sizeof(uint32_t));
    if (nodes == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        size_t k = 0;
        for (size_t j = start[i]; j < start[i + 1]; j++) {
            uint32_t node = graph_node(&g, held[j]);
            if (node != GRAPH_NONE) {
                nodes[k++] = node;
            }
        }
        if (k > 0 && graph_retained_set(&g, nodes, k, &rows[i].bytes, &rows[i].count) < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    rc = 0;
done:
    if (graph_built) {
        graph_free(&g);
    }
    free(nodes);
    free(start);
    /* last: dropping these may run finalizers (a value the program let go
     * of meanwhile); nothing borrowed is used after this */
    for (size_t j = 0; j < nheld; j++) {
        Py_DECREF(held[j]);
    }
    free(held);
    return rc;
}

void
advc_rows_free(advc_row *rows, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        for (int j = 0; j < rows[i].ntypes; j++) {
            Py_CLEAR(rows[i].unweak_types[j]);
        }
        rows[i].ntypes = 0;
    }
}

/* What advc_lru_parts looks for in the traversal. */
typedef struct {
    PyObject *dict, *func; /* borrowed until the traversal returns */
} advc_lru_found;

/* visitproc: keep the first exact dict and the first function visited.
 * Only pointers and types are read: no Python code runs during the
 * traversal. */
static int
advc_lru_visit(PyObject *op, void *arg)
{
    advc_lru_found *f = arg;
    if (op == NULL) {
        return 0;
    }
    if (f->dict == NULL && PyDict_CheckExact(op)) {
        f->dict = op;
    }
    else if (f->func == NULL && PyFunction_Check(op)) {
        f->func = op;
    }
    return f->dict != NULL && f->func != NULL; /* non-zero stops it */
}

int
advc_lru_parts(PyObject *wrapper, PyObject **dict, PyObject **func)
{
    PyTypeObject *tp = Py_TYPE(wrapper);
    advc_lru_found f = {NULL, NULL};

    *dict = *func = NULL;
    /* the visiting order above holds for this one C type only: a subclass
     * or a look-alike could visit another dict first */
    if (strcmp(tp->tp_name, "functools._lru_cache_wrapper") != 0 || tp->tp_traverse == NULL) {
        PyErr_SetString(PyExc_TypeError, "advise_lru_parts() needs a functools._lru_cache_wrapper");
        return -1;
    }
    (void)tp->tp_traverse(wrapper, advc_lru_visit, &f);
    Py_XINCREF(f.dict);
    Py_XINCREF(f.func);
    *dict = f.dict;
    *func = f.func;
    return 0;
}
