/* lp_events.c: line events from profiled code objects, charged with the
 * tracer's per-thread counters (see lp_events.h). */
#include "lineprof/lp_events.h"
#include "tracer/trace_hooks.h"

#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if PY_VERSION_HEX < 0x030C0000
#include <frameobject.h>
#include "cpython/cpy_frame.h" /* frame layouts: 3.9-3.11 trace function, 3.11 eval hook */
#endif

/* The frame evaluation function (lp_eval_frame() stands in for it). */
#if PY_VERSION_HEX >= 0x030B0000
typedef struct _PyInterpreterFrame lp_eval_frame_t;
#else
typedef PyFrameObject lp_eval_frame_t;
#endif
typedef PyObject *(*lp_eval_fn)(PyThreadState *, lp_eval_frame_t *, int);

/* ---- records (GIL held) -------------------------------------------------- */

/* The line profiler's process-wide state: the trace function of 3.9-3.11
 * gets no module argument, and the tracer it reads is process-wide too.
 * Everything is protected by the GIL. */
static struct {
    /* The registered code objects: an array and an open-addressing pointer
     * set over it. */
    lp_code **codes;
    Py_ssize_t ncodes, capcodes;
    lp_code **index; /* index_mask + 1 slots, NULL = empty */
    size_t index_mask;

    int active; /* 1 between lineprof_enable() and lineprof_disable() */
    int rss;    /* mem usage from RSS instead of traced bytes */
    int rss_fd; /* /proc/self/statm while `rss`, else -1 */
    /* Bumped whenever records are freed: thread stacks of an older
     * generation refer to freed records and are dropped on their next
     * event. */
    uint64_t generation;
    int failed; /* sticky: the C allocator failed; some figures are missing */

    /* Frees a thread's state when the thread exits (the key's value is the
     * lp_thread).  Created once, on first import. */
    pthread_key_t thread_key;

    /* The evaluation function we replaced (CPython's own, or another tool's
     * we chain to), and whether ours is installed (see lp_eval_fn). */
    lp_eval_fn prev_eval;
    int eval_installed;
} lp_g = {.rss_fd = -1, .generation = 1};

static inline size_t
lp_hash(const void *p)
{
    uintptr_t x = (uintptr_t)p >> 4;
    x *= 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 17);
}

static lp_code *
lp_find(PyObject *code)
{
    if (lp_g.index == NULL) {
        return NULL;
    }
    size_t i = lp_hash(code) & lp_g.index_mask;
    for (;;) {
        lp_code *r = lp_g.index[i];
        if (r == NULL || r->code == code) {
            return r;
        }
        i = (i + 1) & lp_g.index_mask;
    }
}

/* Put r in the first free slot from its home in idx (mask + 1 slots). */
static void
lp_index_put(lp_code **idx, size_t mask, lp_code *r)
{
    size_t i = lp_hash(r->code) & mask;
    while (idx[i] != NULL) {
        i = (i + 1) & mask;
    }
    idx[i] = r;
}

static int
lp_index_rebuild(size_t nslots)
{
    lp_code **idx = calloc(nslots, sizeof(*idx));
    if (idx == NULL) {
        return -1;
    }
    for (Py_ssize_t k = 0; k < lp_g.ncodes; k++) {
        lp_index_put(idx, nslots - 1, lp_g.codes[k]);
    }
    free(lp_g.index);
    lp_g.index = idx;
    lp_g.index_mask = nslots - 1;
    return 0;
}

/* The record of `line`, growing the array if needed; NULL on failure. */
static lp_line *
lp_line_of(lp_code *r, int line)
{
    if (line < r->firstline) {
        /* Only decorators' lines could come before co_firstlineno; charge
         * them to the first line rather than lose them. */
        line = r->firstline;
    }
    int i = line - r->firstline;
    if (i >= r->nlines) {
        int n = i + 16;
        lp_line *lines = realloc(r->lines, (size_t)n * sizeof(*lines));
        if (lines == NULL) {
            lp_g.failed = 1;
            return NULL;
        }
        memset(lines + r->nlines, 0, (size_t)(n - r->nlines) * sizeof(*lines));
        r->lines = lines;
        r->nlines = n;
    }
    return &r->lines[i];
}

