"""Failure text, the suite summary, the JSON summary and the baseline.

Plain functions from figures to text or JSON-ready dicts; the plugin
decides when they run.
"""

import json
import os

from memlens._util import format_bytes

__all__ = ["SCOPES", "check", "result_row", "failure_text", "terminal_lines", "json_summary",
           "read_baseline", "write_baseline", "grown_lines", "BaselineError"]

#: --memlens-scope values and how reports name them.
SCOPES = {"call": "test body", "fixtures": "test body + fixture setup/teardown"}
JSON_VERSION = 1
BASELINE_VERSION = 1


def _bytes(n):
    return f"{format_bytes(n)} ({n:,} B)" if n >= 1024 else f"{n} B"


def short_path(filename, rootdir):
    """`filename` relative to `rootdir` when under it, else as recorded."""
    prefix = os.path.join(rootdir, "")
    return filename[len(prefix):] if rootdir and filename.startswith(prefix) else filename


def _stack_lines(stacks, rootdir, own):
    out = []
    for frames, size, count in stacks:
        label = "<no Python frame>"
        if frames:
            f = frames[0]
            label = f"{short_path(f[0], rootdir)}:{f[1]} in {f[2]}"
            callers = []
            for c in frames[1:]:
                if own(c[0]) or len(callers) == 2:
                    break
                callers.append(f"{short_path(c[0], rootdir)}:{c[1]} in {c[2]}")
            if callers:
                label += "  <- " + "  <- ".join(callers)
        out.append(f"  {format_bytes(size):>10}  {count:>7} blocks  {label}")
    return out


def check(limits, figures):
    """[(kind, message)] for every limit `figures` breaks; kind is
    "limit_memory" or "limit_leaks"."""
    broken = []
    if limits.memory is not None and figures.peak > limits.memory:
        broken.append(("limit_memory", f"peak memory {_bytes(figures.peak)} exceeds "
                                       f"limit_memory({limits.memory_text!r}) = {limits.memory:,} B"))
    if limits.leaks is not None and figures.leaked > limits.leaks:
        what = (f"leaked {_bytes(figures.leaked)} per run (smallest growth of {figures.runs} runs "
                f"after a warm-up)" if figures.retained else f"left allocated {_bytes(figures.leaked)}")
        broken.append(("limit_leaks", f"{what}, over limit_leaks({limits.leaks_text!r}) = "
                                      f"{limits.leaks:,} B"))
    return broken


def failure_text(broken, figures, rootdir, own, grown=None, tolerance=None, old_peak=None):
    """The longrepr of a test that broke a limit or grew beyond the
    baseline: what was measured against what, then the top stacks."""
    scope = SCOPES[figures.scope]
    out = []
    kinds = {k for k, _ in broken}
    for _kind, message in broken:
        out.append(f"memlens: {message}  [scope: {scope}]")
    if grown is not None:
        out.append(f"memlens: peak memory {_bytes(figures.peak)} grew beyond the baseline's "
                   f"{_bytes(old_peak)} + {tolerance.text}  [scope: {scope}]")
    if "limit_memory" in kinds or grown is not None:
        out.append("top stacks at the peak (bytes, blocks, innermost frame first):")
        out.extend(_stack_lines(figures.peak_stacks, rootdir, own) or ["  (nothing)"])
    if grown:
        out.append("lines that grew since the baseline (bytes at the peak):")
        for line, old, new in grown:
            out.append(f"  {line}: {format_bytes(old)} -> {format_bytes(new)} "
                       f"(+{format_bytes(new - old)})")
    if "limit_leaks" in kinds:
        title = ("what grew over the runs" if figures.retained
                 else f"left allocated after gc.collect()")
        out.append(f"top stacks {title} (bytes, blocks, innermost frame first):")
        out.extend(_stack_lines(figures.leak_stacks, rootdir, own) or ["  (nothing)"])
        if figures.retained:
            out.append("  retained after the warm-up and each run: "
                       + ", ".join(f"{n:,} B" for n in figures.retained))
    return "\n".join(out)


