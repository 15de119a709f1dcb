/* cap_format.h: memlens' binary capture format, writer and validated reader.
 *
 * Layout (all integers little-endian):
 *   magic    8 bytes  "\x89MLNSCAP"  (high first byte: catches text-mode
 *                                      and 7-bit mangling)
 *   version  u16 major, u16 minor     (a reader accepts the majors it
 *                                      knows, 1 and 2, and any minor;
 *                                      unknown sections skipped)
 *   sections: u32 tag, u32 flags (1.x: reserved, 0; 2.0+: 0 or
 *             CAP_SECT_DEFLATED, see "Deflated sections"), u64 length,
 *             `length` bytes
 *   the last section is CAP_TAG_END, whose payload is the FNV-1a 64-bit
 *   hash of every byte before it: a truncated or corrupted file is
 *   detected before any of it is trusted.
 * A snapshot file holds META, STRS, FRMS and STKS sections, and since
 * version 1.1 ALOC (cap_format.c says what each holds).  The section framing,
 * the byte buffers and cap_file below are meant for other record kinds too
 * (the `memlens run` capture, cap_run.h).
 *
 * Strings (file and function names, run metadata, class names) are u32
 * length + bytes: the UTF-8 of the str, except for lone surrogates, which
 * UTF-8 cannot encode.  The names memlens stores are mostly paths and argv,
 * which Python decodes with surrogateescape (os.fsdecode): a byte that is not
 * UTF-8 becomes U+DC80..U+DCFF.  Those are written as the byte they stand for
 * and read back with surrogateescape, so such a name round-trips exactly (a
 * file named b"caf\xe9.py" is stored as those bytes, and reads back as
 * 'caf\udce9.py').  Any other lone surrogate (U+D800..U+DC7F, U+DD00..
 * U+DFFF) stands for no bytes: Python code made it (compile() with such a
 * file name, code.replace()); it is written as the six ASCII characters of
 * its escape, "\ud800", the text the reports print for it
 * (report/names.py), and reads back as that text: lossy only for names no
 * file system or command line can produce, and never a failed write.  So
 * a string's bytes need not be UTF-8; a reader decodes any bytes.  (A reader
 * from before this rule refuses such a string in one line: "string is not
 * UTF-8".)
 *
 * Deflated sections (2.0+, issue 19): a section whose flags (the u32 after
 * its tag) say CAP_SECT_DEFLATED holds u64 n, then a zlib stream of those n
 * bytes.  The writer deflates every section of CAP_DEFLATE_MIN bytes or
 * more that shrinks, through CPython's zlib module (no link dependency;
 * without zlib it writes every section as it is, still a valid 2.0 file).
 * The END checksum covers the bytes as stored, so corruption is caught
 * before anything is inflated.  A reader refuses, in one line (ValueError
 * "not a valid memlens capture file (...)"), a declared n above
 * CAP_DEFLATE_MAX_RATIO times the stream's size (no deflate stream expands
 * more: a zip bomb), a stream that is not valid zlib, and one that inflates
 * to more or fewer than n bytes or leaves bytes over; it inflates with
 * max_length = n, so it never holds more than n bytes of a section, and n
 * is bounded by what the file's bytes can expand to.  A 1.x reader
 * refuses a 2.0 file as a version it does not support.
 *
 * Reading (cap_file_open) trusts nothing about the path it is given, since
 * a capture is a file someone handed us.  It refuses, in one line:
 *   - anything but a regular file: OSError "not a regular file (a FIFO)"
 *     (a directory: IsADirectoryError), checked with stat() before the open
 *     and fstat() after it; /dev/zero would never end, a FIFO would block
 *     the open and every read, and opening a device can act on it;
 *   - a header that is not ours (magic, a major version other than 1 or
 *     2), from the first
 *     read (at most 64 KiB), before the rest of the file is read;
 *   - a section whose length goes past the end of the file (fstat's size),
 *     before any byte of it is allocated or read.
 * So a reader holds at most what the file has and its sections declare
 * (plus one read-ahead), never the whole of a big file that is not a
 * capture.  Then framing and checksum are checked over the bytes read, and
 * each section parser allocates only what its bytes can hold: a count of n
 * entries is refused unless the section has at least n times the smallest
 * entry's size.
 */
#ifndef MEMLENS_CAP_FORMAT_H
#define MEMLENS_CAP_FORMAT_H

#include "core.h" /* Python.h and the 3.9 shims */
#include <stddef.h>
#include <stdint.h>

#define CAP_MAGIC "\x89MLNSCAP"
/* Major 2 (issue 19) stores big sections deflated (CAP_SECT_DEFLATED): a
 * 1.x reader cannot read them, so it must refuse the file as a version it
 * does not know rather than call it corrupt ("bad section header").  This
 * reader reads every 1.x file too (CAP_VERSION_MAJOR_OLDEST). */
#define CAP_VERSION_MAJOR 2
#define CAP_VERSION_MAJOR_OLDEST 1
/* 1.1 added the ALOC section (cumulative per-stack totals); a 1.0 file has
 * none, and a 1.0 reader skips it.  2.0: deflated sections. */
#define CAP_VERSION_MINOR 0

