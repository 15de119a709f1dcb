/* cap_format.c: binary capture files (see cap_format.h).
 *
 * Snapshot sections:
 *   META: u64 total, u64 peak, u64 sample_bytes, u32 max_frames, u32 flags
 *   STRS: u32 n, then n x (u32 len, len bytes: UTF-8 with surrogateescape
 *         bytes, cap_format.h)
 *   FRMS: u32 n, then n x (u32 filename string, u32 function string, i32 line)
 *   STKS: u32 n, then n x (u32 nframes, u64 size, u64 count (1/65536 units),
 *         u64 peak_size, u64 peak_count, nframes x u32 frame index)
 *   ALOC (1.1+, optional): u32 n (= the STKS n), then n x (u64 alloc_size,
 *         u64 alloc_count (1/65536 units)): allocated since start(), by
 *         stack in STKS order.  A separate section rather than wider STKS
 *         rows, so that 1.0 readers still read 1.1 files (they skip it) and
 *         1.0 files are told apart by its absence.
 * Since 2.0 any of them (and any run section) may be stored deflated
 * (cap_format.h, "Deflated sections"): what is above is the inflated
 * payload, which is what the parsers below see. */
#include "capture/cap_format.h"
#include "tracer/trace_stack.h"
#include "tracer/trace_snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t
cap_fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ---- writer ------------------------------------------------------------ */

int
cap_writer_init(cap_writer *w)
{
    memset(w, 0, sizeof(*w));
    if (cap_put(w, CAP_MAGIC, 8) < 0) {
        return -1;
    }
    unsigned char ver[4] = {CAP_VERSION_MAJOR & 0xff, CAP_VERSION_MAJOR >> 8,
                            CAP_VERSION_MINOR & 0xff, CAP_VERSION_MINOR >> 8};
    return cap_put(w, ver, 4);
}

void
cap_writer_free(cap_writer *w)
{
    PyMem_Free(w->data);
    memset(w, 0, sizeof(*w));
}

int
cap_put(cap_writer *w, const void *p, size_t n)
{
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n) {
            cap *= 2;
        }
        unsigned char *d = PyMem_Realloc(w->data, cap);
        if (d == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        w->data = d;
        w->cap = cap;
    }
    memcpy(w->data + w->len, p, n);
    w->len += n;
    return 0;
}

int
cap_put_u32(cap_writer *w, uint32_t v)
{
    unsigned char b[4];
    for (int i = 0; i < 4; i++) {
        b[i] = (unsigned char)(v >> (8 * i));
    }
    return cap_put(w, b, 4);
}

int
cap_put_u64(cap_writer *w, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(v >> (8 * i));
    }
    return cap_put(w, b, 8);
}

/* Patch the u32 at `at` (a length written as a placeholder). */
static void
cap_patch_u32(cap_writer *w, size_t at, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        w->data[at + (size_t)i] = (unsigned char)(v >> (8 * i));
    }
}

/* cap_put_str for a str with lone surrogates, which UTF-8 cannot encode.
 * U+DC80..U+DCFF are what surrogateescape (os.fsdecode, sys.argv) makes of
 * bytes that are not UTF-8: they are written as those bytes, so the name
 * reads back exactly.  Any other lone surrogate comes from no bytes (Python
 * code made it: compile() with such a file name, code.replace()): it is
 * written as the six characters of its escape "\udXXX", as the reports
 * print it (report/names.py), rather than refused. */
