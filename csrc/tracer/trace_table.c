/* trace_table.c: the TraceTable type and its statistics (see
 * trace_table.h); the data and the snapshot are trace_snapshot.c's. */
#include "tracer/trace_table.h"
#include "tracer/trace_snapshot.h"
#include "tracer/trace_stack.h"

#include <string.h>

static void
TraceTable_dealloc(snap_table *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    snap_table_release(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* ---- keys and counts -------------------------------------------------------- */

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

/* ---- group() ------------------------------------------------------------------
 *
 * TraceTable_group() runs its steps over one snap_group_info: parse the
 * arguments, give each unique frame (or, for 'traceback', each stack) a
 * key id, sum the stacks' figures per key id, and list the keys with
 * something to report. */

typedef struct {
    /* Configuration: the arguments. */
    snap_table *table;
    int key_type;   /* SNAP_KEY_* */
    int cumulative; /* a stack counts for every key among its frames */
    int peak;       /* the figures live at the peak */
    int allocated;  /* the figures allocated since start() */

    /* Temporary state. */
    PyObject *keyids;    /* key (for 'lineno', its (filename, lineno)) -> key id */
    PyObject *keys;      /* key tuples by key id; key 0, (), is "no Python frame" */
    uint32_t *frame_key; /* key id of each unique frame (all but 'traceback') */
    uint32_t *stack_key; /* key id of each stack ('traceback') */
    uint64_t *sizes;     /* by key id */
    uint64_t *counts;    /* by key id, in STACK_COUNT_ONE units */
    uint32_t *stamp;     /* by key id: 1 + the last stack counted (cumulative) */

    /* Output. */
    PyObject *result; /* list of (key, size, count) */
} snap_group_info;

/* Step 1: the arguments, checked against each other and the table. */
static int
snap_group_parse(snap_group_info *info, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"key_type", "cumulative", "peak", "allocated", NULL};
    const char *key_s;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "s|ppp:group", kwlist, &key_s, &info->cumulative,
                                     &info->peak, &info->allocated)) {
        return -1;
    }
    if (info->peak && info->allocated) {
        PyErr_SetString(PyExc_ValueError, "peak and allocated cannot both be true");
        return -1;
    }
    if (info->allocated && !info->table->has_alloc) {
        PyErr_SetString(
            PyExc_ValueError,
            "this table has no allocated totals (a capture written by an older memlens)");
        return -1;
    }
    info->key_type = snap_parse_key(key_s);
    if (info->key_type < 0) {
        PyErr_Format(
            PyExc_ValueError,
            "unknown key_type %R: expected 'lineno', 'filename', 'function' or 'traceback'",
            PyTuple_GET_ITEM(args, 0));
        return -1;
    }
    if (info->key_type == SNAP_KEY_TRACEBACK && info->cumulative) {
        PyErr_SetString(PyExc_ValueError,
                        "cumulative mode cannot be used with key_type 'traceback'");
        return -1;
    }
    return 0;
}

/* Step 2: the key tables, with key 0 (allocations with no Python frame). */
static int
snap_group_init_keys(snap_group_info *info)
{
    snap_table *t = info->table;
    info->keyids = PyDict_New();
    info->keys = PyList_New(0);
    info->frame_key = PyMem_Malloc(((size_t)t->nframes + 1) * sizeof(uint32_t));
    info->stack_key = PyMem_Malloc(((size_t)t->nstacks + 1) * sizeof(uint32_t));
    if (info->keyids == NULL || info->keys == NULL || info->frame_key == NULL
        || info->stack_key == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        return -1;
    }
    PyObject *none = PyTuple_New(0);
    if (none == NULL || PyList_Append(info->keys, none) < 0) {
        Py_XDECREF(none);
        return -1;
    }
    Py_DECREF(none);
    return 0;
}

/* The key id of dict key `dk`, or a new one whose key tuple is `key`
 * (wrapped in a 1-tuple if `wrap`: one frame); -1 with an exception. */
