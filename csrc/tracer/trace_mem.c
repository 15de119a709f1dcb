/* trace_mem.c: mmap-backed memory for the tracer's tables (see trace_mem.h). */
#define _GNU_SOURCE
#include "tracer/trace_mem.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* The allocator's state (process-wide, like the tables it serves). */
static struct {
    /* Bytes of accounted mappings.  Atomic: tables grow under the GIL or a
     * lock but tracer_memory() reads it without taking that lock. */
    atomic_size_t committed;
} mem_g;

void *
trace_mem_map(size_t size, int accounted)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    if (accounted) {
        atomic_fetch_add_explicit(&mem_g.committed, size, memory_order_relaxed);
    }
    return p;
}

void *
trace_mem_remap(void *p, size_t old_size, size_t new_size, int accounted)
{
    void *q = mremap(p, old_size, new_size, MREMAP_MAYMOVE);
    if (q == MAP_FAILED) {
        return NULL;
    }
    if (accounted) {
        atomic_fetch_add_explicit(&mem_g.committed, new_size - old_size, memory_order_relaxed);
    }
    return q;
}

void
trace_mem_unmap(void *p, size_t size, int accounted)
{
    if (p == NULL) {
        return;
    }
    munmap(p, size);
    if (accounted) {
        atomic_fetch_sub_explicit(&mem_g.committed, size, memory_order_relaxed);
    }
}

void
trace_mem_discard(void *p, size_t size)
{
    if (p != NULL) {
        madvise(p, size, MADV_DONTNEED);
    }
}

size_t
trace_mem_committed(void)
{
    return atomic_load_explicit(&mem_g.committed, memory_order_relaxed);
}

size_t
trace_mem_resident(void *p, size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t npages = (size + page - 1) / page;
    unsigned char vec[256];
    size_t total = 0;
    for (size_t i = 0; i < npages; i += sizeof(vec)) {
        size_t n = npages - i < sizeof(vec) ? npages - i : sizeof(vec);
        size_t len = n * page;
        if ((char *)p + i * page + len > (char *)p + size) {
            len = size - i * page;
        }
        if (mincore((char *)p + i * page, len, vec) != 0) {
            return total;
        }
        for (size_t j = 0; j < n; j++) {
            if (vec[j] & 1) {
                total += page;
            }
        }
    }
    return total;
}
