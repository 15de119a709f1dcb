/* walk.h: the heap walker every memlens analysis is built on.  Prefix walk_.
 *
 * Iterative depth-first walk from a set of roots: an explicit stack (never
 * the C stack, so a 2-million-long linked list is fine), a visited bitmap
 * (walk_visit.h), and a per-type cache of sizing facts (walk_size.h).  Children are
 * what tp_traverse reports, plus what it leaves out: the keys of dicts
 * (dict_traverse skips str keys).  An instance's materialized __dict__ is
 * folded into the instance: its bytes are added to the instance's, and its
 * keys and values become the instance's children.
 *
 * By default, program structure (types, modules, functions, code,
 * descriptors) and values the interpreter shares (None/True/False/...,
 * small ints, interned or one-character strs, the empty tuple, immortal
 * objects) are neither counted nor entered; roots are always counted.
 *
 * Objects on the stack are borrowed references: the walk holds the GIL and
 * runs no Python code, so nothing can free them -- except a type's own
 * __sizeof__, which may run arbitrary code (even release the GIL).  Before
 * such a call the walk "pins" the stack: every object on it, and the object
 * being sized, gets a strong reference, released when the walk ends.  Each
 * object is pinned at most once, so the cost is paid only by walks that meet
 * such types.  (Taking a reference on every push instead would write to
 * every child as it is discovered: on a scattered heap, one more cache miss
 * per object.)
 *
 * Scratch memory comes from malloc, not PyMem: the walk is invisible to
 * tracemalloc and allocates no Python object per object.
 */
#ifndef MEMLENS_WALK_H
#define MEMLENS_WALK_H

#include "core.h"
#include "heap/walk_size.h"
#include "heap/walk_visit.h"

typedef struct {
    PyObject *obj; /* borrowed, or strong below walk_t.pinned */
    size_t tag;    /* caller's: e.g. which breakdown node owns it */
} walk_item;

#define WALK_TYPE_CACHE 512

typedef struct walk_s walk_t;

/* Called once per counted object, in visiting order.  `size` is its own
 * size (a folded __dict__ included).  Return 0 to go on, -1 to stop with an
 * exception set.  Set *child_tag to the tag its children get (defaults to
 * the object's own tag). */
typedef int (*walk_fn)(walk_t *w, PyObject *obj, size_t size, size_t tag, size_t *child_tag,
                       void *arg);

struct walk_s {
    /* options */
    int shared; /* count program structure and shared values too */
    int nofold; /* report an instance's __dict__ as an object of
                          * its own instead of folding it (heap graphs, where
                          * the dict is a node) */

    /* results */
    size_t total;    /* bytes counted */
    size_t count;    /* objects counted */
    size_t warnings; /* objects whose __sizeof__ failed, or holding
                          * memory the walk cannot see (walk_buffer.h) */
    size_t refs;     /* references followed from visited objects (to
                          * objects seen before too): sizes a heap graph's
                          * edge array before its edges are taken */

    /* scratch (malloc'd) */
    visit_set seen;
    walk_item *stack;
    size_t depth, cap;
    size_t pinned;   /* stack items below this index hold a strong
                           * reference (see "pins" above) */
    PyObject **keep; /* strong references released at walk_free */
    size_t nkeep, keepcap;
    size_typeinfo types[WALK_TYPE_CACHE];
    /* Bumped after each __sizeof__ the walk runs: that Python code may have
     * freed a cached type and made another at its address, so entries of
     * an older generation are looked up again. */
    uint32_t types_gen;
};

/* 0 or -1 with MemoryError set. */
int walk_init(walk_t *w, int shared);
void walk_free(walk_t *w);

/* Walk from `roots` (each root gets tag `tags ? tags[i] : 0`).  Roots
 * already visited are skipped.  0 on success, -1 with an exception set. */
int walk_run(walk_t *w, PyObject *const *roots, Py_ssize_t nroots, const size_t *tags, walk_fn fn,
             void *arg);

/* Mark `obj` visited without counting it (e.g. to exclude it). */
int walk_exclude(walk_t *w, PyObject *obj);

/* The cached sizing facts for a type. */
const size_typeinfo *walk_typeinfo(walk_t *w, PyTypeObject *tp);

/* Scratch bytes the walk holds now (visited set + stack).  Neither shrinks
 * before walk_free, so this is also the walk's peak. */
size_t walk_scratch_bytes(const walk_t *w);

#endif /* MEMLENS_WALK_H */
