/* trace_map.c: the tracer's map of live blocks (see trace_map.h). */
#include "tracer/trace_map.h"
#include "tracer/trace_budget.h"
#include "tracer/trace_lock.h"
#include "tracer/trace_mem.h"

#include <stdatomic.h>
#include <string.h>

/* ---- tiers ------------------------------------------------------------------ */

/* Blocks of at most 112 bytes go to the fine map (4 bytes per 16: at most
 * 28 per block).  From 113 bytes on, a block takes at least 128 bytes of
 * address space (starts are 16-byte aligned), so no two start in one
 * 128-byte granule of the medium map. */
#define MAP_SMALL_LIMIT TRACE_MAP_SMALL_LIMIT
#define MAP_MEDIUM_LIMIT \
    960u /* ... below this to the medium map (4 bytes
                                 * per 128: at most 32 per block with
                                 * malloc's header and rounding) */

/* Medium map entry: stack id << 13 | size << 3 | 16-byte step in granule. */
#define MAP_MED_STEP_BITS 3
#define MAP_MED_SIZE_BITS 10
#define MAP_MED_STACK_SHIFT (MAP_MED_STEP_BITS + MAP_MED_SIZE_BITS)
#define MAP_MED_STACK_LIMIT (1u << (32 - MAP_MED_STACK_SHIFT))

/* ---- address-indexed maps ------------------------------------------------------ */

#define MAP_LEAF_BITS TRACE_MAP_LEAF_BITS
#define MAP_MID_BITS TRACE_MAP_MID_BITS
#define MAP_TOP_BITS TRACE_MAP_TOP_BITS
#define MAP_LEAF_LEN TRACE_MAP_LEAF_LEN
#define MAP_MID_LEN (1u << MAP_MID_BITS)
#define MAP_TOP_LEN (1u << MAP_TOP_BITS)
#define MAP_PAGE_SLOTS TRACE_MAP_PAGE_SLOTS

typedef trace_map_leaf map_leaf;

typedef trace_map_mid map_mid;
#define MAP_MID_PER_PAGE TRACE_MAP_MID_PER_PAGE
#define MAP_MID_PAGES TRACE_MAP_MID_PAGES
typedef trace_map_index map_index;

/* The two maps: process-wide, like the allocator hooks that use them.
 * Entries are written only by the block's owner; directories and leaves
 * are published with a compare-and-swap (trace_map.h).  Objects of their
 * own, not fields of map_g: the hooks index their directories with
 * variables, which a field at an offset of map_g would cost an add and a
 * shared base register in each lookup. */
map_index trace_map_fine = {.shift = 4}; /* trace_map.h reads it inline */
#define map_fine trace_map_fine
static map_index map_medium = {.shift = 7};

typedef trace_map_leaf_cache map_leaf_cache;
/* See trace_map.h. */
_Thread_local trace_map_leaf_cache trace_map_tls[2] __attribute__((tls_model("initial-exec")));
#define map_tls trace_map_tls

/* Make the leaf of indexable block p in map m (and its directory), cache
 * it in lc; NULL when out of memory. */
