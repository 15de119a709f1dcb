"""pprof ``profile.proto``, gzip'd, written by hand (no protobuf needed).

Sample types, in this order: alloc_objects/count, alloc_space/bytes
(the "allocated" view), inuse_objects/count, inuse_space/bytes (what was
still allocated at exit), peak_objects/count, peak_space/bytes (what was
live at the traced peak); the default is inuse_space.  A capture without
cumulative totals gets a comment saying the alloc_* types are a lower bound.

As the memory profiles of Go and of other profilers read by pprof-based
tools (Pyroscope, ``go tool pprof``): ``period_type`` is space/bytes and
``period`` the sampling interval in bytes (1 when every block was traced);
one mapping, the interpreter, marked as having functions, file names and
line numbers, so that no tool tries to symbolize the addresses (there are
none: locations are source lines).  Samples carry no thread label: the
tracer's tables are per stack, not per thread.

Each distinct string is in the string table once and each distinct frame
is one location, which samples reference by id.  Strings are the names as
recorded, except that lone surrogates (bytes that were not UTF-8) are
escaped as the text formats show them (``\\xff``), so that the table is
valid UTF-8, as protobuf strings must be.
"""

import gzip

from memlens.report.names import utf8
from memlens.tracer import Frame

__all__ = ["render", "encode_profile"]

_UNKNOWN = (Frame("<unknown>", 0, "<unknown>"),)

# Field numbers of the Profile message (profile.proto).
_SAMPLE_TYPE = 1
_SAMPLE = 2
_MAPPING = 3
_LOCATION = 4
_FUNCTION = 5
_STRING_TABLE = 6
_TIME_NANOS = 9
_DURATION_NANOS = 10
_PERIOD_TYPE = 11
_PERIOD = 12
_COMMENT = 13
_DEFAULT_SAMPLE_TYPE = 14


def _varint(n):
    out = bytearray()
    n &= (1 << 64) - 1  # int64 values are two's complement
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_varint(num, value):
    return _varint(num << 3) + _varint(value)


def _field_bytes(num, data):
    return _varint((num << 3) | 2) + _varint(len(data)) + data


def _packed(num, values):
    return _field_bytes(num, b"".join(_varint(v) for v in values)) if values else b""


class _Strings:
    def __init__(self):
        self.index = {"": 0}
        self.order = [""]

    def __call__(self, s):
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.order)
            self.order.append(s)
        return i


def encode_profile(cap, pids=None):
    """The un-gzipped Profile message.  `pids`: [(pid, Capture)] to merge
    the processes of a run, each sample labelled ``pid`` (`cap` gives the
    duration and start time)."""
    strings = _Strings()
    parts = [(None, cap)] if pids is None else pids
    out = bytearray()
    for typ, unit in (("alloc_objects", "count"), ("alloc_space", "bytes"),
                      ("inuse_objects", "count"), ("inuse_space", "bytes"),
                      ("peak_objects", "count"), ("peak_space", "bytes")):
        out += _field_bytes(_SAMPLE_TYPE, _field_varint(1, strings(typ)) + _field_varint(2, strings(unit)))
    # Mapping 1, the interpreter: every location is in it.
    python = cap.meta.get("python")
    out += _field_bytes(_MAPPING, _field_varint(1, 1)
                        + _field_varint(5, strings(f"python{python}" if python else "python"))
                        + _field_varint(7, 1) + _field_varint(8, 1) + _field_varint(9, 1))
    strings("space")  # the period type's, written after the table
    functions = {}
    locations = {}
    body_fn = bytearray()
    body_loc = bytearray()
    frame_loc = {}  # Frame -> its location id, as a varint: once per distinct frame
    for pid, part in parts:
        label = b"" if pid is None else _field_bytes(3, _field_varint(1, strings("pid")) + _field_varint(3, pid))
        for s in part.stacks:
            asz, acnt = s.value("allocated")
            if not (asz or acnt or s.size or s.count or s.peak_size or s.peak_count):
                continue
            # (A bytearray: bytes.join would hold an 80-byte buffer per frame.)
            loc_ids = bytearray()
            # A block with no Python frame gets one "<unknown>" location, as
            # tracemalloc names it: Go's pprof drops a sample with none.
            for f in s.frames or _UNKNOWN:
                lid = frame_loc.get(f)
                if lid is None:
                    fid = functions.get((f.function, f.filename))
                    if fid is None:
                        fid = functions[(f.function, f.filename)] = len(functions) + 1
                        body_fn += _field_bytes(_FUNCTION, _field_varint(1, fid)
                                                + _field_varint(2, strings(f.function))
                                                + _field_varint(3, strings(f.function))
                                                + _field_varint(4, strings(f.filename)))
                    n = locations.get((fid, f.lineno))
                    if n is None:
                        n = locations[(fid, f.lineno)] = len(locations) + 1
                        line = _field_varint(1, fid) + _field_varint(2, f.lineno)
                        body_loc += _field_bytes(_LOCATION, _field_varint(1, n) + _field_varint(2, 1)
                                                 + _field_bytes(4, line))
                    lid = frame_loc[f] = _varint(n)
                loc_ids += lid
            sample = _field_bytes(1, bytes(loc_ids)) if loc_ids else b""
            sample += _packed(2, [acnt, asz, s.count, s.size, s.peak_count, s.peak_size]) + label
            out += _field_bytes(_SAMPLE, sample)
    out += body_loc
    out += body_fn
    # Profile.comment: a capture without cumulative totals has only the
    # lower bound in the alloc_* types; `go tool pprof -comments` shows this.
    comment = None if all(c.allocated_exact for _, c in parts) else strings(
        "alloc_objects and alloc_space are a lower bound: this capture (from an older memlens) has "
        "no cumulative totals, so per stack they are the larger of what was live at the peak and "
        "at exit")
    for s in strings.order:
        out += _field_bytes(_STRING_TABLE, utf8(s))
    if cap.duration_s is not None:
        out += _field_varint(_DURATION_NANOS, int(cap.duration_s * 1e9))
    if cap.start_time_ns is not None:
        out += _field_varint(_TIME_NANOS, cap.start_time_ns)
    out += _field_bytes(_PERIOD_TYPE, _field_varint(1, strings.index["space"])
                        + _field_varint(2, strings.index["bytes"]))
    # The mean bytes between two sampled blocks; 1: every block is in it.
    out += _field_varint(_PERIOD, max((c.sample_bytes for _, c in parts), default=0) or 1)
    if comment is not None:
        out += _field_varint(_COMMENT, comment)
    out += _field_varint(_DEFAULT_SAMPLE_TYPE, strings.index["inuse_space"])
    return bytes(out)


def render(cap, pids=None):
    # mtime=0: the same capture gives the same bytes.
    return gzip.compress(encode_profile(cap, pids), mtime=0)
