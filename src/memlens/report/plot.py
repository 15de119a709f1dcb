"""The memory timeline of a capture as a picture (PNG or SVG), like
``mprof plot``: traced bytes and RSS over time, the peak marked.  Needs
matplotlib (``pip install 'memlens[plot]'``), imported only when drawing."""

from memlens._util import MIB, format_bytes

__all__ = ["render"]


def render(cap, path):
    """Draw the timeline of `cap` into `path` (format from the suffix)."""
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
    if when is not None:
        ax.axvline(when, color="#d32f2f", linestyle="--", linewidth=1)
        ax.annotate(f"peak {format_bytes(cap.peak, unit='MiB')} at {when:.2f} s", (when, cap.peak / MIB),
                    textcoords="offset points", xytext=(5, 5), color="#d32f2f")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("memory (MiB)")
    ax.set_title(cap.meta.get("command", "memlens capture"))
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)
