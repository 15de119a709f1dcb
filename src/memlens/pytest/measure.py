"""The tracer around one test, frame filters, and the figures they give.

The tracer is started for each measured phase and stopped after it, so a
figure holds only blocks the phase itself allocated: nothing a previous
test left behind, freed or not, and no pymalloc arena state (the tracer
sees objects, not arenas), which is what makes a test's figure the same
alone, after other tests, and on an xdist worker.
"""

import fnmatch
import gc
import os
import sysconfig
from typing import Optional, Tuple

from memlens import tracer
from memlens._util import result

__all__ = ["FRAMES", "FrameFilter", "Figures", "Measurement"]

#: Frames recorded per stack: the `ignore` patterns see these.
FRAMES = 16
#: Stacks and lines a result keeps for failure text, summary and baseline.
TOP_STACKS = 10
TOP_LINES = 20


def stdlib_dirs():
    """The standard library's folders, without the site-packages below
    them: ``(stdlib, site_dirs)``."""
    paths = sysconfig.get_paths()
    site = tuple(os.path.join(paths[k], "") for k in ("purelib", "platlib") if k in paths)
    return (os.path.join(paths["stdlib"], ""), os.path.join(paths["platstdlib"], "")), site


class FrameFilter:
    """Which stacks count: not those whose innermost frame outside the
    standard library is in one of `own_dirs` (pytest's, pluggy's, xdist's
    and memlens's own code: pytest's ``contextlib`` managers and its
    ``os.environ`` writes are pytest's), and not those with any recorded
    frame whose file matches one of `patterns`.

    A pattern matches a file when it matches (fnmatch, case-sensitive) the
    whole path or a tail of it that starts after a ``/``: ``logging/*``
    matches ``/usr/lib/python3.11/logging/__init__.py``."""

    def __init__(self, own_dirs, patterns=()):
        self._own = tuple(os.path.join(d, "") for d in own_dirs)
        self._stdlib, self._site = stdlib_dirs()
        self._patterns = tuple(patterns)
        self._kind = {}          # file -> "own", "std" or "user"
        self._ignored_files = {}

    def kind(self, filename):
        """"own" (pytest, memlens ...), "std" (standard library, frozen
        modules) or "user"."""
        kind = self._kind.get(filename)
        if kind is None:
            if filename.startswith(self._own):
                kind = "own"
            elif filename.startswith("<frozen") or (filename.startswith(self._stdlib)
                                                    and not filename.startswith(self._site)):
                kind = "std"
            else:
                kind = "user"
            self._kind[filename] = kind
        return kind

    def _ignored(self, filename):
        hit = self._ignored_files.get(filename)
        if hit is None:
            parts = filename.split("/")
            tails = ["/".join(parts[i:]) for i in range(len(parts))]
            hit = any(fnmatch.fnmatchcase(t, p) for p in self._patterns for t in tails)
            self._ignored_files[filename] = hit
        return hit

    def counts(self, frames):
        """True if a stack (frames innermost first, each (file, line,
        function)) counts."""
        for f in frames:
            kind = self.kind(f[0])
            if kind == "own":
                return False
            if kind == "user":
                break
        if self._patterns:
            return not any(self._ignored(f[0]) for f in frames)
        return True

    def rows(self, rows):
        """The (frames, size, count) rows that count."""
        return [r for r in rows if self.counts(r[0])]

    def user_part(self, frames):
        """`frames` up to the first of pytest's or memlens's own frames
        outside the innermost one: the part a report shows."""
        for i, f in enumerate(frames[1:], 1):
            if self.kind(f[0]) == "own":
                return tuple(frames[:i])
        return tuple(frames)


def _top_stacks(rows, filt):
    merged = {}
    for frames, size, count in rows:
        key = filt.user_part(frames)
        acc = merged.setdefault(key, [0, 0])
        acc[0] += size
        acc[1] += count
    rows = sorted(((k, s, c) for k, (s, c) in merged.items()), key=lambda r: (-r[1], -r[2], r[0]))
    return tuple(r for r in rows[:TOP_STACKS] if r[1] > 0)


