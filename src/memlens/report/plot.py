"""The memory timeline of a capture as a picture (PNG or SVG), like
``mprof plot``: traced bytes and RSS over time, the peak marked.  Needs
matplotlib (``pip install 'memlens[plot]'``), imported only when drawing."""

from memlens._util import MIB, format_bytes

__all__ = ["render"]


def render(cap, path):
    """Draw the timeline of `cap` into `path` (format from the suffix)."""
    import matplotlib.pyplot as plt

    fig, _ax, _label = _draw(cap)
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)


def _draw(cap):
    """(figure, axes, peak label or None) of the timeline of `cap`, laid
    out; the caller closes the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in cap.timeline]
    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    if any(s.rss for s in cap.timeline):
        ax.plot(t, [s.rss / MIB for s in cap.timeline], color="#999999", label="RSS")
    ax.plot(t, [s.traced / MIB for s in cap.timeline], color="#264d7a", label="traced")
    if cap.timeline and cap.timeline[0].native is not None:
        ax.plot(t, [s.native / MIB for s in cap.timeline], color="#e07b00", label="of which native")
    when = cap.peak_time
    label = None
    if when is not None:
        ax.axvline(when, color="#d32f2f", linestyle="--", linewidth=1)
        label = ax.annotate(f"peak {format_bytes(cap.peak, unit='MiB')} at {when:.2f} s",
                            (when, cap.peak / MIB), textcoords="offset points", xytext=(5, 5),
                            color="#d32f2f")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("memory (MiB)")
    ax.set_title(cap.meta.get("command", "memlens capture"))
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if label is not None:
        if _keep_inside(fig, ax, label):
            fig.tight_layout()  # the first layout made room for the label where it was
        _legend_clear_of(fig, ax, label)
    return fig, ax, label


def _keep_inside(fig, ax, label):
    # The label starts right of and above the peak; at the last sample it
    # would run past the right edge, at the top of the axes past the top
    # edge: it moves to the other side of the point (measured once laid
    # out, as the text's width depends on the font).  True if it moved.
    renderer = fig.canvas.get_renderer()
    box, inside = label.get_window_extent(renderer), ax.get_window_extent(renderer)
    dx, dy = 5, 5
    if box.x1 > inside.x1:
        dx = -5
        label.set_horizontalalignment("right")
    if box.y1 > inside.y1:
        dy = -5
        label.set_verticalalignment("top")
    label.set_position((dx, dy))
    return (dx, dy) != (5, 5)


def _legend_clear_of(fig, ax, label):
    # A peak at the first sample puts its label where the legend is: the
    # legend takes the first corner where the two do not overlap.
    renderer = fig.canvas.get_renderer()
    box = label.get_window_extent(renderer)
    for loc in ("upper left", "upper right", "lower right", "lower left"):
        legend = ax.legend(loc=loc)
        if not legend.get_window_extent(renderer).overlaps(box):
            return
    ax.legend(loc="upper left")
