/* trace_map.c: address-indexed map of live blocks (see trace_map.h). */
#include "trace_map.h"
#include "trace_hooks.h"
#include "trace_mem.h"

#include <stdatomic.h>
#include <string.h>

#define MAP_GRANULE_SHIFT 4
#define MAP_LEAF_BITS 16 /* granules per leaf: 1 MiB of address space */
#define MAP_MID_BITS 16
#define MAP_TOP_BITS 12 /* 4 + 16 + 16 + 12 = 48 bits of address */
#define MAP_LEAF_LEN (1u << MAP_LEAF_BITS)
#define MAP_MID_LEN (1u << MAP_MID_BITS)
#define MAP_TOP_LEN (1u << MAP_TOP_BITS)

#define MAP_SIZE_BITS 10
#define MAP_SIZE_MASK ((1u << MAP_SIZE_BITS) - 1)
/* Size field value meaning "the size is in the large table". */
#define MAP_SIZE_LARGE MAP_SIZE_MASK

typedef _Atomic(uint32_t) map_leaf[MAP_LEAF_LEN];
typedef _Atomic(map_leaf *) map_mid[MAP_MID_LEN];

/* Process-wide, like the allocator hooks that use it.  Pointers are
 * published with a compare-and-swap and read lock-free. */
static _Atomic(map_mid *) map_top[MAP_TOP_LEN];

/* Large table: open addressing with linear probing and backward-shift
 * deletion, keyed by address.  Protected by map_large_lock (taken by GIL
 * holders and GIL-less hooks alike: blocks of 1 KiB or more are few). */
static atomic_flag map_large_lock = ATOMIC_FLAG_INIT;
typedef struct {
    uintptr_t key; /* 0 = free */
    uint64_t size;
    uint32_t stack;
} map_large_slot;

static map_large_slot *map_large;
static size_t map_large_mask; /* capacity - 1, or 0 when not allocated */
static size_t map_large_used;
/* Live blocks kept only in the large table (not indexable by the map);
 * read lock-free by the free() fast path. */
static atomic_size_t map_odd_count;

/* See trace_map.h.  In the BSS: resident only once sampled mode uses it. */
_Atomic(uint64_t) trace_map_filter[(1u << TRACE_MAP_FILTER_BITS) / 64];
/* The buckets' counters (saturating: a counter that reached 255 stays
 * there, so its bit stays set -- a false "maybe" costs a map lookup, a
 * false "no" would lose a free).  Protected by map_filter_lock, which
 * makes a counter and its bit change together. */
static uint8_t map_filter_count[1u << TRACE_MAP_FILTER_BITS];
static atomic_flag map_filter_lock = ATOMIC_FLAG_INIT;
/* Written by start() and stop() with no hook updating the map. */
static int map_filter_on;

static void
map_filter_add(uintptr_t p)
{
    size_t i = trace_map_filter_index(p);
    trace_spin_lock(&map_filter_lock);
    if (map_filter_count[i] == 0) {
        atomic_fetch_or_explicit(&trace_map_filter[i / 64], (uint64_t)1 << (i % 64),
                                 memory_order_relaxed);
    }
    if (map_filter_count[i] != 255) {
        map_filter_count[i]++;
    }
    trace_spin_unlock(&map_filter_lock);
}

static void
map_filter_remove(uintptr_t p)
{
    size_t i = trace_map_filter_index(p);
    trace_spin_lock(&map_filter_lock);
    if (map_filter_count[i] != 255 && map_filter_count[i] != 0) {
        if (--map_filter_count[i] == 0) {
            atomic_fetch_and_explicit(&trace_map_filter[i / 64], ~((uint64_t)1 << (i % 64)),
                                      memory_order_relaxed);
        }
    }
    trace_spin_unlock(&map_filter_lock);
}

void
trace_map_use_filter(int on)
{
    map_filter_on = on;
}

