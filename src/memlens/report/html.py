"""The self-contained HTML report: flame graph (peak / leaks / allocated),
timeline with the peak marked, top lines and the class table.  CSS and JS
are package data inlined into the page; nothing is fetched from a network.
"""

import html
import json
import os

from memlens.report import jsonfmt
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
    for key in ("traced", "peak", "rss"):
        t[key] = [max(t[key][i:i + step]) for i in range(0, n, step)]
    t["t_s"] = [t["t_s"][min(i + step, n) - 1] for i in range(0, n, step)]


def render(cap, view="peak"):
    d = jsonfmt.to_dict(cap)
    _thin_timeline(d)
    d["default_view"] = view
    # "</" must not appear inside the <script> element.
    payload = json.dumps(d, separators=(",", ":")).replace("</", "<\\/")
    title = cap.meta.get("command") or "memlens capture"
    when = cap.peak_time
    alloc_note = "" if cap.allocated_exact else (
        '<p class="note">"Allocated" is a lower bound: per stack, the larger of what was live at the '
        "peak and at exit (this capture was written by an older memlens, without cumulative "
        "totals).</p>")
    sampled = (f'<p class="note">Sampled every {cap.sample_bytes} bytes on average: numbers are '
               "estimates.</p>") if cap.sample_bytes else ""
    e = html.escape
    meta_line = " \u00b7 ".join(f"{k}: {v}" for k, v in sorted(cap.meta.items())
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
<span><b>Still allocated at exit:</b> {format_size(cap.total)}</span></p>
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
<div id="classes"><h2>Top classes at exit</h2>
<table><thead><tr><th class="num">bytes</th><th class="num">instances</th><th>class</th></tr></thead><tbody></tbody></table></div>
<script type="application/json" id="memlens-data">{payload}</script>
<script>
{_asset("report.js")}
</script>
</body>
</html>
"""