def result_row(nodeid, figures, limits, rootdir, worker):
    """One test's row of the JSON summary: a plain dict, so that it crosses
    from an xdist worker to the controller as it is (``outcome`` is filled
    in by the process that saw the reports)."""
    row = dict(
        nodeid=nodeid,
        scope=figures.scope if figures else None,
        peak_bytes=figures.peak if figures else None,
        leaked_bytes=figures.leaked if figures else None,
        leak_gc=(None if figures is None else "full" if figures.full_gc else "young"),
        runs=figures.runs if figures else None,
        limits={"limit_memory": limits.memory, "limit_leaks": limits.leaks, "runs": limits.runs},
        outcome=None,
        worker=worker,
        top_lines=[{"line": f"{short_path(f, rootdir)}:{n}", "bytes": b}
                   for f, n, b in (figures.peak_lines if figures else ())],
    )
    return row


def _top(rows, key, n):
    rows = [r for r in rows if r.get(key)]
    rows.sort(key=lambda r: (-r[key], r["nodeid"]))
    return rows[:n]


def terminal_lines(rows, top, scope, suite_rss):
    """The terminal summary: the `top` tests by peak and by leaks, and the
    peak RSS of the processes that ran the suite."""
    measured = [r for r in rows if r.get("peak_bytes") is not None]
    out = [f"{len(measured)} tests measured, scope: {SCOPES[scope]}"]
    if suite_rss:
        where = ", ".join(f"{k} {format_bytes(v)}" for k, v in sorted(suite_rss.items()))
        out.append(f"suite peak RSS: {format_bytes(max(suite_rss.values()))} ({where})")
    for key, title in (("peak_bytes", "highest peaks"), ("leaked_bytes", "most left allocated")):
        chosen = _top(measured, key, top)
        out.append(f"{title}:")
        for r in chosen:
            out.append(f"  {format_bytes(r[key]):>10}  {r['nodeid']}")
        if not chosen:
            out.append("  (none)")
    return out


def json_summary(rows, scope, suite_rss):
    """The document ``--memlens-json`` writes."""
    return {
        "memlens_pytest": JSON_VERSION,
        "scope": scope,
        "suite": {
            "peak_rss_bytes": max(suite_rss.values()) if suite_rss else None,
            "peak_rss_by_process": dict(sorted(suite_rss.items())),
            "max_test_peak_bytes": max((r["peak_bytes"] for r in rows if r.get("peak_bytes") is not None),
                                       default=None),
        },
        "tests": sorted(rows, key=lambda r: r["nodeid"]),
    }


class BaselineError(ValueError):
    """A baseline file that cannot be read (one-line message)."""


def read_baseline(path):
    """{nodeid: {"peak_bytes": int, "top_lines": {line: bytes}}} of a
    baseline file; BaselineError when it is missing or not one."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise BaselineError(f"cannot read baseline {path!r}: {e.strerror or e}") from None
    except ValueError as e:
        raise BaselineError(f"baseline {path!r} is not JSON: {e}") from None
    if not (isinstance(doc, dict) and doc.get("memlens_baseline") == BASELINE_VERSION
            and isinstance(doc.get("tests"), dict)):
        raise BaselineError(f"baseline {path!r} is not a memlens baseline (version {BASELINE_VERSION})")
    return doc["tests"]


def write_baseline(path, rows):
    """Write (or update: tests not in `rows` keep their entries) the
    baseline at `path`; sorted, one test per block, so that it diffs well
    under version control."""
    tests = {}
    if os.path.exists(path):
        try:
            tests = read_baseline(path)
        except BaselineError:
            tests = {}
    for r in rows:
        if r.get("peak_bytes") is None or r.get("outcome") not in ("passed", "failed"):
            continue
        tests[r["nodeid"]] = {"peak_bytes": r["peak_bytes"],
                              "top_lines": {t["line"]: t["bytes"] for t in r["top_lines"]}}
    doc = {"memlens_baseline": BASELINE_VERSION, "tests": dict(sorted(tests.items()))}
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def grown_lines(old_lines, new_lines):
    """[(line, old bytes, new bytes)] of the lines that grew, biggest growth
    first (a line absent from the baseline grew from 0)."""
    grown = [(line, old_lines.get(line, 0), new) for line, new in new_lines.items()
             if new > old_lines.get(line, 0)]
    grown.sort(key=lambda g: (-(g[2] - g[1]), g[0]))
    return grown[:10]
