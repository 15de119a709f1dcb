"""Allocation tracer: every allocation attributed to the Python stack that
made it, exact or sampled.

The API follows :mod:`tracemalloc`::

    memlens.start(frames=16)           # or sample_bytes=512 * 1024
    ...
    snap = memlens.take_snapshot()
    for stat in snap.statistics("lineno")[:10]:
        print(stat)
    memlens.stop()

The engine (PEP 445 hooks, live-block map, interned stacks, per-stack
totals, the picture at the high-water mark, grouping, the capture file) is
C, in ``memlens._core``; this module only wraps its results.  Besides what
is live (``statistics``) and what was live at the peak (``peak_statistics``),
a snapshot has what each stack allocated in total since start(), freed or
not (``allocated_statistics``).  ``Snapshot.filter_traces()`` with
:class:`Filter` and :class:`DomainFilter` narrows a snapshot as
tracemalloc's does.
"""

import atexit
import os
import sys

from memlens import _core
from memlens._util import check_int, format_bytes, result

__all__ = [
    "start",
    "stop",
    "is_tracing",
    "traced_memory",
    "reset_peak",
    "tracer_memory",
    "native_status",
    "native_memory",
    "take_snapshot",
    "trace",
    "Snapshot",
    "Statistic",
    "StatisticDiff",
    "Frame",
    "Traceback",
    "Filter",
    "DomainFilter",
]

_KEY_TYPES = ("lineno", "filename", "function", "traceback")
# Frames per stack the engine records at most (trace_start checks it too).
MAX_FRAMES = 512


def start(frames=16, sample_bytes=0, native=True, children=False):
    """Start tracing allocations, recording up to `frames` frames per stack.

    ``children=True`` also traces every Python process this one starts from
    now on (forked, multiprocessing workers, subprocesses of a Python that
    can load this memlens), as ``memlens run`` does: each writes its own
    capture into the directory ``memlens-<pid>.mlcap.d`` (``children`` may
    also be that directory's path), and ``memlens report
    memlens-<pid>.mlcap`` lists them.  This process's own figures stay in
    its snapshots.  stop() ends following (children already started keep
    tracing themselves).

    ``sample_bytes=0`` traces every block exactly.  ``sample_bytes=N`` samples
    allocations with a Poisson process over allocated bytes (mean interval N
    bytes): a block of s bytes is sampled with probability 1 - exp(-s/N) and
    then counts as s / p bytes and 1 / p blocks, so every size and count
    reported is an unbiased estimate of the exact figure.

    ``native=True`` also traces what C extensions and the libraries they
    load take with ``malloc``/``mmap`` and their relatives (numpy's arrays,
    sqlite's pages, compressors' buffers), attributed to the Python line
    that called into them; buffers declared with ``PyTraceMalloc_Track``
    are counted once either way.  See docs/tracer.md, "Native memory".
    """
    # 0 frames (no stacks) is the line profiler's private mode; the engine
    # checks the upper bound.
    check_int("frames", frames, 1, requirement=f"between 1 and {MAX_FRAMES}", word="not")
    check_int("sample_bytes", sample_bytes, 0, word="not")
    if not isinstance(native, bool):
        raise TypeError(f"native must be True or False, not {type(native).__name__}")
    directory = None
    if children is not False and children is not None:
        name = f"memlens-{os.getpid()}.mlcap.d" if children is True else os.fspath(children)
        directory = os.path.abspath(name)
        os.makedirs(directory, exist_ok=True)  # OSError now, not in the children
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot write the children's captures to {directory!r}: permission denied")
    _core.trace_start(frames, sample_bytes, native)
    if directory is not None:
        from memlens import _follow

        # The timeline interval of `memlens run`'s default (10 ms).
        _follow.install(_core, (directory, frames, sample_bytes, 10.0, native), runner=(__file__,))


def native_memory():
    """``(current, at_peak)``: the part of :func:`traced_memory` that is
    native blocks (C code's malloc/mmap, ``PyTraceMalloc_Track`` buffers),
    now and at the high-water mark; the rest is Python's allocator."""
    return _core.trace_native_memory()


def native_status():
    """What native tracing patched at the last start(): a dict with
    ``native`` (the malloc/mmap families traced), ``track``
    (``PyTraceMalloc_Track`` calls counted), ``objects`` (shared objects
    patched), ``entries`` (GOT entries rewritten) and ``skipped`` (entries
    bound to another allocator, left alone)."""
    what, objects, entries, skipped = _core.trace_native_stats()
    return {"native": bool(what & 2), "track": bool(what & 1), "objects": objects, "entries": entries,
            "skipped": skipped}


