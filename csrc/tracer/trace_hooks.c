/* trace_hooks.c: PEP 445 allocator hooks and the live totals (see
 * trace_hooks.h). */
#include "tracer/trace_hooks.h"
#include "tracer/trace_budget.h"
#include "tracer/trace_lock.h"
#include "tracer/trace_map.h"
#include "tracer/trace_mem.h"
#include "tracer/trace_native.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- state (process-wide: PEP 445 allocators are) ----------------------- */

typedef struct {
    PyMemAllocatorDomain domain;
    PyMemAllocatorEx prev; /* the allocator we chain to; written by start()
                              before the hooks are installed */
} trace_hook_ctx;

static const PyMemAllocatorDomain trace_domains[3] = {PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM,
                                                      PYMEM_DOMAIN_OBJ};

/* Start() calls whose hooks could not reuse an earlier context (see
 * trace_g.ctx_pool). */
#define TRACE_CTX_SLOTS 64

/* Kinds of change to the totals (the `sign` of trace_account()).  A new
 * block adds to the live and the cumulative totals; a block put back
 * after a failed realloc() (its removal undone) only to the live ones, so
 * it is not counted as allocated twice. */
#define TRACE_FREE (-1)
#define TRACE_ALLOC 1
#define TRACE_PUT_BACK 2

/* A change to the totals made by a GIL-less RAW call (trace_g.ring). */
#define TRACE_RING_LEN 4096u
typedef struct {
    uint64_t size;
    uint32_t stack;
    int32_t sign; /* TRACE_ALLOC, TRACE_PUT_BACK or TRACE_FREE */
} trace_pending;

/* Changes summed per (stack, kind) when the ring is full (trace_g.spill). */
#define TRACE_SPILL_SLOTS 256u
typedef struct {
    uint32_t stack; /* 0: slot free */
    int32_t sign;
    int64_t wsize, wcount, blocks;
} trace_spill;

/* Everything the hooks share, in one place.  What protects each field:
 * - "GIL": written only by GIL holders (the hooks of the MEM and OBJ
 *   domains, RAW calls made with the GIL, start(), stop());
 * - "nogil_lock": the spinlock below, which serialises the hooks that run
 *   without the GIL (RAW domain) among themselves and against start(),
 *   stop() and fork();
 * - "atomic": read and written with atomics, by anyone.
 * Outside it: the per-thread state (trace_tls), the blocks' high-water
 * mark, which the map reads (trace_budget.h), and trace_max_frames (see
 * there). */
static struct {
    /* Changes made by GIL-less RAW calls, applied by the next GIL holder:
     * one producer at a time (under nogil_lock), one consumer (the GIL
     * holder).  Applying them later keeps the GIL holders' path free of
     * any atomic read-modify-write; the totals see GIL-less calls a little
     * late.  First in the struct: indexed at offset 0, as a variable of
     * its own would be. */
    trace_pending ring[TRACE_RING_LEN];

    /* Held by GIL-less hooks around their bookkeeping; start() and stop()
     * take it too, and the fork handlers hold it across fork(). */
    atomic_flag nogil_lock;

    /* Hook contexts.  A context must stay valid for as long as its hooks
     * may be called: when another tracer (tracemalloc) installed its hooks
     * on top of ours, stop() cannot uninstall ours, and they stay in the
     * chain, passing calls through.  So contexts are never freed; each
     * start() that cannot reuse the installed one takes a fresh slot.  GIL. */
    trace_hook_ctx ctx_pool[TRACE_CTX_SLOTS][3];
    int ctx_used;        /* slots of ctx_pool taken (GIL) */
    trace_hook_ctx *ctx; /* the slot of the current installation (GIL) */
    /* Hooks that only chain, for benchmarks (trace_chain_only()), and
     * whether they are installed.  GIL. */
    trace_hook_ctx chain_ctx[3];
    int chain_installed;

    /* 1 while the hooks are installed and the tables valid.  Atomic;
     * written with the GIL and nogil_lock held, so either one makes it
     * stable. */
    atomic_int active;
    /* Bumped by each start() (under nogil_lock): threads re-draw their
     * sampling countdown and drop their cached stack ids.  Atomic. */
    atomic_uint_fast64_t generation;
    /* The interpreter traced with frames (3.12+: a subinterpreter with its
     * own GIL runs concurrently, so its allocations take the GIL-less
     * path).  Written by start() under nogil_lock. */
    PyInterpreterState *interp;

    /* The stacks and the totals.  GIL (GIL-less RAW calls queue their
     * changes in `ring` and `acc_*` instead); start() and stop() also
     * hold nogil_lock while they reset them. */
    stack_table stacks;
    int64_t current;   /* bytes (or estimated bytes) live */
    int64_t peak;      /* high-water mark of current */
    uint64_t peak_gen; /* bumped at each new high-water mark */
    int64_t blocks;    /* live traced blocks (high-water mark: trace_blocks_peak) */
    /* The native blocks' share (trace_native.c): weighted bytes live, added
     * by the native hooks as they record and free (atomic: they run on any
     * thread), and its value at the latest high-water mark (GIL). */
    atomic_int_fast64_t native_current;
    int64_t native_at_peak;
    int failed; /* sticky: some bookkeeping failed */

    /* Set by start() (GIL and nogil_lock), constant while tracing (and
     * trace_max_frames below). */
    uint64_t sample_bytes; /* 0: exact */
    double sample_mean;    /* (double)sample_bytes */

    /* When the ring is full (C code freeing or allocating thousands of
     * blocks without taking the GIL back: sqlite closing a database), the
     * changes are summed per (stack, kind) here instead, under nogil_lock,
     * and the next GIL holder applies them.  Only when this is full too is
     * a change lost (ring_lost). */
    trace_spill spill[TRACE_SPILL_SLOTS];
    atomic_int spill_pending; /* atomic; some spill slot is in use */

    atomic_uint_fast64_t ring_head; /* atomic; written by the producer */
    atomic_uint_fast64_t ring_tail; /* atomic; written by the consumer */
    atomic_int ring_lost;           /* atomic; the ring was full */
    /* GIL-less changes to the empty stack (most GIL-less blocks are
     * allocated and freed without the GIL, e.g. by compressors working with
     * the GIL released) are summed here instead of queued, so they are
     * never lost: added under nogil_lock, taken by the GIL holder with an
     * exchange.  Atomic. */
    atomic_int_fast64_t acc_size;  /* weighted bytes */
    atomic_int_fast64_t acc_count; /* STACK_COUNT_ONE units */
    atomic_int_fast64_t acc_blocks;
    atomic_int_fast64_t acc_alloc_size; /* cumulative: allocations only */
    atomic_int_fast64_t acc_alloc_count;
    atomic_int acc_pending;

    /* Frees a thread's stack cache (trace_stack_cache) when the thread
     * exits.  Made once by trace_hooks_init(), at module exec (GIL). */
    pthread_key_t cache_key;
} trace_g = {.nogil_lock = ATOMIC_FLAG_INIT};

/* High-water mark of trace_g.blocks: see trace_budget.h (GIL). */
int64_t trace_blocks_peak;

/* Frames per stack, set by start() (GIL and nogil_lock) and constant while
 * tracing.  Not in trace_g: trace_g's address escapes (its stack table is
 * handed to trace_stack.c), so a field of it may, for all the compiler
 * knows, be changed by the stack walk's int stores through stack_frame
 * pointers, and trace_record() compiled differently; a variable whose
 * address is never taken cannot be. */
static int trace_max_frames;

/* Per-thread state: the re-entrancy guard (set while a hook runs, so the
 * allocations the underlying allocator or our bookkeeping make are passed
 * straight through) and the sampling countdown. */
