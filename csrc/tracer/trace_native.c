/* trace_native.c: native allocations through GOT patching (see
 * trace_native.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* dl_iterate_phdr, RTLD_DEFAULT, mremap, pvalloc (pyconfig.h: 1 too) */
#endif
#include "tracer/trace_native.h"
#include "tracer/trace_hooks.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- the hooked functions: one list ---------------------------------------
 *
 * X(name, kind): kind is TRACE_NATIVE_ALLOC (patched in objects other than
 * CPython when native tracing is on), TRACE_NATIVE_TRACK (patched whenever
 * the tracer runs), or 0 for dlopen, patched everywhere, CPython's
 * executable or libpython included (its import system loads extensions).
 * dlclose() needs no hook: nothing here remembers an object (stop() walks
 * the objects loaded then) and an object's GOT goes with it;
 * dl_iterate_phdr() holds the loader's lock, so a pass never sees an
 * object half unloaded.
 * The real functions are looked up once, in the global scope, where an
 * object's own lazy binding would find them. */
#define TRACE_NATIVE_FUNCS(X)                    \
    X(malloc, TRACE_NATIVE_ALLOC)                \
    X(calloc, TRACE_NATIVE_ALLOC)                \
    X(realloc, TRACE_NATIVE_ALLOC)               \
    X(reallocarray, TRACE_NATIVE_ALLOC)          \
    X(free, TRACE_NATIVE_ALLOC)                  \
    X(posix_memalign, TRACE_NATIVE_ALLOC)        \
    X(aligned_alloc, TRACE_NATIVE_ALLOC)         \
    X(memalign, TRACE_NATIVE_ALLOC)              \
    X(valloc, TRACE_NATIVE_ALLOC)                \
    X(pvalloc, TRACE_NATIVE_ALLOC)               \
    X(mmap, TRACE_NATIVE_ALLOC)                  \
    X(mmap64, TRACE_NATIVE_ALLOC)                \
    X(munmap, TRACE_NATIVE_ALLOC)                \
    X(mremap, TRACE_NATIVE_ALLOC)                \
    X(PyTraceMalloc_Track, TRACE_NATIVE_TRACK)   \
    X(PyTraceMalloc_Untrack, TRACE_NATIVE_TRACK) \
    X(dlopen, 0)

enum {
#define TRACE_NATIVE_ENUM(name, kind) TN_##name,
    TRACE_NATIVE_FUNCS(TRACE_NATIVE_ENUM)
#undef TRACE_NATIVE_ENUM
        TN_COUNT
};

static const char *const tn_names[TN_COUNT] = {
#define TRACE_NATIVE_NAME(name, kind) #name,
    TRACE_NATIVE_FUNCS(TRACE_NATIVE_NAME)
#undef TRACE_NATIVE_NAME
};

static const int tn_kinds[TN_COUNT] = {
#define TRACE_NATIVE_KIND(name, kind) kind,
    TRACE_NATIVE_FUNCS(TRACE_NATIVE_KIND)
#undef TRACE_NATIVE_KIND
};

/* The real functions (written once, by the first install(), under
 * tn_lock; read by the hooks, which are only reachable after that). */
static struct {
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void *(*reallocarray)(void *, size_t, size_t);
    void (*free)(void *);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*pvalloc)(size_t);
    void *(*mmap)(void *, size_t, int, int, int, off_t);
    void *(*mmap64)(void *, size_t, int, int, int, off_t);
    int (*munmap)(void *, size_t);
    void *(*mremap)(void *, size_t, size_t, int, ...);
    int (*PyTraceMalloc_Track)(unsigned int, uintptr_t, size_t);
    int (*PyTraceMalloc_Untrack)(unsigned int, uintptr_t);
    void *(*dlopen)(const char *, int);
} tn_real;

/* The same pointers by index, and the hooks by index (filled in with the
 * real ones). */
static void *tn_real_by_index[TN_COUNT];
static void *tn_hook_by_index[TN_COUNT];

/* Protects everything below and the patching itself. */
static pthread_mutex_t tn_lock = PTHREAD_MUTEX_INITIALIZER;
static int tn_resolved;             /* tn_real filled in */
static int tn_what;                 /* what is installed (0: nothing) */
static trace_native_stats tn_stats; /* of the last patching pass */
static uintptr_t tn_self;           /* an address in memlens' _core */