def ensure_exact(what):
    """Make sure the allocation tracer runs in exact mode, starting it (no
    stacks: frames 0, the tracer's totals-only mode; figures come from the
    per-thread counters) if it is not running.  True if started here;
    RuntimeError naming `what` under a sampled tracer, whose counters see
    only samples.  (The line profiler and ``%memit`` call it.)"""
    if _core.trace_is_tracing():
        if _core.trace_sample_bytes():
            raise RuntimeError(f"memlens is tracing in sampled mode; {what} need exact "
                               "tracing: stop() it, or start(sample_bytes=0)")
        return False
    _core.trace_start(0, 0)
    return True


def stop():
    """Stop tracing and free the tracer's tables (a no-op when not tracing);
    children started from now on are not followed."""
    follow = sys.modules.get("memlens._follow")
    if follow is not None and follow._opts is not None and not follow.recording():
        follow.uninstall()
    _core.trace_stop()


def is_tracing():
    """True while memlens is tracing allocations."""
    return _core.trace_is_tracing()


def traced_memory():
    """``(current, peak)``: bytes of traced blocks now and at the high-water
    mark since start() or reset_peak() (estimates in sampled mode)."""
    return _core.trace_traced_memory()


def reset_peak():
    """Set the high-water mark, and the picture of what made it, to now."""
    _core.trace_reset_peak()


def tracer_memory():
    """Bytes of RAM the tracer's own tables use (not traced themselves)."""
    return _core.trace_tracer_memory()


def take_snapshot():
    """A :class:`Snapshot` of the blocks live now and at the peak."""
    return Snapshot(_core.trace_take_snapshot())


class trace:
    """``with memlens.trace(frames=16, sample_bytes=0, native=True) as t:``
    traces the block (as start()); on exit ``t.snapshot`` holds a snapshot
    taken just before stopping."""

    def __init__(self, frames=16, sample_bytes=0, native=True):
        self.frames = frames
        self.sample_bytes = sample_bytes
        self.native = native
        self.snapshot = None

    def __enter__(self):
        start(self.frames, self.sample_bytes, self.native)
        return self

    def __exit__(self, *exc):
        try:
            self.snapshot = take_snapshot()
        finally:
            stop()
        return False


def _stop_at_exit():
    # A process whose children are followed (memlens._follow) writes its
    # capture at exit and stops the tracer then; this handler, registered
    # later in a child that imports memlens, runs first and must leave it.
    follow = sys.modules.get("memlens._follow")
    if follow is not None and follow.recording():
        return
    stop()


# Stop before the interpreter tears down the objects the stack table refers
# to (registered at import, so it runs after the user's own atexit handlers).
atexit.register(_stop_at_exit)


@result
class Frame:
    """One frame of a traceback: ``filename``, ``lineno``, ``function``.

    The one frame type of memlens: the tracer's tracebacks and the capture
    reports (:mod:`memlens.report.model`) both use it.  ``str()`` and
    ``repr()`` are tracemalloc's, with the function added.
    """

    filename: str
    lineno: int
    function: str = ""

    def label(self):
        """``file:line function`` with the file shortened to its basename
        (the capture reports' stack labels)."""
        return f"{os.path.basename(self.filename)}:{self.lineno} {self.function}"

    def __str__(self):
        if self.lineno == 0 and self.function:
            return f"{self.filename}:{self.function}"
        return f"{self.filename}:{self.lineno}"

    def __repr__(self):
        return f"<Frame filename={self.filename!r} lineno={self.lineno!r} function={self.function!r}>"


class Traceback(tuple):
    """A sequence of :class:`Frame`, innermost (most recent call) first.

    A tuple subclass, not a result dataclass like the others: tracemalloc's
    Traceback is a sequence of frames (``tb[0]``, ``len(tb)``, iteration,
    ``==`` and ``hash`` as a tuple), and code written for it keeps working.
    """

    __slots__ = ()

    def __new__(cls, frames):
        return tuple.__new__(cls, frames)

    def __str__(self):
        if not self:
            return "<unknown>:0"
        return str(self[0])

    def __repr__(self):
        return f"<Traceback {tuple(self)!r}>"

    def format(self, limit=None):
        """Lines like a Python traceback, innermost first."""
        frames = self if limit is None else self[:limit]
        lines = []
        for f in frames:
            lines.append(f'  File "{f.filename}", line {f.lineno}, in {f.function}')
        return lines


