/* walk_visit.c: the visited set of a heap walk (visit_; see walk_visit.h). */
#include "heap/walk_visit.h"

#include <stdlib.h>
#include <string.h>

#define VISIT_CHUNK_LEAVES 64

struct visit_chunk {
    visit_chunk *next;
    visit_leaf leaves[VISIT_CHUNK_LEAVES];
};

int
visit_init(visit_set *vs)
{
    memset(vs, 0, sizeof(*vs));
    vs->mask = 255;
    vs->slots = calloc(vs->mask + 1, sizeof(visit_slot));
    if (vs->slots == NULL) {
        return -1;
    }
    vs->bytes = (vs->mask + 1) * sizeof(visit_slot);
    return 0;
}

void
visit_free(visit_set *vs)
{
    visit_chunk *c = vs->chunks;
    while (c != NULL) {
        visit_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(vs->slots);
    free(vs->ranks);
    memset(vs, 0, sizeof(*vs));
}

static inline size_t
visit_hash(uintptr_t region)
{
    /* Fibonacci hashing spreads consecutive regions over the table. */
    return (size_t)((region * (uintptr_t)0x9E3779B97F4A7C15ULL) >> 17);
}

static int
visit_grow(visit_set *vs)
{
    size_t nmask = vs->mask * 2 + 1;
    visit_slot *ns = calloc(nmask + 1, sizeof(visit_slot));
    if (ns == NULL) {
        return -1;
    }
    for (size_t i = 0; i <= vs->mask; i++) {
        visit_slot *s = &vs->slots[i];
        if (s->region == 0) {
            continue;
        }
        size_t j = visit_hash(s->region) & nmask;
        while (ns[j].region != 0) {
            j = (j + 1) & nmask;
        }
        ns[j] = *s;
    }
    free(vs->slots);
    vs->bytes += (nmask - vs->mask) * sizeof(visit_slot);
    vs->slots = ns;
    vs->mask = nmask;
    return 0;
}

static visit_leaf *
visit_new_leaf(visit_set *vs)
{
    if (vs->chunk_left == 0) {
        visit_chunk *c = calloc(1, sizeof(visit_chunk));
        if (c == NULL) {
            return NULL;
        }
        c->next = vs->chunks;
        vs->chunks = c;
        vs->chunk_left = VISIT_CHUNK_LEAVES;
        vs->bytes += sizeof(visit_chunk);
    }
    vs->chunk_left--;
    return &vs->chunks->leaves[vs->chunk_left];
}

/* The leaf of `region`, created if needed; NULL if out of memory. */
static visit_leaf *
visit_find(visit_set *vs, uintptr_t region)
{
    size_t i = visit_hash(region) & vs->mask;
    for (;;) {
        visit_slot *s = &vs->slots[i];
        if (s->region == region) {
            return s->leaf;
        }
        if (s->region == 0) {
            break;
        }
        i = (i + 1) & vs->mask;
    }
    /* keep the load under one half so probes stay short */
    if ((vs->used + 1) * 2 > vs->mask + 1) {
        if (visit_grow(vs) < 0) {
            return NULL;
        }
        i = visit_hash(region) & vs->mask;
        while (vs->slots[i].region != 0) {
            i = (i + 1) & vs->mask;
        }
    }
    visit_leaf *leaf = visit_new_leaf(vs);
    if (leaf == NULL) {
        return NULL;
    }
    vs->slots[i].region = region;
    vs->slots[i].leaf = leaf;
    vs->used++;
    return leaf;
}

int
visit_add_slow(visit_set *vs, uintptr_t region, unsigned bit)
{
    visit_leaf *leaf = visit_find(vs, region);
    if (leaf == NULL) {
        return -1;
    }
    vs->last_region = region;
    vs->last_leaf = leaf;
    uint64_t *w = &leaf->bits[bit >> 6];
    uint64_t m = (uint64_t)1 << (bit & 63);
    if (*w & m) {
        return 0;
    }
    *w |= m;
    return 1;
}

/* Bits set in a word.  Inline SWAR rather than __builtin_popcountll, which
 * without -mpopcnt (not in the x86-64 baseline) is a libgcc call. */
static inline unsigned
visit_popcount(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (unsigned)((x * 0x0101010101010101ULL) >> 56);
}

size_t
visit_rank_build(visit_set *vs)
{
    size_t n = 0;
    free(vs->ranks);
    vs->ranks = malloc((vs->mask + 1) * sizeof(visit_rankinfo));
    if (vs->ranks == NULL) {
        return (size_t)-1;
    }
    vs->bytes += (vs->mask + 1) * sizeof(visit_rankinfo);
    for (size_t i = 0; i <= vs->mask; i++) {
        visit_slot *s = &vs->slots[i];
        visit_rankinfo *r = &vs->ranks[i];
        if (s->region == 0) {
            continue;
        }
        r->base = (uint32_t)n;
        unsigned in_leaf = 0;
        for (unsigned w = 0; w < VISIT_LEAF_WORDS; w++) {
            r->prefix[w] = (uint16_t)in_leaf;
            in_leaf += (unsigned)visit_popcount(s->leaf->bits[w]);
        }
        n += in_leaf;
    }
    return n;
}

uint32_t
visit_rank(visit_set *vs, const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uintptr_t region = (a >> VISIT_REGION_SHIFT) + 1;
    unsigned bit = (unsigned)((a >> VISIT_GRANULE_SHIFT) & (VISIT_LEAF_BITS - 1));
    size_t i = visit_hash(region) & vs->mask;
    for (;;) {
        visit_slot *s = &vs->slots[i];
        if (s->region == region) {
            uint64_t word = s->leaf->bits[bit >> 6];
            uint64_t below = ((uint64_t)1 << (bit & 63)) - 1;
            if (!((word >> (bit & 63)) & 1)) {
                return UINT32_MAX;
            }
            const visit_rankinfo *r = &vs->ranks[i];
            return r->base + r->prefix[bit >> 6] + (uint32_t)visit_popcount(word & below);
        }
        if (s->region == 0) {
            return UINT32_MAX;
        }
        i = (i + 1) & vs->mask;
    }
}