typedef struct {
    int busy;
    int paused;        /* trace_thread_pause() depth: new blocks untraced */
    int64_t countdown; /* bytes until the next sample point */
    uint64_t rng;
    uint64_t generation;
    struct trace_stack_cache *cache; /* this thread's trace_cache */
    trace_thread_counters counters;  /* for the line profiler (trace_hooks.h) */
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
    double d = -log(u) * trace_g.sample_mean;
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
    uint64_t gen = atomic_load_explicit(&trace_g.generation, memory_order_relaxed);
    if (t->generation != gen) {
        if (t->rng == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            t->rng = ((uint64_t)(uintptr_t)t * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)ts.tv_nsec << 20)
                     ^ (uint64_t)ts.tv_sec;
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
static __attribute__((noinline)) void
trace_weights_sampled(uint64_t size, uint64_t *wsize, uint64_t *wcount)
{
    double s = (double)(size == 0 ? 1 : size);
    double p = -expm1(-s / trace_g.sample_mean);
    *wsize = (uint64_t)llround((double)size / p);
    *wcount = (uint64_t)llround((double)STACK_COUNT_ONE / p);
}

static inline __attribute__((always_inline)) void
trace_weights(uint64_t size, uint64_t *wsize, uint64_t *wcount)
{
    if (trace_g.sample_bytes == 0) {
        *wsize = size;
        *wcount = STACK_COUNT_ONE;
        return;
    }
    trace_weights_sampled(size, wsize, wcount);
}

/* Per-thread cache of the callers' stack.  Most allocations in a row come
 * from the same callers at different instructions of one function, so the
 * stack of the callers (frames 2..N) is kept by id together with the raw
 * frame signatures it was read from; when the signatures still match, the
 * allocation's stack is one trie probe away (trace_stack.h), with no hashing or
 * decoding of the callers.  On the heap (libc calloc, freed when the
 * thread exits): thread-local storage would make the module's TLS block
 * too big for the static TLS surplus that its initial-exec variables
 * need, and the import would fail. */
#define TRACE_CACHE_RAW 64
typedef struct trace_stack_cache {
    uint64_t generation; /* trace_g.generation it was filled under */
    uint32_t parent;     /* id of the callers' stack */
    int nraw;            /* raw frames compared */
    int ended;           /* the walk reached the outermost frame */
    int valid;
    stack_sig raw[TRACE_CACHE_RAW];
    /* Ids of the last stacks made of (code, offset) on top of `parent`, by
     * offset: a loop body allocates at a few instructions in turn.  The
     * offset is folded (offset ^ offset >> 4) before it picks one of the 16
     * slots: by its low bits alone, sites a multiple of 16 code units apart
     * would share a slot and evict each other. */
    struct {
        PyCodeObject *code;
        int32_t offset;
        uint32_t id;
    } memo[16];
    /* Room to read the callers into (8 KiB: kept off the C stack of a
     * malloc() call, which may be a deep one). */
    stack_frame frames[STACK_MAX_FRAMES];
} trace_stack_cache;

static void
trace_cache_free(void *c)
{
    /* Runs in the exiting thread: forget the pointer too, in case the
     * thread allocates again on its way out (a new cache is then made and
     * freed by a later round of destructors). */
    trace_tls.cache = NULL;
    free(c);
}

/* Does this thread's cache hold the stack of frame `f` (at code0/off0)?
 * TRACE_CACHE_HIT: its id is in *id; TRACE_CACHE_CALLERS: the callers'
 * stack is c->parent, but (code0, off0) on top of it is not memoised;
 * TRACE_CACHE_MISS otherwise.  Reads only the cache and this thread's own
 * frames.  Inlined: it is most of trace_stack_id()'s work on the hot path. */
#define TRACE_CACHE_MISS 0
#define TRACE_CACHE_HIT 1
#define TRACE_CACHE_CALLERS 2

static inline __attribute__((always_inline)) int
trace_cache_match(const trace_stack_cache *c, void *f, PyCodeObject *code0, int32_t off0,
                  uint64_t gen, uint32_t *id)
{
    if (!c->valid || c->generation != gen) {
        return TRACE_CACHE_MISS;
    }
    void *p = layout_frame_back(f);
    int i = 0;
    for (; i < c->nraw; i++) {
        stack_sig s;
        if (p == NULL) {
            break;
        }
        layout_frame_sig(p, &s);
        if (s.frame != c->raw[i].frame || s.instr != c->raw[i].instr
#if PY_VERSION_HEX < 0x030B0000
            || s.code != c->raw[i].code /* 3.9/3.10: f_lasti is only an index */
#endif
        ) {
            break;
        }
        p = layout_frame_back(p);
    }
    if (i != c->nraw || (c->ended && p != NULL)) {
        return TRACE_CACHE_MISS;
    }
    unsigned slot = ((unsigned)off0 ^ ((unsigned)off0 >> 4)) & 15u;
    if (c->memo[slot].code == code0 && c->memo[slot].offset == off0) {
        *id = c->memo[slot].id;
        return TRACE_CACHE_HIT;
    }
    return TRACE_CACHE_CALLERS;
}

/* Stack id of a block allocated without the GIL by a thread that has a
 * Python thread state: C code that released the GIL (sqlite stepping a
 * statement, a compressor, numpy's loops).  Its frames cannot change until
 * it takes the GIL back, and only it reads them, so they are read here as
 * with the GIL; but interning a new stack needs the GIL, so the id comes
 * from this thread's cache, which the GIL-holding allocations made just
 * before at the same call (the objects the C function made before
 * releasing the GIL) usually filled.  Otherwise the empty stack. */
static uint32_t
trace_stack_id_nogil(trace_tls_state *t)
{
    trace_stack_cache *c = t->cache;
    if (trace_max_frames < 2 || c == NULL) {
        return STACK_ID_EMPTY;
    }
    PyThreadState *tstate = PyGILState_GetThisThreadState();
    if (tstate == NULL || tstate->interp != trace_g.interp) {
        return STACK_ID_EMPTY;
    }
    void *f = layout_thread_frame(tstate);
    PyCodeObject *code0 = NULL;
    int32_t off0 = 0;
    while (f != NULL && !layout_frame_decode(f, &code0, &off0)) {
        f = layout_frame_back(f);
    }
    uint32_t id = STACK_ID_EMPTY;
    if (f == NULL
        || trace_cache_match(c, f, code0, off0,
                             atomic_load_explicit(&trace_g.generation, memory_order_relaxed), &id)
               != TRACE_CACHE_HIT) {
        return STACK_ID_EMPTY;
    }
    return id;
}

/* Stack id without a cache (no memory for one): intern the callers, at
 * most 31 of them (a small buffer on the C stack). */
static uint32_t
trace_stack_id_uncached(PyCodeObject *code0, int32_t off0, void *p)
{
    stack_frame frames[31];
    int n = 0;
    int max = trace_max_frames - 1 < 31 ? trace_max_frames - 1 : 31;
    while (p != NULL && n < max) {
        if (layout_frame_decode(p, &frames[n].code, &frames[n].offset)) {
            n++;
        }
        p = layout_frame_back(p);
    }
    uint32_t parent = STACK_ID_EMPTY;
    for (int i = n - 1; i >= 0; i--) {
        parent = stack_intern_unlocked(&trace_g.stacks, frames[i].code, frames[i].offset, parent);
    }
    return stack_intern_unlocked(&trace_g.stacks, code0, off0, parent);
}

/* Stack id of the running allocation (GIL held by this thread). */
static uint32_t
trace_stack_id(trace_tls_state *t, PyThreadState *tstate)
{
    void *f = layout_thread_frame(tstate);
    PyCodeObject *code0 = NULL;
    int32_t off0 = 0;
    while (f != NULL && !layout_frame_decode(f, &code0, &off0)) {
        f = layout_frame_back(f);
    }
    if (f == NULL) {
        return STACK_ID_EMPTY;
    }
    if (trace_max_frames == 1) {
        return stack_intern_unlocked(&trace_g.stacks, code0, off0, STACK_ID_EMPTY);
    }
    trace_stack_cache *c = t->cache;
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            return trace_stack_id_uncached(code0, off0, layout_frame_back(f));
        }
        (void)pthread_setspecific(trace_g.cache_key, c);
        t->cache = c;
    }
    uint64_t gen = atomic_load_explicit(&trace_g.generation, memory_order_relaxed);
    void *p = layout_frame_back(f);
    uint32_t id = STACK_ID_NONE;
    unsigned slot = ((unsigned)off0 ^ ((unsigned)off0 >> 4)) & 15u;
    switch (trace_cache_match(c, f, code0, off0, gen, &id)) {
    case TRACE_CACHE_HIT:
        return id;
    case TRACE_CACHE_CALLERS:
        id = stack_intern_unlocked(&trace_g.stacks, code0, off0, c->parent);
        c->memo[slot].code = code0;
        c->memo[slot].offset = off0;
        c->memo[slot].id = id;
        return id;
    default:
        break;
    }
    /* Miss: read the callers, intern them outermost first, refill the cache. */
    stack_frame *frames = c->frames;
    int n = 0;
    int nraw = 0;
    while (p != NULL && n < trace_max_frames - 1) {
        if (nraw < TRACE_CACHE_RAW) {
            layout_frame_sig(p, &c->raw[nraw]);
        }
        nraw++;
        if (layout_frame_decode(p, &frames[n].code, &frames[n].offset)) {
            n++;
        }
        p = layout_frame_back(p);
    }
    uint32_t parent = STACK_ID_EMPTY;
    for (int i = n - 1; i >= 0; i--) {
        parent = stack_intern_unlocked(&trace_g.stacks, frames[i].code, frames[i].offset, parent);
    }
    c->valid = nraw <= TRACE_CACHE_RAW;
    memset(c->memo, 0, sizeof(c->memo)); /* they were for the old parent */
    c->nraw = nraw;
    c->ended = p == NULL;
    c->parent = parent;
    c->generation = gen;
    id = stack_intern_unlocked(&trace_g.stacks, code0, off0, parent);
    /* Memoised at once: a C function that allocates once with the GIL and
     * then releases it finds its stack here (trace_stack_id_nogil). */
    c->memo[slot].code = code0;
    c->memo[slot].offset = off0;
    c->memo[slot].id = id;
    return id;
}