def _traceback(key):
    return Traceback(Frame(*f) for f in key)


@result
class Statistic:
    """Blocks grouped by one key: ``size`` (bytes), ``count`` (blocks) and
    the ``traceback`` naming the key (``str()`` and ``repr()`` as in
    tracemalloc)."""

    traceback: Traceback
    size: int
    count: int

    def __str__(self):
        text = f"{self.traceback}: size={format_bytes(self.size, tracemalloc=True)}, count={self.count}"
        if self.count:
            text += f", average={format_bytes(self.size / self.count, tracemalloc=True)}"
        return text

    def __repr__(self):
        return f"<Statistic traceback={self.traceback!s} size={self.size} count={self.count}>"


@result
class StatisticDiff:
    """Difference between two snapshots for one key: ``size``/``count`` now
    and ``size_diff``/``count_diff`` against the older snapshot.  As in
    tracemalloc, equal diffs compare equal and can be set members or dict
    keys, like Statistic."""

    traceback: Traceback
    size: int
    size_diff: int
    count: int
    count_diff: int

    def __str__(self):
        text = (f"{self.traceback}: size={format_bytes(self.size, tracemalloc=True)} "
                f"({format_bytes(self.size_diff, tracemalloc=True, sign=True)}), count={self.count} ({self.count_diff:+d})")
        if self.count:
            text += f", average={format_bytes(self.size / self.count, tracemalloc=True)}"
        return text

    def __repr__(self):
        return (f"<StatisticDiff traceback={self.traceback!s} size={self.size} "
                f"size_diff={self.size_diff} count={self.count} count_diff={self.count_diff}>")


def _check_key(key_type, cumulative):
    if key_type not in _KEY_TYPES:
        raise ValueError(f"unknown key_type {key_type!r}: expected one of {', '.join(_KEY_TYPES)}")
    if cumulative and key_type == "traceback":
        raise ValueError("cumulative mode cannot be used with key_type 'traceback'")


def _sorted_stats(rows):
    stats = [Statistic(_traceback(key), size, count) for key, size, count in rows]
    stats.sort(key=lambda s: (s.size, s.count, str(s.traceback)), reverse=True)
    return stats


def _normalize_filename(filename):
    # As tracemalloc compares file names: case-folded where the OS folds
    # them, and a .pyc named as its .py.
    filename = os.path.normcase(filename)
    if filename.endswith(".pyc"):
        filename = filename[:-1]
    return filename


class _BaseFilter:
    __slots__ = ("inclusive",)

    def __init__(self, inclusive):
        self.inclusive = inclusive


class Filter(_BaseFilter):
    """Which blocks :meth:`Snapshot.filter_traces` keeps, as
    :class:`tracemalloc.Filter`: those whose innermost frame (with
    ``all_frames``, any frame of the stack) is in a file matching
    `filename_pattern` (:func:`fnmatch.fnmatch`; a ``.pyc`` pattern or file
    stands for its ``.py``) and, unless `lineno` is None, on that line.
    ``inclusive=False`` excludes those blocks instead.  `domain` (None: any)
    restricts the filter to one tracemalloc domain: every memlens block is
    in domain 0 (see docs/tracer.md, "Filters")."""

    __slots__ = ("_filename_pattern", "lineno", "all_frames", "domain")

    def __init__(self, inclusive, filename_pattern, lineno=None, all_frames=False, domain=None):
        super().__init__(inclusive)
        self._filename_pattern = _normalize_filename(filename_pattern)
        self.lineno = lineno
        self.all_frames = all_frames
        self.domain = domain

    @property
    def filename_pattern(self):
        """The pattern, normalised as tracemalloc does (``.pyc`` -> ``.py``)."""
        return self._filename_pattern

    def __repr__(self):
        return (f"<memlens.Filter inclusive={self.inclusive!r} filename_pattern={self.filename_pattern!r} "
                f"lineno={self.lineno!r} all_frames={self.all_frames!r} domain={self.domain!r}>")

    def _match_bytes(self, frames, filename_cache):
        """One byte per unique frame of a table, then one for a stack with
        no Python frame (tracemalloc's ``("<unknown>", 0)``): 1 where this
        filter's file pattern and line match the frame (inclusive or not)."""
        import fnmatch

        pattern = self._filename_pattern
        matched = filename_cache.setdefault(pattern, {})
        out = bytearray(len(frames) + 1)
        for i, (filename, lineno, _function) in enumerate(frames + [("<unknown>", 0, "")]):
            hit = matched.get(filename)
            if hit is None:  # each distinct file name once per pattern
                hit = matched[filename] = fnmatch.fnmatch(_normalize_filename(filename), pattern)
            if hit and (self.lineno is None or lineno == self.lineno):
                out[i] = 1
        return bytes(out)