/* ---- per-thread stack of running profiled frames -------------------------- */

typedef struct {
    lp_code *rec;
    const void *frame; /* 3.9-3.11: the frame, to match 'return' events */
    int line;          /* line being charged */
    int counted;       /* close it as an occurrence (0 for resume lines) */
    uint64_t alloc0;   /* thread counters when this frame's segment began */
    uint64_t freed0;
    /* The open line so far, over its segments (a segment ends when a
     * profiled callee starts, and restarts when it returns). */
    uint64_t acc_alloc;
    uint64_t acc_freed;
    int64_t acc_net;
    int64_t acc_peak;
} lp_entry;

typedef struct {
    lp_entry *stack; /* C heap; freed with the thread (lp_thread_exit) */
    int depth;
    int cap;
    uint64_t generation;
    trace_thread_counters *counters; /* this thread's, in trace_hooks.c */
    /* 3.9-3.11: line tracing is switched off on this thread by
     * lp_eval_frame() while a frame we do not profile runs. */
    int suspended;
} lp_thread;

/* This thread's state, on the C heap.  initial-exec: read at every line
 * event, a %fs-relative access instead of a __tls_get_addr call; only a
 * pointer, since the static TLS surplus glibc shares among dlopen()ed
 * modules is small (tests/api/test_tracer.py checks the module's TLS size). */
static _Thread_local lp_thread *lp_tls __attribute__((tls_model("initial-exec")));

static void
lp_thread_exit(void *p)
{
    lp_thread *t = p;
    free(t->stack);
    free(t);
}

/* This thread's state; NULL (and lp_g.failed set) if it cannot be made. */
static lp_thread *
lp_thread_get(void)
{
    lp_thread *t = lp_tls;
    if (t == NULL) {
        t = calloc(1, sizeof(*t));
        if (t == NULL) {
            lp_g.failed = 1;
            return NULL;
        }
        lp_tls = t;
        (void)pthread_setspecific(lp_g.thread_key, t);
    }
    if (t->generation != lp_g.generation) {
        t->depth = 0;
        t->generation = lp_g.generation;
        t->counters = trace_thread_counters_ptr();
    }
    return t;
}

/* ---- charging ----------------------------------------------------------------- */

