/* trace_map.h: the tracer's map of live blocks, address -> (size, stack id).
 *
 * Why this shape: a pointer-keyed hash table of millions of blocks misses
 * the cache on every malloc and free.  Instead the
 * map is indexed by address, so that neighbouring blocks share cache lines
 * and a lookup is three loads.  An address-indexed map costs memory in
 * proportion to the address space its blocks span, not to their number, so
 * blocks are kept in one of three tiers by size, each with a cost per block
 * of at most 32 bytes on a heap made only of such blocks:
 *
 * - small blocks (up to 112 bytes): the fine map, 4 bytes per 16-byte
 *   granule (stack id 22 bits, size 10 bits);
 * - medium blocks (113 to 959 bytes): the medium map, 4 bytes per 128-byte
 *   granule (stack id 19 bits, size 10 bits, and which 16-byte step of the
 *   granule the block starts at); two such blocks never start in one
 *   granule;
 * - large blocks (960 bytes and more), medium blocks whose stack id needs more
 *   than 19 bits, and blocks at addresses the maps cannot index (not 16-byte
 *   aligned, or above 2**48): the side table, a hash table of 16-byte slots
 *   at a load between 1/2 and 3/4, with a bitmap filter so that a free()
 *   that misses both maps rarely needs its lock.
 *
 * In sampled mode every block goes to the side table: sampled blocks are
 * few and scattered, and a map page each would cost up to 4 KiB apiece.
 * (Why three tiers: one map at 16-byte granules costs 4 bytes per 16 of
 * address space, so 1 KiB for a 4 KiB block.)
 *
 * Locking: a block's entry in a map is only written by the thread that
 * owns the block (the one allocating or freeing it), so entries need no
 * lock, and lookups none either: directory and leaf pages are published
 * with a compare-and-swap, and never unmapped while the process lives
 * (stop() only gives their pages back to the kernel).  The side table
 * and its filter share a spinlock; sampled mode's filter has its own.
 */
#ifndef MEMLENS_TRACE_MAP_H
#define MEMLENS_TRACE_MAP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t size;
    uint32_t stack; /* 0 when the block is not in the map */
} trace_map_entry;

/* Record block `p`; -1 when out of memory (the block is then untraced). */
int trace_map_insert(uintptr_t p, uint64_t size, uint32_t stack);
/* Remove block `p`, returning what it held (stack 0: it was not traced). */
trace_map_entry trace_map_remove(uintptr_t p);
/* Non-zero if `p` may be traced (a cheap, lock-free pre-check). */
int trace_map_peek(uintptr_t p);
/* Sampled mode's filter: a counting filter over the addresses in the map,
 * so that the free() of a block that was not sampled -- nearly every free()
 * -- is told apart with one load from an 8 KiB bitmap that stays in the L1
 * cache, instead of a walk to a map leaf (the 64 KiB of counters behind it
 * would not stay cached).  Each bit stands for a bucket of addresses and is set while
 * the bucket's counter (in trace_map.c, updated under a lock: only sampled
 * blocks come and go, a few per MiB allocated) is not zero.  Kept only
 * while trace_map_use_filter(1) is in force: in exact mode every address
 * is in the map.  In sampled mode every block is also in the side table,
 * whose own filter could answer the same question, but not as cheaply: it
 * is a 32 KiB bitmap, four times this one, and stays in the L1 cache less
 * well. */
#define TRACE_MAP_FILTER_BITS 16
extern _Atomic(uint64_t) trace_map_filter[(1u << TRACE_MAP_FILTER_BITS) / 64];

static inline size_t
trace_map_filter_index(uintptr_t p)
{
    /* The address bits above the 16-byte alignment, unhashed: sampled
     * blocks are few and lie all over the heap, so these are spread well
     * enough, and a free() saves a multiply. */
    return (size_t)(p >> 4) & ((1u << TRACE_MAP_FILTER_BITS) - 1);
}

/* Zero only if `p` is certainly not in the map (filter in force).  A block
 * is inserted before its address is handed to the program, so whoever frees
 * it later sees the insertion. */
static inline int
trace_map_maybe(uintptr_t p)
{
    size_t i = trace_map_filter_index(p);
    return (atomic_load_explicit(&trace_map_filter[i / 64], memory_order_relaxed) >> (i % 64)) & 1;
}

/* Once, before any other trace_map_* call (trace_hooks_init(), at module
 * exec): set up the map's state. */