class DomainFilter(_BaseFilter):
    """Keep (``inclusive``) or drop the blocks of one tracemalloc `domain`,
    as :class:`tracemalloc.DomainFilter`.  memlens has no domain per block:
    every block is in domain 0, tracemalloc's default."""

    __slots__ = ("_domain",)

    def __init__(self, inclusive, domain):
        super().__init__(inclusive)
        self._domain = domain

    @property
    def domain(self):
        """The domain filtered on (read-only, as in tracemalloc)."""
        return self._domain

    def __repr__(self):
        return f"<memlens.DomainFilter inclusive={self.inclusive!r} domain={self.domain!r}>"


# The domain of every memlens block: the tracer keeps none per block (the
# domain given to PyTraceMalloc_Track is not recorded), and 0 is
# tracemalloc's default, that of every block Python's allocator makes.
_DOMAIN = 0


def _filter_specs(filters, frames):
    """The engine's (include, exclude) specs of `filters`
    (TraceTable.filter): a filter for another domain than _DOMAIN includes
    nothing or excludes nothing, and a domain filter all or nothing."""
    include, exclude = [], []
    filename_cache = {}
    everything = b"\x01" * (len(frames) + 1)
    nothing = bytes(len(frames) + 1)
    # tracemalloc's own filters are taken as they are (code written for
    # tracemalloc keeps working); it is only looked up if already imported.
    tm = sys.modules.get("tracemalloc")
    for f in filters:
        if tm is not None and isinstance(f, tm.Filter):
            f = Filter(f.inclusive, f.filename_pattern, f.lineno, f.all_frames, f.domain)
        elif tm is not None and isinstance(f, tm.DomainFilter):
            f = DomainFilter(f.inclusive, f.domain)
        if isinstance(f, Filter):
            if f.domain is not None and f.domain != _DOMAIN:
                if f.inclusive:
                    include.append((False, nothing))
                continue  # an exclusive filter of another domain excludes nothing
            spec = (bool(f.all_frames), f._match_bytes(frames, filename_cache))
        elif isinstance(f, DomainFilter):
            spec = (False, everything if f.domain == _DOMAIN else nothing)
        else:
            raise TypeError(f"filters must be Filter or DomainFilter instances, not {type(f).__name__}")
        (include if f.inclusive else exclude).append(spec)
    return include, exclude


