/* trace_snapshot.c: taking a snapshot of the tracer's per-stack table into
 * a TraceTable's data (see trace_snapshot.h).  The TraceTable type itself,
 * its methods and statistics, are the binding's: trace_table.c. */
#include "tracer/trace_snapshot.h"
#include "tracer/trace_stack.h"
#include "tracer/trace_hooks.h"

#include <stdlib.h>
#include <string.h>

snap_table *
snap_table_new(PyTypeObject *type, uint32_t nframes, uint32_t nstacks, uint64_t nidx)
{
    snap_table *t = (snap_table *)type->tp_alloc(type, 0);
    if (t == NULL) {
        goto error;
    }
    t->frames = PyMem_Calloc(nframes ? nframes : 1, sizeof(snap_frame));
    t->stacks = PyMem_Calloc(nstacks ? nstacks : 1, sizeof(snap_stack));
    t->frame_idx = PyMem_Calloc(nidx ? (size_t)nidx : 1, sizeof(uint32_t));
    if (t->frames == NULL || t->stacks == NULL || t->frame_idx == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    t->nframes = nframes;
    t->nstacks = nstacks;
    return t;

error:
    Py_XDECREF((PyObject *)t);
    return NULL;
}

void
snap_table_release(snap_table *t)
{
    if (t->frames != NULL) {
        for (uint32_t i = 0; i < t->nframes; i++) {
            Py_XDECREF(t->frames[i].filename);
            Py_XDECREF(t->frames[i].name);
        }
    }
    PyMem_Free(t->frames);
    PyMem_Free(t->stacks);
    PyMem_Free(t->frame_idx);
    t->frames = NULL;
    t->stacks = NULL;
    t->frame_idx = NULL;
}

/* ---- taking a snapshot ------------------------------------------------------
 *
 * snap_take() runs four steps over one snap_take_info: count the stacks to
 * report, copy them out of the tracer, resolve their frames to unique
 * (filename, function, line) triples, and build the table. */

/* Map of (code, offset) -> unique frame index, used while resolving. */
typedef struct {
    PyCodeObject *code;
    int32_t offset;
    uint32_t idx;
} snap_cf_slot;

/* Smallest number of slots of the (code, offset) map; it is sized to at
 * least twice the frames copied, a power of two. */
#define SNAP_CF_MIN_SLOTS 64

typedef struct {
    /* Configuration. */
    PyTypeObject *type; /* of the table made */
    trace_view view;    /* the tracer's tables, still while the GIL is held */

    /* Temporary state: libc malloc, since copying must not allocate
     * through the hooks, and freed by snap_take_free(). */
    uint32_t nraw;        /* stacks with something to report */
    uint64_t nfr;         /* frames of those stacks */
    snap_stack *raw;      /* the nraw stacks, copied out of the tracer */
    stack_frame *codes;   /* their frames, innermost first, a reference each */
    uint64_t ncodes;      /* codes[] filled (and referenced) so far */
    snap_cf_slot *cf;     /* (code, offset) -> unique frame index */
    size_t cf_mask;       /* slots of cf, minus one */
    uint32_t *code_frame; /* unique frame index of each of codes[] */
    PyObject *dedup;      /* (filename, name, lineno) -> unique frame index */
    uint32_t nunique;     /* unique frames */

    /* Output. */
    snap_table *table;
} snap_take_info;

static size_t
snap_cf_hash(PyCodeObject *code, int32_t offset)
{
    uint64_t h = ((uint64_t)(uintptr_t)code >> 4) * 0x9E3779B97F4A7C15ull;
    h ^= (uint64_t)(uint32_t)offset * 0xFF51AFD7ED558CCDull;
    return (size_t)(h ^ (h >> 29));
}

/* A stack's share of the peak (its totals saved at the latest high-water
 * mark, or its current ones if it has not changed since); 0 if the stack
 * has nothing to report.  Stacks whose blocks were all freed stay: they
 * allocated. */
static inline int
snap_rec_figures(const stack_rec *r, uint64_t peak_gen, uint64_t *ps, uint64_t *pc)
{
    int saved = r->snap_gen == peak_gen;
    *ps = saved ? r->snap_size : r->size;
    *pc = saved ? r->snap_count : r->count;
    return r->count != 0 || *pc != 0 || r->size != 0 || *ps != 0 || r->alloc_count != 0
           || r->alloc_size != 0;
}

/* Step 1: how many stacks and frames there are to copy. */
static void
snap_take_count(snap_take_info *info)
{
    stack_table *st = info->view.stacks;
    for (uint32_t id = 1; id < st->nrecs; id++) {
        stack_rec *r = &st->recs[id];
        uint64_t ps, pc;
        if (snap_rec_figures(r, info->view.peak_gen, &ps, &pc)) {
            info->nraw++;
            info->nfr += r->depth;
        }
    }
}

/* Step 2: copy the stacks and their frames out of the tracer. */
static int
snap_take_copy(snap_take_info *info)
{
    stack_table *st = info->view.stacks;
    info->raw = malloc((info->nraw ? info->nraw : 1) * sizeof(snap_stack));
    info->codes = malloc((info->nfr ? info->nfr : 1) * sizeof(stack_frame));
    if (info->raw == NULL || info->codes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    uint32_t k = 0;
    for (uint32_t id = 1; id < st->nrecs; id++) {
        stack_rec *r = &st->recs[id];
        uint64_t ps, pc;
        if (!snap_rec_figures(r, info->view.peak_gen, &ps, &pc)) {
            continue;
        }
        snap_stack *s = &info->raw[k];
        s->nframes = r->depth;
        s->size = r->size;
        s->count = r->count;
        s->peak_size = ps;
        s->peak_count = pc;
        s->alloc_size = r->alloc_size;
        s->alloc_count = r->alloc_count;
        /* The captured frames become frame_idx one for one (code_frame,
         * step 3), so this is already the index into frame_idx. */
        s->first = (uint32_t)info->ncodes;
        /* Innermost first: follow the parents up the trie. */
        for (uint32_t node = id; node > STACK_ID_EMPTY; node = st->recs[node].parent) {
            stack_frame *c = &info->codes[info->ncodes];
            c->code = st->recs[node].code;
            c->offset = st->recs[node].offset;
            /* Keep the code alive past the copy: stop() may drop the
             * table's references as soon as the GIL is released. */
            Py_INCREF(c->code);
            info->ncodes++;
        }
        k++;
    }
    return 0;
}

/* The unique frame index of (filename, function, line) `key`, adding it to
 * info->dedup if new; -1 with an exception. */
static int
snap_take_unique(snap_take_info *info, PyObject *key, uint32_t *idx)
{
    PyObject *found = PyDict_GetItemWithError(info->dedup, key);
    if (found != NULL) {
        *idx = (uint32_t)PyLong_AsUnsignedLong(found);
        return 0;
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    *idx = info->nunique++;
    PyObject *n = PyLong_FromUnsignedLong(*idx);
    if (n == NULL || PyDict_SetItem(info->dedup, key, n) < 0) {
        Py_XDECREF(n);
        return -1;
    }
    Py_DECREF(n);
    return 0;
}

/* Step 3: resolve each distinct (code, offset) once, then deduplicate the
 * resulting (filename, function, line) frames. */
static int
snap_take_resolve(snap_take_info *info)
{
    size_t nslots = SNAP_CF_MIN_SLOTS;
    while (nslots < info->ncodes * 2) {
        nslots *= 2;
    }
    info->cf = calloc(nslots, sizeof(snap_cf_slot));
    info->cf_mask = nslots - 1;
    info->dedup = PyDict_New();
    info->code_frame = malloc((info->ncodes ? info->ncodes : 1) * sizeof(uint32_t));
    if (info->cf == NULL || info->dedup == NULL || info->code_frame == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        return -1;
    }
    snap_cf_slot *cf = info->cf;
    for (uint64_t i = 0; i < info->ncodes; i++) {
        PyCodeObject *co = info->codes[i].code;
        int32_t off = info->codes[i].offset;
        size_t h = snap_cf_hash(co, off) & info->cf_mask;
        while (cf[h].code != NULL && !(cf[h].code == co && cf[h].offset == off)) {
            h = (h + 1) & info->cf_mask;
        }
        if (cf[h].code == NULL) {
            int lineno = layout_code_lineno(co, off);
            PyObject *key = Py_BuildValue("(OOi)", co->co_filename, co->co_name, lineno);
            uint32_t idx;
            if (key == NULL) {
                return -1;
            }
            int rc = snap_take_unique(info, key, &idx);
            Py_DECREF(key);
            if (rc < 0) {
                return -1;
            }
            cf[h].code = co;
            cf[h].offset = off;
            cf[h].idx = idx;
        }
        info->code_frame[i] = cf[h].idx;
    }
    return 0;
}

/* Step 4: the table, with the unique frames, the stacks and the totals. */
static int
snap_take_build(snap_take_info *info)
{
    snap_table *t = snap_table_new(info->type, info->nunique, info->nraw, info->ncodes);
    if (t == NULL) {
        return -1;
    }
    PyObject *kk, *vv;
    Py_ssize_t pos = 0;
    while (PyDict_Next(info->dedup, &pos, &kk, &vv)) {
        uint32_t idx = (uint32_t)PyLong_AsUnsignedLong(vv);
        snap_frame *f = &t->frames[idx];
        f->filename = Py_NewRef(PyTuple_GET_ITEM(kk, 0));
        f->name = Py_NewRef(PyTuple_GET_ITEM(kk, 1));
        f->lineno = (int)PyLong_AsLong(PyTuple_GET_ITEM(kk, 2));
    }
    memcpy(t->stacks, info->raw, (size_t)info->nraw * sizeof(snap_stack));
    memcpy(t->frame_idx, info->code_frame, (size_t)info->ncodes * sizeof(uint32_t));
    t->total = info->view.current;
    t->peak = info->view.peak;
    t->sample_bytes = info->view.sample_bytes;
    t->max_frames = (uint32_t)info->view.max_frames;
    t->flags = info->view.failed ? SNAP_FLAG_INCOMPLETE : 0;
    t->has_alloc = 1;
    info->table = t;
    return 0;
}

static void
snap_take_free(snap_take_info *info)
{
    for (uint64_t i = 0; i < info->ncodes; i++) {
        Py_DECREF(info->codes[i].code);
    }
    free(info->raw);
    free(info->codes);
    free(info->cf);
    free(info->code_frame);
    Py_XDECREF(info->dedup);
}

PyObject *
snap_take(PyTypeObject *type)
{
    snap_take_info info = {.type = type};
    PyObject *result = NULL;

    /* memlens' own allocations while reporting are not traced. */
    trace_thread_pause();

    /* The GIL keeps the tables still while they are copied (this thread's
     * allocations pass through, and GIL-less ones only queue changes). */
    trace_view_get(&info.view);
    if (!info.view.tracing) {
        PyErr_SetString(PyExc_RuntimeError, "memlens is not tracing: call memlens.start() first");
        goto done;
    }
    snap_take_count(&info);
    if (snap_take_copy(&info) < 0 || snap_take_resolve(&info) < 0 || snap_take_build(&info) < 0) {
        goto done;
    }
    result = (PyObject *)info.table;

done:
    snap_take_free(&info);
    trace_thread_resume();
    return result;
}

/* ---- filtering a table --------------------------------------------------------
 *
 * snap_filter() runs three steps over one snap_filter_info: give each stack
 * its verdict, number the unique frames the kept stacks use, and build the
 * new table.  The filters' filename patterns were already matched, once per
 * unique frame, by the caller (memlens.tracer: fnmatch is Python's); here
 * each stack is looked at once, whatever number of blocks it stands for. */

typedef struct {
    /* Configuration. */
    snap_table *src;
    const snap_filter_spec *incl;
    size_t nincl;
    const snap_filter_spec *excl;
    size_t nexcl;

    /* Temporary state (PyMem, freed by snap_filter_free()). */
    unsigned char *keep; /* by stack of src: 1 if kept */
    uint32_t *remap;     /* by unique frame of src: its index in the new table, or
                          * SNAP_FRAME_UNUSED */
    uint32_t nkept;      /* stacks kept */
    uint64_t nidx;       /* frame indices of the kept stacks */
    uint32_t nused;      /* unique frames the kept stacks use */

    /* Output. */
    snap_table *table;
} snap_filter_info;

#define SNAP_FRAME_UNUSED UINT32_MAX

/* Does `spec` match stack `st` of `t`?  A stack with no Python frame is
 * matched as the one pseudo-frame at index t->nframes, as tracemalloc
 * gives such a block the one frame ("<unknown>", 0). */
static int
snap_filter_matches(const snap_table *t, const snap_stack *st, const snap_filter_spec *spec)
{
    if (st->nframes == 0) {
        return spec->match[t->nframes] != 0;
    }
    uint32_t n = spec->all_frames ? st->nframes : 1;
    for (uint32_t j = 0; j < n; j++) {
        if (spec->match[t->frame_idx[st->first + j]]) {
            return 1;
        }
    }
    return 0;
}

/* Step 1: kept if some inclusive filter matches (when there are any) and
 * no exclusive one does. */
static int
snap_filter_verdicts(snap_filter_info *info)
{
    snap_table *t = info->src;
    info->keep = PyMem_Calloc(t->nstacks ? t->nstacks : 1, 1);
    if (info->keep == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (uint32_t s = 0; s < t->nstacks; s++) {
        const snap_stack *st = &t->stacks[s];
        int keep = info->nincl == 0;
        for (size_t i = 0; i < info->nincl && !keep; i++) {
            keep = snap_filter_matches(t, st, &info->incl[i]);
        }
        for (size_t i = 0; i < info->nexcl && keep; i++) {
            keep = !snap_filter_matches(t, st, &info->excl[i]);
        }
        if (keep) {
            info->keep[s] = 1;
            info->nkept++;
            info->nidx += st->nframes;
        }
    }
    return 0;
}

/* Step 2: the new index of each unique frame a kept stack uses, in the
 * order first met, so that frames no kept stack uses are left out (group()
 * and the capture writer walk every unique frame). */
static int
snap_filter_remap(snap_filter_info *info)
{
    snap_table *t = info->src;
    info->remap = PyMem_Malloc((t->nframes ? t->nframes : 1) * sizeof(uint32_t));
    if (info->remap == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (uint32_t i = 0; i < t->nframes; i++) {
        info->remap[i] = SNAP_FRAME_UNUSED;
    }
    for (uint32_t s = 0; s < t->nstacks; s++) {
        if (!info->keep[s]) {
            continue;
        }
        const snap_stack *st = &t->stacks[s];
        for (uint32_t j = 0; j < st->nframes; j++) {
            uint32_t fi = t->frame_idx[st->first + j];
            if (info->remap[fi] == SNAP_FRAME_UNUSED) {
                info->remap[fi] = info->nused++;
            }
        }
    }
    return 0;
}

/* Step 3: the new table.  Its total and peak are the kept stacks' own
 * (live bytes, and their share of the high-water mark), so that they agree
 * with its statistics. */
static int
snap_filter_build(snap_filter_info *info)
{
    snap_table *src = info->src;
    snap_table *t = snap_table_new(Py_TYPE(src), info->nused, info->nkept, info->nidx);
    if (t == NULL) {
        return -1;
    }
    for (uint32_t i = 0; i < src->nframes; i++) {
        uint32_t ni = info->remap[i];
        if (ni == SNAP_FRAME_UNUSED) {
            continue;
        }
        t->frames[ni].filename = Py_NewRef(src->frames[i].filename);
        t->frames[ni].name = Py_NewRef(src->frames[i].name);
        t->frames[ni].lineno = src->frames[i].lineno;
    }
    uint32_t k = 0;
    uint32_t next = 0;
    for (uint32_t s = 0; s < src->nstacks; s++) {
        if (!info->keep[s]) {
            continue;
        }
        const snap_stack *old = &src->stacks[s];
        snap_stack *st = &t->stacks[k++];
        *st = *old;
        st->first = next;
        for (uint32_t j = 0; j < old->nframes; j++) {
            t->frame_idx[next++] = info->remap[src->frame_idx[old->first + j]];
        }
        t->total += old->size;
        t->peak += old->peak_size;
    }
    t->sample_bytes = src->sample_bytes;
    t->max_frames = src->max_frames;
    t->flags = src->flags;
    t->has_alloc = src->has_alloc;
    info->table = t;
    return 0;
}

static void
snap_filter_free(snap_filter_info *info)
{
    PyMem_Free(info->keep);
    PyMem_Free(info->remap);
}

PyObject *
snap_filter(snap_table *src, const snap_filter_spec *incl, size_t nincl,
            const snap_filter_spec *excl, size_t nexcl)
{
    snap_filter_info info = {
        .src = src, .incl = incl, .nincl = nincl, .excl = excl, .nexcl = nexcl};
    PyObject *result = NULL;

    if (snap_filter_verdicts(&info) < 0 || snap_filter_remap(&info) < 0
        || snap_filter_build(&info) < 0) {
        goto done;
    }
    result = (PyObject *)info.table;

done:
    snap_filter_free(&info);
    return result;
}
