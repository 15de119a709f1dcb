/* advise_scan.h: one walk over the whole heap that gathers what the advisor
 * (memlens/advise.py) turns into advice with exact savings:
 *
 *   - per class: instances, their footprint, how many are weakly
 *     referenced or carry a materialized __dict__, and per attribute how
 *     often it is present and what kinds of values it holds (int in int64
 *     range, float, bool, str, None, other) plus the bytes of boxed values
 *     only that attribute references (refcount 1: they would disappear if
 *     stored unboxed);
 *   - per "site" (a class attribute, dict keys, list items, or elsewhere):
 *     duplicate strs (equal content, distinct objects), duplicate tuples of
 *     scalars, lists that hold only floats or only int64-range ints, empty
 *     containers, and lists' spare capacity.
 *
 * A value is charged to the first site that claims it (an instance
 * attribute, a dict key, a list item); what no site claims is charged to
 * "elsewhere" at the end.  The walk is the sizing walker over every
 * GC-tracked object; scratch tables are malloc'd; nothing is written into
 * the objects (str hashes are computed here, not cached in the strs).
 * Prefix adv_.
 */
#ifndef MEMLENS_ADVISE_SCAN_H
#define MEMLENS_ADVISE_SCAN_H

#include "core.h"
#include "heap/walk.h"
#include "heap/walk_typetab.h"
#include "heap/walk_visit.h"

#include <stdint.h>

#define ADV_MAX_ATTRS 64

/* Value kinds of an attribute. */
enum { ADV_K_INT, ADV_K_FLOAT, ADV_K_BOOL, ADV_K_STR, ADV_K_NONE, ADV_K_OTHER, ADV_K_N };

typedef struct {
    PyObject *name;   /* str (a strong reference: see adv_scan_free) or NULL */
    const char *slot; /* slot name, or NULL */
    size_t present;
    size_t kinds[ADV_K_N];
    size_t owned_boxed; /* bytes of int/float values only it references */
    size_t site;        /* index + 1 of its site, 0 until first needed */
    /* Exact dicts this attribute holds when its name says it is a cache
     * (strong references, malloc'd: a list could trigger a collection in
     * the middle of the walk); NULL until the first. */
    PyObject **caches;
    size_t ncaches, capcaches;
} adv_attr;

typedef struct {
    PyTypeObject *type; /* borrowed: adv_state.class_rows holds it (a
                           * __sizeof__ run later in the walk may drop the
                           * last instance and the class itself) */
    size_t count, bytes;
    size_t weakrefd;  /* instances with a live weak reference */
    size_t with_dict; /* instances carrying a materialized __dict__ */
    int nattrs;
    int overflow; /* more distinct attributes than ADV_MAX_ATTRS */
    adv_attr attrs[ADV_MAX_ATTRS];
} adv_class;

/* Where a value sits. */
enum { ADV_S_ATTR, ADV_S_DICT_KEY, ADV_S_LIST_ITEM, ADV_S_ELSEWHERE };

typedef struct {
    PyTypeObject *type; /* ADV_S_ATTR: the class */
    PyObject *name;     /* ADV_S_ATTR: attribute name (strong), or NULL for a slot */
    const char *slot;
    int kind;
    /* duplicates */
    size_t dup_strs, dup_str_bytes;
    size_t dup_tuples, dup_tuple_bytes;
    /* lists of numbers: lists, items, current bytes (list + owned items) */
    size_t flists, fitems, fbytes;
    size_t ilists, iitems, ibytes;
    /* empty containers, spare list capacity */
    size_t empty, empty_bytes;
    size_t overalloc_lists, overalloc_bytes;
} adv_site;

/* Content-keyed table for duplicate detection (strs and tuples). */
typedef struct {
    uint64_t hash;
    PyObject *first; /* the copy kept (strong); later equal ones are dups */
} adv_dup_entry;

typedef struct {
    adv_dup_entry *e;
    size_t mask, used;
} adv_dup_table;

typedef struct {
    walk_t *w;          /* &walk: the callbacks reach the walker through it */
    walk_t walk;        /* the sizing walker; its pins live until adv_scan_free */
    adv_class *classes; /* in order of first sight, which is result order */
    size_t nclasses, capclasses;
    walk_typetab class_rows; /* class -> adv_class_row: its index in classes */
    adv_site *sites;
    size_t nsites, capsites;
    adv_dup_table strs, tuples;
    visit_set claimed;  /* values already charged to a site */
    PyObject **pending; /* values seen on their own, charged at the end (strong) */
    size_t npending, cappending;
    size_t site_dict_key, site_list_item; /* index + 1, 0 until needed */
} adv_state;

/* Scan everything reachable from the list `roots` (the list itself is left
 * out) into `st`.  0, or -1 with an exception set and `st` already freed.
 * After a 0, read st->classes / st->sites, then adv_scan_free(st). */
int adv_scan_run(adv_state *st, PyObject *roots);

/* Free the scratch tables and release the walker's pins (a deallocator
 * may run arbitrary code, so call it after the results are built). */
void adv_scan_free(adv_state *st);

#endif /* MEMLENS_ADVISE_SCAN_H */
