"""``memlens diff``: what grew and shrank between two captures."""

import sys

from memlens.cli.common import UsageError, check_capture_path, read_capture
from memlens.report import diff

__all__ = ["add_parser", "main"]


def add_parser(sub):
    p = sub.add_parser(
        "diff",
        help="compare two captures: what grew and shrank per line and per class",
        description="Compare two captures written by `memlens run` (or Snapshot.dump): bytes per "
                    "line (file:line, old -> new, delta) in one view, and per class from the "
                    "captures' class tables.  With --fail-on-increase, exit 1 when the view's "
                    "total grew beyond the tolerance (for CI scripts).",
    )
    p.add_argument("old", help="the earlier capture")
    p.add_argument("new", help="the later capture")
    p.add_argument("--view", choices=diff.DIFF_VIEWS, default="peak",
                   help="peak = blocks live at the peak (default); leaks = still allocated at exit")
    p.add_argument("--limit", type=int, default=15, metavar="N", help="rows per table (default 15)")
    p.add_argument("--fail-on-increase", metavar="TOLERANCE",
                   help="exit 1 if the total grew by more than this: a percentage ('10%%') or "
                        "bytes ('1 MB', 4096)")
    p.set_defaults(func=main)
    return p


def main(args):
    from memlens.pytest.limits import parse_tolerance

    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    tolerance = None
    if args.fail_on_increase is not None:
        try:
            tolerance = parse_tolerance(args.fail_on_increase)
        except ValueError as e:
            raise UsageError(f"--fail-on-increase: {e}") from None
    check_capture_path(args.old)
    check_capture_path(args.new)
    old = read_capture("memlens diff", args.old)
    if old is None:
        return 1
    new = read_capture("memlens diff", args.new)
    if new is None:
        return 1
    sys.stdout.write(diff.render(old, new, args.view, args.limit, (args.old, args.new)))
    sys.stdout.flush()
    if tolerance is not None:
        before, after = old.view_total(args.view), new.view_total(args.view)
        if after > tolerance.allowed(before):
            sys.stderr.write(f"memlens diff: {args.view} total grew beyond {tolerance.text}: "
                             f"{before:,} B -> {after:,} B\n")
            return 1
    return 0
