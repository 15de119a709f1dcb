/* walk_typetab.h: a table from type to one row of per-type totals -- the
 * one table behind size_by_type (walk_module.c), the census
 * (census_module.c) and the advisor's classes (advise_scan.c).  Prefix
 * walk_typetab_.
 *
 * A row is the caller's struct, whose first member is the key,
 * `PyTypeObject *type` (WALK_TYPETAB_ROW checks it at compile time); the
 * table only knows its size.  New rows start zeroed.  Open addressing on
 * the type pointer with linear probing, at most half full, the rows inline
 * in the slots so that a hit reads one row and nothing else.
 *
 * The table holds a strong reference to every key type, released by
 * walk_typetab_free: Python code run during a walk (a __sizeof__) may drop
 * the last instance of a class and then the class itself, and a row must
 * never be left with a dangling key.  Free the table only once nothing
 * reads a row any more (releasing a class may run arbitrary code).
 *
 * Rows move when the table grows: a row pointer stays valid until the next
 * walk_typetab_get of a type that has no row yet.  Iteration is in slot
 * order.  Memory comes from malloc (scratch, invisible to tracemalloc); no
 * Python object is made per row.  Single-threaded: a table belongs to one
 * call, which holds the GIL.
 */
#ifndef MEMLENS_WALK_TYPETAB_H
#define MEMLENS_WALK_TYPETAB_H

#include "core.h"

#include <stddef.h>
#include <stdint.h>

/* Type objects are at least 16-byte aligned: the low bits of their
 * addresses carry no information. */
#define WALK_TYPETAB_ALIGN_SHIFT 4

typedef struct {
    char *slots;     /* (mask + 1) rows of row_size bytes; a NULL key is a free slot */
    size_t row_size; /* sizeof the caller's row struct */
    size_t mask;     /* slots - 1, a power of two minus one */
    size_t used;     /* rows in use */
} walk_typetab;

/* A compile-time check that `row_type` can be a row. */
#define WALK_TYPETAB_ROW(row_type)                                                 \
    _Static_assert(offsetof(row_type, type) == 0                                   \
                       && sizeof(((row_type *)0)->type) == sizeof(PyTypeObject *), \
                   #row_type ": the key `PyTypeObject *type` must come first")

/* The tally size_by_type and the census keep per type: objects and their
 * bytes.  A row type that starts with these three fields (checked by
 * WALK_TYPETAB_TALLY) can use walk_typetab_tally as its walk callback. */
typedef struct {
    PyTypeObject *type; /* the key; the table holds a reference */
    size_t count;
    size_t bytes; /* saturating at PY_SSIZE_T_MAX (size_add) */
} walk_type_tally;

struct walk_s; /* heap/walk.h's walk_t */

#define WALK_TYPETAB_TALLY(row_type)                                                     \
    _Static_assert(offsetof(row_type, type) == offsetof(walk_type_tally, type)           \
                       && offsetof(row_type, count) == offsetof(walk_type_tally, count)  \
                       && offsetof(row_type, bytes) == offsetof(walk_type_tally, bytes), \
                   #row_type ": must start with walk_type_tally's type, count and bytes")

/* A walk_fn (heap/walk.h) over a walk_typetab `arg` of tally rows: counts
 * the object and adds its size to its type's row.  -1 with MemoryError. */
int walk_typetab_tally(struct walk_s *w, PyObject *obj, size_t size, size_t tag, size_t *child_tag,
                       void *arg);

/* An empty table of at least `min_slots` slots (rounded up to a power of
 * two; it holds min_slots / 2 rows before it first grows).  0, or -1 if
 * out of memory (no exception set). */
int walk_typetab_init(walk_typetab *t, size_t row_size, size_t min_slots);

/* Release the key types (this may run arbitrary code) and the memory.
 * Safe on a zeroed table and after a failed init. */
void walk_typetab_free(walk_typetab *t);

/* The new row of `tp`, which has none yet; NULL if out of memory (no
 * exception set).  walk_typetab_get's slow path. */
void *walk_typetab_insert(walk_typetab *t, PyTypeObject *tp);

/* The row of `tp`, made (zeroed, the table taking a reference to `tp`) if
 * it has none; NULL if out of memory (no exception set). */
static inline void *
walk_typetab_get(walk_typetab *t, PyTypeObject *tp)
{
    size_t i = ((uintptr_t)tp >> WALK_TYPETAB_ALIGN_SHIFT) & t->mask;
    for (;;) {
        char *row = t->slots + i * t->row_size;
        PyTypeObject *key = *(PyTypeObject **)row;
        if (key == tp) {
            return row;
        }
        if (key == NULL) {
            return walk_typetab_insert(t, tp);
        }
        i = (i + 1) & t->mask;
    }
}

/* The next row at or after slot *pos, advancing *pos past it; NULL when
 * there is none.  Start with *pos = 0. */
static inline void *
walk_typetab_next(const walk_typetab *t, size_t *pos)
{
    while (*pos <= t->mask) {
        char *row = t->slots + (*pos)++ * t->row_size;
        if (*(PyTypeObject **)row != NULL) {
            return row;
        }
    }
    return NULL;
}

#endif /* MEMLENS_WALK_TYPETAB_H */