static size_t
tn_page_size(void)
{
    long n = sysconf(_SC_PAGESIZE);
    return n > 0 ? (size_t)n : 4096;
}

static size_t
tn_round_pages(size_t n)
{
    size_t page = tn_page_size();
    return n > SIZE_MAX - page ? n : (n + page - 1) & ~(page - 1);
}

/* ---- the hooks ----------------------------------------------------------- */

static void *
tn_malloc(size_t size)
{
    void *p = tn_real.malloc(size);
    if (p != NULL && trace_native_enter()) {
        trace_native_alloc(p, size);
        trace_native_leave();
    }
    return p;
}

static void *
tn_calloc(size_t nelem, size_t elsize)
{
    void *p = tn_real.calloc(nelem, elsize);
    if (p != NULL && trace_native_enter()) {
        trace_native_alloc(p, nelem * elsize); /* no overflow: it succeeded */
        trace_native_leave();
    }
    return p;
}

/* realloc and reallocarray: the old block leaves the map before the
 * allocator can hand its address to another thread, and comes back if the
 * call fails. */
static void *
tn_realloc(void *ptr, size_t size)
{
    if (!trace_native_enter()) {
        return tn_real.realloc(ptr, size);
    }
    uint64_t gen = trace_native_generation();
    trace_map_entry old = {0, 0};
    if (ptr != NULL) {
        old = trace_native_free(ptr);
    }
    void *p = tn_real.realloc(ptr, size);
    if (p != NULL) {
        trace_native_alloc(p, size);
    }
    else if (size != 0 || ptr == NULL) {
        trace_native_put_back(ptr, old, gen); /* failed: the old block lives */
    }
    trace_native_leave();
    return p;
}

static void *
tn_reallocarray(void *ptr, size_t nelem, size_t elsize)
{
    size_t size;
    if (__builtin_mul_overflow(nelem, elsize, &size)) {
        return tn_real.reallocarray(ptr, nelem, elsize); /* fails, ENOMEM */
    }
    if (!trace_native_enter()) {
        return tn_real.reallocarray(ptr, nelem, elsize);
    }
    uint64_t gen = trace_native_generation();
    trace_map_entry old = {0, 0};
    if (ptr != NULL) {
        old = trace_native_free(ptr);
    }
    void *p = tn_real.reallocarray(ptr, nelem, elsize);
    if (p != NULL) {
        trace_native_alloc(p, size);
    }
    else if (size != 0 || ptr == NULL) {
        trace_native_put_back(ptr, old, gen);
    }
    trace_native_leave();
    return p;
}

static void
tn_free(void *ptr)
{
    if (ptr != NULL && trace_native_enter()) {
        (void)trace_native_free(ptr);
        trace_native_leave();
    }
    tn_real.free(ptr);
}

static int
tn_posix_memalign(void **memptr, size_t alignment, size_t size)
{
    int r = tn_real.posix_memalign(memptr, alignment, size);
    if (r == 0 && *memptr != NULL && trace_native_enter()) {
        trace_native_alloc(*memptr, size);
        trace_native_leave();
    }
    return r;
}

static void *
tn_aligned_alloc(size_t alignment, size_t size)
{
    void *p = tn_real.aligned_alloc(alignment, size);
    if (p != NULL && trace_native_enter()) {
        trace_native_alloc(p, size);
        trace_native_leave();
    }
    return p;
}

static void *
tn_memalign(size_t alignment, size_t size)
{
    void *p = tn_real.memalign(alignment, size);
    if (p != NULL && trace_native_enter()) {
        trace_native_alloc(p, size);
        trace_native_leave();
    }
    return p;
}

static void *
tn_valloc(size_t size)
{
    void *p = tn_real.valloc(size);
    if (p != NULL && trace_native_enter()) {
        trace_native_alloc(p, size);
        trace_native_leave();
    }
    return p;
}

static void *
tn_pvalloc(size_t size)
{
    void *p = tn_real.pvalloc(size);
    if (p != NULL && trace_native_enter()) {
        trace_native_alloc(p, tn_round_pages(size)); /* pvalloc rounds up to pages */
        trace_native_leave();
    }
    return p;
}

/* A mapping counts its length in whole pages, file-backed or anonymous (the
 * kernel charges it when it is touched, as it would a malloc()ed block). */