/* ---- bookkeeping (GIL held) ---------------------------------------------- */

/* Before the first change to a stack after a new high-water mark, save its
 * totals: they are its share of that peak. */
static inline void
trace_touch(stack_rec *r)
{
    if (r->snap_gen != trace_g.peak_gen) {
        r->snap_size = r->size;
        r->snap_count = r->count;
        r->snap_gen = trace_g.peak_gen;
    }
}

/* Inlined into its two callers on the hot path (trace_record, the free
 * hook): in exact mode it runs on every allocation and free, where a
 * call's prologue and spills are a large share of the work. */
static inline __attribute__((always_inline)) void
trace_account(uint32_t stack, uint64_t size, int sign)
{
    uint64_t ws, wc;
    trace_weights(size, &ws, &wc);
    stack_rec *r = stack_get_unlocked(&trace_g.stacks, stack);
    trace_touch(r);
    if (sign > 0) {
        r->size += ws;
        r->count += wc;
        /* Same weights as the live totals, so sampled cumulative totals are
         * unbiased too; adjacent to size/count (trace_stack.h). */
        if (sign == TRACE_ALLOC) {
            r->alloc_size += ws;
            r->alloc_count += wc;
        }
        if (++trace_g.blocks > trace_blocks_peak) {
            trace_blocks_peak = trace_g.blocks;
        }
        trace_g.current += (int64_t)ws;
        if (trace_g.current > trace_g.peak) {
            trace_g.peak = trace_g.current;
            trace_g.peak_gen++;
            trace_g.native_at_peak =
                atomic_load_explicit(&trace_g.native_current, memory_order_relaxed);
        }
    }
    else {
        r->size -= ws;
        r->count -= wc;
        trace_g.blocks--;
        trace_g.current -= (int64_t)ws;
    }
}

/* Apply a spilled sum (trace_g.spill): like trace_account() for `blocks`
 * blocks of the given weighted totals. */
static void
trace_account_spilled(const trace_spill *e)
{
    stack_rec *r = stack_get_unlocked(&trace_g.stacks, e->stack);
    trace_touch(r);
    if (e->sign > 0) {
        r->size += (uint64_t)e->wsize;
        r->count += (uint64_t)e->wcount;
        if (e->sign == TRACE_ALLOC) {
            r->alloc_size += (uint64_t)e->wsize;
            r->alloc_count += (uint64_t)e->wcount;
        }
        trace_g.blocks += e->blocks;
        if (trace_g.blocks > trace_blocks_peak) {
            trace_blocks_peak = trace_g.blocks;
        }
        trace_g.current += e->wsize;
        if (trace_g.current > trace_g.peak) {
            trace_g.peak = trace_g.current;
            trace_g.peak_gen++;
            trace_g.native_at_peak =
                atomic_load_explicit(&trace_g.native_current, memory_order_relaxed);
        }
    }
    else {
        r->size -= (uint64_t)e->wsize;
        r->count -= (uint64_t)e->wcount;
        trace_g.blocks -= e->blocks;
        trace_g.current -= e->wsize;
    }
}

/* Take the spilled sums (GIL held; nogil_lock only while copying them). */
static __attribute__((noinline)) void
trace_drain_spill(void)
{
    static trace_spill taken[TRACE_SPILL_SLOTS]; /* GIL */
    unsigned n = 0;
    trace_spin_lock(&trace_g.nogil_lock);
    for (unsigned i = 0; i < TRACE_SPILL_SLOTS; i++) {
        if (trace_g.spill[i].stack != 0) {
            taken[n++] = trace_g.spill[i];
            trace_g.spill[i].stack = 0;
        }
    }
    atomic_store_explicit(&trace_g.spill_pending, 0, memory_order_relaxed);
    trace_spin_unlock(&trace_g.nogil_lock);
    for (unsigned i = 0; i < n; i++) {
        trace_account_spilled(&taken[i]);
    }
}

/* Sum a change into the spill table (nogil_lock held); 0 if it is full. */
static int
trace_spill_unlocked(uint32_t stack, uint64_t size, int sign)
{
    uint64_t ws, wc;
    trace_weights(size, &ws, &wc);
    unsigned h = (stack * 3u + (unsigned)(sign + 1)) * 2654435761u;
    for (unsigned k = 0; k < TRACE_SPILL_SLOTS; k++) {
        trace_spill *e = &trace_g.spill[(h + k) % TRACE_SPILL_SLOTS];
        if (e->stack == 0) {
            e->stack = stack;
            e->sign = sign;
            e->wsize = 0;
            e->wcount = 0;
            e->blocks = 0;
        }
        if (e->stack == stack && e->sign == sign) {
            e->wsize += (int64_t)ws;
            e->wcount += (int64_t)wc;
            e->blocks++;
            atomic_store_explicit(&trace_g.spill_pending, 1, memory_order_release);
            atomic_store_explicit(&trace_g.acc_pending, 1, memory_order_release);
            return 1;
        }
    }
    return 0;
}

/* Apply what GIL-less calls queued (trace_drain() saw some). */
static void
trace_drain_slow(uint64_t tail, uint64_t head)
{
    for (; tail != head; tail++) {
        trace_pending *e = &trace_g.ring[tail % TRACE_RING_LEN];
        trace_account(e->stack, e->size, e->sign);
    }
    atomic_store_explicit(&trace_g.ring_tail, tail, memory_order_release);
}

static void
trace_drain_acc(void)
{
    atomic_store_explicit(&trace_g.acc_pending, 0, memory_order_relaxed);
    int64_t ds = atomic_exchange(&trace_g.acc_size, 0);
    int64_t dc = atomic_exchange(&trace_g.acc_count, 0);
    int64_t db = atomic_exchange(&trace_g.acc_blocks, 0);
    int64_t das = atomic_exchange(&trace_g.acc_alloc_size, 0);
    int64_t dac = atomic_exchange(&trace_g.acc_alloc_count, 0);
    stack_rec *r = stack_get_unlocked(&trace_g.stacks, STACK_ID_EMPTY);
    trace_touch(r);
    r->size += (uint64_t)ds;
    r->count += (uint64_t)dc;
    r->alloc_size += (uint64_t)das;
    r->alloc_count += (uint64_t)dac;
    trace_g.blocks += db;
    if (trace_g.blocks > trace_blocks_peak) {
        trace_blocks_peak = trace_g.blocks;
    }
    trace_g.current += ds;
    if (trace_g.current > trace_g.peak) {
        trace_g.peak = trace_g.current;
        trace_g.peak_gen++;
        trace_g.native_at_peak =
            atomic_load_explicit(&trace_g.native_current, memory_order_relaxed);
    }
}

/* Apply what GIL-less calls left.  Two relaxed loads and compares when
 * there is nothing to do. */
