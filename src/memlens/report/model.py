"""The data model behind every report: what a capture file holds.

A :class:`Capture` is built by :func:`load` from a capture file, or by hand
(the renderers are tested that way).  Three *views* select per-stack
numbers:

* ``peak``: blocks live at the traced-memory high-water mark.
* ``leaks``: blocks still live when the program ended (leak candidates).
* ``allocated``: everything the stack allocated during the run, freed or
  not (a realloc() counts as an allocation of its new size).  Exact for
  captures that carry the tracer's cumulative per-stack totals (format 1.1,
  ``alloc_size`` set); captures written before memlens kept them have only
  the *lower bound* ``max(peak, leaks)`` per stack: memory that was
  allocated and freed again between the peak and the exit is not in it.
  ``Capture.allocated_exact`` says which one a capture has.

Frames are :class:`memlens.Frame`; samples and class rows are memlens
result types (frozen, slotted dataclasses); :class:`StackStat` and the
:class:`Capture` that holds everything are plain dataclasses, filled in by
:func:`load` or by hand.
"""

import math
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from memlens import capture
from memlens._util import result
from memlens.capture import CaptureError, CaptureReadError
from memlens.tracer import Frame

__all__ = ["VIEWS", "Frame", "StackStat", "Sample", "ClassRow", "Capture", "load", "CaptureError",
           "CaptureReadError"]

VIEWS = ("peak", "leaks", "allocated")


@dataclass
class StackStat:
    """One stack (innermost frame first) and its numbers.

    A plain (mutable) dataclass, unlike the other rows: :func:`load` merges
    the engine's stacks into it, and hand-built captures adjust it.
    """

    frames: Tuple[Frame, ...]
    size: int            # bytes live at exit
    count: int           # blocks live at exit
    peak_size: int       # bytes live at the peak
    peak_count: int
    alloc_size: Optional[int] = None   # bytes allocated in total, if recorded
    alloc_count: Optional[int] = None

    def value(self, view):
        """(bytes, blocks) of this stack in `view`."""
        if view == "peak":
            return self.peak_size, self.peak_count
        if view == "leaks":
            return self.size, self.count
        if view == "allocated":
            if self.alloc_size is not None:
                return self.alloc_size, self.alloc_count or 0
            return max(self.size, self.peak_size), max(self.count, self.peak_count)
        raise ValueError(f"unknown view {view!r}: expected one of {', '.join(VIEWS)}")


@result
class Sample:
    t: float        # seconds since the start of the run
    traced: int     # traced bytes
    peak: int       # traced high-water mark so far
    rss: int        # resident set size, bytes (0 if unknown)
    native: Optional[int] = None  # the native blocks' share of traced (None: not recorded)


@result
class ClassRow:
    name: str
    count: int
    bytes: int


