/* trace_timeline.c: the sampler thread of `memlens run` (see trace_timeline.h). */
#include "tracer/trace_timeline.h"
#include "tracer/trace_hooks.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The sampler's state.  Process-wide because the tracer it samples is
 * (trace_hooks.h).  Every field but `mutex` itself is protected by
 * `mutex`, except `thread`: written by start and joined by the one stop
 * call that set `stopping`; the join runs with the lock (and the GIL)
 * released, so any other start or stop meanwhile sees `stopping` and keeps
 * its hands off the thread. */
static struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;  /* signalled by stop, and by the sampler once it runs */
    int cond_ready;       /* cond was initialised (once) */
    int running;          /* a sampler thread exists (until it is joined) */
    int thread_ready;     /* the sampler thread has started (start waits for it) */
    int stopping;         /* a stop call is joining it */
    int stop_requested;   /* the sampler thread is to take its last sample and exit */
    uint64_t interval_ns; /* current interval (doubles on halving) */
    uint64_t start_ns;    /* CLOCK_MONOTONIC at start */
    tl_sample *samples;   /* libc malloc: outside what is traced */
    uint32_t n;           /* samples taken */
    uint32_t max;         /* capacity of samples */
    pthread_t thread;     /* the sampler (see above) */
} tl_g = {.mutex = PTHREAD_MUTEX_INITIALIZER, .max = TL_MAX_SAMPLES};

static uint64_t
tl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* RSS in bytes from /proc/self/statm (second field, in pages); 0 when the
 * file cannot be read (not Linux, /proc not mounted). */
static uint64_t
tl_read_rss(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    char *p = buf;
    (void)strtoull(p, &p, 10);
    unsigned long long pages = strtoull(p, NULL, 10);
    long pagesize = sysconf(_SC_PAGESIZE);
    return (uint64_t)pages * (uint64_t)(pagesize > 0 ? pagesize : 4096);
}

/* Merge neighbours pairwise; called with tl_g.mutex held. */
static void
tl_halve_unlocked(void)
{
    uint32_t out = 0;
    for (uint32_t i = 0; i + 1 < tl_g.n; i += 2) {
        tl_sample a = tl_g.samples[i], b = tl_g.samples[i + 1];
        tl_sample m = b;
        m.traced = a.traced > b.traced ? a.traced : b.traced;
        m.rss = a.rss > b.rss ? a.rss : b.rss;
        m.native = a.native > b.native ? a.native : b.native;
        tl_g.samples[out++] = m;
    }
    if (tl_g.n % 2) {
        tl_g.samples[out++] = tl_g.samples[tl_g.n - 1];
    }
    tl_g.n = out;
    tl_g.interval_ns *= 2;
}

/* Take one sample; called with tl_g.mutex held. */
static void
tl_sample_unlocked(void)
{
    tl_sample s;
    s.t_ns = tl_now_ns() - tl_g.start_ns;
    /* Peeked, not read: this may run on the sampler thread, without the
     * GIL, which applying the GIL-less calls' queued changes needs. */
    trace_peek_memory(&s.traced, &s.peak, &s.native);
    s.rss = tl_read_rss();
    if (tl_g.n == tl_g.max) {
        tl_halve_unlocked();
    }
    tl_g.samples[tl_g.n++] = s;
}

static void *
tl_thread_main(void *arg)
{
    (void)arg;
    /* Allocations of this thread (libc only, but be safe) are not the
     * program's: keep them out of the trace. */
    trace_thread_pause();
    pthread_mutex_lock(&tl_g.mutex);
    tl_g.thread_ready = 1;
    pthread_cond_broadcast(&tl_g.cond);
    while (!tl_g.stop_requested) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        uint64_t ns = (uint64_t)deadline.tv_nsec + tl_g.interval_ns;
        deadline.tv_sec += (time_t)(ns / 1000000000ull);
        deadline.tv_nsec = (long)(ns % 1000000000ull);
        int rc = 0;
        while (!tl_g.stop_requested && rc != ETIMEDOUT) {
            rc = pthread_cond_timedwait(&tl_g.cond, &tl_g.mutex, &deadline);
        }
        if (tl_g.stop_requested) {
            break;
        }
        tl_sample_unlocked();
    }
    pthread_mutex_unlock(&tl_g.mutex);
    trace_thread_resume();
    return NULL;
}

/* CLOCK_MONOTONIC waits: wall-clock jumps must not stall sampling. */
static void
tl_cond_init(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&tl_g.cond, &ca);
    pthread_condattr_destroy(&ca);
    tl_g.cond_ready = 1;
}

