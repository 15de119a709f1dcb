/* advise_scan.c: the heap scan behind memlens.advise() (adv_; see
 * advise_scan.h). */
#include "advise/advise_scan.h"
#include "cpython/cpy_layout.h"
#include "heap/walk_attrs.h"
#include "heap/walk_size.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---- growable tables (malloc'd scratch) --------------------------------- */

static void *
adv_grow(void *p, size_t *cap, size_t elem, size_t need)
{
    if (need <= *cap) {
        return p;
    }
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        ncap *= 2;
    }
    void *np = realloc(p, ncap * elem);
    if (np == NULL) {
        return NULL;
    }
    memset((char *)np + *cap * elem, 0, (ncap - *cap) * elem);
    *cap = ncap;
    return np;
}

/* ---- content hashing (without touching the objects' cached hashes) ----- */

static uint64_t
adv_hash_bytes(const void *data, size_t n, uint64_t h)
{
    /* 8 bytes a step, then the tail: a multiply-xorshift mix */
    const unsigned char *p = data;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
    }
    for (; i < n; i++) {
        h = (h ^ p[i]) * 0x100000001b3ULL;
    }
    return h ^ (h >> 32);
}

static inline int
adv_str_plain(PyObject *s)
{
    return PyUnicode_CheckExact(s) && PyUnicode_IS_COMPACT(s);
}

static uint64_t
adv_str_hash(PyObject *s)
{
    size_t len = (size_t)PyUnicode_GET_LENGTH(s);
    unsigned kind = PyUnicode_KIND(s);
    uint64_t h = 0xcbf29ce484222325ULL ^ (kind * 31 + len);
    return adv_hash_bytes(PyUnicode_DATA(s), len * kind, h);
}

static int
adv_str_equal(PyObject *a, PyObject *b)
{
    Py_ssize_t len = PyUnicode_GET_LENGTH(a);
    return len == PyUnicode_GET_LENGTH(b) && PyUnicode_KIND(a) == PyUnicode_KIND(b)
           && memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)len * PyUnicode_KIND(a)) == 0;
}

/* Duplicate tuples are looked for only up to this length. */
#define ADV_DUP_TUPLE_MAX 16

/* A list's spare capacity is reported from ADV_SPARE_MIN free slots, and
 * only when they are more than a quarter of its length. */
#define ADV_SPARE_MIN 8

/* A list of numbers is suggested as an array from this many items. */
#define ADV_NUMLIST_MIN 8

/* Tuples of scalars only (compact ints, floats, plain strs, None, bools). */
static int
adv_tuple_hash(PyObject *t, uint64_t *out)
{
    Py_ssize_t n = PyTuple_GET_SIZE(t);
    uint64_t h = 0x84222325cbf29ce4ULL ^ (uint64_t)n;
    if (n == 0 || n > ADV_DUP_TUPLE_MAX) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyTuple_GET_ITEM(t, i);
        if (v == Py_None || PyBool_Check(v)) {
            h = adv_hash_bytes(&v, sizeof(v), h);
        }
        else if (PyLong_CheckExact(v)) {
            int overflow = 0;
            long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (overflow) {
                return 0;
            }
            h = adv_hash_bytes(&x, sizeof(x), h ^ 1);
        }
        else if (PyFloat_CheckExact(v)) {
            double x = PyFloat_AS_DOUBLE(v);
            h = adv_hash_bytes(&x, sizeof(x), h ^ 2);
        }
        else if (adv_str_plain(v)) {
            h ^= adv_str_hash(v);
            h *= 0x100000001b3ULL;
        }
        else {
            return 0;
        }
    }
    *out = h;
    return 1;
}

static int
adv_scalar_equal(PyObject *a, PyObject *b)
{
    if (a == b) {
        return 1;
    }
    if (Py_TYPE(a) != Py_TYPE(b)) {
        return 0;
    }
    if (PyLong_CheckExact(a)) {
        return PyLong_AsLongLong(a) == PyLong_AsLongLong(b);
    }
    if (PyFloat_CheckExact(a)) {
        double x = PyFloat_AS_DOUBLE(a), y = PyFloat_AS_DOUBLE(b);
        return memcmp(&x, &y, sizeof(x)) == 0;
    }
    if (PyUnicode_CheckExact(a)) {
        return adv_str_equal(a, b);
    }
    return 0;
}