@dataclass
class Capture:
    stacks: List[StackStat]
    total: int = 0                  # traced bytes live at exit
    peak: int = 0                   # traced high-water mark
    sample_bytes: int = 0           # 0: exact tracing
    max_frames: int = 0
    incomplete: bool = False
    meta: Dict[str, str] = field(default_factory=dict)
    interval_ms: float = 0.0        # timeline interval at the end of the run
    timeline: List[Sample] = field(default_factory=list)
    classes: Optional[List[ClassRow]] = None
    # Parsed from `meta` once, here, so that no renderer converts a string
    # (None when the metadata has no such entry).
    duration_s: Optional[float] = field(default=None, init=False)
    start_time_ns: Optional[int] = field(default=None, init=False)
    # The native blocks' share of `peak` and of `total` (None: not recorded,
    # a capture of native=False or of a memlens before native tracing).
    native_at_peak: Optional[int] = field(default=None, init=False)
    native_at_exit: Optional[int] = field(default=None, init=False)
    # The advisor's suggestions of `memlens run --advise` (the run metadata's
    # "advice" entry, JSON): a list of dicts (ADVICE_FIELDS), or None.
    advice: Optional[List[dict]] = field(default=None, init=False)

    def __post_init__(self):
        self.duration_s, self.start_time_ns = _meta_numbers(self.meta)
        self.advice = _meta_advice(self.meta)
        if self.meta.get("native") == "1":
            self.native_at_peak = _meta_bytes(self.meta, "native_peak_bytes", self.peak)
            self.native_at_exit = _meta_bytes(self.meta, "native_exit_bytes", self.total)

    @property
    def allocated_exact(self):
        return bool(self.stacks) and all(s.alloc_size is not None for s in self.stacks)

    @property
    def peak_time(self):
        """Seconds from the start at which the peak was first reached (to the
        sampling interval), or None without a timeline."""
        best = None
        for s in self.timeline:
            if best is None or s.peak > best.peak:
                best = s
        return None if best is None else best.t

    def _values(self, view):
        """[(StackStat, bytes, blocks)] with bytes or blocks > 0, in the
        order of `stacks`."""
        # StackStat.value, inlined for the two plain views (a method call
        # per stack was most of a large summary's time)
        if view == "peak":
            return [(s, s.peak_size, s.peak_count) for s in self.stacks if s.peak_size > 0 or s.peak_count > 0]
        if view == "leaks":
            return [(s, s.size, s.count) for s in self.stacks if s.size > 0 or s.count > 0]
        rows = []
        for s in self.stacks:
            size, count = s.value(view)
            if size > 0 or count > 0:
                rows.append((s, size, count))
        return rows

    def view_counts(self, view):
        """(stacks, blocks) of `view`: how many rows view(view) has and
        their blocks, without sorting them."""
        rows = self._values(view)
        return len(rows), sum(r[2] for r in rows)

    def view(self, view):
        """[(StackStat, bytes, blocks)] with bytes > 0, biggest first."""
        rows = self._values(view)
        # Ties go by the stacks' frame labels (the same order in every view:
        # computed once per capture, _tie_positions).
        pos = self._tie_positions()
        rows.sort(key=lambda r: (-r[1], -r[2], pos[id(r[0])]))
        return rows

    def _tie_positions(self):
        """{id(stack): its rank by frame labels} for the stacks now in
        `stacks` (recomputed when the list changes).  Labels are compared
        through the rank of each distinct label: one label per distinct
        frame, however many stacks (and copies in a stack) repeat it."""
        ids = tuple(map(id, self.stacks))
        cached = self.__dict__.get("_ties")
        if cached is not None and cached[0] == ids:
            return cached[1]
        ranks = _label_ranks(self.stacks)
        order = sorted(self.stacks, key=lambda s: tuple(map(ranks.__getitem__, map(id, s.frames))))
        pos = {id(s): i for i, s in enumerate(order)}
        self.__dict__["_ties"] = (ids, pos)
        return pos

    def view_total(self, view):
        return sum(s.value(view)[0] for s in self.stacks)

    def lines(self, view):
        """Bytes and blocks per innermost line (file, line, function),
        biggest first: the "top lines" table."""
        acc = {}
        for s, size, count in self._values(view):
            f = s.frames[0] if s.frames else Frame("<unknown>", 0, "")
            # A folded import frame (report/fold.py) is a line of its own.
            key = (f.filename, f.lineno) if type(f) is Frame else f
            a = acc.setdefault(key, [f, 0, 0])
            a[1] += size
            a[2] += count
        rows = sorted(acc.values(), key=lambda a: (-a[1], -a[2], a[0].filename, a[0].lineno))
        return [tuple(r) for r in rows]


def _label_ranks(stacks):
    """{id(frame): rank of its label among the distinct labels} of the
    frames of `stacks`: equal labels, equal ranks.  Keyed by identity, which
    costs no Python-level Frame.__hash__ per occurrence (most of a large
    report's time) and gives equal frames equal ranks all the same."""
    distinct = {id(f): f for s in stacks for f in s.frames}
    labels = {i: f.label() for i, f in distinct.items()}
    rank = {label: i for i, label in enumerate(sorted(set(labels.values())))}
    return {i: rank[label] for i, label in labels.items()}


def _meta_bytes(meta, key, most):
    """A byte count of the run metadata, at most `most` (None if absent);
    ValueError naming the entry when it is not one."""
    text = meta.get(key)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= most):
        raise ValueError(f"run metadata {key} is not a byte count up to {most}: {text[:40]!r}")
    return int(text)


# The fields of one advice in a capture, and the JSON types each may have.
ADVICE_FIELDS = {"kind": (str,), "target": (str,), "saving": (int,), "count": (int,),
                 "text": (str,), "patch": (str, type(None)), "location": (str, type(None)),
                 "blockers": (list,), "diff": (str, type(None))}


def _meta_advice(meta):
    """The run metadata's "advice" entry as a list of dicts, None without
    one; ValueError when it is not what `memlens run --advise` writes."""
    text = meta.get("advice")
    if text is None:
        return None
    # Imported here, not with the module: `memlens run` imports this module
    # before the program runs, and the program's own `import json` must
    # still be the program's (the traced run's figures depend on it).
    import json

    try:
        items = json.loads(text)
    except ValueError:
        items = None
    ok = isinstance(items, list) and all(
        isinstance(a, dict) and set(a) == set(ADVICE_FIELDS)
        and all(isinstance(a[k], t) and not isinstance(a[k], bool) for k, t in ADVICE_FIELDS.items())
        and all(isinstance(b, str) for b in a["blockers"]) for a in items)
    if not ok:
        raise ValueError("run metadata advice is not a list of advice")
    return items