int
trace_timeline_start(double ms, unsigned int max_samples)
{
    int result = -1;
    pthread_mutex_lock(&tl_g.mutex);
    if (tl_g.stopping) {
        PyErr_SetString(PyExc_RuntimeError, "the memlens timeline is still stopping");
        goto done;
    }
    if (tl_g.running) {
        PyErr_SetString(PyExc_RuntimeError, "the memlens timeline is already running");
        goto done;
    }
    if (!tl_g.cond_ready) {
        tl_cond_init();
    }
    free(tl_g.samples);
    tl_g.samples = malloc((size_t)max_samples * sizeof(tl_sample));
    if (tl_g.samples == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    tl_g.n = 0;
    tl_g.max = max_samples;
    tl_g.interval_ns = (uint64_t)(ms * 1e6);
    tl_g.start_ns = tl_now_ns();
    tl_g.stop_requested = 0;
    tl_sample_unlocked();
    /* Signals go to the main thread, not the sampler: block them here so
     * the new thread inherits an all-blocked mask (Ctrl-C stays Python's). */
    sigset_t all, old;
    tl_g.thread_ready = 0;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int err = pthread_create(&tl_g.thread, NULL, tl_thread_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    /* Return only once the new thread runs our code.  Until then it is in
     * the thread library's (or a sanitizer's) start-up, which may hold
     * allocator locks that fork() does not take: a program forking right
     * after start would leave its child with such a lock held forever
     * (seen under GCC 12's ASan: the child's first thread hung in calloc).
     * Once it runs it allocates nothing, and samples only under tl_g.mutex,
     * which the fork handlers hold across fork().  The wait releases the
     * mutex; the GIL is kept, as the thread never takes it. */
    while (!tl_g.thread_ready) {
        pthread_cond_wait(&tl_g.cond, &tl_g.mutex);
    }
    tl_g.running = 1;
    result = 0;

done:
    pthread_mutex_unlock(&tl_g.mutex);
    return result;
}

int
trace_timeline_stop(double *interval_ms, unsigned char **samples, size_t *nbytes,
                    unsigned char **native)
{
    int result = -1;
    unsigned char *buf = NULL;
    *interval_ms = 0.0;
    *samples = NULL;
    *nbytes = 0;
    if (native != NULL) {
        *native = NULL;
    }
    pthread_mutex_lock(&tl_g.mutex);
    if (!tl_g.running || tl_g.stopping) {
        /* Joining a thread twice is undefined behaviour (in practice a hang):
         * only the first of concurrent stops joins. */
        pthread_mutex_unlock(&tl_g.mutex);
        return 0;
    }
    tl_g.stopping = 1;
    tl_sample_unlocked();
    tl_g.stop_requested = 1;
    pthread_cond_signal(&tl_g.cond);
    pthread_mutex_unlock(&tl_g.mutex);

    /* The sampler never takes the GIL, but release it anyway: joining
     * must not block other Python threads. */
    PyThreadState *ts = PyEval_SaveThread();
    pthread_join(tl_g.thread, NULL);
    PyEval_RestoreThread(ts);

    pthread_mutex_lock(&tl_g.mutex);
    buf = malloc((size_t)tl_g.n * 32 + 1);
    if (buf == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (uint32_t i = 0; i < tl_g.n; i++) {
        uint64_t v[4] = {tl_g.samples[i].t_ns, tl_g.samples[i].traced, tl_g.samples[i].peak,
                         tl_g.samples[i].rss};
        for (int k = 0; k < 4; k++) {
            for (int b = 0; b < 8; b++) {
                buf[(size_t)i * 32 + (size_t)k * 8 + (size_t)b] = (unsigned char)(v[k] >> (8 * b));
            }
        }
    }
    if (native != NULL) {
        unsigned char *nb = malloc((size_t)tl_g.n * 8 + 1);
        if (nb == NULL) {
            free(buf);
            buf = NULL;
            PyErr_NoMemory();
            goto done;
        }
        for (uint32_t i = 0; i < tl_g.n; i++) {
            for (int b = 0; b < 8; b++) {
                nb[(size_t)i * 8 + (size_t)b] = (unsigned char)(tl_g.samples[i].native >> (8 * b));
            }
        }
        *native = nb;
    }
    *interval_ms = (double)tl_g.interval_ns / 1e6;
    *samples = buf;
    *nbytes = (size_t)tl_g.n * 32;
    result = 1;

done:
    /* The thread is gone whatever happened to the result. */
    free(tl_g.samples);
    tl_g.samples = NULL;
    tl_g.n = 0;
    tl_g.running = 0;
    tl_g.stopping = 0;
    pthread_mutex_unlock(&tl_g.mutex);
    return result;
}

/* fork() while the sampler holds tl_g.mutex would leave the child with a
 * lock nobody releases; and the child has no sampler thread, so it must
 * not try to join one.  Nor wait on the parent's condition variable: it
 * was copied with the sampler registered as its waiter (glibc keeps
 * waiter counts inside it), and the child's first signal waited forever
 * for that waiter to leave; the child gets a fresh one. */
static void
tl_atfork_prepare(void)
{
    pthread_mutex_lock(&tl_g.mutex);
}

static void
tl_atfork_parent(void)
{
    pthread_mutex_unlock(&tl_g.mutex);
}

static void
tl_atfork_child(void)
{
    tl_g.running = 0;
    tl_g.stopping = 0;
    tl_g.stop_requested = 0;
    if (tl_g.cond_ready) {
        tl_cond_init();
    }
    pthread_mutex_unlock(&tl_g.mutex);
}

int
trace_timeline_init(void)
{
    static int atfork_done = 0;
    if (!atfork_done) {
        if (pthread_atfork(tl_atfork_prepare, tl_atfork_parent, tl_atfork_child) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
            return -1;
        }
        atfork_done = 1;
    }
    return 0;
}
