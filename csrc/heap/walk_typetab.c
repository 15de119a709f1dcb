/* walk_typetab.c: the type -> row table (walk_typetab_; see walk_typetab.h). */
#include "heap/walk_typetab.h"
#include "heap/walk_size.h" /* size_add */

#include <stdlib.h>
#include <string.h>

static inline PyTypeObject *
walk_typetab_key(const walk_typetab *t, const char *slots, size_t i)
{
    return *(PyTypeObject *const *)(slots + i * t->row_size);
}

/* The free slot where `tp` goes in `slots` (mask + 1 of them). */
static size_t
walk_typetab_free_slot(const walk_typetab *t, const char *slots, size_t mask, PyTypeObject *tp)
{
    size_t i = ((uintptr_t)tp >> WALK_TYPETAB_ALIGN_SHIFT) & mask;
    while (walk_typetab_key(t, slots, i) != NULL) {
        i = (i + 1) & mask;
    }
    return i;
}

int
walk_typetab_init(walk_typetab *t, size_t row_size, size_t min_slots)
{
    size_t slots = 2;
    while (slots < min_slots) {
        slots *= 2;
    }
    t->row_size = row_size;
    t->mask = slots - 1;
    t->used = 0;
    t->slots = calloc(slots, row_size);
    return t->slots == NULL ? -1 : 0;
}

void
walk_typetab_free(walk_typetab *t)
{
    char *slots = t->slots;
    size_t n = slots != NULL ? t->mask + 1 : 0;
    /* detached first: a class's deallocation below may run Python code,
     * which must not find a half-freed table (nothing reaches it, but stay
     * safe) */
    t->slots = NULL;
    t->used = 0;
    for (size_t i = 0; i < n; i++) {
        PyTypeObject *tp = walk_typetab_key(t, slots, i);
        Py_XDECREF(tp);
    }
    free(slots);
}

/* Twice the slots, the rows rehashed in slot order; -1 if out of memory
 * (the table is unchanged). */
static int
walk_typetab_grow(walk_typetab *t)
{
    size_t nmask = t->mask * 2 + 1;
    char *ns = calloc(nmask + 1, t->row_size);
    if (ns == NULL) {
        return -1;
    }
    for (size_t i = 0; i <= t->mask; i++) {
        PyTypeObject *tp = walk_typetab_key(t, t->slots, i);
        if (tp == NULL) {
            continue;
        }
        size_t j = walk_typetab_free_slot(t, ns, nmask, tp);
        memcpy(ns + j * t->row_size, t->slots + i * t->row_size, t->row_size);
    }
    free(t->slots);
    t->slots = ns;
    t->mask = nmask;
    return 0;
}

void *
walk_typetab_insert(walk_typetab *t, PyTypeObject *tp)
{
    /* at most half full: probe runs stay short */
    if ((t->used + 1) * 2 > t->mask + 1 && walk_typetab_grow(t) < 0) {
        return NULL;
    }
    char *row = t->slots + walk_typetab_free_slot(t, t->slots, t->mask, tp) * t->row_size;
    Py_INCREF(tp);
    *(PyTypeObject **)row = tp;
    t->used++;
    return row;
}

int
walk_typetab_tally(struct walk_s *w, PyObject *obj, size_t size, size_t tag, size_t *child_tag,
                   void *arg)
{
    (void)w;
    (void)tag;
    (void)child_tag;
    walk_type_tally *r = walk_typetab_get((walk_typetab *)arg, Py_TYPE(obj));
    if (r == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    r->count++;
    r->bytes = size_add(r->bytes, size);
    return 0;
}
