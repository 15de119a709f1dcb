"""Whole-heap census, growth, retained size and "why is this alive".

* :func:`census` -- every live object once, grouped by type, sized by the
  rules of :func:`memlens.sizeof`.  Objects counted: every object the
  cyclic GC tracks, plus every untracked object reachable from one (ints,
  floats, strs, untracked tuples and dicts ...) or from a local variable
  of a running frame of any thread.  Nothing is left out:
  classes, functions, modules and the interpreter's shared values are rows
  too.  An instance's ``__dict__`` (when one has been materialized) is
  counted in its instance's row, never as a ``dict`` row, so a class's row
  is what its instances cost.  memlens's own temporary list of the tracked
  objects is left out.
* :func:`retained_size` -- the bytes that would be freed if an object
  became unreachable: what it reaches that nothing else keeps alive.
* ``census(retained=True)`` -- adds, per class, the bytes that would be
  freed if every instance of it went away, from a dominator tree of the
  whole heap.
* :func:`why_alive` -- the shortest reference chains from a root to an
  object, written as Python expressions (``app.REGISTRY['hold'][1]``).

The roots (what keeps everything else alive) follow the cyclic GC's own
test: an object whose reference count is larger than the references that
other objects visibly hold is referenced from outside the object graph --
from C code, from an executing frame's local variables, from an object
that does not expose its references -- and is a root.  Module globals and
the local variables of every thread's frames are named roots for
:func:`why_alive`.

Everything runs in C over the sizing engine's walker: no Python object per
visited object, no ``__dict__`` created, and no garbage collection unless
``collect=True``.
"""

import dataclasses
import gc
import sys
from typing import Dict, Optional, Tuple

from memlens import _core
from memlens._util import check_bool, check_int, format_bytes, qualname, result, type_module

__all__ = ["census", "Census", "CensusRow", "CensusDiff", "DiffRow", "retained_size",
           "why_alive", "AlivePaths"]


@result
class CensusRow:
    """One type's line in a :class:`Census`.

    ``bytes`` is the total footprint of its ``count`` live objects;
    ``retained`` (only with ``census(retained=True)``, else ``None``) the
    bytes that would be freed if all of them went away.
    """

    type: type
    count: int
    bytes: int
    retained: Optional[int] = None
    name: str = dataclasses.field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "name", qualname(self.type))

    def __repr__(self):
        extra = "" if self.retained is None else f", retained={self.retained}"
        return f"CensusRow(name={self.name!r}, count={self.count}, bytes={self.bytes}{extra})"