def _meta_numbers(meta):
    """(duration_s, start_time_ns) of the run metadata, None where absent;
    ValueError naming the entry when one is not a number in range (pprof
    stores both as int64 nanoseconds)."""
    duration = start = None
    text = meta.get("duration_s")
    if text is not None:
        try:
            duration = float(text)
        except ValueError:
            duration = math.nan
        if not 0 <= duration * 1e9 < 2**63:  # also false for nan
            raise ValueError(f"run metadata duration_s is not a duration in seconds: {text[:40]!r}")
    text = meta.get("start_time_ns")
    if text is not None:
        # ASCII digits only: int() would also take signs, spaces and "_".
        if not (text.isascii() and text.isdigit() and len(text) <= 19 and int(text) < 2**63):
            raise ValueError(f"run metadata start_time_ns is not a time in nanoseconds: {text[:40]!r}")
        start = int(text)
    return duration, start


def _strip_runner(frames, runner_files):
    # Every stack of a run ends in the frames of `memlens run` (and of
    # whatever started it: the console script, runpy); the program never
    # calls back into the runner, so everything from the innermost runner
    # frame outwards is not the program's.  Allocations the runner makes
    # itself (compiling the program) keep that one frame.  `frames` are the
    # engine's (filename, lineno, function) tuples.
    if runner_files:
        for i, f in enumerate(frames):
            if f[0] in runner_files:
                return frames[:max(i, 1)]
    return frames


def load(path):
    """Read a capture file (written by ``memlens run`` or
    ``Snapshot.dump``) into a :class:`Capture`; :class:`CaptureError` with a
    one-line message when it is not a valid capture, its subclass
    :class:`CaptureReadError` when it cannot be read or is not a regular
    file."""
    raw = capture.read(path)
    table, meta, interval_ms, tl, classes = raw.table, raw.meta, raw.interval_ms, raw.timeline, raw.classes
    runner = set(filter(None, meta.get("runner_files", "").split("\n")))
    # The tracer tells stacks apart by instruction offset; reports name
    # lines, so stacks with the same (file, line, function) frames merge.
    # They merge by the engine's (file, line, function) tuples, hashed in
    # C (a Frame's hash is a Python call: 1.5M of them for a 22k-stack
    # capture), and one Frame is made per distinct frame, only for the
    # stacks that remain.
    frame_of = {}
    merged = {}
    for row in table.stacks():
        frames, size, count, psize, pcount = row[:5]
        # Rows of 7 carry cumulative (allocated in total) bytes and blocks;
        # captures written before the engine recorded them have rows of 5.
        asize, acount = (row[5], row[6]) if len(row) >= 7 else (None, None)
        key = _strip_runner(frames, runner)
        st = merged.get(key)
        if st is None:
            fr = []
            for f in key:
                frame = frame_of.get(f)
                if frame is None:
                    frame = frame_of[f] = Frame(*f)
                fr.append(frame)
            merged[key] = StackStat(tuple(fr), size, count, psize, pcount, asize, acount)
        else:
            st.size += size
            st.count += count
            st.peak_size += psize
            st.peak_count += pcount
            if asize is not None and st.alloc_size is not None:
                st.alloc_size += asize
                st.alloc_count += acount
    stacks = list(merged.values())
    timeline = [Sample(t / 1e9, cur, pk, rss) for t, cur, pk, rss in struct.iter_unpack("<4Q", tl)]
    if raw.native:  # as many as the samples: the engine checked
        timeline = [Sample(s.t, s.traced, s.peak, s.rss, n)
                    for s, (n,) in zip(timeline, struct.iter_unpack("<Q", raw.native))]
    try:
        return Capture(
            stacks=stacks,
            total=table.total,
            peak=table.peak,
            sample_bytes=table.sample_bytes,
            max_frames=table.max_frames,
            incomplete=bool(table.incomplete),
            meta=dict(meta),
            interval_ms=interval_ms,
            timeline=timeline,
            classes=None if classes is None else [ClassRow(*c) for c in classes],
        )
    except ValueError as e:  # the run metadata (Capture.__post_init__)
        raise CaptureError(f"{path}: not a valid memlens capture file ({e})") from None