static uint64_t
lp_rss_bytes(void)
{
    /* /proc/self/statm: "size resident ..." in pages; read with pread on a
     * descriptor kept open, no stdio and no allocation. */
    char buf[128];
    if (lp_g.rss_fd < 0) {
        lp_g.rss_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
        if (lp_g.rss_fd < 0) {
            return 0;
        }
    }
    ssize_t n = pread(lp_g.rss_fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    char *p = strchr(buf, ' ');
    if (p == NULL) {
        return 0;
    }
    static uint64_t page;
    if (page == 0) {
        page = (uint64_t)sysconf(_SC_PAGESIZE);
    }
    return (uint64_t)strtoull(p + 1, NULL, 10) * page;
}

static uint64_t
lp_mem_usage(void)
{
    if (lp_g.rss) {
        return lp_rss_bytes();
    }
    uint64_t cur, peak;
    trace_get_traced_memory(&cur, &peak);
    return cur;
}

/* End the running segment of `from` (if any) and begin one for `to` (if
 * any), with one read of the thread's counters.  `transient`: bytes of a
 * block the event machinery itself allocated just before this event and
 * frees right after it (3.12+: see lp_event_int), left out of both
 * segments. */
static void
lp_switch(lp_thread *t, lp_entry *from, lp_entry *to, uint64_t transient)
{
    trace_thread_counters *c = t->counters;
    int64_t net = (int64_t)(c->allocated - c->freed);
    if (from != NULL) {
        uint64_t sa = c->allocated - from->alloc0 - transient;
        uint64_t sf = c->freed - from->freed0;
        /* peak_net was set to alloc0 - freed0 when the segment began.  If
         * the transient block made (or tied) the peak, the true one lies in
         * (net - transient, net]: take the lower end. */
        int64_t peak = c->peak_net;
        if (transient != 0 && peak == net) {
            peak = net - (int64_t)transient;
        }
        int64_t seg_peak = peak - (int64_t)(from->alloc0 - from->freed0);
        if (from->acc_net + seg_peak > from->acc_peak) {
            from->acc_peak = from->acc_net + seg_peak;
        }
        from->acc_alloc += sa;
        from->acc_freed += sf;
        from->acc_net += (int64_t)(sa - sf);
    }
    if (to != NULL) {
        /* The transient block's coming free is not this segment's. */
        to->alloc0 = c->allocated;
        to->freed0 = c->freed + transient;
        if (c->peak_net > c->peak_held) {
            c->peak_held = c->peak_net;
        }
        c->peak_net = net - (int64_t)transient;
    }
}

/* Record the open line of `e` and start an empty one. */
static void
lp_close_line(lp_entry *e)
{
    lp_line *l = lp_line_of(e->rec, e->line);
    if (l != NULL) {
        l->seen = 1;
        l->occurrences += (uint64_t)e->counted;
        l->increment += e->acc_net;
        l->allocated += e->acc_alloc;
        l->freed += e->acc_freed;
        if (e->acc_peak > l->peak) {
            l->peak = e->acc_peak;
        }
        uint64_t mem = lp_mem_usage();
        if (mem > l->mem_usage) {
            l->mem_usage = mem;
        }
    }
    e->acc_alloc = 0;
    e->acc_freed = 0;
    e->acc_net = 0;
    e->acc_peak = 0;
}

/* A profiled frame starts (fresh) or resumes running on this thread. */
static void
lp_push(lp_code *r, const void *frame, int line, int fresh, uint64_t transient)
{
    lp_thread *t = lp_thread_get();
    if (t == NULL) {
        return;
    }
    if (t->depth == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        lp_entry *s = realloc(t->stack, (size_t)cap * sizeof(*s));
        if (s == NULL) {
            lp_g.failed = 1;
            return;
        }
        t->stack = s;
        t->cap = cap;
    }
    lp_entry *e = &t->stack[t->depth];
    memset(e, 0, sizeof(*e));
    e->rec = r;
    e->frame = frame;
    e->line = line;
    /* The def line counts one occurrence per call, like memory_profiler;
     * a generator's resume point is not a new occurrence of its line. */
    e->counted = fresh;
    if (fresh) {
        r->calls++;
    }
    lp_switch(t, t->depth > 0 ? &t->stack[t->depth - 1] : NULL, e, transient);
    t->depth++;
}

/* A new line starts in the innermost profiled frame. */
static void
lp_line_event(lp_thread *t, lp_entry *e, int line, uint64_t transient)
{
    lp_switch(t, e, e, transient);
    lp_close_line(e);
    e->line = line;
    e->counted = 1;
}

/* The innermost profiled frame returns, yields or unwinds. */
static void
lp_pop(lp_thread *t, uint64_t transient)
{
    lp_entry *e = &t->stack[t->depth - 1];
    lp_switch(t, e, t->depth > 1 ? &t->stack[t->depth - 2] : NULL, transient);
    lp_close_line(e);
    t->depth--;
}

/* The innermost entry if it runs `code` (and `frame`, when known). */
static lp_entry *
lp_top_for(lp_thread *t, PyObject *code, const void *frame)
{
    if (t == NULL || t->depth == 0) {
        return NULL;
    }
    lp_entry *e = &t->stack[t->depth - 1];
    if (e->rec->code != code || (frame != NULL && e->frame != frame)) {
        /* Profiling began while this frame was already running. */
        return NULL;
    }
    return e;
}

#if PY_VERSION_HEX >= 0x030C0000
/* ---- 3.12+: sys.monitoring callbacks (registered by memlens/lineprof.py) ---- */

/* sys.monitoring passes line numbers and offsets as int objects it creates
 * for the call (beyond the small-int cache, -5..256) and frees right after
 * it: a traced block that is not the program's.  Its bytes, per version's
 * _PyLong_FromMedium (Objects/longobject.c); tests/api/test_lineprof.py checks
 * that lines past 256 charge nothing for it on each version. */
static inline uint64_t
lp_event_int(PyObject *o)
{
    if (!PyLong_CheckExact(o) || Py_REFCNT(o) != 1) {
        return 0; /* a cached small int (immortal), or kept elsewhere */
    }
#if PY_VERSION_HEX >= 0x030D0000
    return sizeof(PyLongObject); /* 3.13: PyObject_Malloc(sizeof(PyLongObject)) */
#else
    /* 3.12: the header and one digit */
    return offsetof(PyLongObject, long_value.ob_digit) + sizeof(digit);
#endif
}

static PyObject *
lp_mon_enter(PyObject *const *args, Py_ssize_t nargs, int fresh)
{
    if (nargs < 2 || !lp_g.active) {
        Py_RETURN_NONE;
    }
    lp_code *r = lp_find(args[0]);
    if (r == NULL) {
        Py_RETURN_NONE;
    }
    int line = r->firstline;
    if (!fresh) {
        Py_ssize_t off = PyLong_AsSsize_t(args[1]);
        if (off < 0) {
            PyErr_Clear();
        }
        else {
            line = PyCode_Addr2Line((PyCodeObject *)args[0], (int)off);
        }
    }
    lp_push(r, NULL, line, fresh, lp_event_int(args[1]));
    Py_RETURN_NONE;
}

PyObject *
lp_mon_start(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    return lp_mon_enter(args, nargs, 1);
}

/* PY_RESUME and PY_THROW (a throw() into a suspended generator). */
PyObject *
lp_mon_resume(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    return lp_mon_enter(args, nargs, 0);
}

/* PY_RETURN, PY_YIELD and PY_UNWIND. */
PyObject *
lp_mon_leave(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || !lp_g.active) {
        Py_RETURN_NONE;
    }
    lp_thread *t = lp_thread_get();
    if (lp_top_for(t, args[0], NULL) != NULL) {
        lp_pop(t, nargs >= 2 ? lp_event_int(args[1]) : 0);
    }
    Py_RETURN_NONE;
}