static void *
tn_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p = tn_real.mmap(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED && trace_native_enter()) {
        trace_native_alloc(p, tn_round_pages(len));
        trace_native_leave();
    }
    return p;
}

static void *
tn_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p = tn_real.mmap64(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED && trace_native_enter()) {
        trace_native_alloc(p, tn_round_pages(len));
        trace_native_leave();
    }
    return p;
}

/* Unmapping the start of a traced mapping frees that many pages: the rest
 * stays, at its new start.  (An unmapped middle or end, which no allocator
 * or extension measured does, is seen only when the start goes.) */
static int
tn_munmap(void *addr, size_t len)
{
    if (!trace_native_enter()) {
        return tn_real.munmap(addr, len);
    }
    uint64_t gen = trace_native_generation();
    trace_map_entry old = trace_native_free(addr);
    int r = tn_real.munmap(addr, len);
    size_t gone = tn_round_pages(len);
    if (r != 0) {
        trace_native_put_back(addr, old, gen);
    }
    else if (old.stack != 0 && gone < old.size) {
        trace_map_entry rest = {old.size - gone, old.stack};
        trace_native_put_back((char *)addr + gone, rest, gen);
    }
    trace_native_leave();
    return r;
}

static void *
tn_mremap(void *old_addr, size_t old_len, size_t new_len, int flags, ...)
{
    void *new_addr = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        new_addr = va_arg(ap, void *);
        va_end(ap);
    }
    if (!trace_native_enter()) {
        return tn_real.mremap(old_addr, old_len, new_len, flags, new_addr);
    }
    uint64_t gen = trace_native_generation();
    trace_map_entry old = trace_native_free(old_addr);
    void *p = tn_real.mremap(old_addr, old_len, new_len, flags, new_addr);
    if (p != MAP_FAILED) {
        if (old.stack != 0) {
            trace_native_alloc(p, tn_round_pages(new_len));
        }
    }
    else {
        trace_native_put_back(old_addr, old, gen);
    }
    trace_native_leave();
    return p;
}

static int
tn_PyTraceMalloc_Track(unsigned int domain, uintptr_t ptr, size_t size)
{
    int r = tn_real.PyTraceMalloc_Track(domain, ptr, size);
    if (ptr != 0 && trace_native_enter()) {
        trace_native_track((void *)ptr, size);
        trace_native_leave();
    }
    return r;
}

/* The buffer leaves the totals when it is untracked, even if free() comes
 * later or never (numpy keeps small freed buffers in a cache, untracked):
 * the same figure tracemalloc gives. */
static int
tn_PyTraceMalloc_Untrack(unsigned int domain, uintptr_t ptr)
{
    int r = tn_real.PyTraceMalloc_Untrack(domain, ptr);
    if (ptr != 0 && trace_native_enter()) {
        (void)trace_native_free((void *)ptr);
        trace_native_leave();
    }
    return r;
}

static int tn_patch_all_locked(int what);

static void *
tn_dlopen(const char *file, int mode)
{
    void *h = tn_real.dlopen(file, mode);
    if (h != NULL) {
        /* The object and what it brought in are patched before the caller
         * can run any of their code (what patching finds is idempotent). */
        pthread_mutex_lock(&tn_lock);
        if (tn_what != 0) {
            (void)tn_patch_all_locked(tn_what);
        }
        pthread_mutex_unlock(&tn_lock);
    }
    return h;
}

/* ---- patching ------------------------------------------------------------ */

/* An address of the object's own segments?  (A GOT entry that still points
 * into its own PLT is not bound yet: lazy binding.) */
static int
tn_in_object(const struct dl_phdr_info *info, uintptr_t a)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD) {
            uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
            if (a >= lo && a - lo < ph->p_memsz) {
                return 1;
            }
        }
    }
    return 0;
}

static int
tn_name_has(const char *name, const char *part)
{
    const char *base = strrchr(name, '/');
    base = base == NULL ? name : base + 1;
    return strstr(base, part) == base;
}

/* Objects never patched at all. */
static int
tn_skip_object(const struct dl_phdr_info *info)
{
    const char *name = info->dlpi_name;
    if (tn_in_object(info, tn_self)) {
        return 1; /* memlens' own _core: its tables */
    }
    if (name == NULL) {
        return 0;
    }
    return tn_name_has(name, "linux-vdso") || tn_name_has(name, "linux-gate")
           || tn_name_has(name, "ld-linux") || tn_name_has(name, "ld64.so")
           || tn_name_has(name, "libc.so") || tn_name_has(name, "libc-")
           || tn_name_has(name, "libasan") || tn_name_has(name, "libubsan")
           || tn_name_has(name, "libtsan") || tn_name_has(name, "liblsan");
}