void trace_map_init(void);
/* Start (1) or stop (0) keeping the filter; only while the map is empty. */
void trace_map_use_filter(int on);
/* Forget every block; the memory goes back to the kernel.  No hook may be
 * updating the map meanwhile (stop() makes sure). */
void trace_map_clear(void);
/* Hold the map's locks (across fork()). */
void trace_map_lock(void);
void trace_map_unlock(void);
/* Bytes of RAM the map uses now. */
size_t trace_map_memory(void);

/* ---- the fine map's common case, inlined into the hooks -----------------------
 *
 * Most traced blocks are small and land on a leaf page already written:
 * then an insert or a removal is a few instructions, with no call's
 * prologue and no tier dispatch.  The paths of
 * trace_map.c use the same lookup, test and encoding.  Anything else --
 * another tier, a leaf not made yet, a page not yet written, sampled mode --
 * goes to trace_map_insert(), or trace_map_remove() / _coarse(). */

/* Blocks below this many bytes go to the fine map (trace_map.c). */
#define TRACE_MAP_SMALL_LIMIT 113u
#define TRACE_MAP_FINE_SIZE_BITS 10
#define TRACE_MAP_LEAF_BITS 16 /* slots per leaf */
#define TRACE_MAP_LEAF_LEN (1u << TRACE_MAP_LEAF_BITS)
/* 4-byte slots per 4 KiB page of a leaf. */
#define TRACE_MAP_PAGE_SLOTS 1024u

/* A leaf: its slots, then a bitmap of the pages of slots ever written.
 * tracer_memory() counts those pages, not what mincore() says: a lookup
 * that reads a page never written maps the kernel's shared zero page,
 * which costs no memory but which mincore() reports as resident (and
 * free() looks up blocks of every tier in the fine map first). */
typedef struct trace_map_leaf {
    _Atomic(uint32_t) slot[TRACE_MAP_LEAF_LEN];
    /* Every insert reads `written`.  Right after slot[], it would sit at
     * the start of a page, in the cache set of every leaf's `written` and
     * of every page's first line -- where pymalloc keeps its pool headers,
     * read on each of its allocations -- and the two would keep evicting
     * each other from the L1 cache.  In the middle of its page, it stays
     * cached (still in the leaf's last page, which tracer_memory()
     * counts). */
    char pad[31 * 64];
    _Atomic(uint64_t) written; /* bit i: page i of slot[] */
} trace_map_leaf;

/* A map's directories: top[p >> (granule + 32 bits)] -> leaf pointers. */
#define TRACE_MAP_MID_BITS 16
/* Enough top entries for the fine map: 4 + 16 + 16 + 12 = 48 bits of
 * address (the medium map uses the first 512). */
#define TRACE_MAP_TOP_BITS 12
typedef _Atomic(trace_map_leaf *) trace_map_mid[1u << TRACE_MAP_MID_BITS];
/* Leaf pointers per 4 KiB page of a directory, and such pages. */
#define TRACE_MAP_MID_PER_PAGE (4096 / sizeof(trace_map_leaf *))
#define TRACE_MAP_MID_PAGES ((1u << TRACE_MAP_MID_BITS) / TRACE_MAP_MID_PER_PAGE)

typedef struct {
    unsigned shift; /* log2 of the granule */
    _Atomic(trace_map_mid *) top[1u << TRACE_MAP_TOP_BITS];
    /* Which leaves exist: a bit per directory page that holds a leaf
     * pointer, set when a leaf is installed (leaves are never removed).
     * map_for_each_leaf() reads only those pages: reading the others would
     * map them, and asking mincore() instead would miss pages that were
     * swapped out -- and stop() would leave their leaves' entries behind. */
    _Atomic(uint64_t) used[1u << TRACE_MAP_TOP_BITS][TRACE_MAP_MID_PAGES / 64];
} trace_map_index;
/* The fine map (16-byte granules). */
extern trace_map_index trace_map_fine;

/* The leaf of each map this thread used last: consecutive blocks mostly
 * share one, and leaves are never unmapped, so the pointer stays valid for
 * the life of the process.  [0]: fine map, [1]: medium map.  initial-exec:
 * a %fs-relative access from the hooks. */
typedef struct {
    uintptr_t key; /* p >> (granule and leaf bits), plus one: 0 = empty */
    trace_map_leaf *leaf;
} trace_map_leaf_cache;
extern _Thread_local trace_map_leaf_cache trace_map_tls[2]
    __attribute__((tls_model("initial-exec")));
