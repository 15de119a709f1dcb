"""Report renderers of memlens captures.

Each renderer is a plain function from a :class:`~memlens.report.model.Capture`
(the data model, buildable by hand in tests) to text, JSON, HTML, folded
stacks or pprof bytes.  :func:`~memlens.report.model.load` reads a capture
file into the model.
"""

from memlens.report.collapsed import OutputTooLarge
from memlens.report.model import VIEWS, Capture, Frame, Sample, StackStat, load

__all__ = ["VIEWS", "FORMATS", "Capture", "Frame", "Sample", "StackStat", "OutputTooLarge", "load",
           "render"]

#: What ``render`` (and ``memlens report --format``) can produce.
FORMATS = ("text", "json", "html", "collapsed", "pprof")


def render(cap, fmt, view, limit=15, keep_import_frames=False):
    """The report of `cap` in format `fmt` (one of :data:`FORMATS`) for
    `view`: str, or bytes for pprof.  ``limit``: rows per text table.
    Text and HTML fold the import system's frames (report/fold.py) unless
    ``keep_import_frames``; json, collapsed and pprof keep them.  (The
    plot, which writes a file, is :func:`memlens.report.plot.render`.)
    :class:`OutputTooLarge` when folded stacks would exceed their bound."""
    from memlens.report import collapsed, html, jsonfmt, pprof, text

    if fmt == "text":
        return text.render(cap, view, limit, keep_import_frames)
    if fmt == "json":
        return jsonfmt.render(cap)
    if fmt == "html":
        return html.render(cap, view, keep_import_frames)
    if fmt == "collapsed":
        return collapsed.render(cap, view)
    if fmt == "pprof":
        return pprof.render(cap)
    raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