/* A pointer of the dynamic section: glibc relocates them in place when it
 * loads an object, but not every loader does (and not for the vDSO). */
static uintptr_t
tn_dyn_ptr(const struct dl_phdr_info *info, ElfW(Addr) p)
{
    return p < info->dlpi_addr ? info->dlpi_addr + p : p;
}

typedef struct {
    int what; /* what to patch; 0: restore */
    trace_native_stats stats;
} tn_pass;

/* Write `value` into a GOT entry, making its page writable if RELRO made
 * it read-only (and read-only again after). */
static int
tn_write_slot(const struct dl_phdr_info *info, void **slot, void *value)
{
    uintptr_t a = (uintptr_t)slot;
    int relro = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_GNU_RELRO) {
            uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
            if (a >= lo && a - lo < ph->p_memsz) {
                relro = 1;
            }
        }
    }
    if (!relro) {
        __atomic_store_n(slot, value, __ATOMIC_RELEASE);
        return 0;
    }
    size_t page = tn_page_size();
    void *start = (void *)(a & ~(uintptr_t)(page - 1));
    if (mprotect(start, page, PROT_READ | PROT_WRITE) != 0) {
        return -1;
    }
    __atomic_store_n(slot, value, __ATOMIC_RELEASE);
    (void)mprotect(start, page, PROT_READ);
    return 0;
}

/* Which hooked function a symbol name is, or -1. */
static int
tn_lookup(const char *name)
{
    if (name[0] != 'm' && name[0] != 'c' && name[0] != 'r' && name[0] != 'f' && name[0] != 'p'
        && name[0] != 'a' && name[0] != 'v' && name[0] != 'P' && name[0] != 'd') {
        return -1;
    }
    for (int i = 0; i < TN_COUNT; i++) {
        if (strcmp(name, tn_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

static void
tn_patch_relocs(const struct dl_phdr_info *info, tn_pass *pass, int is_python,
                const ElfW(Rela) * rel, size_t n, const ElfW(Sym) * symtab, const char *strtab)
{
    int touched = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned type = (unsigned)ELF64_R_TYPE(rel[k].r_info);
        if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT && type != R_X86_64_64) {
            continue;
        }
        size_t sym = ELF64_R_SYM(rel[k].r_info);
        if (sym == 0) {
            continue;
        }
        int f = tn_lookup(strtab + symtab[sym].st_name);
        if (f < 0 || tn_real_by_index[f] == NULL) {
            continue;
        }
        int kind = tn_kinds[f];
        void **slot = (void **)(info->dlpi_addr + rel[k].r_offset);
        void *cur = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        if (pass->what == 0) {
            if (cur == tn_hook_by_index[f] && tn_write_slot(info, slot, tn_real_by_index[f]) == 0) {
                pass->stats.entries++;
                touched = 1;
            }
            continue;
        }
        if (kind != 0 && !(kind & pass->what)) {
            continue;
        }
        if (is_python && kind != 0) {
            continue; /* CPython's own calls: counted by the PEP 445 hooks */
        }
        if (cur == tn_hook_by_index[f]) {
            continue;
        }
        /* Bound to the definition every other object uses, or not bound
         * yet: ours.  Bound to another (a private allocator, a symbol
         * version of its own): left alone, or its blocks would be freed by
         * an allocator that did not make them. */
        if (cur != tn_real_by_index[f] && !tn_in_object(info, (uintptr_t)cur)) {
            pass->stats.skipped++;
            continue;
        }
        if (tn_write_slot(info, slot, tn_hook_by_index[f]) == 0) {
            pass->stats.entries++;
            touched = 1;
        }
    }
    if (touched) {
        pass->stats.objects++;
    }
}

static int
tn_patch_object(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    tn_pass *pass = data;
    if (tn_skip_object(info)) {
        return 0;
    }
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) {
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
        }
    }
    if (dyn == NULL) {
        return 0;
    }
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL;
    const ElfW(Rela) *jmprel = NULL, *rela = NULL;
    size_t jmprel_size = 0, rela_size = 0;
    int pltrel_is_rela = 1;
    for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
        switch (d->d_tag) {
        case DT_SYMTAB:
            symtab = (const ElfW(Sym) *)tn_dyn_ptr(info, d->d_un.d_ptr);
            break;
        case DT_STRTAB:
            strtab = (const char *)tn_dyn_ptr(info, d->d_un.d_ptr);
            break;
        case DT_JMPREL:
            jmprel = (const ElfW(Rela) *)tn_dyn_ptr(info, d->d_un.d_ptr);
            break;
        case DT_PLTRELSZ:
            jmprel_size = d->d_un.d_val;
            break;
        case DT_PLTREL:
            pltrel_is_rela = d->d_un.d_val == DT_RELA;
            break;
        case DT_RELA:
            rela = (const ElfW(Rela) *)tn_dyn_ptr(info, d->d_un.d_ptr);
            break;
        case DT_RELASZ:
            rela_size = d->d_un.d_val;
            break;
        default:
            break;
        }
    }
    if (symtab == NULL || strtab == NULL || !pltrel_is_rela) {
        return 0;
    }
    /* CPython itself: the object that defines the allocator API. */
    int is_python = tn_in_object(info, (uintptr_t)&PyMem_RawMalloc);
    if (jmprel != NULL) {
        tn_patch_relocs(info, pass, is_python, jmprel, jmprel_size / sizeof(ElfW(Rela)), symtab,
                        strtab);
    }
    if (rela != NULL) {
        tn_patch_relocs(info, pass, is_python, rela, rela_size / sizeof(ElfW(Rela)), symtab,
                        strtab);
    }
    return 0;
}

