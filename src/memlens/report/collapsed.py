"""Brendan Gregg's folded stacks: ``outer;...;inner bytes`` per line, the
input of flamegraph.pl and speedscope.

Frames are ``function (file basename:line)``, escaped as the other text
formats escape names (:func:`memlens.report.names.escape`), and ``;``,
which separates frames, as ``\\x3b``.  The value follows the line's last
space (every frame ends in ``:line)``, so spaces in names are not
ambiguous), and no name can hold a line break.

Folded stacks repeat each frame's name in every line it is on, and once per
copy in a stack: that is the format.  A capture whose stacks repeat long
names could fold to gigabytes, so the size is computed first and
:class:`OutputTooLarge` raised past :func:`limit` (the larger of 16 MiB and
64 times the capture's stack tables: no real capture comes near it).
"""

import os
import re

from memlens._util import format_bytes
from memlens.report.names import Labels, escape

__all__ = ["render", "limit", "table_bytes", "OutputTooLarge"]

# The bound on the output: `_RATIO` times the stack tables, at least `_FLOOR`.
_RATIO = 64
_FLOOR = 16 << 20

_SEPARATOR = re.compile(";")


class OutputTooLarge(ValueError):
    """Folded stacks of this capture would be larger than :func:`limit`
    (one-line message with both figures)."""


def _frame(f):
    return escape(f"{f.function} ({os.path.basename(f.filename)}:{f.lineno})", _SEPARATOR)


def table_bytes(cap):
    """The size of `cap`'s stacks in the capture format (csrc/capture/
    cap_format.c): its distinct strings, frames and frame references; what
    the folded stacks are bounded by."""
    strings, frames, refs = set(), set(), 0
    for s in cap.stacks:
        refs += len(s.frames)
        for f in s.frames:
            if f not in frames:
                frames.add(f)
                strings.add(f.filename)
                strings.add(f.function)
    return (4 + sum(4 + len(x.encode("utf-8", "surrogatepass")) for x in strings) + 4 + 12 * len(frames)
            + 4 + 36 * len(cap.stacks) + 4 * refs)


def limit(cap):
    """The largest folded output `cap` may give, in bytes."""
    return max(_FLOOR, _RATIO * table_bytes(cap))


def render(cap, view="peak"):
    labels = Labels(_frame)
    # Stacks whose frames fold to the same names merge: keyed by label
    # numbers, so that no string is built per frame of every stack.
    acc = {}
    for s, size, _count in cap.view(view):
        key = tuple(labels.id(f) for f in reversed(s.frames))
        acc[key] = acc.get(key, 0) + size
    rows = [(k, v) for k, v in acc.items() if v > 0]
    texts = labels.texts
    # UTF-8 bytes of each label, once.
    nbytes = [len(t.encode("utf-8")) for t in texts]
    empty = "<no Python frame>"
    total = 0
    for key, v in rows:
        line = sum(nbytes[i] for i in key) + max(len(key) - 1, 0) if key else len(empty)
        total += line + len(str(v)) + 2
    bound = limit(cap)
    if total > bound:
        raise OutputTooLarge(
            f"collapsed output would be {total} bytes ({format_bytes(total)}), over this capture's "
            f"limit of {bound} bytes ({format_bytes(bound)}: the larger of {_FLOOR >> 20} MiB and "
            f"{_RATIO} times its {table_bytes(cap)} bytes of stack tables); --format pprof or json "
            f"store each frame once")
    lines = sorted((";".join(texts[i] for i in key) or empty, v) for key, v in rows)
    return "".join(f"{k} {v}\n" for k, v in lines)


def render_run(run, view="peak"):
    """Folded stacks of every traced process of a run (report/processes.py),
    each line's outermost frame ``pid N``."""
    out = []
    for p in run.processes:
        if p.capture is not None:
            out += [f"pid {p.pid};{line}" for line in render(p.capture, view).splitlines()]
    return "".join(line + "\n" for line in sorted(out))