def _top_lines(rows):
    acc = {}
    for frames, size, _count in rows:
        key = (frames[0][0], frames[0][1]) if frames else ("<unknown>", 0)
        acc[key] = acc.get(key, 0) + size
    top = sorted(acc.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple((f, line, size) for (f, line), size in top[:TOP_LINES] if size > 0)


@result
class Figures:
    """What one test measured.

    ``peak``: bytes live at the phase's high-water mark (blocks the phase
    allocated, filtered); ``leaked``: bytes the phase left allocated after
    ``gc.collect()`` (full when ``full_gc``, else generations 0-1 only), or
    in slope mode the smallest growth of one run; ``retained``: slope mode's
    bytes after the warm-up and after each run; ``peak_stacks`` /
    ``leak_stacks``: the top (frames, bytes, blocks), frames as (file, line,
    function) innermost first (slope mode: growth over the runs);
    ``peak_lines``: the top (file, line, bytes) at the peak."""

    scope: str
    peak: int
    leaked: int
    full_gc: bool
    runs: int = 1
    retained: Tuple[int, ...] = ()
    peak_stacks: tuple = ()
    leak_stacks: tuple = ()
    peak_lines: tuple = ()


class Measurement:
    """``m = Measurement(scope, peak_filter, leak_filter, full_gc)``;
    ``m.start()`` before the phase, ``m.checkpoint()`` after each warm-up or
    slope run, ``m.finish()`` after the phase -> :class:`Figures`, or None
    when the test was not measured (the tracer was busy: the test drives
    memlens's tracer itself)."""

    def __init__(self, scope, peak_filter, leak_filter, full_gc):
        self.scope = scope
        self.peak_filter = peak_filter
        self.leak_filter = leak_filter
        self.full_gc = full_gc
        self.active = False
        self._retained = []
        self._first_rows = None

    def start(self):
        if tracer.is_tracing():
            return False
        tracer.start(FRAMES)
        self.active = True
        return True

    def _collect(self):
        if self.full_gc:
            gc.collect()
        else:
            gc.collect(1)

    def _live(self):
        table = tracer.take_snapshot()._table
        return self.leak_filter.rows(table.group("traceback", False, False))

    def checkpoint(self):
        """After a warm-up or slope run: what stays allocated now."""
        if not self.active or not tracer.is_tracing():
            return
        self._collect()
        rows = self._live()
        if self._first_rows is None:
            self._first_rows = rows
        self._retained.append(sum(r[1] for r in rows))

    def finish(self) -> Optional[Figures]:
        if not self.active:
            return None
        self.active = False
        if not tracer.is_tracing():
            return None  # the test stopped the tracer itself
        try:
            self._collect()
            table = tracer.take_snapshot()._table
        finally:
            tracer.stop()
        peak_rows = self.peak_filter.rows(table.group("traceback", False, True))
        live_rows = self.leak_filter.rows(table.group("traceback", False, False))
        leaked = sum(r[1] for r in live_rows)
        leak_rows = live_rows
        retained = ()
        runs = len(self._retained)
        if self._retained:
            retained = tuple(self._retained) + (leaked,)
            leaked = max(0, min(b - a for a, b in zip(retained, retained[1:])))
            before = {r[0]: r[1] for r in self._first_rows}
            leak_rows = [(r[0], r[1] - before.get(r[0], 0), r[2]) for r in live_rows]
        return Figures(
            scope=self.scope,
            peak=sum(r[1] for r in peak_rows),
            leaked=leaked,
            full_gc=self.full_gc,
            runs=max(1, runs),
            retained=retained,
            peak_stacks=_top_stacks(peak_rows, self.peak_filter),
            leak_stacks=_top_stacks(leak_rows, self.leak_filter),
            peak_lines=_top_lines(peak_rows),
        )
