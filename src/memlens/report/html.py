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

The page's stacks have their import-system frames folded into one "import
X" frame per import (:mod:`memlens.report.fold`, as in the text report)
unless ``keep_import_frames``: equal folded frames are one frame of the
data, so the flame graph draws one box for them.
"""

import html
import json
import os

from memlens.report import jsonfmt
from memlens.report.fold import IMPORT_FILE, fold_capture
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


def _shown(d, folded=False):
    """What the page prints for each frame of ``d["frames"]`` (already one
    per distinct frame): [flame label, full location, file, function, the
    "Top lines" key], and for each class its name.  `folded`: the frames
    of IMPORT_FILE are folded imports, shown by their label alone."""
    frames = []
    for f in d["frames"]:
        file, func = shown(f["file"]), shown(f["function"])
        if folded and f["file"] == IMPORT_FILE and f["line"] == 0:
            frames.append([func, f"{func} (import-system frames folded)", func, "", func])
            continue
        frames.append([f"{func} ({shown(os.path.basename(f['file']))}:{f['line']})",
                       f"{file}:{f['line']} {func}", file, func, f"{file}:{f['line']}"])
    classes = None if d["classes"] is None else [shown(c["name"]) for c in d["classes"]]
    return {"frames": frames, "classes": classes}


def _split(cap):
    """The peak's Python/native split and the max RSS, as totals spans."""
    native = ""
    if cap.native_at_peak is not None:
        native = (f"<span><b>of which</b> Python's allocator {format_size(cap.peak - cap.native_at_peak)}, "
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


def _payload(cap, view, keep_import_frames=False):
    if not keep_import_frames:
        cap = fold_capture(cap)
    d = jsonfmt.to_dict(cap)
    _thin_timeline(d)
    d["default_view"] = view
    d["shown"] = _shown(d, folded=not keep_import_frames)
    # ensure_ascii (the default): surrogates and U+2028/9 are \u escapes.
    return json.dumps(d, separators=(",", ":")).translate(_SCRIPT_SAFE)


def _combined_svg(run):
    """The combined timeline: total traced bytes across the processes at
    each moment, its peak marked (drawn here: one polyline)."""
    points, peak, when = run.combined()
    if len(points) > _MAX_TIMELINE_POINTS:  # keep each bucket's maximum
        step = -(-len(points) // _MAX_TIMELINE_POINTS)
        points = [max(points[i:i + step], key=lambda p: p[1]) for i in range(0, len(points), step)]
    if not points:
        return '<p class="note">No timeline samples.</p>'
    w, h, left, bottom = 900.0, 200.0, 70.0, 20.0
    tmax = max(points[-1][0], 1e-9)
    ymax = max(peak, 1)

    def xy(t, v):
        return left + (w - left - 10) * t / tmax, h - bottom - (h - bottom - 10) * v / ymax

    path = "".join(("L" if i else "M") + "%.1f,%.1f" % xy(t, v) for i, (t, v) in enumerate(points))
    px, py = xy(when or 0.0, peak)
    # Right of the marker, or left of it in the right half (a peak at the
    # last sample): the label (about 200 px) stays inside the picture.
    lx, anchor = (px - 6, "end") if px > w / 2 else (px + 6, "start")
    return (f'<svg id="combined" width="{w:.0f}" height="{h:.0f}" viewBox="0 0 {w:.0f} {h:.0f}">'
            f'<path d="{path}" fill="none" stroke="#c33" stroke-width="1.5"/>'
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="#c33"/>'
            f'<text id="combined-peak-label" x="{lx:.1f}" y="{max(py, 12):.1f}" text-anchor="{anchor}" '
            f'font-size="12">combined peak '
            f'{format_size(peak)} at {when or 0:.2f} s</text>'
            f'<text x="2" y="14" font-size="11">{format_size(ymax)}</text>'
            f'<text x="{w - 60:.0f}" y="{h - 4:.0f}" font-size="11">{tmax:.2f} s</text></svg>')


def _process_section(run):
    """The process selector (each process's report is in the page; the
    choice is kept in the URL's #fragment) and the combined timeline."""
    e = html.escape
    options = []
    for i, (depth, p) in enumerate(run.tree()):
        indent = "\u2003" * depth  # an em space per level of the tree
        label = (f"{indent}pid {p.pid}: {format_size(p.peak_bytes)} peak, "
                 f"{shown(p.command, 80)}" + ("" if p.status == "ended" else f" [{shown(p.status)}]"))
        options.append(f'<option value="{i}">{e(label)}</option>')
    points, peak, when = run.combined()
    return (f'<h2>Processes ({len(run.processes)})</h2>\n'
            f'<p class="totals"><span><b>Combined peak:</b> {format_size(peak)}'
            f'{"" if when is None else f" at {when:.2f} s"}</span> (traced memory of all processes '
            f'at the same moment)</p>\n{_combined_svg(run)}\n'
            f'<p><label>Process: <select id="process">{"".join(options)}</select></label></p>\n')


# Before report.js runs: the chosen process's data becomes the page's.
_SELECT_JS = """(function () {
  var sel = document.getElementById("process");
  var i = parseInt((location.hash || "#0").slice(1), 10) || 0;
  var src = document.getElementById("memlens-proc-" + i) || document.getElementById("memlens-proc-0");
  document.getElementById("memlens-data").textContent = src.textContent;
  sel.value = src.id.slice(13);
  sel.addEventListener("change", function () { location.hash = sel.value; location.reload(); });
})();"""


def render_run(run, view="peak", keep_import_frames=False):
    """The page of a run with child processes: the selector and the
    combined timeline above the chosen process's report."""
    tree = [p for _, p in run.tree()]
    shown_cap = next((p.capture for p in tree if p.capture is not None), None)
    from memlens.report.model import Capture

    empty = Capture(stacks=[])
    scripts = "".join(f'<script type="application/json" id="memlens-proc-{i}">'
                      f'{_payload(p.capture if p.capture is not None else empty, view, keep_import_frames)}</script>\n'
                      for i, p in enumerate(tree))
    page = render(shown_cap if shown_cap is not None else empty, view, _payload_text="")
    head, sep, rest = page.partition('<h2>Flame graph</h2>')
    page = head + _process_section(run) + sep + rest
    marker = '<script type="application/json" id="memlens-data">'
    return page.replace(marker, scripts + marker, 1).replace(
        "</script>\n<script>\n", f"</script>\n<script>\n{_SELECT_JS}\n</script>\n<script>\n", 1)


def render(cap, view="peak", keep_import_frames=False, _payload_text=None):
    payload = _payload(cap, view, keep_import_frames) if _payload_text is None else _payload_text
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