static int
cap_put_str_escaped(cap_writer *w, PyObject *s)
{
    size_t at = w->len;
    if (cap_put_u32(w, 0) < 0) {
        return -1;
    }
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        unsigned char b[6];
        size_t len;
        if (c < 0x80) {
            b[0] = (unsigned char)c;
            len = 1;
        }
        else if (c < 0x800) {
            b[0] = (unsigned char)(0xC0 | (c >> 6));
            b[1] = (unsigned char)(0x80 | (c & 0x3F));
            len = 2;
        }
        else if (c >= 0xDC80 && c <= 0xDCFF) {
            b[0] = (unsigned char)(c - 0xDC00);
            len = 1;
        }
        else if (c >= 0xD800 && c <= 0xDFFF) {
            static const char hex[] = "0123456789abcdef";
            b[0] = '\\';
            b[1] = 'u';
            b[2] = (unsigned char)hex[(c >> 12) & 0xF];
            b[3] = (unsigned char)hex[(c >> 8) & 0xF];
            b[4] = (unsigned char)hex[(c >> 4) & 0xF];
            b[5] = (unsigned char)hex[c & 0xF];
            len = 6;
        }
        else if (c < 0x10000) {
            b[0] = (unsigned char)(0xE0 | (c >> 12));
            b[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
            b[2] = (unsigned char)(0x80 | (c & 0x3F));
            len = 3;
        }
        else {
            b[0] = (unsigned char)(0xF0 | (c >> 18));
            b[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
            b[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
            b[3] = (unsigned char)(0x80 | (c & 0x3F));
            len = 4;
        }
        if (cap_put(w, b, len) < 0) {
            return -1;
        }
    }
    size_t written = w->len - at - 4;
    /* The length is stored as a u32. */
    if (written > UINT32_MAX) {
        w->len = at;
        PyErr_SetString(PyExc_ValueError, "string too long for a capture");
        return -1;
    }
    cap_patch_u32(w, at, (uint32_t)written);
    return 0;
}

int
cap_put_str(cap_writer *w, PyObject *s)
{
    Py_ssize_t n;
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "expected str, not %.100s", Py_TYPE(s)->tp_name);
        return -1;
    }
    /* Nearly every name is plain text: its UTF-8 is cached in the str. */
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            return -1;
        }
        /* Lone surrogates (a file name or argument that was not UTF-8).
         * The failed call above readied a legacy (3.9-3.11) str. */
        PyErr_Clear();
        return cap_put_str_escaped(w, s);
    }
    /* The length is stored as a u32. */
    if ((size_t)n > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "string too long for a capture");
        return -1;
    }
    if (cap_put_u32(w, (uint32_t)n) < 0 || cap_put(w, u, (size_t)n) < 0) {
        return -1;
    }
    return 0;
}

int
cap_begin_section(cap_writer *w, uint32_t tag)
{
    w->section_start = w->len;
    if (cap_put_u32(w, tag) < 0 || cap_put_u32(w, 0) < 0 || cap_put_u64(w, 0) < 0) {
        return -1;
    }
    return 0;
}

void
cap_end_section(cap_writer *w)
{
    uint64_t n = (uint64_t)(w->len - w->section_start - 16);
    for (int i = 0; i < 8; i++) {
        w->data[w->section_start + 8 + (size_t)i] = (unsigned char)(n >> (8 * i));
    }
}

/* CPython's zlib module, imported for one read or write; NULL with an
 * exception when it cannot be.  A zlib this import brought into
 * sys.modules is taken out again: a capture written during the program
 * (a followed child's periodic write, Snapshot.dump) must not change what
 * the program finds imported (memlens run starts it with python's own
 * modules).  The module object lives on in the reference returned. */
static PyObject *
cap_import_zlib(void)
{
    PyObject *modules = PyImport_GetModuleDict(); /* borrowed */
    int had = PyDict_GetItemString(modules, "zlib") != NULL;
    PyObject *zlib = PyImport_ImportModule("zlib");
    if (zlib != NULL && !had && PyDict_DelItemString(modules, "zlib") < 0) {
        PyErr_Clear(); /* still imported, which is harmless */
    }
    return zlib;
}

/* Store every section of at least CAP_DEFLATE_MIN bytes deflated (zlib
 * level 6), through CPython's own zlib module: no link dependency.  The
 * frame indices and per-stack figures of a big table are highly repetitive:
 * a capture of 20,000 stacks goes from 4.13 MiB to 0.22 MiB, for about
 * 70 ms (lzma: 0.06 MiB smaller, but 1.4 s, too slow for the end of a run).
 * A section that does not shrink, or any when zlib cannot be imported, is
 * stored as it is: the file is still valid.  0, or -1 with an exception. */