static int
adv_tuple_equal(PyObject *a, PyObject *b)
{
    Py_ssize_t n = PyTuple_GET_SIZE(a);
    if (n != PyTuple_GET_SIZE(b)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!adv_scalar_equal(PyTuple_GET_ITEM(a, i), PyTuple_GET_ITEM(b, i))) {
            return 0;
        }
    }
    return 1;
}

/* 1 if an equal object was already seen (obj is a duplicate), 0 if obj is
 * the first of its content, -1 out of memory. */
static int
adv_dup_check(adv_dup_table *t, PyObject *obj, uint64_t h, int (*eq)(PyObject *, PyObject *))
{
    if ((t->used + 1) * 2 > t->mask + 1) {
        size_t nmask = t->mask ? t->mask * 2 + 1 : 1023;
        adv_dup_entry *ne = calloc(nmask + 1, sizeof(adv_dup_entry));
        if (ne == NULL) {
            return -1;
        }
        for (size_t i = 0; t->e != NULL && i <= t->mask; i++) {
            if (t->e[i].first == NULL) {
                continue;
            }
            size_t j = (size_t)t->e[i].hash & nmask;
            while (ne[j].first != NULL) {
                j = (j + 1) & nmask;
            }
            ne[j] = t->e[i];
        }
        free(t->e);
        t->e = ne;
        t->mask = nmask;
    }
    size_t i = (size_t)h & t->mask;
    while (t->e[i].first != NULL) {
        if (t->e[i].hash == h && eq(t->e[i].first, obj)) {
            return 1;
        }
        i = (i + 1) & t->mask;
    }
    t->e[i].hash = h;
    t->e[i].first = Py_NewRef(obj);
    t->used++;
    return 0;
}

/* ---- classes and sites -------------------------------------------------- */

/* A row of the class table: the class's index in adv_state.classes, plus
 * one (0: the row is new). */
typedef struct {
    PyTypeObject *type; /* the key; the table holds a reference */
    size_t index;
} adv_class_row;
WALK_TYPETAB_ROW(adv_class_row);

/* Slots the class table starts with: a typical program's heap holds a few
 * hundred classes. */
#define ADV_CLASS_SLOTS 256

static adv_class *
adv_class_for(adv_state *st, PyTypeObject *tp)
{
    adv_class_row *r = walk_typetab_get(&st->class_rows, tp);
    if (r == NULL) {
        return NULL;
    }
    if (r->index == 0) {
        adv_class *nc = adv_grow(st->classes, &st->capclasses, sizeof(adv_class), st->nclasses + 1);
        if (nc == NULL) {
            return NULL;
        }
        st->classes = nc;
        adv_class *c = &st->classes[st->nclasses];
        memset(c, 0, sizeof(*c));
        c->type = tp;
        r->index = ++st->nclasses;
    }
    return &st->classes[r->index - 1];
}

/* Sites are few (classes x attributes + 3), so a linear search (newest
 * first) is enough. */
static adv_site *
adv_site_for(adv_state *st, int kind, PyTypeObject *tp, PyObject *name, const char *slot)
{
    for (size_t i = st->nsites; i-- > 0;) {
        adv_site *s = &st->sites[i];
        if (s->kind == kind && s->type == tp && s->name == name && s->slot == slot) {
            return s;
        }
    }
    adv_site *ns = adv_grow(st->sites, &st->capsites, sizeof(adv_site), st->nsites + 1);
    if (ns == NULL) {
        return NULL;
    }
    st->sites = ns;
    adv_site *s = &st->sites[st->nsites++];
    memset(s, 0, sizeof(*s));
    s->kind = kind;
    s->type = tp;
    Py_XINCREF(name);
    s->name = name;
    s->slot = slot;
    return s;
}

static inline int
adv_int64(PyObject *v)
{
    int overflow = 0;
    (void)PyLong_AsLongLongAndOverflow(v, &overflow);
    return !overflow;
}