/* One pass over the loaded objects (tn_lock held). */
static int
tn_patch_all_locked(int what)
{
    tn_pass pass = {what, {what, 0, 0, 0}};
    dl_iterate_phdr(tn_patch_object, &pass);
    tn_stats = pass.stats;
    return pass.stats.entries;
}

static int
tn_resolve_locked(void)
{
    if (tn_resolved) {
        return 0;
    }
    tn_self = (uintptr_t)&tn_resolve_locked;
#define TRACE_NATIVE_RESOLVE(name, kind)                      \
    tn_real_by_index[TN_##name] = dlsym(RTLD_DEFAULT, #name); \
    tn_hook_by_index[TN_##name] = (void *)tn_##name;          \
    memcpy(&tn_real.name, &tn_real_by_index[TN_##name], sizeof(void *));
    TRACE_NATIVE_FUNCS(TRACE_NATIVE_RESOLVE)
#undef TRACE_NATIVE_RESOLVE
    /* Without these, no hook can call on. */
    if (tn_real.malloc == NULL || tn_real.free == NULL || tn_real.dlopen == NULL) {
        return -1;
    }
    tn_resolved = 1;
    return 0;
}

/* fork() while another thread patches would leave the child with tn_lock
 * held. */
static void
tn_atfork_prepare(void)
{
    pthread_mutex_lock(&tn_lock);
}

static void
tn_atfork_release(void)
{
    pthread_mutex_unlock(&tn_lock);
}

int
trace_native_install(int what)
{
#if !defined(__x86_64__) || !defined(__linux__)
    /* The relocation types read above are x86-64's. */
    (void)what;
    return -1;
#endif
    static int atfork_done = 0;
    if (!atfork_done) {
        if (pthread_atfork(tn_atfork_prepare, tn_atfork_release, tn_atfork_release) != 0) {
            return -1;
        }
        atfork_done = 1;
    }
    pthread_mutex_lock(&tn_lock);
    int r = tn_resolve_locked();
    if (r == 0) {
        tn_what = what;
        (void)tn_patch_all_locked(what);
    }
    pthread_mutex_unlock(&tn_lock);
    return r;
}

void
trace_native_uninstall(void)
{
    pthread_mutex_lock(&tn_lock);
    if (tn_what != 0) {
        tn_what = 0;
        trace_native_stats kept = tn_stats;
        (void)tn_patch_all_locked(0);
        tn_stats = kept;
    }
    pthread_mutex_unlock(&tn_lock);
}

void
trace_native_get_stats(trace_native_stats *s)
{
    pthread_mutex_lock(&tn_lock);
    *s = tn_stats;
    pthread_mutex_unlock(&tn_lock);
}