static int
cap_deflate_sections(cap_writer *w)
{
    PyObject *zlib = NULL, *compress = NULL;
    cap_writer out;
    int rc = -1;
    memset(&out, 0, sizeof(out));
    zlib = cap_import_zlib();
    if (zlib == NULL) {
        /* A Python built without zlib: write uncompressed. */
        PyErr_Clear();
        rc = 0;
        goto done;
    }
    compress = PyObject_GetAttrString(zlib, "compress");
    if (compress == NULL || cap_put(&out, w->data, 12) < 0) {
        goto done;
    }
    size_t pos = 12;
    while (pos + 16 <= w->len) {
        cap_reader h = {w->data + pos, w->data + pos + 16};
        uint32_t tag = 0, flags = 0;
        uint64_t n = 0;
        /* Our own framing: the 16 bytes are there, the gets cannot fail. */
        (void)cap_get_u32(&h, &tag);
        (void)cap_get_u32(&h, &flags);
        (void)cap_get_u64(&h, &n);
        const unsigned char *payload = w->data + pos + 16;
        PyObject *z = NULL;
        if (n >= CAP_DEFLATE_MIN) {
            PyObject *view = PyMemoryView_FromMemory((char *)payload, (Py_ssize_t)n, PyBUF_READ);
            if (view == NULL) {
                goto done;
            }
            z = PyObject_CallFunction(compress, "Oi", view, 6);
            Py_DECREF(view);
            if (z == NULL) {
                goto done;
            }
            if (!PyBytes_Check(z) || (uint64_t)PyBytes_GET_SIZE(z) + 8 >= n) {
                Py_CLEAR(z); /* no gain: store it as it is */
            }
        }
        int err;
        if (z != NULL) {
            size_t zn = (size_t)PyBytes_GET_SIZE(z);
            err = cap_put_u32(&out, tag) < 0 || cap_put_u32(&out, CAP_SECT_DEFLATED) < 0
                  || cap_put_u64(&out, (uint64_t)zn + 8) < 0 || cap_put_u64(&out, n) < 0
                  || cap_put(&out, PyBytes_AS_STRING(z), zn) < 0;
            Py_DECREF(z);
        }
        else {
            err = cap_put(&out, w->data + pos, 16 + (size_t)n) < 0;
        }
        if (err) {
            goto done;
        }
        pos += 16 + (size_t)n;
    }
    /* Swap the deflated copy in. */
    PyMem_Free(w->data);
    w->data = out.data;
    w->len = out.len;
    w->cap = out.cap;
    out.data = NULL;
    rc = 0;

done:
    PyMem_Free(out.data);
    Py_XDECREF(compress);
    Py_XDECREF(zlib);
    return rc;
}

int
cap_finish_to_file(cap_writer *w, const char *path)
{
    /* The checksum covers the bytes as stored (deflated). */
    if (cap_deflate_sections(w) < 0) {
        return -1;
    }
    uint64_t h = cap_fnv1a(w->data, w->len);
    if (cap_begin_section(w, CAP_TAG_END) < 0 || cap_put_u64(w, h) < 0) {
        return -1;
    }
    cap_end_section(w);
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
        return -1;
    }
    size_t n = fwrite(w->data, 1, w->len, f);
    int err = (n != w->len) ? errno : 0;
    if (fclose(f) != 0 && err == 0) {
        err = errno ? errno : EIO;
    }
    if (n != w->len || err != 0) {
        errno = err ? err : EIO;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
        return -1;
    }
    return 0;
}

/* ---- reader ----------------------------------------------------------- */

int
cap_get_bytes(cap_reader *r, size_t n, const unsigned char **out)
{
    if ((size_t)(r->end - r->p) < n) {
        return -1;
    }
    *out = r->p;
    r->p += n;
    return 0;
}

int
cap_get_u32(cap_reader *r, uint32_t *v)
{
    const unsigned char *b;
    if (cap_get_bytes(r, 4, &b) < 0) {
        return -1;
    }
    *v = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
    return 0;
}

int
cap_get_u64(cap_reader *r, uint64_t *v)
{
    const unsigned char *b;
    if (cap_get_bytes(r, 8, &b) < 0) {
        return -1;
    }
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) {
        x = (x << 8) | b[i];
    }
    *v = x;
    return 0;
}

PyObject *
cap_corrupt(const char *path, const char *why)
{
    PyErr_Format(PyExc_ValueError, "%s: not a valid memlens capture file (%s)", path, why);
    return NULL;
}

PyObject *
cap_get_str(cap_reader *r, const char *path, const char *why)
{
    uint32_t n;
    const unsigned char *p;
    if (cap_get_u32(r, &n) < 0 || cap_get_bytes(r, n, &p) < 0) {
        return cap_corrupt(path, why);
    }
    /* Bytes that are not UTF-8 are a name's own (cap_put_str): they decode
     * to U+DC80..U+DCFF as os.fsdecode would, so any bytes decode. */
    PyObject *s = PyUnicode_DecodeUTF8((const char *)p, (Py_ssize_t)n, "surrogateescape");
    if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        /* Not reached (surrogateescape takes any byte); should a decoder
         * ever refuse, it is the file's fault: say so in the usual form. */
        PyErr_Clear();
        return cap_corrupt(path, "string is not UTF-8");
    }
    return s;
}

/* ---- snapshot tables ---------------------------------------------------- */