PyObject *
lp_mon_line(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || !lp_g.active) {
        Py_RETURN_NONE;
    }
    lp_thread *t = lp_thread_get();
    lp_entry *e = lp_top_for(t, args[0], NULL);
    if (e != NULL) {
        long line = PyLong_AsLong(args[1]);
        if (line < 0) {
            PyErr_Clear();
        }
        else {
            lp_line_event(t, e, (int)line, lp_event_int(args[1]));
        }
    }
    Py_RETURN_NONE;
}

#else
/* ---- 3.9-3.11: a C trace function ----------------------------------------- */

/* Switch per-line events off in a frame we do not profile. */
static inline void
lp_frame_no_lines(PyFrameObject *f)
{
    layout_frameobject_set_trace_lines(f, 0);
}

/* The frame's current line during a trace call: 3.9/3.10's call_trace()
 * sets f_lineno before calling us; 3.11 computes it from the frame. */
static inline int
lp_frame_line(PyFrameObject *f)
{
#if PY_VERSION_HEX >= 0x030B0000
    return PyFrame_GetLineNumber(f);
#else
    return f->f_lineno;
#endif
}

static int
lp_tracefunc(PyObject *Py_UNUSED(obj), PyFrameObject *f, int what, PyObject *Py_UNUSED(arg))
{
    if (!lp_g.active) {
        /* Profiling stopped: leave this thread for good. */
        PyEval_SetTrace(NULL, NULL);
        return 0;
    }
    switch (what) {
    case PyTrace_CALL: {
        PyCodeObject *code = PyFrame_GetCode(f); /* new reference */
        /* The record holds its own reference to the code object. */
        lp_code *r = lp_find((PyObject *)code);
        Py_DECREF(code);
        if (r == NULL) {
            lp_frame_no_lines(f);
        }
        else {
            /* A 'call' event also marks a generator's resumption; a first
             * entry is reported at co_firstlineno on 3.9-3.11 (3.9/3.10:
             * f_lasti is -1; 3.11: at RETURN_GENERATOR, on that line). */
            int line = lp_frame_line(f);
            int fresh = !r->is_gen || line == r->firstline;
            lp_push(r, f, line, fresh, 0);
        }
        break;
    }
    case PyTrace_LINE:
    case PyTrace_RETURN: {
        /* Returns of every frame that runs with tracing on come here
         * (those lp_eval_frame() leaves on: profiled frames, and any frame
         * while a profile function keeps tracing on): only the innermost
         * profiled frame's matter, so compare frames before asking for the
         * code object. */
        lp_thread *t = lp_thread_get();
        if (t == NULL || t->depth == 0 || t->stack[t->depth - 1].frame != (const void *)f) {
            break;
        }
        PyCodeObject *code = PyFrame_GetCode(f); /* new reference */
        lp_entry *e = lp_top_for(t, (PyObject *)code, f);
        Py_DECREF(code);
        if (e == NULL) {
            break;
        }
        if (what == PyTrace_LINE) {
            lp_line_event(t, e, lp_frame_line(f), 0);
        }
        else {
            /* Return, yield, or exit by exception. */
            lp_pop(t, 0);
        }
        break;
    }
    default:
        break;
    }
    return 0;
}

