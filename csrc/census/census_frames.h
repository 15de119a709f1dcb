/* census_frames.h: the running frames of every thread, read in place.
 * Prefix frames_.
 *
 * sys._current_frames() and frame.f_back create a frame object for every
 * running frame on 3.11+ (which then lives as long as the frame does), so a
 * memory tool must not use them: these functions walk each thread state's
 * frame chain through cpy_layout.h instead.  Used for the roots of a census
 * (locals of running frames) and for why_alive's named roots.
 */
#ifndef MEMLENS_CENSUS_FRAMES_H
#define MEMLENS_CENSUS_FRAMES_H

#include "core.h"
#include "cpython/cpy_layout.h"

typedef int (*frames_fn)(void *arg, layout_frame *f, PyCodeObject *co);

/* Call fn for every running frame of every thread of this interpreter,
 * innermost first, skipping the 3.12+ C-stack shims.  Frames are read in
 * place (cpy_layout.h): no frame object is created.  We hold the GIL, so no
 * other thread's frames change under us; the thread list itself is
 * protected by the runtime's private HEAD_LOCK, which we cannot take: a
 * thread state is only unlinked by a thread holding the GIL, and one
 * linked concurrently goes in at the head, which a walk that has started
 * never revisits.  fn returns 0 to go on, -1 to stop (exception set). */
int frames_each(frames_fn fn, void *arg);

/* Strong references to the locals of every running frame outside
 * memlens's own code, and to the frame objects of memlens's own frames. */
typedef struct {
    PyObject *own_globals; /* borrowed: memlens.census's globals */
    PyObject **vals;       /* strong references */
    size_t n, cap;
    PyObject **own; /* strong references: our own frame objects */
    size_t nown, capown;
} frames_locals;

/* Collect strong references to the locals of every frame whose globals
 * are not `own_globals` (memlens's own code), after `first` leading slots
 * (holding None) that the caller fills; and the frame objects of the
 * frames left out.  0, or -1 with an exception set. */
int frames_locals_collect(frames_locals *cl, PyObject *own_globals, size_t first);
void frames_locals_free(frames_locals *cl);

#endif /* MEMLENS_CENSUS_FRAMES_H */