/* A section header's second u32 (reserved, 0, in 1.x): its flags (2.0+).
 * CAP_SECT_DEFLATED: the payload is u64 length of the section's bytes, then
 * those bytes as one zlib stream.  Any other bit is refused. */
#define CAP_SECT_DEFLATED 1u
/* The writer deflates sections at least this long (smaller ones gain too
 * little for zlib's 11 bytes of framing). */
#define CAP_DEFLATE_MIN ((uint64_t)256)
/* Deflate cannot expand data more than 1032-fold: a declared length beyond
 * that many times the stored stream is a lie (a zip bomb), refused before
 * anything is inflated. */
#define CAP_DEFLATE_MAX_RATIO ((uint64_t)1032)

#define CAP_TAG(a, b, c, d) \
    ((uint32_t)(a) | ((uint32_t)(b) << 8) | ((uint32_t)(c) << 16) | ((uint32_t)(d) << 24))
#define CAP_TAG_META CAP_TAG('M', 'E', 'T', 'A')
#define CAP_TAG_STRS CAP_TAG('S', 'T', 'R', 'S')
#define CAP_TAG_FRMS CAP_TAG('F', 'R', 'M', 'S')
#define CAP_TAG_STKS CAP_TAG('S', 'T', 'K', 'S')
#define CAP_TAG_ALOC CAP_TAG('A', 'L', 'O', 'C')
#define CAP_TAG_END CAP_TAG('E', 'N', 'D', ' ')

/* Growable output buffer (PyMem; sets MemoryError on failure). */
typedef struct {
    unsigned char *data;
    size_t len;
    size_t cap;
    size_t section_start; /* offset of the open section's header */
} cap_writer;

int cap_writer_init(cap_writer *w);
void cap_writer_free(cap_writer *w);
int cap_put(cap_writer *w, const void *p, size_t n);
int cap_put_u32(cap_writer *w, uint32_t v);
int cap_put_u64(cap_writer *w, uint64_t v);
int cap_begin_section(cap_writer *w, uint32_t tag);
void cap_end_section(cap_writer *w);
/* Append the END section and write the buffer to `path` (OSError). */
int cap_finish_to_file(cap_writer *w, const char *path);

/* Append a str as u32 length + its bytes, as the format comment above says
 * (TypeError for a non-str, ValueError past 4 GiB). */
int cap_put_str(cap_writer *w, PyObject *s);
/* Append the snapshot sections (META, STRS, FRMS, STKS, ALOC) of a
 * TraceTable (trace_snapshot.h) to an initialised writer; -1 with an
 * exception.  A run capture (cap_run.h) writes its own sections after them. */
int cap_put_table(cap_writer *w, void *table);
/* Write a TraceTable to `path`; -1 with an exception. */
int cap_write_table(const char *path, void *table);

/* Bounds-checked input cursor.  Every get returns -1, with no exception
 * set, once the input is exhausted: the caller knows which field it was
 * reading and raises cap_corrupt() with that. */
typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} cap_reader;

int cap_get_u32(cap_reader *r, uint32_t *v);
int cap_get_u64(cap_reader *r, uint64_t *v);
int cap_get_bytes(cap_reader *r, size_t n, const unsigned char **out);
/* A str stored by cap_put_str, decoded with surrogateescape (any bytes
 * decode); NULL with ValueError (cap_corrupt: `why`) when the input is
 * short, or MemoryError. */
PyObject *cap_get_str(cap_reader *r, const char *path, const char *why);

/* Raise "ValueError: <path>: not a valid memlens capture file (<why>)";
 * returns NULL. */
PyObject *cap_corrupt(const char *path, const char *why);

/* One section of a capture file: its tag and payload. */
typedef struct {
    uint32_t tag;
    uint32_t flags;               /* CAP_SECT_*; 0 once inflated */
    const unsigned char *payload; /* into cap_file.data or .inflated */
    uint64_t len;
} cap_section;

/* A capture file read into memory whose framing and checksum are checked:
 * its sections (END excluded) in file order.  Reading a file once and
 * recording where each section is lets the snapshot reader and the run
 * reader share one read and one walk. */
typedef struct {
    const char *path; /* for error messages; owned by the caller */
    unsigned char *data;
    size_t len;
    cap_section *sections;
    size_t nsections;
    /* The inflated payloads of deflated sections (a list of bytes, or NULL):
     * their cap_section.payload points into these. */
    PyObject *inflated;
} cap_file;

/* Read `path` (a regular file: see "Reading" above) and check magic, major
 * version, framing and the END checksum before any content is trusted; 0,
 * or -1 with OSError (also for a path that is not a regular file),
 * MemoryError or ValueError (cap_file_free() either way). */
int cap_file_open(cap_file *f, const char *path);
void cap_file_free(cap_file *f);
/* The last section tagged `tag`, or NULL (later minor versions may add
 * sections; a reader asks only for those it knows). */
const cap_section *cap_file_find(const cap_file *f, uint32_t tag);
/* The table (a new object of `type`, the module's TraceTable type) of an
 * opened capture; NULL with ValueError for bad or
 * missing snapshot sections. */
PyObject *cap_file_table(PyTypeObject *type, const cap_file *f);
/* Read a TraceTable from `path` (cap_file_open + cap_file_table). */
PyObject *cap_read_table(PyTypeObject *type, const char *path);

#endif /* MEMLENS_CAP_FORMAT_H */
