/* trace_native.h: native allocations -- the malloc and mmap families called
 * by C extensions and the libraries they load, outside CPython's allocator
 * domains -- and the buffers extensions declare with PyTraceMalloc_Track().
 *
 * How: every loaded shared object calls these functions through its GOT
 * (global offset table); start() rewrites each object's GOT entries for them
 * to memlens' hooks, which call the real function and record the block in
 * the tracer's tables like a RAW-domain block (trace_hooks.h: with the GIL,
 * on the calling thread's Python stack; without it, on the empty stack).
 * Objects loaded later are patched when the dlopen() that loads them
 * returns (dlopen is hooked in every object, CPython's too); stop() writes
 * the real functions back into every object still loaded.
 *
 * Left alone: CPython itself (the executable or libpython: its RAW domain
 * and its arenas are what the PEP 445 hooks already count, so its own
 * malloc/mmap calls would be counted twice; only its dlopen is hooked), the dynamic loader, the vDSO, the C library, the sanitizer
 * runtimes, and memlens' own extension (its tables).
 *
 * Locking: patching runs under trace_native_lock (a mutex: it walks the
 * loaded objects and may take a while), from start(), stop() and the
 * dlopen hook; a GOT entry is one aligned pointer, written with a single
 * store, so a thread calling through it sees either function.  The hooks
 * take no lock of their own: the tracer's bookkeeping has its own rules
 * (trace_hooks.h). */
#ifndef MEMLENS_TRACE_NATIVE_H
#define MEMLENS_TRACE_NATIVE_H

#include <stddef.h>

/* What start() patches (trace_native_install's `what`). */
#define TRACE_NATIVE_TRACK 1 /* PyTraceMalloc_Track/Untrack (and dlopen) */
#define TRACE_NATIVE_ALLOC 2 /* the malloc and mmap families */

/* Patch every loaded object for `what` (an OR of the flags above), and the
 * objects dlopen() loads from now on.  0, or -1 if the real functions
 * cannot be found (nothing patched).  GIL held. */
int trace_native_install(int what);
/* Write the real functions back in every loaded object.  GIL held. */
void trace_native_uninstall(void);

/* What the last install() did: objects patched and GOT entries written. */
typedef struct {
    int what;
    int objects;
    int entries;
    int skipped; /* entries bound to another definition (left alone) */
} trace_native_stats;

void trace_native_get_stats(trace_native_stats *s);

#endif