/* Charge `v` to site `s` (called once per value: the claim set decides). */
static int
adv_charge(adv_state *st, adv_site *s, PyObject *v)
{
    size_t dummy = 0;
    PyTypeObject *tp = Py_TYPE(v);
    const size_typeinfo *ti = walk_typeinfo(st->w, tp);

    if (adv_str_plain(v)) {
        int r = adv_dup_check(&st->strs, v, adv_str_hash(v), adv_str_equal);
        if (r < 0) {
            return -1;
        }
        if (r == 1) {
            s->dup_strs++;
            s->dup_str_bytes += size_of(ti, v, &dummy);
        }
        return 0;
    }
    if (PyTuple_CheckExact(v)) {
        uint64_t h;
        if (adv_tuple_hash(v, &h)) {
            int r = adv_dup_check(&st->tuples, v, h, adv_tuple_equal);
            if (r < 0) {
                return -1;
            }
            if (r == 1) {
                s->dup_tuples++;
                s->dup_tuple_bytes += size_of(ti, v, &dummy);
            }
        }
        return 0;
    }
    if (PyList_CheckExact(v)) {
        Py_ssize_t n = PyList_GET_SIZE(v), alloc = ((PyListObject *)v)->allocated;
        if (n == 0) {
            s->empty++;
            s->empty_bytes += size_of(ti, v, &dummy);
            return 0;
        }
        if (alloc - n >= ADV_SPARE_MIN && alloc > n + n / 4) {
            s->overalloc_lists++;
            s->overalloc_bytes += (size_t)(alloc - n) * sizeof(PyObject *);
        }
        if (n >= ADV_NUMLIST_MIN) {
            int all_float = 1, all_int = 1;
            size_t owned = 0;
            for (Py_ssize_t i = 0; i < n && (all_float || all_int); i++) {
                PyObject *x = PyList_GET_ITEM(v, i);
                all_float &= PyFloat_CheckExact(x);
                all_int &= PyLong_CheckExact(x) && adv_int64(x);
                /* items only this list holds go away with it; only exact
                 * floats and ints are sized (the sum counts only when all
                 * are one of them): another type's own __sizeof__ would run
                 * Python code inside the walk, before it pinned the item */
                if (Py_REFCNT(x) == 1 && (PyFloat_CheckExact(x) || PyLong_CheckExact(x))) {
                    owned += size_of(walk_typeinfo(st->w, Py_TYPE(x)), x, &dummy);
                }
            }
            size_t own = size_of(ti, v, &dummy) + owned;
            if (all_float) {
                s->flists++;
                s->fitems += (size_t)n;
                s->fbytes += own;
            }
            else if (all_int) {
                s->ilists++;
                s->iitems += (size_t)n;
                s->ibytes += own;
            }
        }
        return 0;
    }
    if ((PyDict_CheckExact(v) && PyDict_GET_SIZE(v) == 0)
        || (Py_TYPE(v) == &PySet_Type && PySet_GET_SIZE(v) == 0)) {
        s->empty++;
        s->empty_bytes += size_of(ti, v, &dummy);
    }
    return 0;
}

/* Values worth charging: strs, tuples, lists, dicts and sets. */
static inline int
adv_interesting(PyObject *v)
{
    return adv_str_plain(v) || PyTuple_CheckExact(v) || PyList_CheckExact(v) || PyDict_CheckExact(v)
           || Py_TYPE(v) == &PySet_Type;
}

/* Claim `v` for site `s` if nobody did yet. */
static int
adv_claim(adv_state *st, adv_site *s, PyObject *v)
{
    if (!adv_interesting(v)) {
        return 0;
    }
    int r = visit_add(&st->claimed, v);
    if (r < 0) {
        return -1;
    }
    if (r == 0) {
        return 0;
    }
    return adv_charge(st, s, v);
}

typedef struct {
    adv_state *st;
    adv_class *c;
} adv_attr_ctx;

/* Does the ASCII attribute name contain `word` (lower case), in any case?
 * Read in place: no str is made per instance. */
static int
adv_name_has(PyObject *name, const char *word)
{
    if (!adv_str_plain(name) || !PyUnicode_IS_ASCII(name)) {
        return 0;
    }
    const char *s = (const char *)PyUnicode_DATA(name);
    Py_ssize_t n = PyUnicode_GET_LENGTH(name);
    size_t wn = strlen(word);
    for (Py_ssize_t i = 0; i + (Py_ssize_t)wn <= n; i++) {
        size_t j = 0;
        while (j < wn && (char)tolower((unsigned char)s[i + (Py_ssize_t)j]) == word[j]) {
            j++;
        }
        if (j == wn) {
            return 1;
        }
    }
    return 0;
}