/* ---- 3.9-3.11: tracing only while profiled code runs ------------------------
 *
 * With a trace function installed, CPython runs every frame of the thread
 * in its tracing mode: each instruction through the slow dispatch path, and
 * on 3.11 unspecialized (de-optimized), with a frame object made for every
 * call.  A profiled function that calls into json, say, would run those
 * callees 1.5-2x slower for nothing: their lines are not wanted.  So while
 * profiling, a PEP 523 frame evaluation function sees every Python frame
 * start (and every generator resume) and switches this thread's tracing off
 * for the frames we do not profile and back on for those we do, restoring
 * the caller's state when the frame returns.  The trace function stays
 * installed; only the flag the eval loop checks changes:
 *   3.10/3.11: the use_tracing flag of the current C frame record, which
 *     the next frame copies and copies back when it returns;
 *   3.9: use_tracing lives in the thread state, and line events are asked
 *     for whenever c_tracefunc is set, so c_tracefunc itself is cleared
 *     while suspended (PyEval_SetTrace's count of tracing threads is left
 *     as it was: it only selects the slower dispatch loop).
 * A trace function someone else installs (a debugger, coverage) is never
 * touched: the switch acts only while ours is the thread's. */

static inline PyObject *
lp_eval_code(lp_eval_frame_t *f)
{
#if PY_VERSION_HEX >= 0x030B0000
    return (PyObject *)layout_frame_code((layout_frame *)f); /* 3.11 */
#else
    return (PyObject *)f->f_code; /* 3.9/3.10 */
#endif
}

/* Is the thread's tracing ours to switch? */
static inline int
lp_tracing_ours(PyThreadState *ts, lp_thread *t)
{
#if PY_VERSION_HEX >= 0x030A0000
    (void)t;
    return ts->c_tracefunc == lp_tracefunc;
#else
    /* 3.9: while suspended, c_tracefunc is NULL by our doing. */
    return ts->c_tracefunc == lp_tracefunc || (t->suspended && ts->c_tracefunc == NULL);
#endif
}

