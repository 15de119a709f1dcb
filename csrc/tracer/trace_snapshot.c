/* trace_snapshot.c: TraceTable, the snapshot of the tracer's per-stack
 * table, and the grouped statistics computed from it (see
 * trace_snapshot.h). */
#include "tracer/trace_snapshot.h"
#include "tracer/trace_stack.h"
#include "tracer/trace_hooks.h"

#include <stdlib.h>
#include <string.h>

/* ---- the type ------------------------------------------------------------ */

static void
TraceTable_dealloc(snap_table *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (self->frames != NULL) {
        for (uint32_t i = 0; i < self->nframes; i++) {
            Py_XDECREF(self->frames[i].filename);
            Py_XDECREF(self->frames[i].name);
        }
    }
    PyMem_Free(self->frames);
    PyMem_Free(self->stacks);
    PyMem_Free(self->frame_idx);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

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

/* ---- taking a snapshot ------------------------------------------------------ */

/* Map of (code, offset) -> unique frame index, used while resolving. */
typedef struct {
    PyCodeObject *code;
    int32_t offset;
    uint32_t idx;
} snap_cf_slot;

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

PyObject *
snap_take(PyTypeObject *type)
{
    snap_stack *raw = NULL; /* the stacks, copied out of the tracer */
    stack_frame *codes = NULL;
    snap_cf_slot *cf = NULL;
    size_t cf_mask = 0;
    uint64_t ncodes = 0;
    uint32_t nraw = 0;
    snap_table *t = NULL;
    PyObject *dedup = NULL;
    PyObject *key = NULL;
    PyObject *result = NULL;
    trace_view v;

    /* memlens' own allocations while reporting are not traced. */
    trace_thread_pause();

    /* The GIL keeps the tables still while they are copied (this thread's
     * allocations pass through, and GIL-less ones only queue changes). */
    trace_view_get(&v);
    if (!v.tracing) {
        PyErr_SetString(PyExc_RuntimeError, "memlens is not tracing: call memlens.start() first");
        goto done;
    }
    stack_table *st = v.stacks;
    uint64_t nfr = 0;
    for (uint32_t id = 1; id < st->nrecs; id++) {
        stack_rec *r = &st->recs[id];
        uint64_t ps, pc;
        if (snap_rec_figures(r, v.peak_gen, &ps, &pc)) {
            nraw++;
            nfr += r->depth;
        }
    }
    /* libc malloc: the copy must not allocate through the hooks. */
    raw = malloc((nraw ? nraw : 1) * sizeof(snap_stack));
    codes = malloc((nfr ? nfr : 1) * sizeof(stack_frame));
    if (raw == NULL || codes == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    uint32_t k = 0;
    for (uint32_t id = 1; id < st->nrecs; id++) {
        stack_rec *r = &st->recs[id];
        uint64_t ps, pc;
        if (!snap_rec_figures(r, v.peak_gen, &ps, &pc)) {
            continue;
        }
        raw[k].nframes = r->depth;
        raw[k].size = r->size;
        raw[k].count = r->count;
        raw[k].peak_size = ps;
        raw[k].peak_count = pc;
        raw[k].alloc_size = r->alloc_size;
        raw[k].alloc_count = r->alloc_count;
        /* The captured frames become frame_idx one for one (code_to_frame
         * below), so this is already the index into frame_idx. */
        raw[k].first = (uint32_t)ncodes;
        /* Innermost first: follow the parents up the trie. */
        for (uint32_t node = id; node > STACK_ID_EMPTY; node = st->recs[node].parent) {
            codes[ncodes].code = st->recs[node].code;
            codes[ncodes].offset = st->recs[node].offset;
            /* Keep the code alive past the copy: stop() may drop the
             * table's references as soon as the GIL is released. */
            Py_INCREF(codes[ncodes].code);
            ncodes++;
        }
        k++;
    }

    /* Resolve each distinct (code, offset) once, then deduplicate the
     * resulting (filename, function, line) frames. */
    cf_mask = 64;
    while (cf_mask < ncodes * 2) {
        cf_mask *= 2;
    }
    cf = calloc(cf_mask, sizeof(snap_cf_slot));
    cf_mask -= 1;
    dedup = PyDict_New();
    uint32_t *code_to_frame = malloc((ncodes ? ncodes : 1) * sizeof(uint32_t));
    if (cf == NULL || dedup == NULL || code_to_frame == NULL) {
        free(code_to_frame);
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        goto done;
    }
    uint32_t nunique = 0;
    for (uint64_t i = 0; i < ncodes; i++) {
        PyCodeObject *co = codes[i].code;
        int32_t off = codes[i].offset;
        size_t h = snap_cf_hash(co, off) & cf_mask;
        while (cf[h].code != NULL && !(cf[h].code == co && cf[h].offset == off)) {
            h = (h + 1) & cf_mask;
        }
        if (cf[h].code == NULL) {
            int lineno = stack_frame_lineno(co, off);
            key = Py_BuildValue("(OOi)", co->co_filename, co->co_name, lineno);
            if (key == NULL) {
                free(code_to_frame);
                goto done;
            }
            PyObject *found = PyDict_GetItemWithError(dedup, key);
            uint32_t idx;
            if (found != NULL) {
                idx = (uint32_t)PyLong_AsUnsignedLong(found);
            }
            else if (PyErr_Occurred()) {
                free(code_to_frame);
                goto done;
            }
            else {
                idx = nunique++;
                PyObject *n = PyLong_FromUnsignedLong(idx);
                if (n == NULL || PyDict_SetItem(dedup, key, n) < 0) {
                    Py_XDECREF(n);
                    free(code_to_frame);
                    goto done;
                }
                Py_DECREF(n);
            }
            Py_CLEAR(key);
            cf[h].code = co;
            cf[h].offset = off;
            cf[h].idx = idx;
        }
        code_to_frame[i] = cf[h].idx;
    }

    t = snap_table_new(type, nunique, nraw, ncodes);
    if (t == NULL) {
        free(code_to_frame);
        goto done;
    }
    {
        PyObject *kk, *vv;
        Py_ssize_t pos = 0;
        while (PyDict_Next(dedup, &pos, &kk, &vv)) {
            uint32_t idx = (uint32_t)PyLong_AsUnsignedLong(vv);
            snap_frame *f = &t->frames[idx];
            f->filename = Py_NewRef(PyTuple_GET_ITEM(kk, 0));
            f->name = Py_NewRef(PyTuple_GET_ITEM(kk, 1));
            f->lineno = (int)PyLong_AsLong(PyTuple_GET_ITEM(kk, 2));
        }
    }
    memcpy(t->stacks, raw, (size_t)nraw * sizeof(snap_stack));
    memcpy(t->frame_idx, code_to_frame, (size_t)ncodes * sizeof(uint32_t));
    free(code_to_frame);
    t->total = v.current;
    t->peak = v.peak;
    t->sample_bytes = v.sample_bytes;
    t->max_frames = (uint32_t)v.max_frames;
    t->flags = v.failed ? SNAP_FLAG_INCOMPLETE : 0;
    t->has_alloc = 1;
    result = (PyObject *)t;
    t = NULL;

done:
    for (uint64_t i = 0; i < ncodes; i++) {
        Py_DECREF(codes[i].code);
    }
    free(raw);
    free(codes);
    free(cf);
    Py_XDECREF(dedup);
    Py_XDECREF(key);
    Py_XDECREF((PyObject *)t);
    trace_thread_resume();
    return result;
}

/* ---- statistics -------------------------------------------------------------- */

enum { SNAP_KEY_LINENO, SNAP_KEY_FILENAME, SNAP_KEY_FUNCTION, SNAP_KEY_TRACEBACK };

static int
snap_parse_key(const char *s)
{
    if (strcmp(s, "lineno") == 0) {
        return SNAP_KEY_LINENO;
    }
    if (strcmp(s, "filename") == 0) {
        return SNAP_KEY_FILENAME;
    }
    if (strcmp(s, "function") == 0) {
        return SNAP_KEY_FUNCTION;
    }
    if (strcmp(s, "traceback") == 0) {
        return SNAP_KEY_TRACEBACK;
    }
    return -1;
}

/* The frame triple (filename, lineno, function) a key reports, with the
 * fields the key type ignores blanked. */
static PyObject *
snap_key_frame(snap_table *t, uint32_t fi, int key_type)
{
    snap_frame *f = &t->frames[fi];
    switch (key_type) {
    case SNAP_KEY_FILENAME:
        return Py_BuildValue("(Ois)", f->filename, 0, "");
    case SNAP_KEY_FUNCTION:
        return Py_BuildValue("(OiO)", f->filename, 0, f->name);
    default:
        return Py_BuildValue("(OiO)", f->filename, f->lineno, f->name);
    }
}

static PyObject *
snap_count_obj(uint64_t fixed)
{
    return PyLong_FromUnsignedLongLong((fixed + STACK_COUNT_ONE / 2) / STACK_COUNT_ONE);
}

PyDoc_STRVAR(TraceTable_group_doc,
             "group(key_type, cumulative=False, peak=False, allocated=False)\n"
             "    -> list of (key, size, count)\n\n"
             "Totals grouped by key_type ('lineno', 'filename', 'function' or\n"
             "'traceback'); key is a tuple of (filename, lineno, function) frames,\n"
             "innermost first (one frame except for 'traceback'; () for allocations\n"
             "with no Python frame).  peak=True groups what was live at the peak;\n"
             "allocated=True everything allocated since start(), freed or not\n"
             "(ValueError for a table read from a capture that does not record it).");

static PyObject *
TraceTable_group(snap_table *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"key_type", "cumulative", "peak", "allocated", NULL};
    const char *key_s;
    int cumulative = 0;
    int peak = 0;
    int allocated = 0;
    PyObject *keyids = NULL; /* key triple (or tuple of them) -> int */
    PyObject *keys = NULL;   /* list of key tuples, by key id */
    PyObject *result = NULL;
    PyObject *item = NULL;
    uint32_t *frame_key = NULL;
    uint64_t *sizes = NULL;
    uint64_t *counts = NULL;
    uint32_t *stamp = NULL;
    uint32_t *stack_key = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "s|ppp:group", kwlist, &key_s, &cumulative, &peak,
                                     &allocated)) {
        return NULL;
    }
    if (peak && allocated) {
        PyErr_SetString(PyExc_ValueError, "peak and allocated cannot both be true");
        return NULL;
    }
    if (allocated && !self->has_alloc) {
        PyErr_SetString(
            PyExc_ValueError,
            "this table has no allocated totals (a capture written by an older memlens)");
        return NULL;
    }
    int key_type = snap_parse_key(key_s);
    if (key_type < 0) {
        PyErr_Format(
            PyExc_ValueError,
            "unknown key_type %R: expected 'lineno', 'filename', 'function' or 'traceback'",
            PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    if (key_type == SNAP_KEY_TRACEBACK && cumulative) {
        PyErr_SetString(PyExc_ValueError,
                        "cumulative mode cannot be used with key_type 'traceback'");
        return NULL;
    }
    keyids = PyDict_New();
    keys = PyList_New(0);
    frame_key = PyMem_Malloc(((size_t)self->nframes + 1) * sizeof(uint32_t));
    stack_key = PyMem_Malloc(((size_t)self->nstacks + 1) * sizeof(uint32_t));
    if (keyids == NULL || keys == NULL || frame_key == NULL || stack_key == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        goto error;
    }
    /* Key 0: allocations with no Python frame. */
    item = PyTuple_New(0);
    if (item == NULL || PyList_Append(keys, item) < 0) {
        goto error;
    }
    Py_CLEAR(item);

    /* Key id of each unique frame (few) through a dict; then per stack in C. */
    if (key_type != SNAP_KEY_TRACEBACK) {
        for (uint32_t i = 0; i < self->nframes; i++) {
            item = snap_key_frame(self, i, key_type);
            if (item == NULL) {
                goto error;
            }
            /* 'lineno' groups by (filename, line) like tracemalloc, so a
             * comprehension and its enclosing function on one line are one
             * key; the reported function is the first one met. */
            PyObject *dk = item;
            if (key_type == SNAP_KEY_LINENO) {
                dk = PyTuple_GetSlice(item, 0, 2);
                if (dk == NULL) {
                    goto error;
                }
            }
            else {
                Py_INCREF(dk);
            }
            PyObject *found = PyDict_GetItemWithError(keyids, dk);
            if (found != NULL) {
                frame_key[i] = (uint32_t)PyLong_AsUnsignedLong(found);
            }
            else if (PyErr_Occurred()) {
                Py_DECREF(dk);
                goto error;
            }
            else {
                uint32_t id = (uint32_t)PyList_GET_SIZE(keys);
                PyObject *n = PyLong_FromUnsignedLong(id);
                PyObject *tup = PyTuple_Pack(1, item);
                if (n == NULL || tup == NULL || PyDict_SetItem(keyids, dk, n) < 0
                    || PyList_Append(keys, tup) < 0) {
                    Py_XDECREF(n);
                    Py_XDECREF(tup);
                    Py_DECREF(dk);
                    goto error;
                }
                Py_DECREF(n);
                Py_DECREF(tup);
                frame_key[i] = id;
            }
            Py_DECREF(dk);
            Py_CLEAR(item);
        }
    }
    else {
        for (uint32_t s = 0; s < self->nstacks; s++) {
            snap_stack *st = &self->stacks[s];
            if (st->nframes == 0) {
                stack_key[s] = 0;
                continue;
            }
            item = PyTuple_New(st->nframes);
            if (item == NULL) {
                goto error;
            }
            for (uint32_t j = 0; j < st->nframes; j++) {
                PyObject *fr = snap_key_frame(self, self->frame_idx[st->first + j], key_type);
                if (fr == NULL) {
                    goto error;
                }
                PyTuple_SET_ITEM(item, j, fr);
            }
            PyObject *found = PyDict_GetItemWithError(keyids, item);
            if (found != NULL) {
                stack_key[s] = (uint32_t)PyLong_AsUnsignedLong(found);
            }
            else if (PyErr_Occurred()) {
                goto error;
            }
            else {
                uint32_t id = (uint32_t)PyList_GET_SIZE(keys);
                PyObject *n = PyLong_FromUnsignedLong(id);
                if (n == NULL || PyDict_SetItem(keyids, item, n) < 0
                    || PyList_Append(keys, item) < 0) {
                    Py_XDECREF(n);
                    goto error;
                }
                Py_DECREF(n);
                stack_key[s] = id;
            }
            Py_CLEAR(item);
        }
    }

    size_t nkeys = (size_t)PyList_GET_SIZE(keys);
    sizes = PyMem_Calloc(nkeys, sizeof(uint64_t));
    counts = PyMem_Calloc(nkeys, sizeof(uint64_t));
    stamp = PyMem_Calloc(nkeys, sizeof(uint32_t));
    if (sizes == NULL || counts == NULL || stamp == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (uint32_t s = 0; s < self->nstacks; s++) {
        snap_stack *st = &self->stacks[s];
        uint64_t sz = allocated ? st->alloc_size : peak ? st->peak_size : st->size;
        uint64_t ct = allocated ? st->alloc_count : peak ? st->peak_count : st->count;
        if (sz == 0 && ct == 0) {
            continue;
        }
        if (key_type == SNAP_KEY_TRACEBACK) {
            sizes[stack_key[s]] += sz;
            counts[stack_key[s]] += ct;
        }
        else if (st->nframes == 0) {
            sizes[0] += sz;
            counts[0] += ct;
        }
        else if (!cumulative) {
            uint32_t kid = frame_key[self->frame_idx[st->first]];
            sizes[kid] += sz;
            counts[kid] += ct;
        }
        else {
            /* Each key once per stack, however many of its frames map to it. */
            for (uint32_t j = 0; j < st->nframes; j++) {
                uint32_t kid = frame_key[self->frame_idx[st->first + j]];
                if (stamp[kid] != s + 1) {
                    stamp[kid] = s + 1;
                    sizes[kid] += sz;
                    counts[kid] += ct;
                }
            }
        }
    }
    result = PyList_New(0);
    if (result == NULL) {
        goto error;
    }
    for (size_t kid = 0; kid < nkeys; kid++) {
        if (sizes[kid] == 0 && counts[kid] == 0) {
            continue;
        }
        item = Py_BuildValue("(OKN)", PyList_GET_ITEM(keys, kid), (unsigned long long)sizes[kid],
                             snap_count_obj(counts[kid]));
        if (item == NULL || PyList_Append(result, item) < 0) {
            goto error;
        }
        Py_CLEAR(item);
    }
    goto done;

error:
    Py_CLEAR(result);
done:
    Py_XDECREF(item);
    Py_XDECREF(keyids);
    Py_XDECREF(keys);
    PyMem_Free(frame_key);
    PyMem_Free(stack_key);
    PyMem_Free(sizes);
    PyMem_Free(counts);
    PyMem_Free(stamp);
    return result;
}

PyDoc_STRVAR(TraceTable_stacks_doc,
             "stacks() -> list of (frames, size, count, peak_size, peak_count,\n"
             "                     alloc_size, alloc_count)\n\n"
             "The per-stack table: frames is a tuple of (filename, lineno, function),\n"
             "innermost first; sizes in bytes, counts in blocks (estimates when\n"
             "sampled): live, live at the peak, and allocated since start() (freed or\n"
             "not).  Rows have only the first five items for a table read from a\n"
             "capture written before memlens recorded allocated totals.");

static PyObject *
TraceTable_stacks(snap_table *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *result = PyList_New(self->nstacks);
    if (result == NULL) {
        return NULL;
    }
    for (uint32_t s = 0; s < self->nstacks; s++) {
        snap_stack *st = &self->stacks[s];
        PyObject *frames = PyTuple_New(st->nframes);
        if (frames == NULL) {
            goto error;
        }
        for (uint32_t j = 0; j < st->nframes; j++) {
            PyObject *fr = snap_key_frame(self, self->frame_idx[st->first + j], SNAP_KEY_LINENO);
            if (fr == NULL) {
                Py_DECREF(frames);
                goto error;
            }
            PyTuple_SET_ITEM(frames, j, fr);
        }
        PyObject *row;
        if (self->has_alloc) {
            row = Py_BuildValue("(NKNKNKN)", frames, (unsigned long long)st->size,
                                snap_count_obj(st->count), (unsigned long long)st->peak_size,
                                snap_count_obj(st->peak_count), (unsigned long long)st->alloc_size,
                                snap_count_obj(st->alloc_count));
        }
        else {
            row = Py_BuildValue("(NKNKN)", frames, (unsigned long long)st->size,
                                snap_count_obj(st->count), (unsigned long long)st->peak_size,
                                snap_count_obj(st->peak_count));
        }
        if (row == NULL) {
            goto error;
        }
        PyList_SET_ITEM(result, s, row);
    }
    return result;

error:
    Py_DECREF(result);
    return NULL;
}

static PyObject *
TraceTable_get_u64(snap_table *self, void *which)
{
    switch ((int)(intptr_t)which) {
    case 0:
        return PyLong_FromUnsignedLongLong(self->total);
    case 1:
        return PyLong_FromUnsignedLongLong(self->peak);
    case 2:
        return PyLong_FromUnsignedLongLong(self->sample_bytes);
    case 3:
        return PyLong_FromUnsignedLong(self->max_frames);
    case 4:
        return PyBool_FromLong((self->flags & SNAP_FLAG_INCOMPLETE) != 0);
    case 6:
        return PyBool_FromLong(self->has_alloc);
    default:
        return PyLong_FromUnsignedLong(self->nstacks);
    }
}

static PyGetSetDef TraceTable_getset[] = {
    {"total", (getter)TraceTable_get_u64, NULL, "bytes live when taken", (void *)0},
    {"peak", (getter)TraceTable_get_u64, NULL, "high-water mark in bytes", (void *)1},
    {"sample_bytes", (getter)TraceTable_get_u64, NULL, "mean sampling interval (0: exact)",
     (void *)2},
    {"max_frames", (getter)TraceTable_get_u64, NULL, "frames recorded per stack", (void *)3},
    {"incomplete", (getter)TraceTable_get_u64, NULL, "the tracer lost bookkeeping", (void *)4},
    {"nstacks", (getter)TraceTable_get_u64, NULL, "number of stacks", (void *)5},
    {"has_allocated", (getter)TraceTable_get_u64, NULL,
     "allocated totals are recorded (False for older captures)", (void *)6},
    {NULL},
};

static PyMethodDef TraceTable_methods[] = {
    {"group", (PyCFunction)(void (*)(void))TraceTable_group, METH_VARARGS | METH_KEYWORDS,
     TraceTable_group_doc},
    {"stacks", (PyCFunction)TraceTable_stacks, METH_NOARGS, TraceTable_stacks_doc},
    {NULL},
};

static PyType_Slot TraceTable_slots[] = {
    {Py_tp_dealloc, TraceTable_dealloc},
    {Py_tp_methods, TraceTable_methods},
    {Py_tp_getset, TraceTable_getset},
    {Py_tp_new, core_tp_new_refused}, /* made by take_snapshot() and load() only */
    {Py_tp_doc, "Per-stack table of a tracer snapshot (see memlens.Snapshot)."},
    {0, NULL},
};

static PyType_Spec TraceTable_spec = {
    .name = "memlens._core.TraceTable",
    .basicsize = sizeof(snap_table),
#ifdef Py_TPFLAGS_IMMUTABLETYPE
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
#else
    .flags = Py_TPFLAGS_DEFAULT, /* 3.9 */
#endif
    .slots = TraceTable_slots,
};

int
trace_snapshot_module_exec(PyObject *m)
{
    PyObject *tp = PyType_FromModuleAndSpec(m, &TraceTable_spec, NULL);
    if (tp == NULL) {
        return -1;
    }
    core_get_state(m)->trace_table_type = (PyTypeObject *)Py_NewRef(tp);
    int rc = PyModule_AddObject(m, "TraceTable", tp);
    if (rc < 0) {
        Py_DECREF(tp);
    }
    return rc;
}