static inline void
trace_drain(void)
{
    uint64_t tail = atomic_load_explicit(&trace_g.ring_tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&trace_g.ring_head, memory_order_acquire);
    if (head != tail) {
        trace_drain_slow(tail, head);
    }
    /* One flag for both the empty stack's sums and the spill table: the
     * GIL holders' path pays one load for them. */
    if (atomic_load_explicit(&trace_g.acc_pending, memory_order_relaxed)) {
        trace_drain_acc();
        if (atomic_load_explicit(&trace_g.spill_pending, memory_order_relaxed)) {
            trace_drain_spill();
        }
    }
}

/* Queue a change from a GIL-less call (trace_g.nogil_lock held). */
static void
trace_push_nogil_unlocked(uint32_t stack, uint64_t size, int sign)
{
    if (stack == STACK_ID_EMPTY) {
        uint64_t ws, wc;
        trace_weights(size, &ws, &wc);
        int64_t dir = sign > 0 ? 1 : -1;
        atomic_fetch_add(&trace_g.acc_size, dir * (int64_t)ws);
        atomic_fetch_add(&trace_g.acc_count, dir * (int64_t)wc);
        atomic_fetch_add(&trace_g.acc_blocks, dir);
        if (sign == TRACE_ALLOC) {
            atomic_fetch_add(&trace_g.acc_alloc_size, (int64_t)ws);
            atomic_fetch_add(&trace_g.acc_alloc_count, (int64_t)wc);
        }
        atomic_store_explicit(&trace_g.acc_pending, 1, memory_order_release);
        return;
    }
    uint64_t head = atomic_load_explicit(&trace_g.ring_head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&trace_g.ring_tail, memory_order_acquire);
    if (head - tail >= TRACE_RING_LEN) {
        /* No GIL holder has drained the queue for a while: rather than wait
         * for one (which could deadlock), sum the change per stack, or, if
         * that table is full too, lose it and say so. */
        if (!trace_spill_unlocked(stack, size, sign)) {
            atomic_store_explicit(&trace_g.ring_lost, 1, memory_order_relaxed);
        }
        return;
    }
    trace_pending *e = &trace_g.ring[head % TRACE_RING_LEN];
    e->size = size;
    e->stack = stack;
    e->sign = sign;
    atomic_store_explicit(&trace_g.ring_head, head + 1, memory_order_release);
}

