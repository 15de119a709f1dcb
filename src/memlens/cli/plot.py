"""``memlens plot``: the memory timeline as a PNG or SVG (needs matplotlib:
``pip install 'memlens[plot]'``)."""

import os
import sys

from memlens.cli.common import UsageError, check_capture_path, check_output_path, read_capture
from memlens.report.plot import render as plot  # the name this module has always had

__all__ = ["add_parser", "main", "plot"]


def add_parser(sub):
    p = sub.add_parser(
        "plot",
        help="draw the memory timeline of a capture as PNG/SVG (needs matplotlib)",
        description="Draw traced bytes and RSS over time, with the peak marked, like `mprof plot`. "
                    "Needs matplotlib: pip install 'memlens[plot]'.",
    )
    p.add_argument("capture", help="capture file written by `memlens run`")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="picture to write: .png or .svg")
    p.set_defaults(func=main)
    return p


def main(args):
    ext = os.path.splitext(args.output)[1].lower()
    if ext not in (".png", ".svg"):
        raise UsageError(f"output must end in .png or .svg, not {args.output!r}")
    check_capture_path(args.capture)
    check_output_path(args.output)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.stderr.write("memlens plot: error: matplotlib is not installed; "
                         "install it with: pip install 'memlens[plot]'\n")
        return 1
    cap = read_capture("memlens plot", args.capture)
    if cap is None:
        return 1
    if not cap.timeline:
        sys.stderr.write(f"memlens plot: error: {args.capture}: no timeline in this capture "
                         "(it was not written by `memlens run`)\n")
        return 1
    try:
        plot(cap, args.output)
    except OSError as e:
        # check_output_path() ran first, but the write can still fail (a full
        # disk, a dangling symlink, a race): one line, as report does.
        sys.stderr.write(f"memlens plot: error: cannot write {args.output!r}: {e.strerror or e}\n")
        return 2
    sys.stderr.write(f"memlens: wrote {os.path.abspath(args.output)}\n")
    return 0
