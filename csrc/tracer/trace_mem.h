/* trace_mem.h: memory for the tracer's own tables, taken straight from the
 * kernel with mmap so that it is never seen by the PEP 445 hooks (it cannot
 * recurse into them and is not traced), and so that it can be accounted for
 * exactly by memlens.tracer_memory().
 */
#ifndef MEMLENS_TRACE_MEM_H
#define MEMLENS_TRACE_MEM_H

#include <stddef.h>

/* Zero-filled, page-aligned region of `size` bytes, or NULL.  `accounted`
 * says whether its bytes count in trace_mem_committed(): dense tables are
 * accounted when mapped, sparse ones (the address map) are measured by
 * residency instead (trace_mem_resident()). */
void *trace_mem_map(size_t size, int accounted);
/* Grow a mapping to `new_size` (contents kept, may move), or NULL. */
void *trace_mem_remap(void *p, size_t old_size, size_t new_size, int accounted);
void trace_mem_unmap(void *p, size_t size, int accounted);
/* Give the pages back to the kernel but keep the addresses valid (zeros). */
void trace_mem_discard(void *p, size_t size);
/* Bytes of the dense tables currently mapped. */
size_t trace_mem_committed(void);
/* Bytes of [p, p + size) resident in RAM (mincore). */
size_t trace_mem_resident(void *p, size_t size);

#endif /* MEMLENS_TRACE_MEM_H */