static inline int
map_indexable(uintptr_t p)
{
    return (p & ((1u << MAP_GRANULE_SHIFT) - 1)) == 0 && (p >> 48) == 0;
}

static inline size_t
map_large_hash(uintptr_t p)
{
    uint64_t h = (uint64_t)(p >> 4) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20);
}

static int
map_large_grow_unlocked(void)
{
    size_t old_cap = map_large == NULL ? 0 : map_large_mask + 1;
    size_t new_cap = old_cap == 0 ? 1024 : old_cap * 2;
    map_large_slot *t = trace_mem_map(new_cap * sizeof(map_large_slot), 1);
    if (t == NULL) {
        return -1;
    }
    for (size_t i = 0; i < old_cap; i++) {
        if (map_large[i].key != 0) {
            size_t j = map_large_hash(map_large[i].key) & (new_cap - 1);
            while (t[j].key != 0) {
                j = (j + 1) & (new_cap - 1);
            }
            t[j] = map_large[i];
        }
    }
    trace_mem_unmap(map_large, old_cap * sizeof(map_large_slot), 1);
    map_large = t;
    map_large_mask = new_cap - 1;
    return 0;
}

static int
map_large_put_unlocked(uintptr_t p, uint64_t size, uint32_t stack)
{
    if (map_large == NULL || (map_large_used + 1) * 2 > map_large_mask + 1) {
        if (map_large_grow_unlocked() < 0) {
            return -1;
        }
    }
    size_t i = map_large_hash(p) & map_large_mask;
    while (map_large[i].key != 0 && map_large[i].key != p) {
        i = (i + 1) & map_large_mask;
    }
    if (map_large[i].key == 0) {
        map_large_used++;
    }
    map_large[i].key = p;
    map_large[i].size = size;
    map_large[i].stack = stack;
    return 0;
}

static trace_map_entry
map_large_take_unlocked(uintptr_t p)
{
    trace_map_entry e = {0, 0};
    if (map_large == NULL) {
        return e;
    }
    size_t i = map_large_hash(p) & map_large_mask;
    while (map_large[i].key != p) {
        if (map_large[i].key == 0) {
            return e;
        }
        i = (i + 1) & map_large_mask;
    }
    e.size = map_large[i].size;
    e.stack = map_large[i].stack;
    /* Backward-shift deletion keeps probe chains intact without tombstones. */
    size_t hole = i;
    size_t j = i;
    for (;;) {
        j = (j + 1) & map_large_mask;
        if (map_large[j].key == 0) {
            break;
        }
        size_t home = map_large_hash(map_large[j].key) & map_large_mask;
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        int stays = (hole <= j) ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            map_large[hole] = map_large[j];
            hole = j;
        }
    }
    map_large[hole].key = 0;
    map_large_used--;
    return e;
}

/* The leaf this thread used last: consecutive blocks mostly share one (a
 * leaf covers 1 MiB), and leaves are never unmapped, so the pointer stays
 * valid for the life of the process. */
typedef struct {
    uintptr_t key; /* p >> 20, plus one so that 0 means "empty" */
    map_leaf *leaf;
} map_leaf_cache;
static _Thread_local map_leaf_cache map_tls __attribute__((tls_model("initial-exec")));