def _table(header, lines):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)] if lines else \
        [len(h) for h in header]
    out = []
    for i, line in enumerate([header] + lines):
        cells = []
        for j, cell in enumerate(line):
            cell = str(cell)
            cells.append(cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j]))
        out.append("  ".join(cells).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


@result
class Census:
    """The live heap grouped by type (see :func:`census`).

    ``rows`` (a tuple of :class:`CensusRow`) are sorted by bytes, largest
    first; ``total_count`` and ``total_bytes`` sum them; ``scratch`` is the
    peak scratch memory the census used (freed before it returned).
    ``str(census)`` is :meth:`format`.
    """

    rows: Tuple[CensusRow, ...]
    total_count: int
    total_bytes: int
    scratch: int
    warnings: int
    has_retained: bool
    _by_type: Dict[type, CensusRow] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        rows = tuple(sorted(self.rows, key=lambda r: (-r.bytes, r.name)))
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "_by_type", {r.type: r for r in rows})

    def _row(self, cls):
        if not isinstance(cls, type):
            raise TypeError(f"expected a class, got {type(cls).__name__}")
        return self._by_type.get(cls)

    def count(self, cls):
        """Live objects whose type is exactly ``cls`` (0 if none)."""
        row = self._row(cls)
        return row.count if row else 0

    def bytes(self, cls):
        """Bytes of the live objects whose type is exactly ``cls``."""
        row = self._row(cls)
        return row.bytes if row else 0

    def retained(self, cls):
        """Bytes freed if every instance of ``cls`` went away (needs
        ``census(retained=True)``)."""
        if not self.has_retained:
            raise ValueError("this census has no retained sizes: use census(retained=True)")
        row = self._row(cls)
        return row.retained if row else 0

    def top(self, n=10, by="bytes"):
        """The ``n`` largest rows by ``"bytes"``, ``"count"`` or
        ``"retained"``."""
        if by not in ("bytes", "count", "retained"):
            raise ValueError(f"by must be 'bytes', 'count' or 'retained', not {by!r}")
        if by == "retained" and not self.has_retained:
            raise ValueError("this census has no retained sizes: use census(retained=True)")
        return sorted(self.rows, key=lambda r: (-getattr(r, by), r.name))[:n]

    def by_module(self):
        """Rows summed by the module that defines each type, as
        ``[(module, count, bytes), ...]``, largest first."""
        acc = {}
        for r in self.rows:
            mod = type_module(r.type) or "builtins"
            c, b = acc.get(mod, (0, 0))
            acc[mod] = (c + r.count, b + r.bytes)
        return sorted(((m, c, b) for m, (c, b) in acc.items()), key=lambda t: (-t[2], t[0]))

    def diff(self, older):
        """What changed since the ``older`` census (see :class:`CensusDiff`)."""
        if not isinstance(older, Census):
            raise TypeError(f"diff() needs a Census, not {type(older).__name__}")
        return CensusDiff.between(self, older)

    def format(self, limit=20, by="bytes"):
        rows = self.top(limit, by=by)
        header = ["type", "count", "bytes", "%"]
        if self.has_retained:
            header.append("retained")
        total = self.total_bytes or 1
        lines = []
        for r in rows:
            line = [r.name, f"{r.count:,}", format_bytes(r.bytes), f"{100.0 * r.bytes / total:.1f}%"]
            if self.has_retained:
                line.append(format_bytes(r.retained))
            lines.append(line)
        head = (f"memlens census: {self.total_count:,} objects, {format_bytes(self.total_bytes)}"
                f" in {len(self.rows):,} types")
        more = len(self.rows) - len(rows)
        tail = f"\n... {more:,} more types" if more > 0 else ""
        return head + "\n" + _table(header, lines) + tail

    def __str__(self):
        return self.format()

    def __repr__(self):
        return (f"<Census {self.total_count:,} objects, {self.total_bytes:,} bytes, "
                f"{len(self.rows)} types>")


@result
class DiffRow:
    """One type's change between two censuses: ``count`` and ``bytes`` are
    the growth (negative when it shrank), ``total_count``/``total_bytes``
    the newer census's totals."""

    name: str
    type: type
    count: int
    bytes: int
    total_count: int
    total_bytes: int

    def __repr__(self):
        return f"DiffRow(name={self.name!r}, count={self.count:+d}, bytes={self.bytes:+d})"


@result
class CensusDiff:
    """Growth between two censuses, per type (types matched by identity).

    ``rows`` holds the types whose count or bytes changed, largest byte
    growth first, as a tuple of :class:`DiffRow` (``.name``, ``.count`` and
    ``.bytes`` deltas); ``count`` and ``bytes`` are the overall deltas;
    ``str()`` (:meth:`format`) prints the rows like objgraph's
    ``show_growth`` with bytes added.
    """

    rows: Tuple[DiffRow, ...]
    count: int
    bytes: int

    @classmethod
    def between(cls, new, old):
        """The growth from census `old` to census `new` (``new.diff(old)``)."""
        rows = []
        for t in set(new._by_type) | set(old._by_type):
            n = new._by_type.get(t)
            o = old._by_type.get(t)
            nc, nb = (n.count, n.bytes) if n else (0, 0)
            oc, ob = (o.count, o.bytes) if o else (0, 0)
            if nc != oc or nb != ob:
                rows.append(DiffRow((n or o).name, t, nc - oc, nb - ob, nc, nb))
        rows.sort(key=lambda r: (-r.bytes, -r.count, r.name))
        return cls(tuple(rows), new.total_count - old.total_count, new.total_bytes - old.total_bytes)

    def row(self, cls):
        """The row of ``cls``, or None if it did not change."""
        for r in self.rows:
            if r.type is cls:
                return r
        return None

    def format(self, limit=20):
        lines = []
        for r in self.rows[:limit]:
            lines.append([r.name, f"{r.total_count:,}", f"{r.count:+,}", format_bytes(r.total_bytes),
                          ("+" if r.bytes >= 0 else "-") + format_bytes(abs(r.bytes))])
        head = (f"memlens growth: {self.count:+,} objects, "
                f"{'+' if self.bytes >= 0 else '-'}{format_bytes(abs(self.bytes))}")
        return head + "\n" + _table(["type", "count", "delta", "bytes", "delta"], lines)

    def __str__(self):
        return self.format()


