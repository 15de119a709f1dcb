/* advise_cache.h: the advisor's weak-reference check of cache dicts (a
 * module global or class attribute whose name says it is a cache): which
 * values only that dict keeps alive, which cannot be weakly referenced,
 * and the bytes the only-held ones retain together (what a
 * weakref.WeakValueDictionary would let go today).  Prefix advc_.
 */
#ifndef MEMLENS_ADVISE_CACHE_H
#define MEMLENS_ADVISE_CACHE_H

#include "core.h"

/* Distinct value types that cannot be weakly referenced, kept per cache. */
#define ADVC_MAX_TYPES 8

typedef struct {
    size_t values;                              /* entries */
    size_t held_only;                           /* values whose one reference is this dict's */
    size_t shared;                              /* values referenced from elsewhere too */
    size_t unweak;                              /* values whose type cannot be weakly referenced */
    PyTypeObject *unweak_types[ADVC_MAX_TYPES]; /* strong references */
    int ntypes;
    size_t bytes, count; /* retained by the held-only values together */
} advc_row;

/* Check each dict of `dicts` (a list of exact dicts) into `rows` (one per
 * dict, zeroed by the caller).  One heap graph serves every dict.  0, or -1
 * with an exception set; either way call advc_rows_free(). */
int advc_check(PyObject *dicts, advc_row *rows);

void advc_rows_free(advc_row *rows, Py_ssize_t n);

/* The storage dict and the wrapped function of a
 * functools._lru_cache_wrapper (private C members), reached through the
 * wrapper's tp_traverse: the first exact dict and the first Python function
 * it visits.  CPython 3.9-3.13 visit the linked list of a bounded cache's
 * entries (none for an unbounded one), then the function and the cache
 * dict, before the wrapper's __dict__.  0 with *dict and *func new
 * references or NULL; -1 with TypeError for anything else. */
int advc_lru_parts(PyObject *wrapper, PyObject **dict, PyObject **func);

#endif /* MEMLENS_ADVISE_CACHE_H */