/* Sampled mode (every block in the side table); set only while no hook
 * updates the map. */
extern int trace_map_sampled_on;

/* Can the maps index p?  (16-byte aligned, below 2**48; other blocks live
 * in the side table.) */
static inline int
trace_map_indexable(uintptr_t p)
{
    return (p & 15u) == 0 && (p >> 48) == 0;
}

/* The leaf of indexable block p in map m (granules of 2**shift bytes): the
 * one this thread cached in lc, or found in the directories (and then
 * cached); NULL if it was not made yet. */
static inline trace_map_leaf *
trace_map_leaf_find(trace_map_index *m, trace_map_leaf_cache *lc, uintptr_t p, unsigned shift)
{
    uintptr_t g = p >> shift;
    uintptr_t key = (g >> TRACE_MAP_LEAF_BITS) + 1;
    if (lc->key == key) {
        return lc->leaf;
    }
    trace_map_mid *mid = atomic_load_explicit(
        &m->top[g >> (TRACE_MAP_LEAF_BITS + TRACE_MAP_MID_BITS)], memory_order_acquire);
    if (mid == NULL) {
        return NULL;
    }
    trace_map_leaf *leaf =
        atomic_load_explicit(&(*mid)[(g >> TRACE_MAP_LEAF_BITS) & ((1u << TRACE_MAP_MID_BITS) - 1)],
                             memory_order_acquire);
    if (leaf != NULL) {
        lc->key = key;
        lc->leaf = leaf;
    }
    return leaf;
}

/* Has slot i's page of the leaf been written since start()? */
static inline int
trace_map_page_written(trace_map_leaf *leaf, size_t i)
{
    return (atomic_load_explicit(&leaf->written, memory_order_relaxed)
            >> (i / TRACE_MAP_PAGE_SLOTS))
           & 1;
}

/* A fine-map entry: stack id << 10 | size (0: empty). */
static inline uint32_t
trace_map_fine_pack(uint32_t stack, uint64_t size)
{
    return stack << TRACE_MAP_FINE_SIZE_BITS | (uint32_t)size;
}

static inline trace_map_entry
trace_map_fine_unpack(uint32_t v)
{
    trace_map_entry e = {v & ((1u << TRACE_MAP_FINE_SIZE_BITS) - 1), v >> TRACE_MAP_FINE_SIZE_BITS};
    return e;
}

/* The rest of trace_map_remove() once the fine map was asked: the medium
 * map and the side table (not in sampled mode). */
trace_map_entry trace_map_remove_coarse(uintptr_t p);

/* trace_map_insert(), inline for the common case. */
static inline int
trace_map_insert_fast(uintptr_t p, uint64_t size, uint32_t stack)
{
    if (size < TRACE_MAP_SMALL_LIMIT && trace_map_indexable(p) && !trace_map_sampled_on) {
        trace_map_leaf *leaf = trace_map_leaf_find(&trace_map_fine, &trace_map_tls[0], p, 4);
        size_t i = (size_t)(p >> 4) & (TRACE_MAP_LEAF_LEN - 1);
        /* A page not written yet asks for the budget (trace_map.c). */
        if (leaf != NULL && trace_map_page_written(leaf, i)) {
            atomic_store_explicit(&leaf->slot[i], trace_map_fine_pack(stack, size),
                                  memory_order_relaxed);
            return 0;
        }
    }
    return trace_map_insert(p, size, stack);
}

/* trace_map_remove(), inline for the common case. */
static inline trace_map_entry
trace_map_remove_fast(uintptr_t p)
{
    if (!trace_map_indexable(p) || trace_map_sampled_on) {
        return trace_map_remove(p);
    }
    trace_map_leaf *leaf = trace_map_leaf_find(&trace_map_fine, &trace_map_tls[0], p, 4);
    if (leaf != NULL) {
        _Atomic(uint32_t) *s = &leaf->slot[(p >> 4) & (TRACE_MAP_LEAF_LEN - 1)];
        uint32_t v = atomic_load_explicit(s, memory_order_relaxed);
        if (v != 0) {
            atomic_store_explicit(s, 0, memory_order_relaxed);
            return trace_map_fine_unpack(v);
        }
    }
    return trace_map_remove_coarse(p);
}

#endif /* MEMLENS_TRACE_MAP_H */
