"""Terminal tables of a capture.

Every name goes through :func:`memlens.report.names.shown`: control
characters and lone surrogates escaped, the middle of a long name elided;
a stack row shows its innermost frame and two callers.  Labels are built
once per distinct frame (:class:`~memlens.report.names.Labels`).

Import-system frames are folded into one "import X" frame per import
(:mod:`memlens.report.fold`) unless ``keep_import_frames``; rows that would
print alike (the same shown frames, cut at the same depth) are one row,
their bytes and blocks summed."""

import os

from memlens.report.fold import ImportFrame, fold_capture
from memlens.report.model import VIEWS
from memlens.report.names import Labels, path_shortener, shown
from memlens._util import format_bytes as format_size

__all__ = ["render", "summary"]

_VIEW_TITLES = {
    "peak": "Top stacks at the peak",
    "leaks": "Still allocated at exit (leak candidates)",
    "allocated": "Allocated during the run",
}


# The command line in the header may be long; not unboundedly.
_MAX_COMMAND = 400


def _frame_label(f):
    # Frame.label(), each name elided and escaped (names.py).
    if type(f) is ImportFrame:
        return shown(f.function)
    return f"{shown(os.path.basename(f.filename))}:{f.lineno} {shown(f.function)}"


def _stack_label(frames, labels, callers=2):
    # The innermost frame and `callers` callers: a row is bounded however
    # deep the stack.
    if not frames:
        return "<no Python frame>"
    text = labels(frames[0])
    for f in frames[1:1 + callers]:
        text += f"  <- {labels(f)}"
    if len(frames) > 1 + callers:
        text += "  <- ..."
    return text


def _merge_alike(rows, labels, callers=2):
    """`rows` with those that would print alike merged, bytes and blocks
    summed, biggest first: keyed by the label numbers of the frames shown
    and whether the row is cut (one tuple per row, no string built).  The
    numbers are looked up by the frame object's id first (`rows` hold the
    frames while this runs, so no id is reused): hashing a Frame is a
    Python call per frame, a look-up by id none."""
    acc = {}
    ids = {}
    get = ids.get
    for frames, size, count in rows:
        shown = frames[:1 + callers]
        numbers = tuple(map(get, map(id, shown)))
        if None in numbers:
            for f in shown:
                if id(f) not in ids:
                    ids[id(f)] = labels.id(f)
            numbers = tuple(map(get, map(id, shown)))
        key = (numbers, len(frames) > 1 + callers)
        a = acc.get(key)
        if a is None:
            acc[key] = [frames, size, count]
        else:
            a[1] += size
            a[2] += count
    # sorted() is stable: equal rows keep the view's order of their first.
    return sorted(acc.values(), key=lambda a: (-a[1], -a[2]))


def _table(cap, view, limit, labels):
    """The top `limit` rows of `view`, those that print alike merged, and a
    line for the rest."""
    out = [f"  {'bytes':>10}  {'blocks':>8}  location"]
    rows = _merge_alike([(s.frames, b, n) for s, b, n in cap.view(view)], labels)
    for frames, size, count in rows[:limit]:
        out.append(f"  {format_size(size):>10}  {count:>8}  {_stack_label(frames, labels)}")
    if len(rows) > limit:
        rest = sum(r[1] for r in rows[limit:])
        out.append(f"  {format_size(rest):>10}  {'':>8}  ... {len(rows) - limit} more stacks")
    if not rows:
        out.append("  (nothing)")
    return out


def _header(cap):
    out = []
    cmd = cap.meta.get("command")
    if cmd:
        line = f"memlens: {shown(cmd, _MAX_COMMAND)}"
        extra = []
        if "exit_code" in cap.meta:
            extra.append(f"exit code {shown(cap.meta['exit_code'])}")
        if cap.duration_s is not None:
            extra.append(f"{cap.duration_s:.2f} s")
        if "python" in cap.meta:
            extra.append(f"Python {shown(cap.meta['python'])}")
        if extra:
            line += "  (" + ", ".join(extra) + ")"
        out.append(line)
    if cap.sample_bytes:
        out.append(f"sampled every {cap.sample_bytes} bytes on average: numbers are estimates")
    if cap.incomplete:
        out.append("warning: the tracer ran out of memory for its tables; some blocks are missing")
    when = cap.peak_time
    line = f"Peak traced memory: {format_size(cap.peak)}"
    if when is not None:
        line += f" at {when:.2f} s"
    rss = max((s.rss for s in cap.timeline), default=0)
    if rss:
        line += f"  (max RSS {format_size(rss)})"
    out.append(line)
    native = cap.native_at_peak
    if native is not None:
        out.append(f"  of which Python's allocator {format_size(cap.peak - native)}, "
                   f"native blocks {format_size(native)} (C extensions' malloc/mmap)")
    if rss > cap.peak:
        out.append(f"  not traced at the RSS peak: {format_size(rss - cap.peak)} or more (allocator slack "
                   "and fragmentation, untouched pages, code and libraries, statically linked allocators"
                   + (")" if native is not None else "; native blocks: run without --no-native)"))
    stacks, blocks = cap.view_counts("leaks")
    out.append(f"Still allocated at exit: {format_size(cap.total)} in {blocks} blocks from {stacks} stacks")
    return out


