/* trace_hooks.c: PEP 445 allocator hooks and the live totals (see
 * trace_hooks.h). */
#include "trace_hooks.h"
#include "trace_map.h"
#include "trace_mem.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/* ---- the tracer lock ---------------------------------------------------- */

/* A spinlock: held for a few hundred nanoseconds of bookkeeping at most, and
 * taken on every traced malloc/free, where a pthread mutex would cost more. */
static atomic_flag trace_spin = ATOMIC_FLAG_INIT;

void
trace_lock(void)
{
    unsigned spins = 0;
    while (atomic_flag_test_and_set_explicit(&trace_spin, memory_order_acquire)) {
        if (++spins > 64) {
            sched_yield();
        }
    }
}

void
trace_unlock(void)
{
    atomic_flag_clear_explicit(&trace_spin, memory_order_release);
}

/* ---- state (process-wide: PEP 445 allocators are) ----------------------- */

typedef struct {
    PyMemAllocatorDomain domain;
    PyMemAllocatorEx prev; /* the allocator we chain to; written by start()
                              before the hooks are installed, never cleared */
} trace_hook_ctx;

static const PyMemAllocatorDomain trace_domains[3] = {
    PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ};

/* Hook contexts.  A context must stay valid for as long as its hooks may be
 * called: when another tracer (tracemalloc) installed its hooks on top of
 * ours, stop() cannot uninstall ours, and they stay in the chain, passing
 * calls through.  So contexts are never freed; each start() that cannot
 * reuse the installed one takes a fresh slot.  Written with the GIL held. */
#define TRACE_CTX_SLOTS 64
static trace_hook_ctx trace_ctx_pool[TRACE_CTX_SLOTS][3];
static int trace_ctx_used;
static trace_hook_ctx *trace_ctx; /* the slot of the current installation */

/* 1 while the hooks are installed and the tables valid.  Written under the
 * lock; read lock-free as a hint by the hooks, then again under the lock. */
static atomic_int trace_active;
/* Bumped by each start(), so threads re-draw their sampling countdown. */
static atomic_uint_fast64_t trace_generation;

/* Protected by the tracer lock. */
static stack_table trace_stacks;
static uint64_t trace_current;     /* bytes (or estimated bytes) live */
static uint64_t trace_peak;        /* high-water mark of trace_current */
static uint64_t trace_peak_gen;    /* bumped at each new high-water mark */
static uint64_t trace_blocks;      /* live traced blocks */
static int trace_failed;           /* sticky: some bookkeeping failed */

/* Set by start(), constant while tracing. */
static int trace_max_frames;
static uint64_t trace_sample_bytes;  /* 0: exact */
static double trace_sample_mean;     /* (double)trace_sample_bytes */

/* Per-thread state: the re-entrancy guard (set while a hook runs, so the
 * allocations the underlying allocator or our bookkeeping make are passed
 * straight through) and the sampling countdown. */
typedef struct {
    int busy;
    int64_t countdown;  /* bytes until the next sample point */
    uint64_t rng;
    uint64_t generation;
    struct trace_stack_cache *cache; /* this thread's trace_cache */
    trace_thread_counters counters;  /* for the line profiler, see below */
} trace_tls_state;

/* initial-exec: a plain %fs-relative access instead of a __tls_get_addr call
 * on every hook; the few bytes fit in the static TLS surplus glibc keeps for
 * dlopen()ed modules. */
static _Thread_local trace_tls_state trace_tls __attribute__((tls_model("initial-exec")));

/* ---- sampling ------------------------------------------------------------- */