/* Slot of `p` in the map, creating directory and leaf if `create`. */
static inline _Atomic(uint32_t) *
map_slot(uintptr_t p, int create)
{
    uintptr_t key = (p >> (MAP_GRANULE_SHIFT + MAP_LEAF_BITS)) + 1;
    map_leaf_cache *lc = &map_tls;
    if (lc->key == key) {
        return &(*lc->leaf)[(p >> MAP_GRANULE_SHIFT) & (MAP_LEAF_LEN - 1)];
    }
    uintptr_t g = p >> MAP_GRANULE_SHIFT;
    size_t ti = (size_t)(g >> (MAP_LEAF_BITS + MAP_MID_BITS));
    size_t mi = (size_t)(g >> MAP_LEAF_BITS) & (MAP_MID_LEN - 1);
    size_t li = (size_t)g & (MAP_LEAF_LEN - 1);
    map_mid *mid = atomic_load_explicit(&map_top[ti], memory_order_acquire);
    if (mid == NULL) {
        if (!create) {
            return NULL;
        }
        map_mid *fresh = trace_mem_map(sizeof(map_mid), 0);
        if (fresh == NULL) {
            return NULL;
        }
        /* A GIL holder and a GIL-less hook may race to create it. */
        if (atomic_compare_exchange_strong_explicit(&map_top[ti], &mid, fresh, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            mid = fresh;
        }
        else {
            trace_mem_unmap(fresh, sizeof(map_mid), 0);
        }
    }
    map_leaf *leaf = atomic_load_explicit(&(*mid)[mi], memory_order_acquire);
    if (leaf == NULL) {
        if (!create) {
            return NULL;
        }
        map_leaf *fresh = trace_mem_map(sizeof(map_leaf), 0);
        if (fresh == NULL) {
            return NULL;
        }
        if (atomic_compare_exchange_strong_explicit(&(*mid)[mi], &leaf, fresh, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            leaf = fresh;
        }
        else {
            trace_mem_unmap(fresh, sizeof(map_leaf), 0);
        }
    }
    lc->key = key;
    lc->leaf = leaf;
    return &(*leaf)[li];
}

static int
map_large_put(uintptr_t p, uint64_t size, uint32_t stack)
{
    trace_spin_lock(&map_large_lock);
    int rc = map_large_put_unlocked(p, size, stack);
    trace_spin_unlock(&map_large_lock);
    return rc;
}

static trace_map_entry
map_large_take(uintptr_t p)
{
    trace_spin_lock(&map_large_lock);
    trace_map_entry e = map_large_take_unlocked(p);
    trace_spin_unlock(&map_large_lock);
    return e;
}

void
trace_map_lock(void)
{
    trace_spin_lock(&map_large_lock);
    trace_spin_lock(&map_filter_lock);
}

void
trace_map_unlock(void)
{
    trace_spin_unlock(&map_filter_lock);
    trace_spin_unlock(&map_large_lock);
}

int
trace_map_insert(uintptr_t p, uint64_t size, uint32_t stack)
{
    if (!map_indexable(p)) {
        if (map_large_put(p, size, stack) < 0) {
            return -1;
        }
        atomic_fetch_add_explicit(&map_odd_count, 1, memory_order_relaxed);
        if (map_filter_on) {
            map_filter_add(p);
        }
        return 0;
    }
    _Atomic(uint32_t) *s = map_slot(p, 1);
    if (s == NULL) {
        return -1;
    }
    uint32_t field = (uint32_t)size;
    if (size >= MAP_SIZE_LARGE) {
        if (map_large_put(p, size, stack) < 0) {
            return -1;
        }
        field = MAP_SIZE_LARGE;
    }
    atomic_store_explicit(s, (stack << MAP_SIZE_BITS) | field, memory_order_relaxed);
    if (map_filter_on) {
        map_filter_add(p);
    }
    return 0;
}

trace_map_entry
trace_map_remove(uintptr_t p)
{
    trace_map_entry e = {0, 0};
    if (!map_indexable(p)) {
        e = map_large_take(p);
        if (e.stack != 0) {
            atomic_fetch_sub_explicit(&map_odd_count, 1, memory_order_relaxed);
            if (map_filter_on) {
                map_filter_remove(p);
            }
        }
        return e;
    }
    _Atomic(uint32_t) *s = map_slot(p, 0);
    if (s == NULL) {
        return e;
    }
    uint32_t v = atomic_load_explicit(s, memory_order_relaxed);
    if (v == 0) {
        return e;
    }
    atomic_store_explicit(s, 0, memory_order_relaxed);
    if (map_filter_on) {
        map_filter_remove(p);
    }
    if ((v & MAP_SIZE_MASK) == MAP_SIZE_LARGE) {
        return map_large_take(p);
    }
    e.size = v & MAP_SIZE_MASK;
    e.stack = v >> MAP_SIZE_BITS;
    return e;
}

int
trace_map_peek(uintptr_t p)
{
    if (!map_indexable(p)) {
        return atomic_load_explicit(&map_odd_count, memory_order_relaxed) != 0;
    }
    _Atomic(uint32_t) *s = map_slot(p, 0);
    return s != NULL && atomic_load_explicit(s, memory_order_relaxed) != 0;
}

/* Call fn on every leaf.  Only the directory pages that are resident are
 * read: reading an untouched page would map it (as the shared zero page,
 * but mincore() then counts it, and it is wasted work). */
static void
map_for_each_leaf(void (*fn)(map_leaf *leaf, size_t *acc), size_t *acc)
{
    const size_t page = 4096;
    const size_t per_page = page / sizeof(map_leaf *);
    unsigned char vec[sizeof(map_mid) / 4096];
    for (size_t ti = 0; ti < MAP_TOP_LEN; ti++) {
        map_mid *mid = atomic_load_explicit(&map_top[ti], memory_order_acquire);
        if (mid == NULL) {
            continue;
        }
        if (trace_mem_residency(mid, sizeof(map_mid), vec) < 0) {
            /* Not 4 KiB pages (or mincore failed): read it all. */
            memset(vec, 1, sizeof(vec));
        }
        for (size_t pg = 0; pg < sizeof(vec); pg++) {
            if (!(vec[pg] & 1)) {
                continue;
            }
            for (size_t mi = pg * per_page; mi < (pg + 1) * per_page; mi++) {
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
    /* Zero the leaf but keep it mapped: a free() racing with stop() may
     * still be peeking at it, and threads cache leaf pointers. */
    trace_mem_discard(leaf, sizeof(map_leaf));
}

static void
map_count_leaf(map_leaf *leaf, size_t *acc)
{
    *acc += trace_mem_resident(leaf, sizeof(map_leaf));
}

void
trace_map_clear(void)
{
    map_for_each_leaf(map_discard_leaf, NULL);
    trace_spin_lock(&map_large_lock);
    if (map_large != NULL) {
        trace_mem_unmap(map_large, (map_large_mask + 1) * sizeof(map_large_slot), 1);
        map_large = NULL;
        map_large_mask = 0;
        map_large_used = 0;
    }
    atomic_store_explicit(&map_odd_count, 0, memory_order_relaxed);
    trace_spin_unlock(&map_large_lock);
    if (map_filter_on) {
        for (size_t i = 0; i < sizeof(trace_map_filter) / sizeof(trace_map_filter[0]); i++) {
            atomic_store_explicit(&trace_map_filter[i], 0, memory_order_relaxed);
        }
        memset(map_filter_count, 0, sizeof(map_filter_count));
        map_filter_on = 0;
    }
}

size_t
trace_map_memory(void)
{
    size_t total = 0;
    for (size_t ti = 0; ti < MAP_TOP_LEN; ti++) {
        map_mid *mid = atomic_load_explicit(&map_top[ti], memory_order_relaxed);
        if (mid != NULL) {
            total += trace_mem_resident(mid, sizeof(map_mid));
        }
    }
    map_for_each_leaf(map_count_leaf, &total);
    if (map_filter_on) {
        total += sizeof(trace_map_filter) + sizeof(map_filter_count);
    }
    trace_spin_lock(&map_large_lock);
    if (map_large != NULL) {
        total += trace_mem_resident(map_large, (map_large_mask + 1) * sizeof(map_large_slot));
    }
    trace_spin_unlock(&map_large_lock);
    return total;
}
