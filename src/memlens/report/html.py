"""The self-contained HTML report: flame graph (peak / leaks / allocated),
timeline with the peak marked, top lines and the class table.  CSS and JS
are package data inlined into the page; nothing is fetched from a network.

The page embeds the JSON report (names as recorded, for the search) and,
per distinct frame and class, the names as the page shows them:
:func:`memlens.report.names.shown` (escaped, the middle of a long name
elided), built here once so that the script never builds a string per
frame of every stack.  In the embedded JSON, ``<``, ``>``, ``&`` and
U+2028/U+2029 are ``\\u`` escapes, so that no name can end the script
element or put the HTML parser into another state (``<!--<script``).
"""

import html
import json
import os

from memlens.report import jsonfmt
from memlens.report.names import shown
from memlens._util import format_bytes as format_size

__all__ = ["render"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def _asset(name):
    with open(os.path.join(_HERE, name), encoding="utf-8") as f:
        return f.read()


# A browser draws a few thousand timeline points fine.
_MAX_TIMELINE_POINTS = 3000


def _thin_timeline(d, limit=_MAX_TIMELINE_POINTS):
    # Keep the maxima of each bucket so the peak stays visible.
    t = d["timeline"]
    n = len(t["t_s"])
    if n <= limit:
        return
    step = -(-n // limit)
    for key in ("traced", "peak", "rss", "native"):
        if t.get(key) is not None:
            t[key] = [max(t[key][i:i + step]) for i in range(0, n, step)]
    t["t_s"] = [t["t_s"][min(i + step, n) - 1] for i in range(0, n, step)]


# The command line in the title may be long; not unboundedly.
_MAX_TITLE = 400

# JSON text of the data as it may stand inside a <script> element: these
# only occur inside JSON strings, where \u escapes mean the same.
_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                              "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _shown(d):
    """What the page prints for each frame of ``d["frames"]`` (already one
    per distinct frame): [flame label, full location, file, function], and
    for each class its name."""
    frames = []
    for f in d["frames"]:
        file, func = shown(f["file"]), shown(f["function"])
        frames.append([f"{func} ({shown(os.path.basename(f['file']))}:{f['line']})",
                       f"{file}:{f['line']} {func}", file, func])
    classes = None if d["classes"] is None else [shown(c["name"]) for c in d["classes"]]
    return {"frames": frames, "classes": classes}


def _split(cap):
    """The peak's Python/native split and the max RSS, as totals spans."""
    native = ""
    if cap.native_at_peak is not None:
        native = (f"<span><b>of which</b> Python objects {format_size(cap.peak - cap.native_at_peak)}, "
                  f"native blocks {format_size(cap.native_at_peak)}</span>\n")
    rss = max((s.rss for s in cap.timeline), default=0)
    shown = ""
    if rss:
        shown = f"\n<span><b>Max RSS:</b> {format_size(rss)}"
        if rss > cap.peak:
            shown += (f" ({format_size(rss - cap.peak)} or more not traced: allocator slack, fragmentation, "
                      "untouched pages, code, statically linked allocators)")
        shown += "</span>"
    return native, shown


def _advice_section(cap):
    """The "Advice" section: each suggestion's saving, text, blockers,
    patch and diff, escaped here (no script builds it)."""
    if cap.advice is None:
        return ""
    e = html.escape
    out = ['<h2>Advice</h2><div id="advice">']
    if not cap.advice:
        out.append('<p class="note">Nothing to suggest above the threshold.</p>')
    for a in cap.advice:
        where = f' <span class="note">{e(shown(a["location"]))}</span>' if a["location"] else ""
        out.append(f'<div class="advice"><h3>[{e(a["kind"])}] {e(shown(a["target"]))}: '
                   f'save {e(format_size(a["saving"]))}{where}</h3><p>{e(a["text"])}</p>')
        out.extend(f'<p class="blocker">blocker: {e(b)}</p>' for b in a["blockers"])
        if a["patch"]:
            out.append(f'<p class="note">patch:</p><pre>{e(a["patch"])}</pre>')
        if a["diff"]:
            out.append(f'<p class="note">as a diff (patch -p0):</p><pre>{e(a["diff"])}</pre>')
        out.append("</div>")
    out.append("</div>")
    return "\n".join(out)


def render(cap, view="peak"):
    d = jsonfmt.to_dict(cap)
    _thin_timeline(d)
    d["default_view"] = view
    d["shown"] = _shown(d)
    # ensure_ascii (the default): surrogates and U+2028/9 are \u escapes.
    payload = json.dumps(d, separators=(",", ":")).translate(_SCRIPT_SAFE)
    title = shown(cap.meta.get("command") or "memlens capture", _MAX_TITLE)
    when = cap.peak_time
    native, rss = _split(cap)
    alloc_note = "" if cap.allocated_exact else (
        '<p class="note">"Allocated" is a lower bound: per stack, the larger of what was live at the '
        "peak and at exit (this capture was written by an older memlens, without cumulative "
        "totals).</p>")
    sampled = (f'<p class="note">Sampled every {cap.sample_bytes} bytes on average: numbers are '
               "estimates.</p>") if cap.sample_bytes else ""
    e = html.escape
    meta_line = " \u00b7 ".join(f"{k}: {shown(v)}" for k, v in sorted(cap.meta.items())
                                if k in ("python", "exit_code", "duration_s"))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>memlens: {e(title)}</title>
<style>
{_asset("report.css")}
</style>
</head>
<body>
<h1>memlens: {e(title)}</h1>
<div class="meta">{e(meta_line)}</div>
<p class="totals"><span><b>Peak traced:</b> {format_size(cap.peak)}{"" if when is None else f" at {when:.2f} s"}</span>
{native}<span><b>Still allocated at exit:</b> {format_size(cap.total)}</span>{rss}</p>
{sampled}
<h2>Flame graph</h2>
<div class="tabs"><button data-view="peak">Peak</button><button data-view="leaks">Leaks (at exit)</button><button data-view="allocated">Allocated</button><input id="search" type="search" placeholder="Search frames (file, function)"></div>
{alloc_note}
<div id="crumbs"></div>
<div id="flame"></div>
<div id="tip"></div>
<p class="note">Click a frame to zoom in, a breadcrumb to zoom out; hover for bytes and blocks.</p>
<h2>Timeline</h2>
<div id="timeline"></div>
<h2>Top lines</h2>
<table id="lines"><thead><tr><th class="num">bytes</th><th class="num">blocks</th><th>line</th><th>function</th></tr></thead><tbody></tbody></table>
{_advice_section(cap)}
<div id="classes"><h2>Top classes at exit</h2>
<table><thead><tr><th class="num">bytes</th><th class="num">instances</th><th>class</th></tr></thead><tbody></tbody></table></div>
<script type="application/json" id="memlens-data">{payload}</script>
<script>
{_asset("report.js")}
</script>
</body>
</html>
"""