/* Switch line and call tracing on or off for the code about to run (or
 * resume) on this thread; a profile function keeps its events. */
static inline void
lp_set_tracing(PyThreadState *ts, lp_thread *t, int on)
{
    t->suspended = !on;
#if PY_VERSION_HEX >= 0x030B0000
    ts->cframe->use_tracing = (on || ts->c_profilefunc != NULL) ? 255 : 0; /* 3.11 */
#elif PY_VERSION_HEX >= 0x030A0000
    ts->cframe->use_tracing = on || ts->c_profilefunc != NULL; /* 3.10 */
#else
    ts->c_tracefunc = on ? lp_tracefunc : NULL; /* 3.9 */
    ts->use_tracing = on || ts->c_profilefunc != NULL;
#endif
}

static PyObject *
lp_eval_frame(PyThreadState *ts, lp_eval_frame_t *f, int throwflag)
{
    lp_thread *t = lp_tls;
    int owned = 0;
    int was_on = 0;
    if (lp_g.active && t != NULL && lp_tracing_ours(ts, t)) {
        owned = 1;
        was_on = !t->suspended;
        int on = lp_find(lp_eval_code(f)) != NULL;
        if (on != was_on) {
            lp_set_tracing(ts, t, on);
        }
    }
    PyObject *res = lp_g.prev_eval(ts, f, throwflag);
    /* Back in the caller: the frame that returned copied its own state
     * into the caller's C frame record (3.10/3.11), so set the caller's
     * again -- unless the trace function was replaced or removed meanwhile
     * (sys.settrace, lineprof_disable). */
    if (owned && lp_tracing_ours(ts, t)) {
        lp_set_tracing(ts, t, was_on);
    }
    return res;
}

static void
lp_eval_install(void)
{
    PyInterpreterState *interp = PyThreadState_Get()->interp;
    if (lp_g.eval_installed) {
        return;
    }
    lp_eval_fn cur = (lp_eval_fn)_PyInterpreterState_GetEvalFrameFunc(interp);
    lp_g.prev_eval = cur != NULL ? cur : (lp_eval_fn)_PyEval_EvalFrameDefault;
    _PyInterpreterState_SetEvalFrameFunc(interp, (_PyFrameEvalFunction)lp_eval_frame);
    lp_g.eval_installed = 1;
}

/* Put the replaced function back, if ours is still the one installed (a
 * tool that installed its own after us may chain to ours: lp_eval_frame
 * only passes calls through while profiling is off). */
static void
lp_eval_uninstall(void)
{
    PyInterpreterState *interp = PyThreadState_Get()->interp;
    if (!lp_g.eval_installed) {
        return;
    }
    if ((lp_eval_fn)_PyInterpreterState_GetEvalFrameFunc(interp) == lp_eval_frame) {
        _PyInterpreterState_SetEvalFrameFunc(interp, (_PyFrameEvalFunction)lp_g.prev_eval);
        lp_g.eval_installed = 0;
    }
}

/* This thread starts running under the C trace function. */
static void
lp_thread_start_tracing(void)
{
    PyEval_SetTrace(lp_tracefunc, NULL);
    lp_thread *t = lp_thread_get();
    if (t != NULL) {
        t->suspended = 0;
    }
}

/* threading.settrace() hook: moves each new thread onto the C function. */
PyObject *
lp_thread_hook(PyObject *Py_UNUSED(m), PyObject *args)
{
    PyObject *frame, *event, *arg;
    if (!PyArg_ParseTuple(args, "OOO", &frame, &event, &arg)) {
        return NULL;
    }
    if (lp_g.active) {
        lp_thread_start_tracing();
        if (PyFrame_Check(frame)) {
            (void)lp_tracefunc(NULL, (PyFrameObject *)frame, PyTrace_CALL, Py_None);
        }
    }
    Py_RETURN_NONE;
}
#endif

/* ---- control (memlens/lineprof.py through lp_module.c) ----------------------- */