static uint64_t
trace_rng_next(trace_tls_state *t)
{
    /* xorshift64*: quality is ample for exponential draws. */
    uint64_t x = t->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    t->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Distance to the next point of a Poisson process with mean interval N. */
static int64_t
trace_draw_interval(trace_tls_state *t)
{
    /* u in (0, 1]: 53 random bits. */
    double u = ((double)(trace_rng_next(t) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double d = -log(u) * trace_sample_mean;
    if (d < 1.0) {
        d = 1.0;
    }
    if (d > 9.0e18) {
        d = 9.0e18;
    }
    return (int64_t)d;
}

static void
trace_tls_refresh(trace_tls_state *t)
{
    uint64_t gen = atomic_load_explicit(&trace_generation, memory_order_relaxed);
    if (t->generation != gen) {
        if (t->rng == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            t->rng = ((uint64_t)(uintptr_t)t * 0x9E3779B97F4A7C15ull)
                     ^ ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec;
            if (t->rng == 0) {
                t->rng = 1;
            }
        }
        t->generation = gen;
        t->countdown = trace_draw_interval(t);
    }
}

/* Is an allocation of `size` bytes sampled?  Each byte is a point of the
 * byte stream; a block is sampled if a Poisson sample point falls in it,
 * which happens with probability 1 - exp(-size / N), independently of
 * every other block. */
static int
trace_sample_hit(trace_tls_state *t, uint64_t size)
{
    trace_tls_refresh(t);
    t->countdown -= (int64_t)(size == 0 ? 1 : size);
    if (t->countdown > 0) {
        return 0;
    }
    /* Memorylessness: the next point is an exponential distance past the
     * end of this block, whatever happened inside it. */
    t->countdown = trace_draw_interval(t);
    return 1;
}

/* Weights that make the sampled totals unbiased: a sampled block of `size`
 * bytes stands for size / p bytes and 1 / p blocks. */
static void
trace_weights(uint64_t size, uint64_t *wsize, uint64_t *wcount)
{
    if (trace_sample_bytes == 0) {
        *wsize = size;
        *wcount = STACK_COUNT_ONE;
        return;
    }
    double s = (double)(size == 0 ? 1 : size);
    double p = -expm1(-s / trace_sample_mean);
    *wsize = (uint64_t)llround((double)size / p);
    *wcount = (uint64_t)llround((double)STACK_COUNT_ONE / p);
}

/* ---- bookkeeping (tracer lock held) ------------------------------------- */

/* Before the first change to a stack after a new high-water mark, save its
 * totals: they are its share of that peak. */
static inline void
trace_touch_unlocked(stack_rec *r)
{
    if (r->snap_gen != trace_peak_gen) {
        r->snap_size = r->size;
        r->snap_count = r->count;
        r->snap_gen = trace_peak_gen;
    }
}

static void
trace_add_unlocked(uintptr_t p, uint64_t size, uint32_t stack)
{
    if (trace_map_insert_unlocked(p, size, stack) < 0) {
        trace_failed = 1;
        return;
    }
    uint64_t ws, wc;
    trace_weights(size, &ws, &wc);
    stack_rec *r = stack_get_unlocked(&trace_stacks, stack);
    trace_touch_unlocked(r);
    r->size += ws;
    r->count += wc;
    trace_blocks++;
    trace_current += ws;
    if (trace_current > trace_peak) {
        trace_peak = trace_current;
        trace_peak_gen++;
    }
    /* Line profiler (lineprof.c): this thread's cumulative bytes and its
     * local high-water mark.  An add, a subtract and a compare on
     * initial-exec TLS that the hook touches anyway. */
    trace_thread_counters *c = &trace_tls.counters;
    c->allocated += ws;
    int64_t net = (int64_t)(c->allocated - c->freed);
    if (net > c->peak_net) {
        c->peak_net = net;
    }
}

static void
trace_drop_unlocked(trace_map_entry e)
{
    uint64_t ws, wc;
    trace_weights(e.size, &ws, &wc);
    stack_rec *r = stack_get_unlocked(&trace_stacks, e.stack);
    trace_touch_unlocked(r);
    r->size -= ws;
    r->count -= wc;
    trace_blocks--;
    trace_current -= ws;
    /* Line profiler: bytes this thread freed (see trace_add_unlocked). */
    trace_tls.counters.freed += ws;
}

/* ---- the hooks -------------------------------------------------------------- */

/* Per-thread cache of the callers' stack.  Most allocations in a row come
 * from the same callers at different instructions of one function, so the
 * stack of the callers (frames 2..N) is kept by id together with the raw
 * frame signatures it was read from; when the signatures still match, the
 * allocation's stack is one trie probe away (stack.h), with no hashing or
 * decoding of the callers.  In dynamic TLS (it is too big for the static
 * TLS surplus); trace_tls holds a pointer to it. */
#define TRACE_CACHE_RAW 64
typedef struct trace_stack_cache {
    uint64_t generation; /* trace_generation it was filled under */
    uint32_t parent;     /* id of the callers' stack */
    int nraw;            /* raw frames compared */
    int ended;           /* the walk reached the outermost frame */
    int valid;
    stack_sig raw[TRACE_CACHE_RAW];
} trace_stack_cache;

static _Thread_local trace_stack_cache trace_cache;

/* Stack id of the running allocation (tracer lock held; GIL held by this
 * thread when tstate != NULL). */
static uint32_t
trace_stack_id_unlocked(trace_tls_state *t, PyThreadState *tstate)
{
    if (tstate == NULL) {
        return STACK_ID_EMPTY;
    }
    void *f = stack_compat_top(tstate);
    PyCodeObject *code0 = NULL;
    int32_t off0 = 0;
    while (f != NULL && !stack_compat_decode(f, &code0, &off0)) {
        f = stack_compat_prev(f);
    }
    if (f == NULL) {
        return STACK_ID_EMPTY;
    }
    if (trace_max_frames == 1) {
        return stack_intern_unlocked(&trace_stacks, code0, off0, STACK_ID_EMPTY);
    }
    trace_stack_cache *c = t->cache;
    if (c == NULL) {
        c = t->cache = &trace_cache;
    }
    uint64_t gen = atomic_load_explicit(&trace_generation, memory_order_relaxed);
    void *p = stack_compat_prev(f);
    if (c->valid && c->generation == gen) {
        int i = 0;
        for (; i < c->nraw; i++) {
            stack_sig s;
            if (p == NULL) {
                break;
            }
            stack_compat_sig(p, &s);
            if (s.frame != c->raw[i].frame || s.code != c->raw[i].code || s.instr != c->raw[i].instr) {
                break;
            }
            p = stack_compat_prev(p);
        }
        if (i == c->nraw && (!c->ended || p == NULL)) {
            return stack_intern_unlocked(&trace_stacks, code0, off0, c->parent);
        }
        p = stack_compat_prev(f);
    }
    /* Miss: read the callers, intern them outermost first, refill the cache. */
    stack_frame frames[STACK_MAX_FRAMES];
    int n = 0;
    int nraw = 0;
    while (p != NULL && n < trace_max_frames - 1) {
        if (nraw < TRACE_CACHE_RAW) {
            stack_compat_sig(p, &c->raw[nraw]);
        }
        nraw++;
        if (stack_compat_decode(p, &frames[n].code, &frames[n].offset)) {
            n++;
        }
        p = stack_compat_prev(p);
    }
    uint32_t parent = STACK_ID_EMPTY;
    for (int i = n - 1; i >= 0; i--) {
        parent = stack_intern_unlocked(&trace_stacks, frames[i].code, frames[i].offset, parent);
    }
    c->valid = nraw <= TRACE_CACHE_RAW;
    c->nraw = nraw;
    c->ended = p == NULL;
    c->parent = parent;
    c->generation = gen;
    return stack_intern_unlocked(&trace_stacks, code0, off0, parent);
}

/* Record a new block (the re-entrancy guard is set by the caller). */
static void
trace_on_alloc(PyMemAllocatorDomain domain, void *p, size_t size)
{
    if (!atomic_load_explicit(&trace_active, memory_order_relaxed)) {
        return;
    }
    trace_tls_state *t = &trace_tls;
    if (trace_sample_bytes != 0 && !trace_sample_hit(t, size)) {
        return;
    }
    /* MEM and OBJ allocations are made with the GIL held; RAW ones may not
     * be, and then the thread's frames cannot be read (nor code objects
     * kept): those are attributed to the empty stack. */
    PyThreadState *tstate = NULL;
    if (domain != PYMEM_DOMAIN_RAW || PyGILState_Check()) {
        tstate = _PyThreadState_UncheckedGet();
    }
    trace_lock();
    if (atomic_load_explicit(&trace_active, memory_order_relaxed)) {
        uint32_t id = trace_stack_id_unlocked(t, tstate);
        trace_add_unlocked((uintptr_t)p, (uint64_t)size, id);
    }
    trace_unlock();
}

/* Forget block `p` if traced, returning its entry (stack 0 if not). */
static trace_map_entry
trace_on_free(void *p)
{
    trace_map_entry e = {0, 0};
    /* Lock-free pre-check: most frees in sampled mode, and frees of blocks
     * allocated before start(), find nothing and need no lock. */
    if (!atomic_load_explicit(&trace_active, memory_order_relaxed)
        || !trace_map_peek((uintptr_t)p)) {
        return e;
    }
    trace_lock();
    if (atomic_load_explicit(&trace_active, memory_order_relaxed)) {
        e = trace_map_remove_unlocked((uintptr_t)p);
        if (e.stack != 0) {
            trace_drop_unlocked(e);
        }
    }
    trace_unlock();
    return e;
}

static void *
trace_hook_malloc(void *ctx, size_t size)
{
    trace_hook_ctx *h = ctx;
    trace_tls_state *t = &trace_tls;
    if (t->busy) {
        return h->prev.malloc(h->prev.ctx, size);
    }
    t->busy = 1;
    void *p = h->prev.malloc(h->prev.ctx, size);
    if (p != NULL) {
        trace_on_alloc(h->domain, p, size);
    }
    t->busy = 0;
    return p;
}

static void *
trace_hook_calloc(void *ctx, size_t nelem, size_t elsize)
{
    trace_hook_ctx *h = ctx;
    trace_tls_state *t = &trace_tls;
    if (t->busy) {
        return h->prev.calloc(h->prev.ctx, nelem, elsize);
    }
    t->busy = 1;
    void *p = h->prev.calloc(h->prev.ctx, nelem, elsize);
    if (p != NULL) {
        /* No overflow: the allocator returned nelem * elsize bytes. */
        trace_on_alloc(h->domain, p, nelem * elsize);
    }
    t->busy = 0;
    return p;
}

static void *
trace_hook_realloc(void *ctx, void *ptr, size_t size)
{
    trace_hook_ctx *h = ctx;
    trace_tls_state *t = &trace_tls;
    if (t->busy) {
        return h->prev.realloc(h->prev.ctx, ptr, size);
    }
    t->busy = 1;
    /* Untrack the old block before the allocator can hand its address to
     * another thread; put it back if the reallocation fails. */
    trace_map_entry old = {0, 0};
    if (ptr != NULL) {
        old = trace_on_free(ptr);
    }
    void *p = h->prev.realloc(h->prev.ctx, ptr, size);
    if (p != NULL) {
        /* Like tracemalloc, the moved block is attributed to the stack
         * that resized it. */
        trace_on_alloc(h->domain, p, size);
    }
    else if (old.stack != 0) {
        trace_lock();
        if (atomic_load_explicit(&trace_active, memory_order_relaxed)) {
            trace_add_unlocked((uintptr_t)ptr, old.size, old.stack);
        }
        trace_unlock();
    }
    t->busy = 0;
    return p;
}

static void
trace_hook_free(void *ctx, void *ptr)
{
    trace_hook_ctx *h = ctx;
    trace_tls_state *t = &trace_tls;
    if (t->busy || ptr == NULL) {
        h->prev.free(h->prev.ctx, ptr);
        return;
    }
    t->busy = 1;
    (void)trace_on_free(ptr);
    h->prev.free(h->prev.ctx, ptr);
    t->busy = 0;
}

/* ---- start / stop ------------------------------------------------------------ */

int
trace_start(int max_frames, uint64_t sample_bytes)
{
    if (atomic_load(&trace_active)) {
        PyErr_SetString(PyExc_RuntimeError, "memlens is already tracing; call stop() first");
        return -1;
    }
    /* Pick the hook contexts.  A slot can be reused when its hooks are
     * still installed (stopped while another tracer sat above them), or when
     * the installed allocators are exactly the ones it chains to, so that its
     * `prev` does not change under a hook call still running in another
     * thread.  Otherwise take a fresh slot. */
    int installed = 0;
    int same_prev = 0;
    if (trace_ctx != NULL) {
        installed = 1;
        same_prev = 1;
        for (int i = 0; i < 3; i++) {
            PyMemAllocatorEx cur;
            PyMem_GetAllocator(trace_domains[i], &cur);
            if (cur.ctx != &trace_ctx[i]) {
                installed = 0;
            }
            if (memcmp(&cur, &trace_ctx[i].prev, sizeof(cur)) != 0) {
                same_prev = 0;
            }
        }
    }
    trace_hook_ctx *ctx;
    if (installed || same_prev) {
        ctx = trace_ctx;
    }
    else if (trace_ctx_used < TRACE_CTX_SLOTS) {
        ctx = trace_ctx_pool[trace_ctx_used];
    }
    else {
        PyErr_SetString(PyExc_RuntimeError,
                        "memlens: too many start() calls while other allocator hooks "
                        "were installed and removed around memlens'");
        return -1;
    }
    stack_table fresh;
    if (stack_table_init(&fresh) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    trace_lock();
    trace_stacks = fresh;
    trace_current = 0;
    trace_peak = 0;
    trace_peak_gen = 1;
    trace_blocks = 0;
    trace_failed = 0;
    trace_max_frames = max_frames;
    trace_sample_bytes = sample_bytes;
    trace_sample_mean = (double)sample_bytes;
    atomic_fetch_add(&trace_generation, 1);
    atomic_store(&trace_active, 1);
    trace_unlock();

    /* Chain to whatever is installed now (pymalloc, the debug hooks,
     * tracemalloc ...).  The GIL is held, so MEM/OBJ calls cannot race with
     * the switch; RAW calls from GIL-less threads may, as with any PEP 445
     * hook, but they then just go to the previous allocator untraced. */
    if (!installed) {
        if (!same_prev) {
            trace_ctx_used++;
            for (int i = 0; i < 3; i++) {
                ctx[i].domain = trace_domains[i];
                PyMem_GetAllocator(trace_domains[i], &ctx[i].prev);
            }
        }
        trace_ctx = ctx;
        for (int i = 0; i < 3; i++) {
            PyMemAllocatorEx hook = {&ctx[i], trace_hook_malloc, trace_hook_calloc,
                                     trace_hook_realloc, trace_hook_free};
            PyMem_SetAllocator(trace_domains[i], &hook);
        }
    }
    return 0;
}

void
trace_stop(void)
{
    if (!atomic_load(&trace_active)) {
        return;
    }
    /* Restore exactly what start() found.  Another tracer (tracemalloc)
     * started after us chains to our hooks; they keep working after stop
     * since the hook contexts stay valid and pass through when inactive. */
    int on_top = 1;
    for (int i = 0; i < 3; i++) {
        PyMemAllocatorEx cur;
        PyMem_GetAllocator(trace_domains[i], &cur);
        if (cur.ctx != &trace_ctx[i]) {
            on_top = 0;
        }
    }
    if (on_top) {
        for (int i = 0; i < 3; i++) {
            PyMem_SetAllocator(trace_domains[i], &trace_ctx[i].prev);
        }
    }
    trace_lock();
    atomic_store(&trace_active, 0);
    stack_table old = trace_stacks;
    memset(&trace_stacks, 0, sizeof(trace_stacks));
    trace_map_clear_unlocked();
    trace_current = 0;
    trace_peak = 0;
    trace_blocks = 0;
    trace_unlock();
    /* Outside the lock: dropping code references may run deallocators. */
    stack_table_release(&old);
}

int
trace_is_tracing(void)
{
    return atomic_load(&trace_active);
}

void
trace_get_traced_memory(uint64_t *current, uint64_t *peak)
{
    trace_lock();
    *current = trace_current;
    *peak = trace_peak;
    trace_unlock();
}

void
trace_reset_peak(void)
{
    trace_lock();
    trace_peak = trace_current;
    trace_peak_gen++;
    trace_unlock();
}

uint64_t
trace_live_blocks(void)
{
    trace_lock();
    uint64_t n = trace_blocks;
    trace_unlock();
    return n;
}

size_t
trace_tracer_memory(void)
{
    trace_lock();
    size_t n = trace_map_memory();
    if (trace_stacks.recs != NULL) {
        n += trace_mem_resident(trace_stacks.recs, (size_t)trace_stacks.cap_recs * sizeof(stack_rec));
        n += trace_mem_resident(trace_stacks.index,
                                ((size_t)trace_stacks.index_mask + 1) * sizeof(uint32_t));
    }
    trace_unlock();
    return n;
}

void
trace_view_unlocked(trace_view *v)
{
    v->stacks = &trace_stacks;
    v->peak_gen = trace_peak_gen;
    v->current = trace_current;
    v->peak = trace_peak;
    v->sample_bytes = trace_sample_bytes;
    v->max_frames = trace_max_frames;
    v->tracing = atomic_load(&trace_active);
    v->failed = trace_failed || trace_stacks.overflowed;
}

void
trace_thread_counters_get(trace_thread_counters *out)
{
    /* Only this thread writes its counters, from its own hooks, which are
     * not running now: no lock needed. */
    *out = trace_tls.counters;
}

void
trace_thread_reset_peak(void)
{
    trace_thread_counters *c = &trace_tls.counters;
    c->peak_net = (int64_t)(c->allocated - c->freed);
}

void
trace_thread_pause(void)
{
    trace_tls.busy++;
}

void
trace_thread_resume(void)
{
    trace_tls.busy--;
}

/* ---- fork ------------------------------------------------------------------ */

/* fork() while another thread holds the tracer lock would leave the child
 * with a lock nobody will release: hold it across fork.  The child keeps
 * tracing with the parent's tables (its other threads are gone; their live
 * blocks stay attributed as in the parent). */
static void
trace_atfork_prepare(void)
{
    trace_lock();
}

static void
trace_atfork_release(void)
{
    trace_unlock();
}

int
trace_hooks_init(void)
{
    static int done = 0;
    if (!done) {
        if (pthread_atfork(trace_atfork_prepare, trace_atfork_release,
                           trace_atfork_release) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
            return -1;
        }
        done = 1;
    }
    return 0;
}
