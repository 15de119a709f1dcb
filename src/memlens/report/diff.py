"""What grew and shrank between two captures: per line and per class.

Plain functions from two :class:`~memlens.report.model.Capture` to rows
and text (``memlens diff``); the pytest plugin's baseline gate compares
per-test figures the same way, per line.
"""

from memlens._util import format_bytes, result
from memlens.report.names import path_shortener

__all__ = ["DIFF_VIEWS", "Change", "line_changes", "class_changes", "render"]

#: The views ``memlens diff`` compares.
DIFF_VIEWS = ("peak", "leaks")


@result
class Change:
    """One line (``file:line``) or class and its bytes and blocks (for a
    class: instances) in the old and the new capture."""

    key: str
    old_bytes: int
    new_bytes: int
    old_count: int
    new_count: int

    @property
    def delta(self):
        return self.new_bytes - self.old_bytes


def _sorted(changes):
    return sorted((c for c in changes if c.delta), key=lambda c: (-abs(c.delta), c.key))


def line_changes(old, new, view, short=None):
    """:class:`Change` per innermost line (``file:line``) whose bytes in
    `view` differ, biggest change first."""
    short = short or (lambda f: f)
    acc = {}
    for side, cap in ((0, old), (1, new)):
        for frame, size, count in cap.lines(view):
            key = f"{short(frame.filename)}:{frame.lineno}"
            a = acc.setdefault(key, [0, 0, 0, 0])
            a[side] += size
            a[2 + side] += count
    return _sorted(Change(k, a[0], a[1], a[2], a[3]) for k, a in acc.items())


def class_changes(old, new):
    """:class:`Change` per class of the captures' class tables (instances,
    bytes at exit), biggest change first; None when either capture has no
    class table."""
    if old.classes is None or new.classes is None:
        return None
    acc = {}
    for side, cap in ((0, old), (1, new)):
        for row in cap.classes:
            a = acc.setdefault(row.name, [0, 0, 0, 0])
            a[side] += row.bytes
            a[2 + side] += row.count
    return _sorted(Change(k, a[0], a[1], a[2], a[3]) for k, a in acc.items())


def _signed(n):
    return ("+" if n > 0 else "-") + format_bytes(abs(n))


def _table(title, changes, limit, what, counts=False):
    out = [title]
    if not changes:
        out.append("  (nothing)")
        return out
    out.append(f"  {'old':>10}     {'new':>10}  {'delta':>11}  {what}")
    for c in changes[:limit]:
        key = f"{c.key} ({c.old_count} -> {c.new_count})" if counts else c.key
        out.append(f"  {format_bytes(c.old_bytes):>10} -> {format_bytes(c.new_bytes):>10}  "
                   f"{_signed(c.delta):>11}  {key}")
    if len(changes) > limit:
        rest = sum(c.delta for c in changes[limit:])
        out.append(f"  {'':>10}    {'':>10}  {_signed(rest) if rest else '0 B':>11}  "
                   f"... {len(changes) - limit} more")
    return out


def render(old, new, view="peak", limit=15, names=("old", "new")):
    """The text of ``memlens diff``: totals, then what grew and what shrank
    per line in `view`, then per class."""
    if view not in DIFF_VIEWS:
        raise ValueError(f"unknown view {view!r}: expected one of {', '.join(DIFF_VIEWS)}")
    old_total, new_total = old.view_total(view), new.view_total(view)
    what = "at the peak" if view == "peak" else "still allocated at exit"
    out = [f"memlens diff: {names[0]} -> {names[1]}, bytes {what}",
           f"  total: {format_bytes(old_total)} -> {format_bytes(new_total)} "
           f"({_signed(new_total - old_total) if new_total != old_total else 'no change'})", ""]
    lines = line_changes(old, new, view, path_shortener())
    out += _table("Lines that grew", [c for c in lines if c.delta > 0], limit, "file:line")
    out.append("")
    out += _table("Lines that shrank", [c for c in lines if c.delta < 0], limit, "file:line")
    classes = class_changes(old, new)
    out.append("")
    if classes is None:
        out.append("Classes: (a capture has no class table; `memlens run` writes one)")
    else:
        what = "class (instances old -> new)"
        out += _table("Classes that grew (bytes at exit)", [c for c in classes if c.delta > 0], limit,
                      what, counts=True)
        out.append("")
        out += _table("Classes that shrank (bytes at exit)", [c for c in classes if c.delta < 0], limit,
                      what, counts=True)
    return "\n".join(out) + "\n"