/* Does this call run with the GIL of the traced interpreter? */
static inline PyThreadState *
trace_gil_tstate(PyMemAllocatorDomain domain)
{
    PyThreadState *tstate = _PyThreadState_UncheckedGet();
    if (tstate == NULL) {
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    /* 3.12+: the current thread state is per thread and set only while the
     * thread holds a GIL -- maybe that of another interpreter with a GIL of
     * its own. */
    (void)domain;
    if (tstate->interp != trace_g.interp) {
        return NULL;
    }
#else
    /* 3.9-3.11: the current thread state is the GIL holder's, whichever
     * thread asks.  MEM and OBJ calls hold the GIL by contract; a RAW call
     * holds it if the GIL holder is this thread's own state (not
     * PyGILState_Check(), which answers yes to everyone once a
     * subinterpreter exists). */
    if (domain == PYMEM_DOMAIN_RAW && tstate != PyGILState_GetThisThreadState()) {
        return NULL;
    }
#endif
    return tstate;
}

/* Does this call run with the GIL of the traced interpreter?  (Cheaper
 * than trace_gil_tstate() when the thread state is not needed.) */
static inline int
trace_gil_held(PyMemAllocatorDomain domain)
{
    if (domain == PYMEM_DOMAIN_RAW) {
        return trace_gil_tstate(domain) != NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    /* 3.12+: with a single interpreter there is a single GIL, which MEM and
     * OBJ callers hold by contract.  Asking the interpreter list is two
     * plain loads, where the current thread state is a thread-local of
     * libpython: a __tls_get_addr call when libpython is a shared
     * library, on every MEM/OBJ call.  An interpreter is on the list before
     * it runs any code. */
    if (PyInterpreterState_Next(PyInterpreterState_Head()) == NULL) {
        return 1;
    }
    PyThreadState *tstate = _PyThreadState_UncheckedGet();
    return tstate != NULL && tstate->interp == trace_g.interp;
#else
    return 1; /* MEM and OBJ calls hold the (only) GIL by contract */
#endif
}

/* Record block p (the re-entrancy guard is set by the caller).  `stack` is
 * STACK_ID_NONE for a new block, to take the current stack; otherwise the
 * block is put back on `stack` after a failed realloc(), and is not counted
 * as a new allocation -- unless tracing restarted since it was taken out
 * (`gen`: trace_g.generation then), when `stack` is of the old run's table. */
static __attribute__((noinline)) void
trace_record(PyMemAllocatorDomain domain, void *p, uint64_t size, uint32_t stack, uint64_t gen)
{
    int kind = stack == STACK_ID_NONE ? TRACE_ALLOC : TRACE_PUT_BACK;
#if PY_VERSION_HEX >= 0x030C0000
    /* 3.12+: the thread state is read only when frames are wanted (see
     * trace_gil_held()). */
    int held = trace_gil_held(domain);
#else
    /* 3.9-3.11: reading it is a load from a global; taken up front, where
     * it overlaps the bookkeeping instead of waiting for it. */
    PyThreadState *tstate = trace_gil_tstate(domain);
    int held = tstate != NULL;
#endif
    if (held) {
        if (!atomic_load_explicit(&trace_g.active, memory_order_relaxed)
            || (kind == TRACE_PUT_BACK
                && atomic_load_explicit(&trace_g.generation, memory_order_relaxed) != gen)) {
            return;
        }
        trace_drain();
        if (stack == STACK_ID_NONE) {
            /* max_frames 0: totals only, every block on the empty stack
             * (the line profiler's mode: it needs the per-thread counters,
             * not stacks, and walking frames on every allocation would be
             * most of its cost).  Otherwise the frames of this thread,
             * whose state is the current one: it holds the GIL. */
#if PY_VERSION_HEX >= 0x030C0000
            PyThreadState *tstate = trace_max_frames == 0 ? NULL : _PyThreadState_UncheckedGet();
#endif
            stack = trace_max_frames == 0 ? STACK_ID_EMPTY : trace_stack_id(&trace_tls, tstate);
        }
        if (trace_map_insert_fast((uintptr_t)p, size, stack) < 0) {
            trace_g.failed = 1;
            return;
        }
        trace_account(stack, size, kind);
        /* Line profiler (lp_events.c): this thread's cumulative bytes and
         * its local high-water mark.  An add, a subtract and a compare on
         * initial-exec TLS the hook touches anyway.  (RAW calls made
         * without the GIL, below, are not counted.) */
        trace_thread_counters *c = &trace_tls.counters;
        if (kind == TRACE_PUT_BACK) {
            /* A failed realloc(): undo the free trace_on_free() counted. */
            c->freed -= size;
            return;
        }
        c->allocated += size;
        int64_t net = (int64_t)(c->allocated - c->freed);
        if (net > c->peak_net) {
            c->peak_net = net;
        }
        return;
    }
    /* Without the GIL: no frames can be read (nor code objects kept), so the
     * block goes to the empty stack, and the totals are queued. */
    trace_spin_lock(&trace_g.nogil_lock);
    /* start() bumps the generation under this lock. */
    if (atomic_load_explicit(&trace_g.active, memory_order_relaxed)
        && (kind != TRACE_PUT_BACK
            || atomic_load_explicit(&trace_g.generation, memory_order_relaxed) == gen)) {
        if (stack == STACK_ID_NONE) {
            stack = trace_stack_id_nogil(&trace_tls);
        }
        if (trace_map_insert((uintptr_t)p, size, stack) < 0) {
            atomic_store_explicit(&trace_g.ring_lost, 1, memory_order_relaxed);
        }
        else {
            trace_push_nogil_unlocked(stack, size, kind);
        }
    }
    trace_spin_unlock(&trace_g.nogil_lock);
}

/* ---- the hooks -------------------------------------------------------------- */

/* Inlined into the hooks: in sampled mode this is all most calls run. */
static inline __attribute__((always_inline)) void
trace_on_alloc(PyMemAllocatorDomain domain, void *p, size_t size)
{
    if (!atomic_load_explicit(&trace_g.active, memory_order_relaxed) || trace_tls.paused) {
        return;
    }
    if (trace_g.sample_bytes != 0 && !trace_sample_hit(&trace_tls, size)) {
        return;
    }
    trace_record(domain, p, (uint64_t)size, STACK_ID_NONE, 0);
}

/* Forget block `p` if traced, returning its entry (stack 0 if not). */
static inline __attribute__((always_inline)) trace_map_entry
trace_on_free(PyMemAllocatorDomain domain, void *p)
{
    trace_map_entry e = {0, 0};
    if (!atomic_load_explicit(&trace_g.active, memory_order_relaxed)) {
        return e;
    }
    if (trace_gil_held(domain)) {
        /* Sampled mode: most blocks are not in the map; the filter is
         * cheaper than a removal. */
        if (trace_g.sample_bytes != 0 && !trace_map_maybe((uintptr_t)p)) {
            return e;
        }
        e = trace_map_remove_fast((uintptr_t)p);
        if (e.stack != 0) {
            trace_drain();
            trace_account(e.stack, e.size, TRACE_FREE);
            /* Line profiler: bytes this thread freed (see trace_record). */
            trace_tls.counters.freed += e.size;
        }
        return e;
    }
    /* Lock-free pre-check: most frees find nothing (blocks allocated
     * before start(), or not sampled). */
    if (!trace_map_peek((uintptr_t)p)) {
        return e;
    }
    trace_spin_lock(&trace_g.nogil_lock);
    if (atomic_load_explicit(&trace_g.active, memory_order_relaxed)) {
        e = trace_map_remove((uintptr_t)p);
        if (e.stack != 0) {
            trace_push_nogil_unlocked(e.stack, e.size, TRACE_FREE);
        }
    }
    trace_spin_unlock(&trace_g.nogil_lock);
    return e;
}

/* Sampled mode's fast path, inlined into the hooks: is this block of
 * `size` bytes certainly not sampled?  Then its bytes are taken off the
 * countdown and nothing else is done.  A sample point inside the block, or
 * a countdown drawn under an earlier start(), answers no and leaves the
 * countdown alone: the full path (trace_sample_hit) then decides.  (Bytes
 * of a paused thread's blocks are taken off too: each block is sampled
 * independently of the others, so that biases nothing.)  This path is what
 * makes sampling cheap (see the sampled-mode hooks). */
static inline __attribute__((always_inline)) int
trace_sample_skip(trace_tls_state *t, size_t size)
{
    int64_t c = t->countdown - (int64_t)(size == 0 ? 1 : size);
    if (c > 0 && t->generation == atomic_load_explicit(&trace_g.generation, memory_order_relaxed)) {
        t->countdown = c;
        return 1;
    }
    return 0;
}

/* The hooks' full path: the re-entrancy guard, the underlying allocator,
 * and the bookkeeping.  Inlined into the exact-mode hooks, where every call
 * takes it. */
static inline __attribute__((always_inline)) void *
trace_malloc_full(trace_hook_ctx *h, trace_tls_state *t, size_t size)
{
    t->busy = 1;
    void *p = h->prev.malloc(h->prev.ctx, size);
    if (p != NULL) {
        trace_on_alloc(h->domain, p, size);
    }
    t->busy = 0;
    return p;
}

static inline __attribute__((always_inline)) void *
trace_calloc_full(trace_hook_ctx *h, trace_tls_state *t, size_t nelem, size_t elsize)
{
    t->busy = 1;
    void *p = h->prev.calloc(h->prev.ctx, nelem, elsize);
    if (p != NULL) {
        /* No overflow: the allocator returned nelem * elsize bytes. */
        trace_on_alloc(h->domain, p, nelem * elsize);
    }
    t->busy = 0;
    return p;
}

static inline __attribute__((always_inline)) void *
trace_realloc_full(trace_hook_ctx *h, trace_tls_state *t, void *ptr, size_t size)
{
    t->busy = 1;
    /* Untrack the old block before the allocator can hand its address to
     * another thread; put it back if the reallocation fails. */
    trace_map_entry old = {0, 0};
    uint64_t gen = atomic_load_explicit(&trace_g.generation, memory_order_relaxed);
    if (ptr != NULL) {
        old = trace_on_free(h->domain, ptr);
    }
    void *p = h->prev.realloc(h->prev.ctx, ptr, size);
    if (p != NULL) {
        /* Like tracemalloc, the moved block is attributed to the stack
         * that resized it.  Cumulatively, a realloc() counts as one
         * allocation of the new size (the old block was counted when it
         * was allocated): a buffer grown in steps to 1 MiB adds the sum of
         * its successive sizes, as a malloc/copy/free would. */
        trace_on_alloc(h->domain, p, size);
    }
    else if (old.stack != 0) {
        trace_record(h->domain, ptr, old.size, old.stack, gen);
    }
    t->busy = 0;
    return p;
}

static inline __attribute__((always_inline)) void
trace_free_full(trace_hook_ctx *h, trace_tls_state *t, void *ptr)
{
    t->busy = 1;
    (void)trace_on_free(h->domain, ptr);
    h->prev.free(h->prev.ctx, ptr);
    t->busy = 0;
}

/* ---- exact-mode hooks ------------------------------------------------------ */

static inline __attribute__((always_inline)) void *
trace_hook_malloc_body(trace_hook_ctx *h, size_t size)
{
    trace_tls_state *t = &trace_tls;
    if (t->busy) {
        return h->prev.malloc(h->prev.ctx, size);
    }
    return trace_malloc_full(h, t, size);
}

static inline __attribute__((always_inline)) void *
trace_hook_calloc_body(trace_hook_ctx *h, size_t nelem, size_t elsize)
{
    trace_tls_state *t = &trace_tls;
    if (t->busy) {
        return h->prev.calloc(h->prev.ctx, nelem, elsize);
    }
    return trace_calloc_full(h, t, nelem, elsize);
}

static inline __attribute__((always_inline)) void *
trace_hook_realloc_body(trace_hook_ctx *h, void *ptr, size_t size)
{
    trace_tls_state *t = &trace_tls;
    if (t->busy) {
        return h->prev.realloc(h->prev.ctx, ptr, size);
    }
    return trace_realloc_full(h, t, ptr, size);
}

static inline __attribute__((always_inline)) void
trace_hook_free_body(trace_hook_ctx *h, void *ptr)
{
    trace_tls_state *t = &trace_tls;
    if (t->busy || ptr == NULL) {
        h->prev.free(h->prev.ctx, ptr);
        return;
    }
    trace_free_full(h, t, ptr);
}

/* ---- sampled-mode hooks -------------------------------------------------------
 *
 * A separate set, so that the fast path -- the block is not sampled, or a
 * freed block never was -- compiles to a few instructions with no spills,
 * and the full path is an out-of-line call: a sampling test added to the
 * exact hooks would leave their whole prologue on every call.
 * (benchmarks/bench_tracer.py compares both with hooks that only chain.) */

static __attribute__((noinline)) void *
trace_malloc_slow(trace_hook_ctx *h, trace_tls_state *t, size_t size)
{
    return trace_malloc_full(h, t, size);
}

static __attribute__((noinline)) void *
trace_calloc_slow(trace_hook_ctx *h, trace_tls_state *t, size_t nelem, size_t elsize)
{
    return trace_calloc_full(h, t, nelem, elsize);
}

static __attribute__((noinline)) void *
trace_realloc_slow(trace_hook_ctx *h, trace_tls_state *t, void *ptr, size_t size)
{
    return trace_realloc_full(h, t, ptr, size);
}

static __attribute__((noinline)) void
trace_free_slow(trace_hook_ctx *h, trace_tls_state *t, void *ptr)
{
    trace_free_full(h, t, ptr);
}

/* The largest MEM/OBJ request the allocator below certainly serves without
 * calling a hooked domain: pymalloc hands requests of over 512 bytes to the
 * RAW domain (SMALL_REQUEST_THRESHOLD, 3.9-3.13), and debug hooks add up to
 * 32 bytes before it sees them; this stays below both with room to spare. */
#define TRACE_PYMALLOC_OWN_MAX 448

/* Does the allocator below serve this request without calling a hooked
 * domain in turn?  Yes for MEM/OBJ requests of at most
 * TRACE_PYMALLOC_OWN_MAX bytes, and for RAW ones: the RAW allocator calls
 * none.  Then the fast path needs no re-entrancy guard and tail-calls the
 * allocator, which keeps sampled mode close to hooks that only chain.
 * (What pymalloc allocates for itself while
 * serving a small request -- its arena table, and on 3.10+ the nodes of
 * its address map, made when the heap grows into a new address range --
 * then reaches the RAW hook as a block of its own:
 * sampled like any RAW block, where exact mode and tracemalloc leave it
 * out.) */
static inline int
trace_not_forwarded(const trace_hook_ctx *h, size_t size)
{
    return size <= TRACE_PYMALLOC_OWN_MAX || h->domain == PYMEM_DOMAIN_RAW;
}

static inline __attribute__((always_inline)) void *
trace_hook_malloc_sampled_body(trace_hook_ctx *h, size_t size)
{
    trace_tls_state *t = &trace_tls;
    if (t->busy) {
        return h->prev.malloc(h->prev.ctx, size);
    }
    if (trace_sample_skip(t, size)) {
        if (trace_not_forwarded(h, size)) {
            return h->prev.malloc(h->prev.ctx, size);
        }
        /* busy: an allocator that hands the request on to the RAW domain
         * (pymalloc, for big blocks) must not have it counted twice. */
        t->busy = 1;
        void *p = h->prev.malloc(h->prev.ctx, size);
        t->busy = 0;
        return p;
    }
    return trace_malloc_slow(h, t, size);
}

static inline __attribute__((always_inline)) void *
trace_hook_calloc_sampled_body(trace_hook_ctx *h, size_t nelem, size_t elsize)
{
    trace_tls_state *t = &trace_tls;
    if (t->busy) {
        return h->prev.calloc(h->prev.ctx, nelem, elsize);
    }
    size_t size;
    if (!__builtin_mul_overflow(nelem, elsize, &size) && trace_sample_skip(t, size)) {
        if (trace_not_forwarded(h, size)) {
            return h->prev.calloc(h->prev.ctx, nelem, elsize);
        }
        t->busy = 1;
        void *p = h->prev.calloc(h->prev.ctx, nelem, elsize);
        t->busy = 0;
        return p;
    }
    return trace_calloc_slow(h, t, nelem, elsize);
}

static inline __attribute__((always_inline)) void *
trace_hook_realloc_sampled_body(trace_hook_ctx *h, void *ptr, size_t size)
{
    trace_tls_state *t = &trace_tls;
    if (t->busy) {
        return h->prev.realloc(h->prev.ctx, ptr, size);
    }
    /* The old block was not sampled: only the new size matters. */
    if ((ptr == NULL || !trace_map_maybe((uintptr_t)ptr)) && trace_sample_skip(t, size)) {
        t->busy = 1;
        void *p = h->prev.realloc(h->prev.ctx, ptr, size);
        t->busy = 0;
        return p;
    }
    return trace_realloc_slow(h, t, ptr, size);
}

static inline __attribute__((always_inline)) void
trace_hook_free_sampled_body(trace_hook_ctx *h, void *ptr)
{
    trace_tls_state *t = &trace_tls;
    /* A block the filter has never seen was not sampled: nothing to do,
     * whatever the re-entrancy guard says. */
    if (ptr == NULL || !trace_map_maybe((uintptr_t)ptr) || t->busy) {
        h->prev.free(h->prev.ctx, ptr);
        return;
    }
    trace_free_slow(h, t, ptr);
}

/* ---- entry points, one set per domain ----------------------------------------
 *
 * PyMem_SetAllocator() copies the new allocator struct over the old one
 * without synchronisation, and a thread that does not hold this
 * interpreter's GIL (a native thread in the RAW domain; 3.12+: a
 * subinterpreter with a GIL of its own, in every domain) may read the
 * function of one and the context of the other.  So a hook does not trust
 * its `ctx`: one that is not one of memlens' contexts is the previous
 * allocator's, handed over by such a torn read while start() or stop()
 * swaps the hooks, and the hook then chains through the domain's current
 * context, whose `prev` is that same previous allocator.  Each domain has
 * its own entry points so the domain is known without the context.  (The
 * other torn read -- CPython's function with memlens' context -- is
 * harmless for CPython's own allocators, which ignore their context; the
 * debug hooks of PYTHONMALLOC=debug read theirs, see docs/tracer.md.) */

static inline __attribute__((always_inline)) trace_hook_ctx *
trace_ctx_of(void *ctx, int d)
{
    uintptr_t off = (uintptr_t)ctx - (uintptr_t)trace_g.ctx_pool;
    if (__builtin_expect(off < sizeof(trace_g.ctx_pool), 1)) {
        return ctx;
    }
    return &__atomic_load_n(&trace_g.ctx, __ATOMIC_ACQUIRE)[d];
}

#define TRACE_HOOK_ENTRIES(d, dom)                                                    \
    static void *trace_##dom##_malloc(void *ctx, size_t size)                         \
    {                                                                                 \
        return trace_hook_malloc_body(trace_ctx_of(ctx, d), size);                    \
    }                                                                                 \
    static void *trace_##dom##_calloc(void *ctx, size_t nelem, size_t elsize)         \
    {                                                                                 \
        return trace_hook_calloc_body(trace_ctx_of(ctx, d), nelem, elsize);           \
    }                                                                                 \
    static void *trace_##dom##_realloc(void *ctx, void *ptr, size_t size)             \
    {                                                                                 \
        return trace_hook_realloc_body(trace_ctx_of(ctx, d), ptr, size);              \
    }                                                                                 \
    static void trace_##dom##_free(void *ctx, void *ptr)                              \
    {                                                                                 \
        trace_hook_free_body(trace_ctx_of(ctx, d), ptr);                              \
    }                                                                                 \
    static void *trace_##dom##_malloc_sampled(void *ctx, size_t size)                 \
    {                                                                                 \
        return trace_hook_malloc_sampled_body(trace_ctx_of(ctx, d), size);            \
    }                                                                                 \
    static void *trace_##dom##_calloc_sampled(void *ctx, size_t nelem, size_t elsize) \
    {                                                                                 \
        return trace_hook_calloc_sampled_body(trace_ctx_of(ctx, d), nelem, elsize);   \
    }                                                                                 \
    static void *trace_##dom##_realloc_sampled(void *ctx, void *ptr, size_t size)     \
    {                                                                                 \
        return trace_hook_realloc_sampled_body(trace_ctx_of(ctx, d), ptr, size);      \
    }                                                                                 \
    static void trace_##dom##_free_sampled(void *ctx, void *ptr)                      \
    {                                                                                 \
        trace_hook_free_sampled_body(trace_ctx_of(ctx, d), ptr);                      \
    }

/* The indices of trace_domains. */
TRACE_HOOK_ENTRIES(0, raw)
TRACE_HOOK_ENTRIES(1, mem)
TRACE_HOOK_ENTRIES(2, obj)

/* The functions start() installs, by mode and domain (ctx filled in then). */
static const PyMemAllocatorEx trace_exact_hooks[3] = {
    {NULL, trace_raw_malloc, trace_raw_calloc, trace_raw_realloc, trace_raw_free},
    {NULL, trace_mem_malloc, trace_mem_calloc, trace_mem_realloc, trace_mem_free},
    {NULL, trace_obj_malloc, trace_obj_calloc, trace_obj_realloc, trace_obj_free},
};
static const PyMemAllocatorEx trace_sampled_hooks[3] = {
    {NULL, trace_raw_malloc_sampled, trace_raw_calloc_sampled, trace_raw_realloc_sampled,
     trace_raw_free_sampled},
    {NULL, trace_mem_malloc_sampled, trace_mem_calloc_sampled, trace_mem_realloc_sampled,
     trace_mem_free_sampled},
    {NULL, trace_obj_malloc_sampled, trace_obj_calloc_sampled, trace_obj_realloc_sampled,
     trace_obj_free_sampled},
};

/* ---- for the native hooks (trace_native.c) ---------------------------------- */

int
trace_native_enter(void)
{
    trace_tls_state *t = &trace_tls;
    if (t->busy || !atomic_load_explicit(&trace_g.active, memory_order_relaxed)) {
        return 0;
    }
    t->busy = 1;
    return 1;
}

void
trace_native_leave(void)
{
    trace_tls.busy = 0;
}

uint64_t
trace_native_generation(void)
{
    return atomic_load_explicit(&trace_g.generation, memory_order_relaxed);
}

/* The native share of the totals moves before the block is recorded (and
 * after it is forgotten), so a high-water mark never sees more native
 * bytes than traced ones. */
static void
trace_native_count(uint64_t size, int64_t dir)
{
    uint64_t ws, wc;
    trace_weights(size, &ws, &wc);
    atomic_fetch_add_explicit(&trace_g.native_current, dir * (int64_t)ws, memory_order_relaxed);
}

void
trace_native_alloc(void *p, size_t size)
{
    if (!atomic_load_explicit(&trace_g.active, memory_order_relaxed) || trace_tls.paused) {
        return;
    }
    if (trace_g.sample_bytes != 0 && !trace_sample_hit(&trace_tls, size)) {
        return;
    }
    trace_native_count(size, 1);
    trace_record(PYMEM_DOMAIN_RAW, p, (uint64_t)size, STACK_ID_NONE, 0);
}

trace_map_entry
trace_native_free(void *p)
{
    if (trace_g.sample_bytes != 0 && !trace_map_maybe((uintptr_t)p)) {
        trace_map_entry none = {0, 0};
        return none; /* never sampled */
    }
    trace_map_entry e = trace_on_free(PYMEM_DOMAIN_RAW, p);
    if (e.stack != 0) {
        trace_native_count(e.size, -1);
    }
    return e;
}

void
trace_native_put_back(void *p, trace_map_entry e, uint64_t gen)
{
    if (e.stack != 0 && atomic_load_explicit(&trace_g.generation, memory_order_relaxed) == gen) {
        trace_native_count(e.size, 1);
        trace_record(PYMEM_DOMAIN_RAW, p, e.size, e.stack, gen);
    }
}

void
trace_native_track(void *p, size_t size)
{
    /* Already recorded (through the malloc hook): put the entry back as it
     * was, so the buffer is counted once, on the stack that allocated it. */
    uint64_t gen = trace_native_generation();
    trace_map_entry e = trace_native_free(p);
    if (e.stack != 0) {
        trace_native_put_back(p, e, gen);
        return;
    }
    trace_native_alloc(p, size);
}

/* ---- start / stop ------------------------------------------------------------ */

int
trace_start(int max_frames, uint64_t sample_bytes, int native)
{
    if (atomic_load(&trace_g.active)) {
        PyErr_SetString(PyExc_RuntimeError, "memlens is already tracing; call stop() first");
        return -1;
    }
    if (trace_g.chain_installed) {
        PyErr_SetString(PyExc_RuntimeError,
                        "memlens' chaining hooks (benchmarks) are installed; remove them first");
        return -1;
    }
    /* Pick the hook contexts.  A slot can be reused when its hooks are on
     * top (left in the chain, inactive, by a stop() while another tracer sat
     * above them), or when the installed allocators are exactly the ones it
     * chains to, so that its `prev` does not change under a hook call still
     * running in another thread.  Otherwise take a fresh slot. */
    int installed = 0;
    int same_prev = 0;
    trace_hook_ctx *ctx = NULL;
    PyMemAllocatorEx cur[3];
    for (int i = 0; i < 3; i++) {
        PyMem_GetAllocator(trace_domains[i], &cur[i]);
    }
    for (int k = 0; k < trace_g.ctx_used && ctx == NULL; k++) {
        trace_hook_ctx *c = trace_g.ctx_pool[k];
        int on_top = 1;
        int prev_eq = 1;
        for (int i = 0; i < 3; i++) {
            if (cur[i].ctx != &c[i]) {
                on_top = 0;
            }
            if (memcmp(&cur[i], &c[i].prev, sizeof(cur[i])) != 0) {
                prev_eq = 0;
            }
        }
        if (on_top || prev_eq) {
            ctx = c;
            installed = on_top;
            same_prev = prev_eq;
        }
    }
    if (ctx == NULL) {
        if (trace_g.ctx_used == TRACE_CTX_SLOTS) {
            PyErr_SetString(PyExc_RuntimeError,
                            "memlens: too many start() calls while other allocator hooks "
                            "were installed and removed around memlens'");
            return -1;
        }
        ctx = trace_g.ctx_pool[trace_g.ctx_used];
    }
    stack_table fresh;
    if (stack_table_init(&fresh) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    trace_spin_lock(&trace_g.nogil_lock);
    trace_g.stacks = fresh;
    trace_g.current = 0;
    trace_g.peak = 0;
    trace_g.peak_gen = 1;
    trace_g.blocks = 0;
    trace_blocks_peak = 0;
    atomic_store(&trace_g.native_current, 0);
    trace_g.native_at_peak = 0;
    trace_g.failed = 0;
    trace_max_frames = max_frames;
    trace_g.sample_bytes = sample_bytes;
    trace_g.sample_mean = (double)sample_bytes;
    trace_g.interp = PyThreadState_Get()->interp;
    trace_map_use_filter(sample_bytes != 0); /* the map is empty (stop() cleared it) */
    atomic_store(&trace_g.ring_tail, atomic_load(&trace_g.ring_head));
    atomic_store(&trace_g.ring_lost, 0);
    memset(trace_g.spill, 0, sizeof(trace_g.spill));
    atomic_store(&trace_g.spill_pending, 0);
    atomic_store(&trace_g.acc_size, 0);
    atomic_store(&trace_g.acc_count, 0);
    atomic_store(&trace_g.acc_blocks, 0);
    atomic_store(&trace_g.acc_alloc_size, 0);
    atomic_store(&trace_g.acc_alloc_count, 0);
    atomic_store(&trace_g.acc_pending, 0);
    atomic_fetch_add(&trace_g.generation, 1);
    atomic_store(&trace_g.active, 1);
    trace_spin_unlock(&trace_g.nogil_lock);

    /* Chain to whatever is installed now (pymalloc, the debug hooks,
     * tracemalloc ...).  The GIL is held, so MEM/OBJ calls cannot race with
     * the switch; RAW calls from GIL-less threads may, as with any PEP 445
     * hook, but they then just go to the previous allocator untraced. */
    /* Before the hooks are installed: a torn read resolves through it. */
    __atomic_store_n(&trace_g.ctx, ctx, __ATOMIC_RELEASE);
    if (!installed && !same_prev) {
        trace_g.ctx_used++;
        for (int i = 0; i < 3; i++) {
            ctx[i].domain = trace_domains[i];
            PyMem_GetAllocator(trace_domains[i], &ctx[i].prev);
        }
    }
    /* Hooks left on top by an earlier run are installed again too: this
     * run's mode may want the other set (same contexts, so a call still
     * running in another thread is unaffected). */
    for (int i = 0; i < 3; i++) {
        PyMemAllocatorEx hook = sample_bytes != 0 ? trace_sampled_hooks[i] : trace_exact_hooks[i];
        hook.ctx = &ctx[i];
        PyMem_SetAllocator(trace_domains[i], &hook);
    }
    /* The extensions' buffers declared with PyTraceMalloc_Track() always;
     * their malloc/mmap calls if asked.  (Where GOT patching is not
     * supported -- not x86-64 Linux -- nothing is patched, and
     * trace_native_get_stats() says so.) */
    (void)trace_native_install(TRACE_NATIVE_TRACK | (native ? TRACE_NATIVE_ALLOC : 0));
    return 0;
}

/* ---- hooks that only chain (benchmarks) --------------------------------------
 *
 * benchmarks/bench_tracer.py times PEP 445 hooks that do nothing but call
 * the allocator below: the floor under any tracer built on these hooks,
 * sampled mode's included.  Their contexts are never freed, like the
 * tracer's.  Not for use while other threads allocate: installing again
 * rewrites `prev` under a call that may be running. */

static void *
trace_chain_malloc(void *ctx, size_t size)
{
    trace_hook_ctx *h = ctx;
    return h->prev.malloc(h->prev.ctx, size);
}

static void *
trace_chain_calloc(void *ctx, size_t nelem, size_t elsize)
{
    trace_hook_ctx *h = ctx;
    return h->prev.calloc(h->prev.ctx, nelem, elsize);
}

static void *
trace_chain_realloc(void *ctx, void *ptr, size_t size)
{
    trace_hook_ctx *h = ctx;
    return h->prev.realloc(h->prev.ctx, ptr, size);
}

static void
trace_chain_free(void *ctx, void *ptr)
{
    trace_hook_ctx *h = ctx;
    h->prev.free(h->prev.ctx, ptr);
}

int
trace_chain_only(int on)
{
    if (on) {
        if (trace_g.chain_installed || atomic_load(&trace_g.active)) {
            PyErr_SetString(PyExc_RuntimeError, "allocator hooks of memlens are already installed");
            return -1;
        }
        for (int i = 0; i < 3; i++) {
            trace_g.chain_ctx[i].domain = trace_domains[i];
            PyMem_GetAllocator(trace_domains[i], &trace_g.chain_ctx[i].prev);
            PyMemAllocatorEx hook = {&trace_g.chain_ctx[i], trace_chain_malloc, trace_chain_calloc,
                                     trace_chain_realloc, trace_chain_free};
            PyMem_SetAllocator(trace_domains[i], &hook);
        }
        trace_g.chain_installed = 1;
        return 0;
    }
    if (!trace_g.chain_installed) {
        return 0;
    }
    for (int i = 0; i < 3; i++) {
        PyMemAllocatorEx cur;
        PyMem_GetAllocator(trace_domains[i], &cur);
        if (cur.ctx != &trace_g.chain_ctx[i]) {
            PyErr_SetString(PyExc_RuntimeError,
                            "other allocator hooks were installed above memlens' chaining hooks");
            return -1;
        }
    }
    for (int i = 0; i < 3; i++) {
        PyMem_SetAllocator(trace_domains[i], &trace_g.chain_ctx[i].prev);
    }
    trace_g.chain_installed = 0;
    return 0;
}

void
trace_stop(void)
{
    if (!atomic_load(&trace_g.active)) {
        return;
    }
    trace_native_uninstall();
    /* Restore exactly what start() found, if our hooks are still on top.
     * If another tracer (tracemalloc) started after us, it chains to our
     * hooks: they stay, and pass calls through while inactive. */
    int on_top = 1;
    for (int i = 0; i < 3; i++) {
        PyMemAllocatorEx cur;
        PyMem_GetAllocator(trace_domains[i], &cur);
        if (cur.ctx != &trace_g.ctx[i]) {
            on_top = 0;
        }
    }
    if (on_top) {
        for (int i = 0; i < 3; i++) {
            PyMem_SetAllocator(trace_domains[i], &trace_g.ctx[i].prev);
        }
    }
    /* The GIL keeps GIL-holding hooks out; the lock waits for a GIL-less
     * hook in progress (stop() from another thread than the allocating
     * ones is fine either way). */
    trace_spin_lock(&trace_g.nogil_lock);
    atomic_store(&trace_g.active, 0);
    stack_table old = trace_g.stacks;
    memset(&trace_g.stacks, 0, sizeof(trace_g.stacks));
    trace_map_clear();
    trace_g.current = 0;
    trace_g.peak = 0;
    trace_g.blocks = 0;
    trace_blocks_peak = 0;
    atomic_store(&trace_g.native_current, 0);
    trace_g.native_at_peak = 0;
    atomic_store(&trace_g.ring_tail, atomic_load(&trace_g.ring_head));
    trace_spin_unlock(&trace_g.nogil_lock);
    /* Dropping code references may run deallocators. */
    stack_table_release(&old);
}

int
trace_is_tracing(void)
{
    return atomic_load(&trace_g.active);
}

void
trace_get_traced_memory(uint64_t *current, uint64_t *peak)
{
    if (atomic_load(&trace_g.active)) {
        trace_drain();
    }
    *current = trace_g.current > 0 ? (uint64_t)trace_g.current : 0;
    *peak = trace_g.peak > 0 ? (uint64_t)trace_g.peak : 0;
}

void
trace_peek_memory(uint64_t *current, uint64_t *peak, uint64_t *native)
{
    /* No drain: only the GIL holder may apply the queued changes (the
     * consumer side of the ring is single, and the totals are the GIL's).
     * Plain loads of aligned words, maybe a moment stale. */
    int64_t c = __atomic_load_n(&trace_g.current, __ATOMIC_RELAXED);
    int64_t pk = __atomic_load_n(&trace_g.peak, __ATOMIC_RELAXED);
    int64_t n = atomic_load_explicit(&trace_g.native_current, memory_order_relaxed);
    *current = c > 0 ? (uint64_t)c : 0;
    *peak = pk > 0 ? (uint64_t)pk : 0;
    *native = n > 0 ? (uint64_t)n : 0;
}

void
trace_reset_peak(void)
{
    if (atomic_load(&trace_g.active)) {
        trace_drain();
    }
    trace_g.peak = trace_g.current;
    trace_g.peak_gen++;
    trace_g.native_at_peak = atomic_load(&trace_g.native_current);
}

void
trace_get_native_memory(uint64_t *current, uint64_t *at_peak)
{
    if (atomic_load(&trace_g.active)) {
        trace_drain();
    }
    int64_t c = atomic_load(&trace_g.native_current);
    *current = c > 0 ? (uint64_t)c : 0;
    *at_peak = trace_g.native_at_peak > 0 ? (uint64_t)trace_g.native_at_peak : 0;
}

uint64_t
trace_live_blocks(void)
{
    if (atomic_load(&trace_g.active)) {
        trace_drain();
    }
    return trace_g.blocks > 0 ? (uint64_t)trace_g.blocks : 0;
}

size_t
trace_tracer_memory(void)
{
    /* The map's pages are only ever added while tracing, and the stack table
     * only changes under the GIL, which the caller holds. */
    size_t n = trace_map_memory();
    if (trace_g.stacks.recs != NULL) {
        n += trace_mem_resident(trace_g.stacks.recs,
                                (size_t)trace_g.stacks.cap_recs * sizeof(stack_rec));
        n += trace_mem_resident(trace_g.stacks.index,
                                ((size_t)trace_g.stacks.index_mask + 1) * sizeof(uint32_t));
    }
    return n;
}

void
trace_view_get(trace_view *v)
{
    if (atomic_load(&trace_g.active)) {
        trace_drain();
    }
    v->stacks = &trace_g.stacks;
    v->peak_gen = trace_g.peak_gen;
    v->current = trace_g.current > 0 ? (uint64_t)trace_g.current : 0;
    v->peak = trace_g.peak > 0 ? (uint64_t)trace_g.peak : 0;
    v->sample_bytes = trace_g.sample_bytes;
    v->max_frames = trace_max_frames;
    v->tracing = atomic_load(&trace_g.active);
    v->failed = trace_g.failed || trace_g.stacks.overflowed || atomic_load(&trace_g.ring_lost);
}

trace_thread_counters *
trace_thread_counters_ptr(void)
{
    /* Only this thread writes its counters, from its own hooks: its reads
     * outside the hooks need no lock. */
    return &trace_tls.counters;
}

/* Only allocations are skipped: frees must still be seen, or a traced
 * block freed meanwhile (say by a garbage collection the report's own
 * allocations trigger) would stay in the map. */
void
trace_thread_pause(void)
{
    trace_tls.paused++;
}

void
trace_thread_resume(void)
{
    trace_tls.paused--;
}

/* ---- fork ------------------------------------------------------------------ */

/* fork() while a GIL-less hook holds a lock would leave the child with a
 * lock nobody releases: hold them across fork.  (GIL-holding hooks take no
 * lock, and fork() runs with the GIL.)  The child keeps tracing with the
 * parent's tables; its other threads are gone, their live blocks stay
 * attributed as in the parent. */
static void
trace_atfork_prepare(void)
{
    trace_spin_lock(&trace_g.nogil_lock);
    trace_map_lock();
    /* The prepare handlers registered before ours run after it, with these
     * locks held, and may allocate or free through a hooked GOT entry or
     * domain: on this thread the hooks then only pass calls on. */
    trace_tls.busy++;
}

static void
trace_atfork_release(void)
{
    trace_tls.busy--;
    trace_map_unlock();
    trace_spin_unlock(&trace_g.nogil_lock);
}

int
trace_hooks_init(void)
{
    /* Once per process (the handlers serve the process-wide tables). */
    static int done = 0;
    if (!done) {
        trace_map_init();
        if (pthread_key_create(&trace_g.cache_key, trace_cache_free) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_key_create failed");
            return -1;
        }
        if (pthread_atfork(trace_atfork_prepare, trace_atfork_release, trace_atfork_release) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
            return -1;
        }
        done = 1;
    }
    return 0;
}