int
lp_register(PyObject *code)
{
    if (lp_find(code) != NULL) {
        return 0;
    }
    if (lp_g.ncodes == lp_g.capcodes) {
        Py_ssize_t cap = lp_g.capcodes ? 2 * lp_g.capcodes : 16;
        lp_code **codes = realloc(lp_g.codes, (size_t)cap * sizeof(*codes));
        if (codes == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        lp_g.codes = codes;
        lp_g.capcodes = cap;
    }
    lp_code *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyCodeObject *co = (PyCodeObject *)code;
    r->firstline = co->co_firstlineno;
    r->is_gen = (co->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)) != 0;
    Py_INCREF(code);
    r->code = code;
    lp_g.codes[lp_g.ncodes++] = r;
    /* Keep the index at most half full. */
    if ((size_t)lp_g.ncodes * 2 > lp_g.index_mask + 1 || lp_g.index == NULL) {
        size_t n = 64;
        while (n < (size_t)lp_g.ncodes * 2) {
            n *= 2;
        }
        if (lp_index_rebuild(n) < 0) {
            lp_g.ncodes--;
            Py_DECREF(r->code);
            free(r);
            PyErr_NoMemory();
            return -1;
        }
    }
    else {
        lp_index_put(lp_g.index, lp_g.index_mask, r);
    }
    return 0;
}

void
lp_enable(int rss)
{
    lp_g.rss = rss;
    lp_g.active = 1;
    lp_g.generation++;
#if PY_VERSION_HEX < 0x030C0000
    lp_eval_install();
    lp_thread_start_tracing();
#endif
}

void
lp_disable(void)
{
    lp_g.active = 0;
    lp_g.generation++;
#if PY_VERSION_HEX < 0x030C0000
    lp_thread *t = lp_tls;
    PyThreadState *ts = PyThreadState_Get();
    if (t != NULL && t->suspended && lp_tracing_ours(ts, t)) {
        /* Resume first (3.9: so that PyEval_SetTrace sees our function
         * and keeps its count of tracing threads right). */
        lp_set_tracing(ts, t, 1);
    }
    PyEval_SetTrace(NULL, NULL);
    lp_eval_uninstall();
#endif
}

void
lp_reset(void)
{
    for (Py_ssize_t k = 0; k < lp_g.ncodes; k++) {
        lp_code *r = lp_g.codes[k];
        if (r->lines != NULL) {
            memset(r->lines, 0, (size_t)r->nlines * sizeof(*r->lines));
        }
        r->calls = 0;
    }
    lp_g.failed = 0;
}

void
lp_clear(void)
{
    lp_g.generation++;
    Py_ssize_t n = lp_g.ncodes;
    lp_code **codes = lp_g.codes;
    lp_g.codes = NULL;
    lp_g.ncodes = lp_g.capcodes = 0;
    free(lp_g.index);
    lp_g.index = NULL;
    lp_g.index_mask = 0;
    lp_g.failed = 0;
    /* Other threads' stacks are dropped by the generation bump. */
    if (lp_tls != NULL) {
        lp_tls->depth = 0;
    }
    /* Last: dropping code references may run arbitrary deallocators. */
    for (Py_ssize_t k = 0; k < n; k++) {
        free(codes[k]->lines);
        Py_DECREF(codes[k]->code);
        free(codes[k]);
    }
    free(codes);
}

lp_code *const *
lp_records(Py_ssize_t *n)
{
    *n = lp_g.ncodes;
    return lp_g.codes;
}

int
lp_has_failed(void)
{
    return lp_g.failed;
}

int
lp_is_active(void)
{
    return lp_g.active;
}

int
lp_events_init(void)
{
    static int key_ready = 0; /* GIL held: module exec */
    if (!key_ready) {
        if (pthread_key_create(&lp_g.thread_key, lp_thread_exit) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_key_create failed");
            return -1;
        }
        key_ready = 1;
    }
    return 0;
}