def census(retained=False, collect=False):
    """Every live object once, grouped by type: a :class:`Census`.

    With ``retained=True`` each row also gets the bytes that would be freed
    if every instance of that type went away (a dominator tree of the whole
    heap: slower, and more scratch memory).  ``collect=True`` runs
    ``gc.collect()`` first, so that unreachable cycles are not counted;
    otherwise the census never triggers a collection.
    """
    check_bool("census() retained", retained)
    check_bool("census() collect", collect)
    if collect:
        gc.collect()
    rows, count, nbytes, scratch, warnings, _ = _core.census(retained, globals())
    return Census(tuple(CensusRow(t, c, b, None if r < 0 else r) for t, c, b, r in rows),
                  count, nbytes, scratch, warnings, retained)


def retained_size(obj, collect=False):
    """Bytes that would be freed if ``obj`` became unreachable.

    That is ``obj`` itself plus everything it reaches that no root reaches
    without passing through ``obj``; parts shared with other live
    structures are not retained.  References held by this call itself are
    not counted.  ``collect=True`` runs ``gc.collect()`` first.
    """
    check_bool("retained_size() collect", collect)
    if collect:
        gc.collect()
    return _core.retained_size(obj)[0]


class AlivePaths(list):
    """The reference chains :func:`why_alive` found (a list of str), with
    ``reason`` explaining an empty answer.

    A list subclass, not a result dataclass like the others: the answer
    *is* the list of chains (``for path in why_alive(x)``, ``paths[0]``,
    ``if not paths``), as it was before the attributes were added.
    """

    def __init__(self, target, paths, referrers, reached, reason):
        list.__init__(self, paths)
        self.target = target
        self.referrers = referrers
        self.reached = reached
        self.reason = reason

    def __str__(self):
        if not self:
            return f"why_alive({self.target}): {self.reason}"
        lines = [f"why_alive({self.target}): {len(self)} shortest reference chain(s)"]
        lines += [f"  {p}" for p in self]
        if self.referrers > len(self):
            lines.append(f"  ({self.referrers} objects refer to it directly)")
        return "\n".join(lines)


def why_alive(obj, max_paths=3):
    """The shortest reference chains from a root to ``obj``.

    Returns an :class:`AlivePaths` (a list of str, shortest first), each
    chain written as an expression: ``app.REGISTRY['hold'][1]`` (module
    global, dict value, list item), ``<frame main() local 'cache'>.items[3]``
    (a local variable of a running frame, then an attribute),
    ``app.Order.__dict__['_cache']`` (a class attribute).  A chain may start
    at an anonymous root such as ``<dict object at 0x...>`` when an object is
    held from C code.  When there is no chain, ``reason`` says why.
    """
    check_int("why_alive() max_paths", max_paths, 0)
    modules = [(name, vars(m)) for name, m in list(sys.modules.items())
               if type(m) is type(sys) and isinstance(name, str)]
    paths, referrers, reached = _core.why_alive(obj, max_paths, modules, globals())
    del modules
    target = f"<{type(obj).__name__} object at {id(obj):#x}>"
    reason = ""
    if not paths:
        if max_paths == 0:
            reason = "max_paths=0"
        elif referrers == 0 and not gc.is_tracked(obj):
            reason = ("no object refers to it, and the garbage collector does not track it: "
                      "it is held only by C code or by the caller's own expression")
        elif referrers == 0:
            reason = ("no object refers to it: it is held only by C code or by the caller's "
                      "own expression (or it is about to be freed)")
        else:
            reason = (f"{referrers} object(s) refer to it, but none is reachable from a root: "
                      "it is garbage kept by a reference cycle, which gc.collect() would free")
    return AlivePaths(target, paths, referrers, reached, reason)