/* Keep an exact dict held by an attribute named like a cache, for the
 * weak-reference check (advise_caches) the advisor runs per class and
 * attribute; -1 if out of memory. */
static int
adv_note_cache(adv_attr *a, PyObject *v)
{
    if (a->name == NULL || !PyDict_CheckExact(v)
        || !(adv_name_has(a->name, "cache") || adv_name_has(a->name, "memo"))) {
        return 0;
    }
    PyObject **grown = adv_grow(a->caches, &a->capcaches, sizeof(PyObject *), a->ncaches + 1);
    if (grown == NULL) {
        return -1;
    }
    a->caches = grown;
    a->caches[a->ncaches++] = Py_NewRef(v);
    return 0;
}

/* attrs_fn: tally one attribute of an instance; -1 if out of memory. */
static int
adv_on_attr(const attrs_item *it, void *arg)
{
    adv_attr_ctx *ctx = arg;
    adv_class *c = ctx->c;
    adv_attr *a = NULL;
    PyObject *v = it->value;

    for (int i = 0; i < c->nattrs; i++) {
        if (c->attrs[i].name == it->name && c->attrs[i].slot == it->slot) {
            a = &c->attrs[i];
            break;
        }
    }
    /* Names are nearly always the same interned str; compare contents only
     * when the pointer was not found. */
    for (int i = 0; a == NULL && it->name != NULL && i < c->nattrs; i++) {
        PyObject *n = c->attrs[i].name;
        if (n != NULL && adv_str_plain(n) && adv_str_plain(it->name)
            && adv_str_equal(n, it->name)) {
            a = &c->attrs[i];
        }
    }
    if (a == NULL) {
        if (c->nattrs == ADV_MAX_ATTRS) {
            c->overflow = 1;
            return 0;
        }
        a = &c->attrs[c->nattrs++];
        memset(a, 0, sizeof(*a));
        Py_XINCREF(it->name);
        a->name = it->name;
        a->slot = it->slot;
    }
    a->present++;
    int kind;
    if (v == Py_None) {
        kind = ADV_K_NONE;
    }
    else if (PyBool_Check(v)) {
        kind = ADV_K_BOOL;
    }
    else if (PyLong_CheckExact(v)) {
        kind = adv_int64(v) ? ADV_K_INT : ADV_K_OTHER;
    }
    else if (PyFloat_CheckExact(v)) {
        kind = ADV_K_FLOAT;
    }
    else if (PyUnicode_CheckExact(v)) {
        kind = ADV_K_STR;
    }
    else {
        kind = ADV_K_OTHER;
    }
    a->kinds[kind]++;
    if (adv_note_cache(a, v) < 0) {
        return -1;
    }
    if ((kind == ADV_K_INT || kind == ADV_K_FLOAT) && Py_REFCNT(v) == 1 && !layout_is_immortal(v)) {
        size_t dummy = 0;
        a->owned_boxed += size_of(walk_typeinfo(ctx->st->w, Py_TYPE(v)), v, &dummy);
    }
    if (adv_interesting(v)) {
        adv_state *st = ctx->st;
        if (a->site == 0) {
            adv_site *s = adv_site_for(st, ADV_S_ATTR, c->type, a->name, a->slot);
            if (s == NULL) {
                return -1;
            }
            a->site = (size_t)(s - st->sites) + 1;
        }
        if (adv_claim(st, &st->sites[a->site - 1], v) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
adv_pend(adv_state *st, PyObject *v)
{
    PyObject **np = adv_grow(st->pending, &st->cappending, sizeof(PyObject *), st->npending + 1);
    if (np == NULL) {
        return -1;
    }
    st->pending = np;
    st->pending[st->npending++] = Py_NewRef(v);
    return 0;
}

static int
adv_visit(walk_t *w, PyObject *op, size_t size, size_t tag, size_t *child_tag, void *arg)
{
    (void)w;
    (void)tag;
    (void)child_tag;
    adv_state *st = arg;
    PyTypeObject *tp = Py_TYPE(op);

    if ((tp->tp_flags & Py_TPFLAGS_HEAPTYPE) && !PyType_Check(op)) {
        adv_class *c = adv_class_for(st, tp);
        if (c == NULL) {
            goto oom;
        }
        c->count++;
        c->bytes += size;
        if (layout_weakref_list(op, tp) != NULL) {
            c->weakrefd++;
        }
        if (layout_instance_dict(op, tp) != NULL) {
            c->with_dict++;
        }
        adv_attr_ctx ctx = {st, c};
        /* adv_on_attr stops the visit only when out of memory */
        if (attrs_foreach(op, adv_on_attr, &ctx) < 0) {
            goto oom;
        }
    }
    if (PyDict_CheckExact(op)) {
        if (st->site_dict_key == 0) {
            adv_site *s0 = adv_site_for(st, ADV_S_DICT_KEY, NULL, NULL, NULL);
            if (s0 == NULL) {
                goto oom;
            }
            st->site_dict_key = (size_t)(s0 - st->sites) + 1;
        }
        adv_site *s = &st->sites[st->site_dict_key - 1];
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(op, &pos, &k, &v)) {
            if (adv_claim(st, s, k) < 0) {
                goto oom;
            }
        }
    }
    else if (PyList_CheckExact(op)) {
        if (st->site_list_item == 0) {
            adv_site *s0 = adv_site_for(st, ADV_S_LIST_ITEM, NULL, NULL, NULL);
            if (s0 == NULL) {
                goto oom;
            }
            st->site_list_item = (size_t)(s0 - st->sites) + 1;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(op); i++) {
            /* re-read: claiming may grow the sites table */
            adv_site *s = &st->sites[st->site_list_item - 1];
            if (adv_claim(st, s, PyList_GET_ITEM(op, i)) < 0) {
                goto oom;
            }
        }
    }
    /* charged to "elsewhere" at the end unless a site claims it first */
    if (adv_interesting(op) && adv_pend(st, op) < 0) {
        goto oom;
    }
    return 0;
oom:
    PyErr_NoMemory();
    return -1;
}

/* ---- the scan ------------------------------------------------------------ */

int
adv_scan_run(adv_state *st, PyObject *roots)
{
    memset(st, 0, sizeof(*st));
    st->w = &st->walk;
    if (walk_init(st->w, 1) < 0) {
        return -1;
    }
    if (visit_init(&st->claimed) < 0
        || walk_typetab_init(&st->class_rows, sizeof(adv_class_row), ADV_CLASS_SLOTS) < 0) {
        PyErr_NoMemory();
        goto error;
    }
    if (walk_exclude(st->w, roots) < 0) {
        goto error;
    }
    if (walk_run(st->w, ((PyListObject *)roots)->ob_item, PyList_GET_SIZE(roots), NULL, adv_visit,
                 st)
        < 0) {
        goto error;
    }
    /* what no site claimed sits "elsewhere" */
    adv_site *elsewhere = adv_site_for(st, ADV_S_ELSEWHERE, NULL, NULL, NULL);
    if (elsewhere == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (size_t i = 0; i < st->npending; i++) {
        if (adv_claim(st, elsewhere, st->pending[i]) < 0) {
            PyErr_NoMemory();
            goto error;
        }
    }
    return 0;

error:
    adv_scan_free(st);
    return -1;
}

static void
adv_dup_clear(adv_dup_table *t)
{
    for (size_t i = 0; t->e != NULL && i <= t->mask; i++) {
        Py_CLEAR(t->e[i].first);
    }
    free(t->e);
    t->e = NULL;
}

void
adv_scan_free(adv_state *st)
{
    /* Every object the tables keep is a strong reference, taken when it
     * was stored: a __sizeof__ run later in the walk may drop the last
     * other reference, and the tables compare and size what they hold. */
    for (size_t i = 0; i < st->nclasses; i++) {
        for (int k = 0; k < st->classes[i].nattrs; k++) {
            adv_attr *a = &st->classes[i].attrs[k];
            Py_CLEAR(a->name);
            for (size_t j = 0; j < a->ncaches; j++) {
                Py_CLEAR(a->caches[j]);
            }
            free(a->caches);
            a->caches = NULL;
            a->ncaches = 0;
        }
    }
    for (size_t i = 0; i < st->nsites; i++) {
        Py_CLEAR(st->sites[i].name);
    }
    for (size_t i = 0; i < st->npending; i++) {
        Py_CLEAR(st->pending[i]);
    }
    adv_dup_clear(&st->strs);
    adv_dup_clear(&st->tuples);
    walk_free(st->w);
    visit_free(&st->claimed);
    walk_typetab_free(&st->class_rows);
    free(st->classes);
    free(st->sites);
    free(st->pending);
}