static __attribute__((noinline)) map_leaf *
map_leaf_make(map_index *m, map_leaf_cache *lc, uintptr_t p)
{
    uintptr_t g = p >> m->shift;
    size_t ti = (size_t)(g >> (MAP_LEAF_BITS + MAP_MID_BITS));
    size_t mi = (size_t)(g >> MAP_LEAF_BITS) & (MAP_MID_LEN - 1);
    map_mid *mid = atomic_load_explicit(&m->top[ti], memory_order_acquire);
    if (mid == NULL) {
        map_mid *fresh = trace_mem_map(sizeof(map_mid), 0);
        if (fresh == NULL) {
            return NULL;
        }
        /* A GIL holder and a GIL-less hook may race to create it. */
        if (atomic_compare_exchange_strong_explicit(&m->top[ti], &mid, fresh, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            mid = fresh;
        }
        else {
            trace_mem_unmap(fresh, sizeof(map_mid), 0);
        }
    }
    map_leaf *leaf = atomic_load_explicit(&(*mid)[mi], memory_order_acquire);
    if (leaf == NULL) {
        map_leaf *fresh = trace_mem_map(sizeof(map_leaf), 0);
        if (fresh == NULL) {
            return NULL;
        }
        if (atomic_compare_exchange_strong_explicit(&(*mid)[mi], &leaf, fresh, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            leaf = fresh;
            size_t pg = mi / MAP_MID_PER_PAGE;
            atomic_fetch_or_explicit(&m->used[ti][pg / 64], (uint64_t)1 << (pg % 64),
                                     memory_order_release);
        }
        else {
            trace_mem_unmap(fresh, sizeof(map_leaf), 0);
        }
    }
    lc->key = (g >> MAP_LEAF_BITS) + 1;
    lc->leaf = leaf;
    return leaf;
}

/* Leaf of `p` in map `m`, made if `create`; NULL if there is none (or no
 * memory for it). */
static inline map_leaf *
map_leaf_of(map_index *m, map_leaf_cache *lc, uintptr_t p, int create)
{
    map_leaf *leaf = trace_map_leaf_find(m, lc, p, m->shift);
    if (leaf != NULL || !create) {
        return leaf;
    }
    return map_leaf_make(m, lc, p);
}

static inline size_t
map_slot_index(const map_index *m, uintptr_t p)
{
    return (size_t)(p >> m->shift) & (MAP_LEAF_LEN - 1);
}

/* ---- state ---------------------------------------------------------------------- */

/* Each bit stands for a bucket of addresses and is set while the bucket's
 * counter is not zero.  Counters saturate: one that reached 255 stays
 * there, so its bit stays set -- a false "maybe" costs a lookup, a false
 * "no" would lose a free().  The lock makes a counter and its bit change
 * together; filters change only when blocks enter or leave the side table
 * (or, in sampled mode, when sampled blocks come and go): rarely. */
typedef struct {
    _Atomic(uint64_t) *bits;
    uint8_t *count;
    size_t nbuckets; /* a power of two */
    atomic_flag lock;
    int used; /* touched since the last clear (under lock) */
} map_filter;

/* The side table's filter, a plain bitmap: a bit is set under the side
 * table's lock when a block enters, and left set when it leaves; once the
 * stale bits outnumber the live blocks (and 4096), the bitmap is rebuilt
 * from the table.  No counters: their memory would dominate when the side
 * table holds a few thousand big blocks. */
#define MAP_SIDE_FILTER_BITS 18

/* Open addressing with linear probing and backward-shift deletion, keyed by
 * address; 16-byte slots, the stack id in the low 22 bits of `packed` and
 * the size above it (sizes up to 2**42).  Grows by half at a load of 3/4,
 * so the load stays between 1/2 and 3/4: at most 32 bytes per block.  (The
 * capacity is not a power of two: slots are picked by multiply-shift.)
 * Protected by map_g.side_lock (taken by GIL holders and GIL-less hooks
 * alike). */
#define MAP_SIDE_STACK_BITS 22
#define MAP_SIDE_MAX_SIZE ((uint64_t)1 << (64 - MAP_SIDE_STACK_BITS))
typedef struct {
    uintptr_t key; /* 0 = free */
    uint64_t packed;
} map_side_slot;

/* The map's state, process-wide like the allocator hooks that use it.
 * Apart from it: the two maps (above), and what the hooks read inline
 * (trace_map.h): the sampled-mode filter's bits, the sampled-mode switch
 * and the per-thread leaf caches.  All zero at load time, so that it stays
 * in .bss (a non-zero initializer would put its 128 KiB of bitmaps in
 * .data); trace_map_init() sets the fields that are not.  What protects
 * each field is said with it. */
static struct {
    /* The side table's filter (see MAP_SIDE_FILTER_BITS): bits set under
     * side_lock, read lock-free by free().  First: free() indexes it with
     * a variable, at offset 0 as a variable of its own would be. */
    _Alignas(4096) _Atomic(uint64_t) side_bits[(1u << MAP_SIDE_FILTER_BITS) / 64];

    /* Pages of map entries written since start() (both maps).  Atomic. */
    atomic_size_t pages_written;
    /* Blocks in the side table (mirrors side_used, which side_lock
     * protects, for map_may_open_page()).  Atomic. */
    atomic_size_t side_live;

    /* Sampled mode's filter (trace_map.h): its counters, and the filter
     * over them and trace_map_filter.  Changed under sampled.lock. */
    _Alignas(4096) uint8_t sampled_count[1u << TRACE_MAP_FILTER_BITS];
    map_filter sampled;

    /* Where a rebuild computes the new bitmap (under side_lock). */
    _Alignas(4096) uint64_t side_scratch[(1u << MAP_SIDE_FILTER_BITS) / 64];
    size_t side_stale;  /* removals since the last rebuild (side_lock) */
    int side_bits_used; /* side_bits touched since the last clear (side_lock) */

    /* The side table (see map_side_slot), taken by GIL holders and GIL-less
     * hooks alike. */
    atomic_flag side_lock;
    map_side_slot *side; /* side_lock */
    size_t side_cap;     /* slots; 0 when not allocated (side_lock) */
    size_t side_used;    /* live slots (side_lock) */
    /* Live blocks at unindexable addresses (kept only in the side table);
     * atomic, read lock-free by the free() path, which then asks the
     * table. */
    atomic_size_t odd_count;
} map_g = {.sampled.lock = ATOMIC_FLAG_INIT, .side_lock = ATOMIC_FLAG_INIT};

/* Pages a program may open before its blocks pay for them: the first
 * blocks have no budget yet. */
#define MAP_BUDGET_SLACK ((size_t)256 << 10)

/* May a block open a page of a map that holds no entry yet?  Not when the
 * maps' pages and the side table's blocks together already cost more than
 * 32 bytes per block at the high-water mark of live blocks, plus 256 KiB.
 * (The high-water mark: pages stay once written, so a program whose live
 * blocks come and go must not find the budget spent at each low.)  Past
 * the budget, blocks are scattered -- typically tracing started in a
 * long-running process, and new blocks fill holes all over an older heap --
 * and a page per few blocks would cost up to 4 KiB each: they go to the
 * side table instead (21-32 bytes each), where free() finds them when both
 * maps miss, as it does large blocks.  On a densely allocated heap every
 * tier stays under 32 bytes per block, so the budget never binds; a page
 * opened past it must be paid for by the blocks already in the maps, 32
 * bytes each (a program's scattered start can thus keep later blocks on
 * the side table: slower to free, never more memory).
 * (trace_blocks_peak is read without the GIL by GIL-less hooks: a stale
 * value only moves the heuristic.) */
static inline int
map_may_open_page(void)
{
    int64_t live = trace_blocks_peak;
    size_t pages = atomic_load_explicit(&map_g.pages_written, memory_order_relaxed);
    /* A side-table block costs 16 bytes at a load between 1/2 and 3/4,
     * so up to 32 just after the table grew: counted at 32, so that the
     * two together stay within the budget whatever the table's load (at
     * the average, 24, blocks filling holes scattered over an older heap
     * would cost more than 32 bytes each).  Live blocks, not slots: the
     * table does not shrink, and a churning program would otherwise find
     * the budget spent. */
    size_t nside = atomic_load_explicit(&map_g.side_live, memory_order_relaxed);
    size_t peak = (size_t)(live > 0 ? live : 0);
    size_t budget = peak * 32 + MAP_BUDGET_SLACK;
    return (pages + 1) * 4096 + nside * 32 <= budget;
}

/* Write an entry (the block's owner only); 1 if it went in, 0 if its page
 * was not opened (map_may_open_page()). */
static inline int
map_store(map_leaf *leaf, size_t i, uint32_t v)
{
    uint64_t bit = (uint64_t)1 << (i / MAP_PAGE_SLOTS);
    if (!trace_map_page_written(leaf, i)) {
        if (!map_may_open_page()) {
            return 0;
        }
        if (!(atomic_fetch_or_explicit(&leaf->written, bit, memory_order_relaxed) & bit)) {
            atomic_fetch_add_explicit(&map_g.pages_written, 1, memory_order_relaxed);
        }
    }
    atomic_store_explicit(&leaf->slot[i], v, memory_order_relaxed);
    return 1;
}

static inline uint32_t
map_med_step(uintptr_t p)
{
    return (uint32_t)(p >> 4) & ((1u << MAP_MED_STEP_BITS) - 1);
}

/* ---- counting filters ------------------------------------------------------------ */

/* See trace_map.h: the sampled-mode filter, read inline by the hooks. */
_Alignas(4096) _Atomic(uint64_t) trace_map_filter[(1u << TRACE_MAP_FILTER_BITS) / 64];
/* Whether the sampled filter is kept: written by start() and stop() with no
 * hook updating the map (trace_map.h reads it inline). */
int trace_map_sampled_on;
#define map_sampled_on trace_map_sampled_on

static inline size_t
map_side_bucket(uintptr_t p)
{
    /* Hashed: large blocks from mmap() all sit at the same offset in a page. */
    return (size_t)(((uint64_t)(p >> 4) * 0x9E3779B97F4A7C15ull) >> (64 - MAP_SIDE_FILTER_BITS));
}

static inline int
map_side_maybe(uintptr_t p)
{
    size_t i = map_side_bucket(p);
    return (atomic_load_explicit(&map_g.side_bits[i / 64], memory_order_relaxed) >> (i % 64)) & 1;
}

static void
map_filter_add(map_filter *f, size_t i)
{
    trace_spin_lock(&f->lock);
    f->used = 1;
    if (f->count[i] == 0) {
        atomic_fetch_or_explicit(&f->bits[i / 64], (uint64_t)1 << (i % 64), memory_order_relaxed);
    }
    if (f->count[i] != 255) {
        f->count[i]++;
    }
    trace_spin_unlock(&f->lock);
}

static void
map_filter_remove(map_filter *f, size_t i)
{
    trace_spin_lock(&f->lock);
    if (f->count[i] != 255 && f->count[i] != 0) {
        if (--f->count[i] == 0) {
            atomic_fetch_and_explicit(&f->bits[i / 64], ~((uint64_t)1 << (i % 64)),
                                      memory_order_relaxed);
        }
    }
    trace_spin_unlock(&f->lock);
}

/* Empty it and give its pages back (no hook is using it: stop()). */
static void
map_filter_clear(map_filter *f)
{
    if (f->used) {
        trace_mem_discard((void *)f->bits, f->nbuckets / 8);
        trace_mem_discard(f->count, f->nbuckets);
        f->used = 0;
    }
}

static size_t
map_filter_memory(map_filter *f)
{
    return trace_mem_resident((void *)f->bits, f->nbuckets / 8)
           + trace_mem_resident(f->count, f->nbuckets);
}

void
trace_map_init(void)
{
    map_g.sampled.bits = trace_map_filter;
    map_g.sampled.count = map_g.sampled_count;
    map_g.sampled.nbuckets = 1u << TRACE_MAP_FILTER_BITS;
}

void
trace_map_use_filter(int on)
{
    map_sampled_on = on;
}

/* ---- side table -------------------------------------------------------------- */

/* Home slot of p in a table of `cap` slots. */
static inline size_t
map_side_home(uintptr_t p, size_t cap)
{
    uint64_t h = (uint64_t)(p >> 4) * 0x9E3779B97F4A7C15ull;
    return (size_t)(((unsigned __int128)h * cap) >> 64);
}

static int
map_side_grow_unlocked(void)
{
    size_t old_cap = map_g.side_cap;
    size_t new_cap = old_cap == 0 ? 256 : old_cap + old_cap / 2;
    map_side_slot *t = trace_mem_map(new_cap * sizeof(map_side_slot), 1);
    if (t == NULL) {
        return -1;
    }
    for (size_t i = 0; i < old_cap; i++) {
        if (map_g.side[i].key != 0) {
            size_t j = map_side_home(map_g.side[i].key, new_cap);
            while (t[j].key != 0) {
                j = j + 1 == new_cap ? 0 : j + 1;
            }
            t[j] = map_g.side[i];
        }
    }
    trace_mem_unmap(map_g.side, old_cap * sizeof(map_side_slot), 1);
    map_g.side = t;
    map_g.side_cap = new_cap;
    return 0;
}

static int
map_side_put_unlocked(uintptr_t p, uint64_t size, uint32_t stack)
{
    if (map_g.side == NULL || (map_g.side_used + 1) * 4 > map_g.side_cap * 3) {
        if (map_side_grow_unlocked() < 0) {
            return -1;
        }
    }
    size_t i = map_side_home(p, map_g.side_cap);
    while (map_g.side[i].key != 0 && map_g.side[i].key != p) {
        i = i + 1 == map_g.side_cap ? 0 : i + 1;
    }
    if (map_g.side[i].key == 0) {
        map_g.side_used++;
        atomic_store_explicit(&map_g.side_live, map_g.side_used, memory_order_relaxed);
    }
    map_g.side[i].key = p;
    map_g.side[i].packed = size << MAP_SIDE_STACK_BITS | stack;
    return 0;
}

static trace_map_entry
map_side_take_unlocked(uintptr_t p)
{
    trace_map_entry e = {0, 0};
    if (map_g.side == NULL) {
        return e;
    }
    size_t i = map_side_home(p, map_g.side_cap);
    while (map_g.side[i].key != p) {
        if (map_g.side[i].key == 0) {
            return e;
        }
        i = i + 1 == map_g.side_cap ? 0 : i + 1;
    }
    e.size = map_g.side[i].packed >> MAP_SIDE_STACK_BITS;
    e.stack = (uint32_t)(map_g.side[i].packed & ((1u << MAP_SIDE_STACK_BITS) - 1));
    /* Backward-shift deletion keeps probe chains intact without tombstones. */
    size_t hole = i;
    size_t j = i;
    for (;;) {
        j = j + 1 == map_g.side_cap ? 0 : j + 1;
        if (map_g.side[j].key == 0) {
            break;
        }
        size_t home = map_side_home(map_g.side[j].key, map_g.side_cap);
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        int stays = (hole <= j) ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            map_g.side[hole] = map_g.side[j];
            hole = j;
        }
    }
    map_g.side[hole].key = 0;
    map_g.side_used--;
    atomic_store_explicit(&map_g.side_live, map_g.side_used, memory_order_relaxed);
    return e;
}

/* Rebuild the side filter from the table (side lock held).  Each word is
 * replaced by one that keeps the bits of every live block, so a free()
 * reading it meanwhile still finds its block. */
static void
map_side_rebuild_unlocked(void)
{
    memset(map_g.side_scratch, 0, sizeof(map_g.side_scratch));
    for (size_t i = 0; i < map_g.side_cap; i++) {
        if (map_g.side[i].key != 0) {
            size_t b = map_side_bucket(map_g.side[i].key);
            map_g.side_scratch[b / 64] |= (uint64_t)1 << (b % 64);
        }
    }
    for (size_t w = 0; w < sizeof(map_g.side_scratch) / sizeof(map_g.side_scratch[0]); w++) {
        atomic_store_explicit(&map_g.side_bits[w], map_g.side_scratch[w], memory_order_relaxed);
    }
    map_g.side_stale = 0;
}

/* Put block p in the side table; -1 when out of memory. */
static int
map_side_put(uintptr_t p, uint64_t size, uint32_t stack)
{
    if (size >= MAP_SIDE_MAX_SIZE) {
        return -1; /* 4 TiB: no allocator returns such a block */
    }
    trace_spin_lock(&map_g.side_lock);
    int rc = map_side_put_unlocked(p, size, stack);
    if (rc == 0) {
        size_t b = map_side_bucket(p);
        atomic_fetch_or_explicit(&map_g.side_bits[b / 64], (uint64_t)1 << (b % 64),
                                 memory_order_relaxed);
        map_g.side_bits_used = 1;
    }
    trace_spin_unlock(&map_g.side_lock);
    return rc;
}

static trace_map_entry
map_side_take(uintptr_t p)
{
    trace_spin_lock(&map_g.side_lock);
    trace_map_entry e = map_side_take_unlocked(p);
    if (e.stack != 0 && ++map_g.side_stale > map_g.side_used + 4096) {
        map_side_rebuild_unlocked();
    }
    trace_spin_unlock(&map_g.side_lock);
    return e;
}

void
trace_map_lock(void)
{
    trace_spin_lock(&map_g.side_lock);
    trace_spin_lock(&map_g.sampled.lock);
}

void
trace_map_unlock(void)
{
    trace_spin_unlock(&map_g.sampled.lock);
    trace_spin_unlock(&map_g.side_lock);
}

/* ---- the map ----------------------------------------------------------------------- */

static int
map_insert(uintptr_t p, uint64_t size, uint32_t stack)
{
    if (!trace_map_indexable(p)) {
        if (map_side_put(p, size, stack) < 0) {
            return -1;
        }
        atomic_fetch_add_explicit(&map_g.odd_count, 1, memory_order_relaxed);
        return 0;
    }
    if (map_sampled_on) {
        /* Sampled blocks are few and lie all over the heap: a map page each
         * would cost up to 4 KiB per block, a side table slot costs 21-32
         * bytes. */
        return map_side_put(p, size, stack);
    }
    if (size < MAP_SMALL_LIMIT) {
        map_leaf *leaf = map_leaf_of(&map_fine, &map_tls[0], p, 1);
        if (leaf == NULL) {
            return -1;
        }
        if (map_store(leaf, map_slot_index(&map_fine, p), trace_map_fine_pack(stack, size))) {
            return 0;
        }
        return map_side_put(p, size, stack);
    }
    if (size < MAP_MEDIUM_LIMIT && stack < MAP_MED_STACK_LIMIT) {
        map_leaf *leaf = map_leaf_of(&map_medium, &map_tls[1], p, 1);
        if (leaf == NULL) {
            return -1;
        }
        if (map_store(leaf, map_slot_index(&map_medium, p),
                      stack << MAP_MED_STACK_SHIFT | (uint32_t)size << MAP_MED_STEP_BITS
                          | map_med_step(p))) {
            return 0;
        }
        return map_side_put(p, size, stack);
    }
    return map_side_put(p, size, stack);
}

int
trace_map_insert(uintptr_t p, uint64_t size, uint32_t stack)
{
    if (map_insert(p, size, stack) < 0) {
        return -1;
    }
    if (map_sampled_on) {
        map_filter_add(&map_g.sampled, trace_map_filter_index(p));
    }
    return 0;
}

static trace_map_entry
map_remove(uintptr_t p)
{
    trace_map_entry e = {0, 0};
    if (!trace_map_indexable(p)) {
        if (atomic_load_explicit(&map_g.odd_count, memory_order_relaxed) == 0) {
            return e;
        }
        e = map_side_take(p);
        if (e.stack != 0) {
            atomic_fetch_sub_explicit(&map_g.odd_count, 1, memory_order_relaxed);
        }
        return e;
    }
    if (map_sampled_on) {
        return map_side_maybe(p) ? map_side_take(p) : e;
    }
    /* Small blocks first: most blocks are. */
    map_leaf *leaf = map_leaf_of(&map_fine, &map_tls[0], p, 0);
    if (leaf != NULL) {
        _Atomic(uint32_t) *s = &leaf->slot[map_slot_index(&map_fine, p)];
        uint32_t v = atomic_load_explicit(s, memory_order_relaxed);
        if (v != 0) {
            atomic_store_explicit(s, 0, memory_order_relaxed);
            return trace_map_fine_unpack(v);
        }
    }
    return trace_map_remove_coarse(p);
}

/* See trace_map.h: p is indexable, not in the fine map, and the map is not
 * in sampled mode. */
trace_map_entry
trace_map_remove_coarse(uintptr_t p)
{
    trace_map_entry e = {0, 0};
    map_leaf *leaf = map_leaf_of(&map_medium, &map_tls[1], p, 0);
    if (leaf != NULL) {
        _Atomic(uint32_t) *s = &leaf->slot[map_slot_index(&map_medium, p)];
        uint32_t v = atomic_load_explicit(s, memory_order_relaxed);
        /* The granule may hold a medium block that starts at another step. */
        if (v != 0 && (v & ((1u << MAP_MED_STEP_BITS) - 1)) == map_med_step(p)) {
            atomic_store_explicit(s, 0, memory_order_relaxed);
            e.size = (v >> MAP_MED_STEP_BITS) & ((1u << MAP_MED_SIZE_BITS) - 1);
            e.stack = v >> MAP_MED_STACK_SHIFT;
            return e;
        }
    }
    if (map_side_maybe(p)) {
        e = map_side_take(p);
    }
    return e;
}

trace_map_entry
trace_map_remove(uintptr_t p)
{
    trace_map_entry e = map_remove(p);
    if (e.stack != 0 && map_sampled_on) {
        map_filter_remove(&map_g.sampled, trace_map_filter_index(p));
    }
    return e;
}

int
trace_map_peek(uintptr_t p)
{
    if (!trace_map_indexable(p)) {
        return atomic_load_explicit(&map_g.odd_count, memory_order_relaxed) != 0;
    }
    if (map_sampled_on) {
        return map_side_maybe(p);
    }
    map_leaf *leaf = map_leaf_of(&map_fine, &map_tls[0], p, 0);
    if (leaf != NULL
        && atomic_load_explicit(&leaf->slot[map_slot_index(&map_fine, p)], memory_order_relaxed)
               != 0) {
        return 1;
    }
    leaf = map_leaf_of(&map_medium, &map_tls[1], p, 0);
    if (leaf != NULL) {
        uint32_t v =
            atomic_load_explicit(&leaf->slot[map_slot_index(&map_medium, p)], memory_order_relaxed);
        if (v != 0 && (v & ((1u << MAP_MED_STEP_BITS) - 1)) == map_med_step(p)) {
            return 1;
        }
    }
    return map_side_maybe(p);
}

/* Call fn on every leaf of map m. */
static void
map_for_each_leaf(map_index *m, void (*fn)(map_leaf *leaf, size_t *acc), size_t *acc)
{
    for (size_t ti = 0; ti < MAP_TOP_LEN; ti++) {
        map_mid *mid = atomic_load_explicit(&m->top[ti], memory_order_acquire);
        if (mid == NULL) {
            continue;
        }
        for (size_t pg = 0; pg < MAP_MID_PAGES; pg++) {
            uint64_t w = atomic_load_explicit(&m->used[ti][pg / 64], memory_order_acquire);
            if (!((w >> (pg % 64)) & 1)) {
                continue;
            }
            for (size_t mi = pg * MAP_MID_PER_PAGE; mi < (pg + 1) * MAP_MID_PER_PAGE; mi++) {
                map_leaf *leaf = atomic_load_explicit(&(*mid)[mi], memory_order_acquire);
                if (leaf != NULL) {
                    fn(leaf, acc);
                }
            }
        }
    }
}

static void
map_discard_leaf(map_leaf *leaf, size_t *acc)
{
    (void)acc;
    /* Zero the leaf (and its bitmap of written pages) but keep it mapped: a
     * free() racing with stop() may still be peeking at it, and threads
     * cache leaf pointers. */
    trace_mem_discard(leaf, sizeof(map_leaf));
}

static void
map_count_leaf(map_leaf *leaf, size_t *acc)
{
    uint64_t w = atomic_load_explicit(&leaf->written, memory_order_relaxed);
    if (w != 0) {
        /* The written pages of slots, and the page holding the bitmap. */
        *acc += ((size_t)__builtin_popcountll(w) + 1) * 4096;
    }
}

void
trace_map_clear(void)
{
    map_for_each_leaf(&map_fine, map_discard_leaf, NULL);
    map_for_each_leaf(&map_medium, map_discard_leaf, NULL);
    atomic_store_explicit(&map_g.pages_written, 0, memory_order_relaxed);
    trace_spin_lock(&map_g.side_lock);
    if (map_g.side != NULL) {
        trace_mem_unmap(map_g.side, map_g.side_cap * sizeof(map_side_slot), 1);
        map_g.side = NULL;
        map_g.side_cap = 0;
        map_g.side_used = 0;
        atomic_store_explicit(&map_g.side_live, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&map_g.odd_count, 0, memory_order_relaxed);
    if (map_g.side_bits_used) {
        trace_mem_discard(map_g.side_bits, sizeof(map_g.side_bits));
        trace_mem_discard(map_g.side_scratch, sizeof(map_g.side_scratch));
        map_g.side_bits_used = 0;
        map_g.side_stale = 0;
    }
    trace_spin_unlock(&map_g.side_lock);
    map_filter_clear(&map_g.sampled);
    map_sampled_on = 0;
}

size_t
trace_map_memory(void)
{
    size_t total = 0;
    map_index *maps[2] = {&map_fine, &map_medium};
    for (int k = 0; k < 2; k++) {
        for (size_t ti = 0; ti < MAP_TOP_LEN; ti++) {
            map_mid *mid = atomic_load_explicit(&maps[k]->top[ti], memory_order_relaxed);
            if (mid != NULL) {
                total += trace_mem_resident(mid, sizeof(map_mid));
            }
        }
        map_for_each_leaf(maps[k], map_count_leaf, &total);
    }
    total += trace_mem_resident(map_g.side_bits, sizeof(map_g.side_bits));
    total += trace_mem_resident(map_g.side_scratch, sizeof(map_g.side_scratch));
    if (map_sampled_on) {
        total += map_filter_memory(&map_g.sampled);
    }
    trace_spin_lock(&map_g.side_lock);
    if (map_g.side != NULL) {
        total += trace_mem_resident(map_g.side, map_g.side_cap * sizeof(map_side_slot));
    }
    trace_spin_unlock(&map_g.side_lock);
    return total;
}