class Snapshot:
    """What was live when the snapshot was taken, at the high-water mark, and
    what was allocated in total since start().

    ``total`` and ``peak`` are bytes; in sampled mode (``sample_bytes`` > 0)
    every size and count is an unbiased estimate.
    """

    __slots__ = ("_table",)

    def __init__(self, table):
        if not isinstance(table, _core.TraceTable):
            raise TypeError("Snapshot wraps a memlens._core.TraceTable; use take_snapshot() or Snapshot.load()")
        self._table = table

    @property
    def total(self):
        """Bytes live when the snapshot was taken."""
        return self._table.total

    @property
    def peak(self):
        """High-water mark of traced bytes."""
        return self._table.peak

    @property
    def sample_bytes(self):
        """Mean sampling interval in bytes (0: exact)."""
        return self._table.sample_bytes

    @property
    def traceback_limit(self):
        """Frames recorded per stack."""
        return self._table.max_frames

    @property
    def incomplete(self):
        """True if the tracer ran out of memory for its own tables (some
        blocks then went untraced)."""
        return self._table.incomplete

    def statistics(self, key_type, cumulative=False):
        """Live blocks grouped by `key_type` ("lineno", "filename",
        "function", "traceback"), biggest first.  With `cumulative`, a block
        counts for every frame of its stack, not only the innermost."""
        _check_key(key_type, cumulative)
        return _sorted_stats(self._table.group(key_type, cumulative, False))

    def peak_statistics(self, key_type, cumulative=False):
        """Like statistics(), for the blocks live at the high-water mark."""
        _check_key(key_type, cumulative)
        return _sorted_stats(self._table.group(key_type, cumulative, True))

    def allocated_statistics(self, key_type, cumulative=False):
        """Like statistics(), for every block allocated since start(),
        whether freed since or not: ``size`` is the bytes allocated in total
        and ``count`` the number of allocations.  A realloc() counts as one
        allocation of its new size.  ValueError for a snapshot loaded from a
        file written before memlens recorded these totals."""
        _check_key(key_type, cumulative)
        return _sorted_stats(self._table.group(key_type, cumulative, False, True))

    def compare_to(self, old_snapshot, key_type, cumulative=False):
        """StatisticDiff per key between `old_snapshot` and this one, biggest
        change first."""
        if not isinstance(old_snapshot, Snapshot):
            raise TypeError(f"compare_to expects a Snapshot, not {type(old_snapshot).__name__}")
        _check_key(key_type, cumulative)
        def table(snap):
            # 'lineno' keys are (filename, line): the function named in a
            # key is only a representative and may differ between snapshots.
            if key_type == "lineno":
                return {tuple(f[:2] for f in key): (key, size, count)
                        for key, size, count in snap._table.group(key_type, cumulative, False)}
            return {key: (key, size, count) for key, size, count in snap._table.group(key_type, cumulative, False)}

        new = table(self)
        old = table(old_snapshot)
        diffs = []
        for norm, (key, size, count) in new.items():
            _, osize, ocount = old.pop(norm, (None, 0, 0))
            diffs.append(StatisticDiff(_traceback(key), size, size - osize, count, count - ocount))
        for key, osize, ocount in old.values():
            diffs.append(StatisticDiff(_traceback(key), 0, -osize, 0, -ocount))
        diffs.sort(key=lambda d: (abs(d.size_diff), d.size, abs(d.count_diff), d.count, str(d.traceback)),
                   reverse=True)
        return diffs

    def filter_traces(self, filters):
        """A new Snapshot with only the blocks `filters` keep, as
        :meth:`tracemalloc.Snapshot.filter_traces`: `filters` is an
        iterable of :class:`Filter` and :class:`DomainFilter`; a block is
        kept if it matches any inclusive filter (when there are some) and no
        exclusive one.  ``statistics()``, ``compare_to()``, ``stacks()``,
        ``dump()`` ... work on it; its ``total`` and ``peak`` are the kept
        blocks' bytes, now and at the high-water mark.  An empty list gives
        a snapshot equal to this one.  TypeError for an item that is not a
        filter (tracemalloc fails with AttributeError there); tracemalloc's
        own Filter and DomainFilter are accepted too."""
        from collections.abc import Iterable

        if not isinstance(filters, Iterable):
            raise TypeError(f"filters must be a list of filters, not {type(filters).__name__}")
        filters = list(filters)
        if not filters:
            # Every check of the items is vacuous; the table is immutable,
            # so the new snapshot shares it.
            return Snapshot(self._table)
        include, exclude = _filter_specs(filters, self._table.frames())
        return Snapshot(self._table.filter(include, exclude))

    def stacks(self):
        """The per-stack table: list of (Traceback, size, count, peak_size,
        peak_count).  (Allocated totals: allocated_statistics("traceback").)"""
        # One Frame per distinct frame, shared by the tracebacks that have
        # it (the engine's frame tuples are, and hash in C): a Frame per
        # occurrence cost 3.4 KB per stack on real programs.
        frames = {}
        out = []
        for row in self._table.stacks():
            tb = []
            for f in row[0]:
                fr = frames.get(f)
                if fr is None:
                    fr = frames[f] = Frame(*f)
                tb.append(fr)
            out.append((Traceback(tb), *row[1:5]))
        return out

    def dump(self, path):
        """Write the snapshot to `path` (memlens' versioned binary format).
        Names that are not UTF-8 (surrogate-escaped bytes, as os.fsdecode
        gives them) are stored as their bytes and load back exactly."""
        _core.trace_dump(self._table, os.fspath(path))

    @classmethod
    def load(cls, path):
        """Read a snapshot written by dump(); ValueError if the file is not a
        valid memlens capture (corrupt, truncated, other version), OSError
        if it cannot be read or is not a regular file (a FIFO, a device, a
        directory).  Only what the file's sections declare is read."""
        return cls(_core.trace_load(os.fspath(path)))

    def __repr__(self):
        mode = f"sampled every {self.sample_bytes} B" if self.sample_bytes else "exact"
        return f"<memlens.Snapshot total={self.total} peak={self.peak} {mode}>"
