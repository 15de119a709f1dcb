"""The timeline's peak label stays inside its picture wherever the peak
is: the HTML report (in Chromium) and `memlens plot`."""

import itertools

import pytest

from memlens.report import html
from memlens.report.model import Capture, Frame, Sample, StackStat

# Measures, in the page, the peak label's box against the picture's.
_MEASURE = """<script>
(function () {
  var label = document.getElementById("peak-label"), svg = label.ownerSVGElement;
  var l = label.getBoundingClientRect(), s = svg.getBoundingClientRect();
  var out = document.createElement("div");
  out.id = "label-box";
  /* and the least margin of any of the picture's texts (the axes' labels) */
  var least = Infinity;
  Array.prototype.forEach.call(svg.querySelectorAll("text"), function (t) {
    var b = t.getBoundingClientRect();
    least = Math.min(least, b.left - s.left, s.right - b.right, b.top - s.top, s.bottom - b.bottom);
  });
  out.textContent = [l.left - s.left, s.right - l.right, l.top - s.top, s.bottom - l.bottom, l.width, least]
    .map(function (v) { return v.toFixed(1); }).join(" ");
  document.body.appendChild(out);
})();
</script>
</body>"""


def _capture(where, n=50):
    """A capture whose traced bytes peak at the first, middle or last of
    `n` samples."""
    peak_at = {"first": 0, "middle": n // 2, "last": n - 1}[where]
    traced = [(40 << 20) - abs(i - peak_at) * (256 << 10) for i in range(n)]
    peaks = list(itertools.accumulate(traced, max))
    timeline = [Sample(i * 0.01, v, p, (60 << 20)) for i, (v, p) in enumerate(zip(traced, peaks))]
    frame = Frame("/app/main.py", 1, "<module>")
    return Capture(stacks=[StackStat((frame,), 0, 0, max(traced), 1)], peak=max(traced),
                   timeline=timeline, meta={"command": f"memlens run peak_{where}.py"})


@pytest.mark.slow
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_html_peak_label_inside_the_timeline(tmp_path, where, dump_dom):
    # GIVEN the report of a capture whose peak is at the first / last sample
    page = tmp_path / f"{where}.html"
    page.write_text(html.render(_capture(where)).replace("</body>", _MEASURE, 1))
    # WHEN Chromium lays it out
    dom = dump_dom(page.as_uri())
    # THEN the label's box is inside the SVG's on every side
    start = dom.index('id="label-box">') + len('id="label-box">')
    left, right, top, bottom, width, least = map(float, dom[start:dom.index("<", start)].split())
    assert width > 50  # the text was drawn
    assert min(left, right, top, bottom) >= 0, (where, left, right, top, bottom)
    # and so is every other text of the picture (the last time label too)
    assert least >= 0, (where, least)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_plot_peak_label_inside_the_axes(where):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from memlens.report import plot

    # GIVEN the plot of a capture whose peak is at the first / last sample
    fig, ax, label = plot._draw(_capture(where))
    try:
        renderer = fig.canvas.get_renderer()
        box, axes = label.get_window_extent(renderer), ax.get_window_extent(renderer)
        # THEN the label is inside the axes, clear of the legend
        assert axes.x0 <= box.x0 and box.x1 <= axes.x1 and axes.y0 <= box.y0 and box.y1 <= axes.y1, \
            (where, box, axes)
        assert not ax.get_legend().get_window_extent(renderer).overlaps(box)
    finally:
        plt.close(fig)


class _Run:
    """What html._combined_svg reads of a run: its combined timeline."""

    def __init__(self, points):
        self.points = points

    def combined(self):
        peak = max(self.points, key=lambda p: p[1])
        return self.points, peak[1], peak[0]


@pytest.mark.parametrize("where, anchor", [("first", "start"), ("last", "end")])
def test_combined_peak_label_sits_on_the_inner_side_of_the_marker(where, anchor):
    # GIVEN a run whose combined peak is at its first / last moment
    points = [(i * 0.1, (10 - i if where == "first" else i + 1) << 20) for i in range(10)]
    svg = html._combined_svg(_Run(points))
    # THEN the label runs from the marker towards the middle of the picture
    start = svg.index('<text id="combined-peak-label"')
    label = svg[start:svg.index(">", start)]
    assert f'text-anchor="{anchor}"' in label, label
