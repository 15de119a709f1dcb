"""The JSON report: a documented, versioned schema.

Schema (``"schema": "memlens.report", "version": 1``)::

    {
      "schema": "memlens.report", "version": 1,
      "meta": {str: str},                  # command, python, exit_code, duration_s ...
      "totals": {
        "peak_bytes": int,                 # traced high-water mark
        "peak_time_s": float | null,       # when it was first reached (to the interval)
        "exit_bytes": int, "exit_blocks": int,   # still allocated at exit
        "native_peak_bytes": int | null,   # native blocks' share of peak_bytes and exit_bytes
        "native_exit_bytes": int | null,   # (C extensions' malloc/mmap; null: not traced)
        "sample_bytes": int,               # 0: exact; else Poisson sampling (estimates)
        "max_frames": int, "incomplete": bool,
        "allocated_exact": bool            # true: cumulative totals (capture format 1.1+);
                                           # false: older capture, "allocated" is a lower bound
      },
      "timeline": {"interval_ms": float, "t_s": [float], "traced": [int],
                   "peak": [int], "rss": [int],
                   "native": [int] | null},    # native share of traced (null: not recorded)
      "frames": [{"file": str, "line": int, "function": str}],
      "stacks": [{"frames": [int],         # indices into "frames", innermost first
                  "peak_bytes": int, "peak_blocks": int,
                  "exit_bytes": int, "exit_blocks": int,
                  "allocated_bytes": int, "allocated_blocks": int}],
      "classes": [{"name": str, "count": int, "bytes": int}] | null,
      "advice": [{"kind": str, "target": str,   # `memlens run --advise` only
                  "saving": int, "count": int,  # bytes the change saves; objects
                  "text": str, "patch": str | null, "location": str | null,
                  "blockers": [str],            # what must change first
                  "diff": str | null}] | null,  # unified diff of the edit (patch -p0)
      # only for a run with child processes (memlens run's CAPTURE.d/):
      "processes": [{"pid": int, "ppid": int, "command": str, "status": str,
                     "exit_code": int | null, "start_time_ns": int,
                     "peak_bytes": int, "exit_bytes": int, "duration": float | null,
                     "complete": bool,     # false: did not end while traced
                     "frames": [...], "stacks": [...],      # as above, its own
                     "timeline": {...}}],                    # as above, its own
      "combined": {"peak_bytes": int, "peak_time_s": float | null,
                   "t_s": [float], "traced": [int]}   # total across processes
    }

``meta`` leaves out the run metadata's raw "advice" entry: it is
``"advice"``, parsed.

The top-level meta, totals, frames, stacks and timeline are the first
process's.  Times in "combined" are seconds since the first process
started.
"""

import json

__all__ = ["SCHEMA", "VERSION", "to_dict", "render"]

SCHEMA = "memlens.report"
VERSION = 1


def to_dict(cap):
    frame_ids = {}
    frames = []
    stacks = []
    for s in cap.stacks:
        idx = []
        for f in s.frames:
            i = frame_ids.get(f)
            if i is None:
                i = frame_ids[f] = len(frames)
                frames.append({"file": f.filename, "line": f.lineno, "function": f.function})
            idx.append(i)
        ab, ac = s.value("allocated")
        stacks.append({
            "frames": idx,
            "peak_bytes": s.peak_size, "peak_blocks": s.peak_count,
            "exit_bytes": s.size, "exit_blocks": s.count,
            "allocated_bytes": ab, "allocated_blocks": ac,
        })
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "meta": {k: v for k, v in cap.meta.items() if k != "advice"},
        "totals": {
            "peak_bytes": cap.peak,
            "peak_time_s": cap.peak_time,
            "exit_bytes": cap.total,
            "native_peak_bytes": cap.native_at_peak,
            "native_exit_bytes": cap.native_at_exit,
            "exit_blocks": sum(s.count for s in cap.stacks),
            "sample_bytes": cap.sample_bytes,
            "max_frames": cap.max_frames,
            "incomplete": cap.incomplete,
            "allocated_exact": cap.allocated_exact,
        },
        "timeline": {
            "interval_ms": cap.interval_ms,
            "t_s": [round(s.t, 6) for s in cap.timeline],
            "traced": [s.traced for s in cap.timeline],
            "peak": [s.peak for s in cap.timeline],
            "rss": [s.rss for s in cap.timeline],
            "native": ([s.native for s in cap.timeline]
                       if cap.timeline and cap.timeline[0].native is not None else None),
        },
        "frames": frames,
        "stacks": stacks,
        "classes": None if cap.classes is None else
        [{"name": c.name, "count": c.count, "bytes": c.bytes} for c in cap.classes],
        "advice": None if cap.advice is None else [dict(a) for a in cap.advice],
    }


def process_dict(p):
    d = {"pid": p.pid, "ppid": p.ppid, "command": p.command, "status": p.status,
         "exit_code": p.exit_code, "start_time_ns": p.start_ns, "peak_bytes": p.peak_bytes,
         "exit_bytes": p.exit_bytes, "duration": p.duration_s, "complete": p.complete}
    if p.capture is not None:
        c = to_dict(p.capture)
        d.update(frames=c["frames"], stacks=c["stacks"], timeline=c["timeline"])
    else:
        d.update(frames=[], stacks=[], timeline=None)
    return d


def run_dict(run):
    """The report of a run with child processes (report/processes.py)."""
    root = run.root.capture if run.root is not None and run.root.capture is not None else None
    from memlens.report.model import Capture

    d = to_dict(root if root is not None else Capture(stacks=[]))
    d["processes"] = [process_dict(p) for p in run.processes]
    points, peak, when = run.combined()
    d["combined"] = {"peak_bytes": peak, "peak_time_s": None if when is None else round(when, 6),
                     "t_s": [round(t, 6) for t, _ in points], "traced": [v for _, v in points]}
    return d


def render(cap):
    return json.dumps(to_dict(cap), indent=1) + "\n"


def render_run(run):
    return json.dumps(run_dict(run), indent=1) + "\n"