static int
snap_group_key_id(snap_group_info *info, PyObject *dk, PyObject *key, int wrap, uint32_t *id)
{
    PyObject *found = PyDict_GetItemWithError(info->keyids, dk);
    if (found != NULL) {
        *id = (uint32_t)PyLong_AsUnsignedLong(found);
        return 0;
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    *id = (uint32_t)PyList_GET_SIZE(info->keys);
    int rc = -1;
    PyObject *n = PyLong_FromUnsignedLong(*id);
    PyObject *tup = wrap ? PyTuple_Pack(1, key) : Py_NewRef(key);
    if (n == NULL || tup == NULL || PyDict_SetItem(info->keyids, dk, n) < 0
        || PyList_Append(info->keys, tup) < 0) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(n);
    Py_XDECREF(tup);
    return rc;
}

/* The key id of unique frame i. */
static int
snap_group_frame_key(snap_group_info *info, uint32_t i)
{
    PyObject *dk = NULL;
    int rc = -1;
    PyObject *item = snap_key_frame(info->table, i, info->key_type);
    if (item == NULL) {
        goto done;
    }
    /* 'lineno' groups by (filename, line) like tracemalloc, so a
     * comprehension and its enclosing function on one line are one key;
     * the reported function is the first one met. */
    dk = info->key_type == SNAP_KEY_LINENO ? PyTuple_GetSlice(item, 0, 2) : Py_NewRef(item);
    if (dk == NULL) {
        goto done;
    }
    rc = snap_group_key_id(info, dk, item, 1, &info->frame_key[i]);
done:
    Py_XDECREF(item);
    Py_XDECREF(dk);
    return rc;
}

/* Step 3, all key types but 'traceback': the key id of each unique frame
 * (few) through a dict; stacks are then summed by them in C. */
static int
snap_group_keys_by_frame(snap_group_info *info)
{
    for (uint32_t i = 0; i < info->table->nframes; i++) {
        if (snap_group_frame_key(info, i) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Step 3, 'traceback': the key id of each stack, its tuple of frames. */
static int
snap_group_keys_by_stack(snap_group_info *info)
{
    snap_table *t = info->table;
    for (uint32_t s = 0; s < t->nstacks; s++) {
        snap_stack *st = &t->stacks[s];
        if (st->nframes == 0) {
            info->stack_key[s] = 0;
            continue;
        }
        PyObject *key = PyTuple_New(st->nframes);
        if (key == NULL) {
            return -1;
        }
        for (uint32_t j = 0; j < st->nframes; j++) {
            PyObject *fr = snap_key_frame(t, t->frame_idx[st->first + j], info->key_type);
            if (fr == NULL) {
                Py_DECREF(key);
                return -1;
            }
            PyTuple_SET_ITEM(key, j, fr);
        }
        int rc = snap_group_key_id(info, key, key, 0, &info->stack_key[s]);
        Py_DECREF(key);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

/* Step 4: each stack's figures added to its key(s). */
static int
snap_group_sum(snap_group_info *info)
{
    snap_table *t = info->table;
    size_t nkeys = (size_t)PyList_GET_SIZE(info->keys);
    info->sizes = PyMem_Calloc(nkeys, sizeof(uint64_t));
    info->counts = PyMem_Calloc(nkeys, sizeof(uint64_t));
    info->stamp = PyMem_Calloc(nkeys, sizeof(uint32_t));
    if (info->sizes == NULL || info->counts == NULL || info->stamp == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    uint64_t *sizes = info->sizes, *counts = info->counts;
    for (uint32_t s = 0; s < t->nstacks; s++) {
        snap_stack *st = &t->stacks[s];
        uint64_t sz = info->allocated ? st->alloc_size : info->peak ? st->peak_size : st->size;
        uint64_t ct = info->allocated ? st->alloc_count : info->peak ? st->peak_count : st->count;
        if (sz == 0 && ct == 0) {
            continue;
        }
        if (info->key_type == SNAP_KEY_TRACEBACK) {
            sizes[info->stack_key[s]] += sz;
            counts[info->stack_key[s]] += ct;
        }
        else if (st->nframes == 0) {
            sizes[0] += sz;
            counts[0] += ct;
        }
        else if (!info->cumulative) {
            uint32_t kid = info->frame_key[t->frame_idx[st->first]];
            sizes[kid] += sz;
            counts[kid] += ct;
        }
        else {
            /* Each key once per stack, however many of its frames map to it. */
            for (uint32_t j = 0; j < st->nframes; j++) {
                uint32_t kid = info->frame_key[t->frame_idx[st->first + j]];
                if (info->stamp[kid] != s + 1) {
                    info->stamp[kid] = s + 1;
                    sizes[kid] += sz;
                    counts[kid] += ct;
                }
            }
        }
    }
    return 0;
}

/* Step 5: the (key, size, count) rows of the keys with something to report. */
static int
snap_group_rows(snap_group_info *info)
{
    size_t nkeys = (size_t)PyList_GET_SIZE(info->keys);
    info->result = PyList_New(0);
    if (info->result == NULL) {
        return -1;
    }
    for (size_t kid = 0; kid < nkeys; kid++) {
        if (info->sizes[kid] == 0 && info->counts[kid] == 0) {
            continue;
        }
        PyObject *row =
            Py_BuildValue("(OKN)", PyList_GET_ITEM(info->keys, kid),
                          (unsigned long long)info->sizes[kid], snap_count_obj(info->counts[kid]));
        if (row == NULL || PyList_Append(info->result, row) < 0) {
            Py_XDECREF(row);
            return -1;
        }
        Py_DECREF(row);
    }
    return 0;
}

static void
snap_group_free(snap_group_info *info)
{
    Py_XDECREF(info->keyids);
    Py_XDECREF(info->keys);
    PyMem_Free(info->frame_key);
    PyMem_Free(info->stack_key);
    PyMem_Free(info->sizes);
    PyMem_Free(info->counts);
    PyMem_Free(info->stamp);
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
    snap_group_info info = {.table = self};

    if (snap_group_parse(&info, args, kwds) < 0 || snap_group_init_keys(&info) < 0) {
        goto error;
    }
    if (info.key_type != SNAP_KEY_TRACEBACK ? snap_group_keys_by_frame(&info) < 0
                                            : snap_group_keys_by_stack(&info) < 0) {
        goto error;
    }
    if (snap_group_sum(&info) < 0 || snap_group_rows(&info) < 0) {
        goto error;
    }
    snap_group_free(&info);
    return info.result;

error:
    Py_CLEAR(info.result);
    snap_group_free(&info);
    return NULL;
}

/* ---- stacks(), frames(), filter(), the getters, the type -------------------------- */

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
    /* One (filename, lineno, function) tuple per distinct frame, shared by
     * every stack that has it: real programs have 20-90k stacks of 20-40
     * frames over a few thousand distinct frames (imports make most of
     * them), and a tuple per occurrence was most of a report's memory. */
    PyObject *result = NULL;
    PyObject **frame_objs = PyMem_Calloc(self->nframes + 1, sizeof(PyObject *));
    if (frame_objs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyList_New(self->nstacks);
    if (result == NULL) {
        goto done;
    }
    for (uint32_t s = 0; s < self->nstacks; s++) {
        snap_stack *st = &self->stacks[s];
        PyObject *frames = PyTuple_New(st->nframes);
        if (frames == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        for (uint32_t j = 0; j < st->nframes; j++) {
            uint32_t fi = self->frame_idx[st->first + j];
            if (frame_objs[fi] == NULL) {
                frame_objs[fi] = snap_key_frame(self, fi, SNAP_KEY_LINENO);
                if (frame_objs[fi] == NULL) {
                    Py_DECREF(frames);
                    Py_CLEAR(result);
                    goto done;
                }
            }
            PyTuple_SET_ITEM(frames, j, Py_NewRef(frame_objs[fi]));
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
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, s, row);
    }

done:
    if (frame_objs != NULL) {
        for (uint32_t i = 0; i < self->nframes; i++) {
            Py_XDECREF(frame_objs[i]);
        }
        PyMem_Free(frame_objs);
    }
    return result;
}

PyDoc_STRVAR(TraceTable_frames_doc,
             "frames() -> list of (filename, lineno, function)\n\n"
             "The table's unique frames, by index: what filter()'s match bytes\n"
             "are indexed by (a stack with no Python frame comes after them).");

static PyObject *
TraceTable_frames(snap_table *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *result = PyList_New(self->nframes);
    if (result == NULL) {
        return NULL;
    }
    for (uint32_t i = 0; i < self->nframes; i++) {
        PyObject *fr = snap_key_frame(self, i, SNAP_KEY_LINENO);
        if (fr == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, i, fr);
    }
    return result;
}

/* The specs of one filter list `seq` (a list or tuple, from
 * PySequence_Fast) of (all_frames, match) pairs, into specs[]; their match
 * bytes stay owned by `seq`.  -1 with an exception. */
static int
snap_filter_specs(snap_table *self, PyObject *seq, snap_filter_spec *specs)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        const char *match;
        Py_ssize_t len;
        int all_frames;
        if (!PyTuple_Check(item)
            || !PyArg_ParseTuple(item, "py#:filter", &all_frames, &match, &len)) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "filter specs are (all_frames, match) tuples");
            }
            return -1;
        }
        /* One byte per unique frame, and one for "no Python frame". */
        if ((size_t)len != (size_t)self->nframes + 1) {
            PyErr_Format(PyExc_ValueError, "match must have %u bytes (frames + 1), not %zd",
                         self->nframes + 1, len);
            return -1;
        }
        specs[i].match = (const unsigned char *)match;
        specs[i].all_frames = all_frames;
    }
    return 0;
}

PyDoc_STRVAR(TraceTable_filter_doc,
             "filter(include, exclude) -> TraceTable\n\n"
             "A new table with the stacks that some spec of include matches (every\n"
             "stack if include is empty) and no spec of exclude does.  A spec is\n"
             "(all_frames, match): match has a byte per unique frame (frames()) and\n"
             "one more for stacks with no Python frame, nonzero where the frame\n"
             "matches; a stack matches on its innermost frame, or with all_frames on\n"
             "any.  The new table's total and peak are its stacks' sums.");

static PyObject *
TraceTable_filter(snap_table *self, PyObject *args)
{
    PyObject *include, *exclude;
    PyObject *incl_seq = NULL, *excl_seq = NULL, *result = NULL;
    snap_filter_spec *specs = NULL;

    if (!PyArg_ParseTuple(args, "OO:filter", &include, &exclude)) {
        goto done;
    }
    incl_seq = PySequence_Fast(include, "include must be a sequence");
    excl_seq = PySequence_Fast(exclude, "exclude must be a sequence");
    if (incl_seq == NULL || excl_seq == NULL) {
        goto done;
    }
    size_t nincl = (size_t)PySequence_Fast_GET_SIZE(incl_seq);
    size_t nexcl = (size_t)PySequence_Fast_GET_SIZE(excl_seq);
    specs = PyMem_Calloc(nincl + nexcl + 1, sizeof(snap_filter_spec));
    if (specs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (snap_filter_specs(self, incl_seq, specs) < 0
        || snap_filter_specs(self, excl_seq, specs + nincl) < 0) {
        goto done;
    }
    result = snap_filter(self, specs, nincl, specs + nincl, nexcl);

done:
    PyMem_Free(specs);
    Py_XDECREF(incl_seq);
    Py_XDECREF(excl_seq);
    return result;
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
    {"frames", (PyCFunction)TraceTable_frames, METH_NOARGS, TraceTable_frames_doc},
    {"filter", (PyCFunction)TraceTable_filter, METH_VARARGS, TraceTable_filter_doc},
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
trace_table_module_exec(PyObject *m)
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
