/* walk_visit.h: the visited set of a heap walk.  Prefix visit_.
 *
 * A sparse bitmap indexed by address: one bit per 16-byte granule (no two
 * objects start in the same granule, since every object is at least 16
 * bytes), in 512-byte leaves that each cover a 64 KiB region.  Leaves are
 * found through a small open-addressing table keyed by region, fronted by a
 * one-entry cache because consecutive objects usually share a region.
 * Compared with a pointer hash set this keeps neighbouring objects' bits in
 * one cache line, and the walk visits neighbours one after the other.
 *
 * Memory comes from malloc, never from PyMem, so building the set is not
 * seen by tracemalloc or by memlens's own tracer.  Single-threaded: a set
 * belongs to one walk, which holds the GIL.
 */
#ifndef MEMLENS_WALK_VISIT_H
#define MEMLENS_WALK_VISIT_H

#include <stddef.h>
#include <stdint.h>

#define VISIT_REGION_SHIFT 16 /* 64 KiB regions */
#define VISIT_GRANULE_SHIFT 4 /* 16-byte granules */
#define VISIT_LEAF_BITS (1u << (VISIT_REGION_SHIFT - VISIT_GRANULE_SHIFT))
#define VISIT_LEAF_WORDS (VISIT_LEAF_BITS / 64)

typedef struct {
    uint64_t bits[VISIT_LEAF_WORDS];
} visit_leaf;

typedef struct {
    uintptr_t region; /* address >> VISIT_REGION_SHIFT, plus one (0 = free) */
    visit_leaf *leaf;
} visit_slot;

typedef struct visit_chunk visit_chunk;

/* Rank index of one leaf (visit_rank_build): the rank of its first marked
 * granule, and per 64-bit word the marked granules before it in the leaf. */
typedef struct {
    uint32_t base;
    uint16_t prefix[VISIT_LEAF_WORDS];
} visit_rankinfo;

typedef struct {
    visit_slot *slots; /* open-addressing table, power-of-two size */
    size_t mask;
    size_t used;
    uintptr_t last_region;
    visit_leaf *last_leaf;
    visit_chunk *chunks; /* leaves are carved out of these */
    size_t chunk_left;
    size_t bytes;          /* scratch memory held, for the size report */
    visit_rankinfo *ranks; /* parallel to slots once visit_rank_build ran */
} visit_set;

/* 0 on success, -1 if out of memory (no exception set). */
int visit_init(visit_set *vs);
void visit_free(visit_set *vs);

/* Mark `p`; returns 1 if it was newly marked, 0 if already there, -1 if
 * out of memory. */
int visit_add_slow(visit_set *vs, uintptr_t region, unsigned bit);

static inline int
visit_add(visit_set *vs, const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uintptr_t region = (a >> VISIT_REGION_SHIFT) + 1;
    unsigned bit = (unsigned)((a >> VISIT_GRANULE_SHIFT) & (VISIT_LEAF_BITS - 1));
    if (region == vs->last_region) {
        uint64_t *w = &vs->last_leaf->bits[bit >> 6];
        uint64_t m = (uint64_t)1 << (bit & 63);
        if (*w & m) {
            return 0;
        }
        *w |= m;
        return 1;
    }
    return visit_add_slow(vs, region, bit);
}

/* Freeze the set and number its marked addresses 0..n-1 (in leaf order,
 * which is not address order): afterwards visit_rank() maps a marked
 * address to its number in O(1), which lets a heap graph use 4-byte node
 * indices instead of pointers.  Marking more after this is not allowed.
 * Returns n, or (size_t)-1 if out of memory. */
size_t visit_rank_build(visit_set *vs);

/* The number of marked `p`, or UINT32_MAX if `p` is not marked. */
uint32_t visit_rank(visit_set *vs, const void *p);

#endif /* MEMLENS_WALK_VISIT_H */
