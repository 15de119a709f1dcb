/* trace_map.h: the tracer's map of live blocks, address -> (size, stack id).
 *
 * Why this shape: a pointer-keyed hash table of millions of blocks misses
 * the cache on every malloc and free (3-4x slowdown measured).  Instead the
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
 *
 * (With one map at 16-byte granules, a heap of 150-byte blocks cost 40
 * bytes per block, and one of 4 KiB blocks 1 KiB per block.)
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
 * cache, instead of a walk to a map leaf.  (A 64 KiB table of byte counters
 * read directly missed the L1 cache often enough to show as 30% of the free
 * hook's time.)  Each bit stands for a bucket of addresses and is set while
 * the bucket's counter (in trace_map.c, updated under a lock: only sampled
 * blocks come and go, a few per MiB allocated) is not zero.  Kept only
 * while trace_map_use_filter(1) is in force: in exact mode every address
 * is in the map.  In sampled mode every block is also in the side table,
 * whose own filter could answer the same question, but not as cheaply:
 * a 32 KiB hashed bitmap cleared only by rebuilds made sampled mode 1.04x
 * -> 1.08x (string_building 1.03x -> 1.18x) when tried in its place. */
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

#endif /* MEMLENS_TRACE_MAP_H */