int
cap_put_table(cap_writer *w, void *table)
{
    snap_table *t = table;
    PyObject *strs = NULL;  /* str -> index */
    PyObject *order = NULL; /* strings by index */
    uint32_t *fidx = NULL;  /* per frame: string indices of filename, function */
    int rc = -1;

    strs = PyDict_New();
    order = PyList_New(0);
    if (strs == NULL || order == NULL) {
        goto done;
    }
    fidx = PyMem_Malloc(((size_t)t->nframes + 1) * 2 * sizeof(uint32_t));
    if (fidx == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (uint32_t i = 0; i < t->nframes; i++) {
        PyObject *pair[2] = {t->frames[i].filename, t->frames[i].name};
        for (int j = 0; j < 2; j++) {
            PyObject *found = PyDict_GetItemWithError(strs, pair[j]);
            if (found != NULL) {
                fidx[2 * i + (uint32_t)j] = (uint32_t)PyLong_AsUnsignedLong(found);
                continue;
            }
            PyObject *n = PyErr_Occurred() ? NULL : PyLong_FromSsize_t(PyList_GET_SIZE(order));
            if (n == NULL || PyDict_SetItem(strs, pair[j], n) < 0
                || PyList_Append(order, pair[j]) < 0) {
                Py_XDECREF(n);
                goto done;
            }
            Py_DECREF(n);
            fidx[2 * i + (uint32_t)j] = (uint32_t)(PyList_GET_SIZE(order) - 1);
        }
    }

    if (cap_begin_section(w, CAP_TAG_META) < 0 || cap_put_u64(w, t->total) < 0
        || cap_put_u64(w, t->peak) < 0 || cap_put_u64(w, t->sample_bytes) < 0
        || cap_put_u32(w, t->max_frames) < 0 || cap_put_u32(w, t->flags) < 0) {
        goto done;
    }
    cap_end_section(w);

    if (cap_begin_section(w, CAP_TAG_STRS) < 0
        || cap_put_u32(w, (uint32_t)PyList_GET_SIZE(order)) < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(order); i++) {
        if (cap_put_str(w, PyList_GET_ITEM(order, i)) < 0) {
            goto done;
        }
    }
    cap_end_section(w);

    if (cap_begin_section(w, CAP_TAG_FRMS) < 0 || cap_put_u32(w, t->nframes) < 0) {
        goto done;
    }
    for (uint32_t i = 0; i < t->nframes; i++) {
        if (cap_put_u32(w, fidx[2 * i]) < 0 || cap_put_u32(w, fidx[2 * i + 1]) < 0
            || cap_put_u32(w, (uint32_t)t->frames[i].lineno) < 0) {
            goto done;
        }
    }
    cap_end_section(w);

    if (cap_begin_section(w, CAP_TAG_STKS) < 0 || cap_put_u32(w, t->nstacks) < 0) {
        goto done;
    }
    for (uint32_t s = 0; s < t->nstacks; s++) {
        snap_stack *st = &t->stacks[s];
        if (cap_put_u32(w, st->nframes) < 0 || cap_put_u64(w, st->size) < 0
            || cap_put_u64(w, st->count) < 0 || cap_put_u64(w, st->peak_size) < 0
            || cap_put_u64(w, st->peak_count) < 0) {
            goto done;
        }
        for (uint32_t j = 0; j < st->nframes; j++) {
            if (cap_put_u32(w, t->frame_idx[st->first + j]) < 0) {
                goto done;
            }
        }
    }
    cap_end_section(w);

    if (t->has_alloc) {
        if (cap_begin_section(w, CAP_TAG_ALOC) < 0 || cap_put_u32(w, t->nstacks) < 0) {
            goto done;
        }
        for (uint32_t s = 0; s < t->nstacks; s++) {
            if (cap_put_u64(w, t->stacks[s].alloc_size) < 0
                || cap_put_u64(w, t->stacks[s].alloc_count) < 0) {
                goto done;
            }
        }
        cap_end_section(w);
    }
    rc = 0;

done:
    PyMem_Free(fidx);
    Py_XDECREF(strs);
    Py_XDECREF(order);
    return rc;
}

int
cap_write_table(const char *path, void *table)
{
    cap_writer w;
    int rc = -1;
    if (cap_writer_init(&w) < 0 || cap_put_table(&w, table) < 0) {
        goto done;
    }
    rc = cap_finish_to_file(&w, path);

done:
    cap_writer_free(&w);
    return rc;
}

/* ---- reading a file ----------------------------------------------------
 *
 * A capture path comes from the user and may name anything: a device
 * (/dev/zero never ends), a FIFO (open() blocks for a writer, read() for
 * data), a directory, a huge file that is not a capture.  So nothing is read
 * but a regular file; its header (magic, version) is checked on the first
 * read (at most one 64 KiB chunk), and the rest is read only as far as the
 * sections' lengths say, each length checked against the file's size before
 * its bytes are allocated: what a reader holds is never more than the file
 * has, nor than its sections declare plus one read-ahead (a chunk, or as
 * much again as was read). */

/* Raise OSError(errno, "not a regular file (a FIFO)", path). */
static void
cap_not_regular(const char *path, mode_t mode)
{
    const char *what = S_ISDIR(mode)    ? "not a regular file (a directory)"
                       : S_ISFIFO(mode) ? "not a regular file (a FIFO)"
                       : S_ISCHR(mode)  ? "not a regular file (a character device)"
                       : S_ISBLK(mode)  ? "not a regular file (a block device)"
                       : S_ISSOCK(mode) ? "not a regular file (a socket)"
                                        : "not a regular file";
    /* EISDIR for a directory, as open()+read() would say; EINVAL else. */
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "isN", S_ISDIR(mode) ? EISDIR : EINVAL,
                                          what, PyUnicode_DecodeFSDefault(path));
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

/* Open `path` for reading if it is a regular file; the descriptor, or -1
 * with OSError.  *size is its size as fstat() gives it. */
static int
cap_open_regular(const char *path, uint64_t *size)
{
    struct stat st;
    /* stat() first: a FIFO or a device is refused without opening it
     * (opening one can block, or act on the device). */
    if (stat(path, &st) != 0) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        cap_not_regular(path, st.st_mode);
        return -1;
    }
    /* The path may name something else by now: O_NONBLOCK so that a FIFO
     * swapped in does not block the open, and fstat() decides. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        cap_not_regular(path, st.st_mode);
        close(fd);
        return -1;
    }
    *size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
    if (*size > (uint64_t)PY_SSIZE_T_MAX) {
        *size = (uint64_t)PY_SSIZE_T_MAX;
    }
    return fd;
}

/* An open capture being read into cap_file.data. */
typedef struct {
    int fd;
    uint64_t size; /* fstat()'s: caps every allocation */
    size_t cap;    /* allocated bytes at cap_file.data */
    int eof;       /* read() said the file ended (it shrank, or /proc) */
} cap_input;

/* Read ahead at least this much once past the header, within the file's
 * size: a few reads for a whole ordinary capture. */
#define CAP_READ_CHUNK ((size_t)64 * 1024)

/* Make f->data hold at least `need` bytes of the file, or all of it; 0, or
 * -1 with OSError or MemoryError.  `need` is within in->size (the caller
 * checked) except for the 12-byte header, so the buffer never outgrows the
 * file; it is filled to its capacity, which is at most one chunk or a
 * doubling past what was needed. */
static int
cap_fill(cap_file *f, cap_input *in, size_t need)
{
    if (need > in->cap) {
        size_t cap = in->cap * 2 > CAP_READ_CHUNK ? in->cap * 2 : CAP_READ_CHUNK;
        if (cap > in->size) {
            cap = (size_t)in->size;
        }
        if (cap < need) {
            cap = need;
        }
        unsigned char *d = PyMem_Realloc(f->data, cap);
        if (d == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        f->data = d;
        in->cap = cap;
    }
    while (f->len < need && !in->eof) {
        ssize_t n = read(in->fd, f->data + f->len, in->cap - f->len);
        if (n < 0) {
            if (errno == EINTR) {
                /* Ctrl-C during a read from a slow file system. */
                if (PyErr_CheckSignals() < 0) {
                    return -1;
                }
                continue;
            }
            PyErr_SetFromErrnoWithFilename(PyExc_OSError, f->path);
            return -1;
        }
        if (n == 0) {
            in->eof = 1;
        }
        f->len += (size_t)n;
    }
    return 0;
}

/* Read what the sections of the capture on `in` declare into f->data, its
 * header first; 0, or -1 with an exception.  Only the lengths are looked
 * at: cap_file_check() then checks the framing and the checksum over the
 * bytes read.  *trailing: the file goes on past the END section. */
static int
cap_file_read(cap_file *f, cap_input *in, int *trailing)
{
    *trailing = 0;
    if (cap_fill(f, in, 12) < 0) {
        return -1;
    }
    if (f->len < 12 || memcmp(f->data, CAP_MAGIC, 8) != 0) {
        cap_corrupt(f->path, f->len < 12 ? "too short" : "bad magic header");
        return -1;
    }
    unsigned major = (unsigned)f->data[8] | ((unsigned)f->data[9] << 8);
    if (major < CAP_VERSION_MAJOR_OLDEST || major > CAP_VERSION_MAJOR) {
        PyErr_Format(PyExc_ValueError,
                     "%s: memlens capture format version %u is not supported "
                     "(this memlens reads version %d)",
                     f->path, major, CAP_VERSION_MAJOR);
        return -1;
    }
    uint64_t pos = 12;
    while (pos < in->size && !in->eof) {
        if (in->size - pos < 16) {
            /* A partial header: read it, cap_file_check() says truncated. */
            return cap_fill(f, in, (size_t)in->size);
        }
        if (cap_fill(f, in, (size_t)pos + 16) < 0) {
            return -1;
        }
        if (f->len < pos + 16) {
            return 0; /* the file shrank: truncated */
        }
        cap_reader h = {f->data + pos, f->data + pos + 16};
        uint32_t tag = 0, reserved = 0;
        uint64_t n = 0;
        /* The 16 bytes are there: the gets cannot fail. */
        if (cap_get_u32(&h, &tag) < 0 || cap_get_u32(&h, &reserved) < 0 || cap_get_u64(&h, &n) < 0
            || n > in->size - pos - 16) {
            cap_corrupt(f->path, "truncated: a section runs past the end of the file");
            return -1;
        }
        pos += 16 + n;
        if (cap_fill(f, in, (size_t)pos) < 0) {
            return -1;
        }
        if (tag == CAP_TAG_END) {
            *trailing = pos < in->size;
            break;
        }
    }
    return 0;
}

void
cap_file_free(cap_file *f)
{
    PyMem_Free(f->data);
    PyMem_Free(f->sections);
    Py_XDECREF(f->inflated);
    memset(f, 0, sizeof(*f));
}

/* The framing and checksum of the bytes in f->data (header checked), before
 * any content is trusted; fills f->sections.  0, or -1 with an exception. */
static int
cap_file_check(cap_file *f, int trailing)
{
    const char *path = f->path;
    const unsigned char *data = f->data;
    size_t room = 0; /* capacity of f->sections */
    cap_reader r = {data + 12, data + f->len};
    while (r.p < r.end) {
        const unsigned char *sec = r.p;
        uint32_t tag, reserved;
        uint64_t n;
        const unsigned char *payload;
        if (cap_get_u32(&r, &tag) < 0 || cap_get_u32(&r, &reserved) < 0 || cap_get_u64(&r, &n) < 0
            || n > (uint64_t)(r.end - r.p) || cap_get_bytes(&r, (size_t)n, &payload) < 0) {
            cap_corrupt(path, "truncated");
            return -1;
        }
        /* 1.x: reserved, 0; 2.0: flags, only CAP_SECT_DEFLATED known (and
         * never on END, which is checked as stored). */
        if (reserved != 0 && (data[8] < 2 || reserved != CAP_SECT_DEFLATED || tag == CAP_TAG_END)) {
            cap_corrupt(path, "bad section header");
            return -1;
        }
        if (tag == CAP_TAG_END) {
            cap_reader e = {payload, payload + n};
            uint64_t h;
            if (cap_get_u64(&e, &h) < 0 || h != cap_fnv1a(data, (size_t)(sec - data))) {
                cap_corrupt(path, "checksum mismatch");
                return -1;
            }
            if (n != 8 || r.p != r.end || trailing) {
                cap_corrupt(path, "data after the end marker");
                return -1;
            }
            return 0;
        }
        if (f->nsections == room) {
            room = room ? room * 2 : 16;
            cap_section *grown = PyMem_Realloc(f->sections, room * sizeof(cap_section));
            if (grown == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            f->sections = grown;
        }
        f->sections[f->nsections++] = (cap_section){tag, reserved, payload, n};
    }
    cap_corrupt(path, "truncated: no end marker");
    return -1;
}

/* Inflate the deflated section `sec` in place (its payload then points
 * into a bytes object held by f->inflated); 0, or -1 with ValueError
 * (cap_corrupt), MemoryError, or ValueError when zlib cannot be imported.
 * The checksum was checked: what is refused here is a file made to lie. */
static int
cap_inflate(cap_file *f, cap_section *sec, PyObject *zlib)
{
    PyObject *dobj = NULL, *view = NULL, *out = NULL;
    int rc = -1;
    cap_reader r = {sec->payload, sec->payload + sec->len};
    uint64_t n;
    if (cap_get_u64(&r, &n) < 0) {
        cap_corrupt(f->path, "short compressed section");
        goto done;
    }
    uint64_t stored = (uint64_t)(r.end - r.p);
    if (n / CAP_DEFLATE_MAX_RATIO > stored || n > (uint64_t)PY_SSIZE_T_MAX) {
        cap_corrupt(f->path, "compressed section declares more than it can hold");
        goto done;
    }
    dobj = PyObject_CallMethod(zlib, "decompressobj", NULL);
    view = PyMemoryView_FromMemory((char *)r.p, (Py_ssize_t)stored, PyBUF_READ);
    if (dobj == NULL || view == NULL) {
        goto done;
    }
    /* max_length n (0 would mean no limit): never more than declared. */
    out = n ? PyObject_CallMethod(dobj, "decompress", "On", view, (Py_ssize_t)n)
            : PyBytes_FromStringAndSize("", 0);
    if (out == NULL) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
            goto done;
        }
        /* zlib.error: not a zlib stream. */
        PyErr_Clear();
        cap_corrupt(f->path, "bad compressed section");
        goto done;
    }
    /* Exactly n bytes, the stream ended (eof: its checksum read too),
     * nothing left over.  No flush(): for a stream longer than declared it
     * would inflate the rest, past the bound. */
    PyObject *eof = PyObject_GetAttrString(dobj, "eof");
    PyObject *tail = PyObject_GetAttrString(dobj, "unconsumed_tail");
    PyObject *unused = PyObject_GetAttrString(dobj, "unused_data");
    int whole = eof != NULL && tail != NULL && unused != NULL && PyBytes_Check(out)
                && PyObject_IsTrue(eof) == 1 && PyObject_Length(tail) == 0
                && PyObject_Length(unused) == 0 && (uint64_t)PyBytes_GET_SIZE(out) == n;
    Py_XDECREF(eof);
    Py_XDECREF(tail);
    Py_XDECREF(unused);
    if (!whole) {
        PyErr_Clear();
        cap_corrupt(f->path, "compressed section length mismatch");
        goto done;
    }
    if (PyList_Append(f->inflated, out) < 0) {
        goto done;
    }
    sec->payload = (const unsigned char *)PyBytes_AS_STRING(out);
    sec->len = n;
    sec->flags = 0;
    rc = 0;

done:
    Py_XDECREF(out);
    Py_XDECREF(view);
    Py_XDECREF(dobj);
    return rc;
}

/* Inflate every deflated section of a checked file; 0, or -1 with an
 * exception. */
static int
cap_file_inflate(cap_file *f)
{
    PyObject *zlib = NULL;
    int rc = -1;
    for (size_t i = 0; i < f->nsections; i++) {
        if (!(f->sections[i].flags & CAP_SECT_DEFLATED)) {
            continue;
        }
        if (zlib == NULL) {
            zlib = cap_import_zlib();
            if (zlib == NULL) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError,
                             "%s: this memlens capture is compressed and this Python has no "
                             "zlib module",
                             f->path);
                goto done;
            }
            f->inflated = PyList_New(0);
            if (f->inflated == NULL) {
                goto done;
            }
        }
        if (cap_inflate(f, &f->sections[i], zlib) < 0) {
            goto done;
        }
    }
    rc = 0;