def _classes(cap, limit):
    out = ["Top classes by instance bytes at exit:", f"  {'bytes':>10}  {'instances':>9}  class"]
    for c in sorted(cap.classes, key=lambda c: (-c.bytes, c.name))[:limit]:
        out.append(f"  {format_size(c.bytes):>10}  {c.count:>9}  {shown(c.name)}")
    return out


def _line_label(f, short):
    if type(f) is ImportFrame:
        return shown(f.function)
    return f"{shown(short(f.filename))}:{f.lineno} {shown(f.function)}"


def summary(cap, limit=5, keep_import_frames=False):
    """The few lines `memlens run` prints at the end of a run."""
    out = _header(cap)
    if not keep_import_frames:
        cap = fold_capture(cap)
    labels = Labels(_frame_label)
    out.append("")
    out.append(_VIEW_TITLES["peak"] + ":")
    out += _table(cap, "peak", limit, labels)
    out.append("")
    out.append(_VIEW_TITLES["leaks"] + ":")
    out += _table(cap, "leaks", limit, labels)
    if cap.classes is not None:
        out.append("")
        out += _classes(cap, limit)
    return "\n".join(out) + "\n"


def render(cap, view="peak", limit=15, keep_import_frames=False):
    """Header, the view's top stacks, its top lines, and the class table."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}: expected one of {', '.join(VIEWS)}")
    out = _header(cap)
    if not keep_import_frames:
        cap = fold_capture(cap)
    out.append("")
    title = _VIEW_TITLES[view]
    if view == "allocated" and not cap.allocated_exact:
        # captures from before the tracer kept cumulative totals
        title += " (lower bound: max of peak and exit per stack)"
    out.append(f"{title}: {format_size(cap.view_total(view))}")
    out += _table(cap, view, limit, Labels(_frame_label))
    out.append("")
    out.append("Top lines:")
    out.append(f"  {'bytes':>10}  {'blocks':>8}  line")
    short = path_shortener()
    for f, size, count in cap.lines(view)[:limit]:
        out.append(f"  {format_size(size):>10}  {count:>8}  {_line_label(f, short)}")
    if cap.classes is not None:
        out.append("")
        out += _classes(cap, limit)
    return "\n".join(out) + "\n"


# ---- a run of several processes (report/processes.py) -----------------------


def _process_line(p, depth):
    indent = "  " * depth + ("└ " if depth else "")
    if p.capture is None:
        figures = f"{'-':>10}  {'-':>10}"
    else:
        figures = f"{format_size(p.peak_bytes):>10}  {format_size(p.exit_bytes):>10}"
    code = "?" if p.exit_code is None else str(p.exit_code)
    took = "?" if p.duration_s is None else f"{p.duration_s:.2f} s"
    status = "" if p.status == "ended" else f"  [{shown(p.status)}]"
    if p.capture is not None and not p.complete:
        status = (f"  [{'killed' if p.status == 'running' and p.exit_code is not None else shown(p.status)}; "
                  "incomplete: figures up to its last write]")
    return (f"  {indent}{p.pid:<7} {figures}  {took:>8}  {code:>4}  "
            f"{shown(p.command, 120)}{status}")


def processes(run, view="peak", top=3, keep_import_frames=False):
    """The processes as a tree: pid, peak, still allocated at exit,
    duration, exit code and command, each with its top lines in `view`."""
    points, peak, when = run.combined()
    out = [f"memlens: {len(run.processes)} processes; combined peak {format_size(peak)}"
           + ("" if when is None else f" at {when:.2f} s")
           + " (traced memory of all processes at the same moment)"]
    out.append(f"  {'pid':<9} {'peak':>10}  {'at exit':>10}  {'time':>8}  {'exit':>4}  command")
    short = path_shortener()
    for depth, p in run.tree():
        out.append(_process_line(p, depth))
        if p.capture is None or not top:
            continue
        pad = "  " * depth + ("  " if depth else "")
        cap = p.capture if keep_import_frames else fold_capture(p.capture)
        for f, size, _count in cap.lines(view)[:top]:
            out.append(f"  {pad}    {format_size(size):>10}  {_line_label(f, short)}")
    return "\n".join(out) + "\n"


def run_summary(run, limit=5, keep_import_frames=False):
    """What `memlens run` prints for a run with children: the process
    tree, then the first process's summary."""
    out = processes(run, keep_import_frames=keep_import_frames)
    if run.root is not None and run.root.capture is not None:
        out += "\nFirst process:\n" + summary(run.root.capture, limit, keep_import_frames)
    return out