done:
    Py_XDECREF(zlib);
    return rc;
}

int
cap_file_open(cap_file *f, const char *path)
{
    cap_input in = {-1, 0, 0, 0};
    int trailing = 0;
    memset(f, 0, sizeof(*f));
    f->path = path;
    in.fd = cap_open_regular(path, &in.size);
    if (in.fd < 0) {
        goto error;
    }
    if (cap_file_read(f, &in, &trailing) < 0) {
        goto error;
    }
    close(in.fd);
    in.fd = -1;
    if (cap_file_check(f, trailing) < 0 || cap_file_inflate(f) < 0) {
        goto error;
    }
    return 0;

error:
    if (in.fd >= 0) {
        close(in.fd);
    }
    cap_file_free(f);
    return -1;
}

const cap_section *
cap_file_find(const cap_file *f, uint32_t tag)
{
    /* The last one wins, as a reader that overwrote on each would do. */
    for (size_t i = f->nsections; i > 0; i--) {
        if (f->sections[i - 1].tag == tag) {
            return &f->sections[i - 1];
        }
    }
    return NULL;
}

PyObject *
cap_file_table(PyTypeObject *type, const cap_file *f)
{
    const char *path = f->path;
    PyObject **strings = NULL;
    uint32_t nstrings = 0;
    snap_table *t = NULL;
    PyObject *result = NULL;

    const cap_section *meta = cap_file_find(f, CAP_TAG_META);
    const cap_section *strs = cap_file_find(f, CAP_TAG_STRS);
    const cap_section *frms = cap_file_find(f, CAP_TAG_FRMS);
    const cap_section *stks = cap_file_find(f, CAP_TAG_STKS);
    const cap_section *aloc = cap_file_find(f, CAP_TAG_ALOC); /* 1.1+ */
    if (meta == NULL || strs == NULL || frms == NULL || stks == NULL) {
        cap_corrupt(path, "not a snapshot: a section is missing");
        goto done;
    }

    /* Content: every count checked against the bytes present. */
    cap_reader m = {meta->payload, meta->payload + meta->len};
    uint64_t total, peak, sample_bytes;
    uint32_t max_frames, flags;
    if (cap_get_u64(&m, &total) < 0 || cap_get_u64(&m, &peak) < 0
        || cap_get_u64(&m, &sample_bytes) < 0 || cap_get_u32(&m, &max_frames) < 0
        || cap_get_u32(&m, &flags) < 0) {
        cap_corrupt(path, "short META section");
        goto done;
    }
    cap_reader rs = {strs->payload, strs->payload + strs->len};
    if (cap_get_u32(&rs, &nstrings) < 0 || (uint64_t)nstrings * 4 > strs->len) {
        nstrings = 0;
        cap_corrupt(path, "bad string table");
        goto done;
    }
    strings = PyMem_Calloc(nstrings ? nstrings : 1, sizeof(PyObject *));
    if (strings == NULL) {
        nstrings = 0;
        PyErr_NoMemory();
        goto done;
    }
    for (uint32_t i = 0; i < nstrings; i++) {
        strings[i] = cap_get_str(&rs, path, "bad string table");
        if (strings[i] == NULL) {
            goto done;
        }
    }
    cap_reader rf = {frms->payload, frms->payload + frms->len};
    uint32_t nframes;
    if (cap_get_u32(&rf, &nframes) < 0 || (uint64_t)nframes * 12 > frms->len - 4) {
        cap_corrupt(path, "bad frame table");
        goto done;
    }
    cap_reader rk = {stks->payload, stks->payload + stks->len};
    uint32_t nstacks;
    if (cap_get_u32(&rk, &nstacks) < 0 || (uint64_t)nstacks * 36 > stks->len - 4) {
        cap_corrupt(path, "bad stack table");
        goto done;
    }
    /* Frame indices: what is left after the fixed part of each stack. */
    uint64_t nidx = (stks->len - 4 - (uint64_t)nstacks * 36) / 4;
    t = snap_table_new(type, nframes, nstacks, nidx);
    if (t == NULL) {
        goto done;
    }
    t->total = total;
    t->peak = peak;
    t->sample_bytes = sample_bytes;
    t->max_frames = max_frames;
    t->flags = flags;
    for (uint32_t i = 0; i < nframes; i++) {
        uint32_t fn, nm, ln;
        if (cap_get_u32(&rf, &fn) < 0 || cap_get_u32(&rf, &nm) < 0 || cap_get_u32(&rf, &ln) < 0
            || fn >= nstrings || nm >= nstrings) {
            cap_corrupt(path, "bad frame table");
            goto done;
        }
        t->frames[i].filename = Py_NewRef(strings[fn]);
        t->frames[i].name = Py_NewRef(strings[nm]);
        t->frames[i].lineno = (int)(int32_t)ln;
    }
    uint64_t pos = 0;
    for (uint32_t s = 0; s < nstacks; s++) {
        snap_stack *st = &t->stacks[s];
        uint32_t nf;
        if (cap_get_u32(&rk, &nf) < 0 || cap_get_u64(&rk, &st->size) < 0
            || cap_get_u64(&rk, &st->count) < 0 || cap_get_u64(&rk, &st->peak_size) < 0
            || cap_get_u64(&rk, &st->peak_count) < 0 || nf > nidx - pos) {
            cap_corrupt(path, "bad stack table");
            goto done;
        }
        st->first = (uint32_t)pos;
        st->nframes = nf;
        for (uint32_t j = 0; j < nf; j++) {
            uint32_t fi;
            if (cap_get_u32(&rk, &fi) < 0 || fi >= nframes) {
                cap_corrupt(path, "bad frame index");
                goto done;
            }
            t->frame_idx[pos++] = fi;
        }
    }
    if (aloc != NULL) {
        cap_reader ra = {aloc->payload, aloc->payload + aloc->len};
        uint32_t na;
        if (cap_get_u32(&ra, &na) < 0 || na != nstacks || aloc->len - 4 != (uint64_t)na * 16) {
            cap_corrupt(path, "bad allocated-totals table");
            goto done;
        }
        for (uint32_t s = 0; s < nstacks; s++) {
            /* Sizes checked above: the gets cannot fail. */
            (void)cap_get_u64(&ra, &t->stacks[s].alloc_size);
            (void)cap_get_u64(&ra, &t->stacks[s].alloc_count);
        }
        t->has_alloc = 1;
    }
    result = (PyObject *)t;
    t = NULL;

done:
    for (uint32_t i = 0; strings != NULL && i < nstrings; i++) {
        Py_XDECREF(strings[i]);
    }
    PyMem_Free(strings);
    Py_XDECREF((PyObject *)t);
    return result;
}

PyObject *
cap_read_table(PyTypeObject *type, const char *path)
{
    cap_file f;
    if (cap_file_open(&f, path) < 0) {
        return NULL;
    }
    PyObject *t = cap_file_table(type, &f);
    cap_file_free(&f);
    return t;
}
