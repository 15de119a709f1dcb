"""Exact object sizes: sizeof, deep_size, breakdown, size_by_type.

The numbers are what the allocator handed out, byte for byte -- the figure
tracemalloc sees when the structure is built -- not what ``__sizeof__``
reports.  The walk is done in C (``memlens._core``): iterative, with a
bitmap visited set; it never creates an instance ``__dict__``, allocates no
Python object per visited object, and never triggers garbage collection.

What ``deep_size`` counts (the rule, exactly):

* every object reachable from the arguments through the references the
  garbage collector knows (``tp_traverse``), plus the keys of dicts (which
  ``tp_traverse`` skips for str-keyed dicts), plus the references of C
  objects outside the collector: the items of an object buffer (format
  ``"O"``: numpy object arrays) and a numpy view's ``base``; each object
  once;
* for each object, its own allocation: GC header and (3.11+) pre-header,
  the object itself, and memory it owns that is not an object (list item
  arrays, dict key tables and values arrays, set tables, bytearray buffers,
  a str's cached UTF-8 copy, an instance's values array or inline values);
* an instance's ``__dict__``, when one exists, as part of the instance;
* never a ``__sizeof__`` written in Python (pandas' is already deep): the
  object is sized by its allocation and its references are walked.  A C
  ``__sizeof__`` (numpy's ndarray, ``deque``) is the type's own.

Left out unless ``shared=True`` (they are not owned by the structure, only
shared with the rest of the program), and not entered either:

* program structure: classes and metaclasses, modules, functions and
  builtin functions, code objects, descriptors (methods, properties,
  slots, staticmethod/classmethod);
* values the interpreter caches and shares: ``None``, ``True``, ``False``,
  ``Ellipsis``, ``NotImplemented``, the small ints -5..256, interned strs
  (attribute names, identifier-like literals), empty and one-character
  Latin-1 strs, empty and one-byte bytes, the empty tuple, and on 3.12+
  every immortal object.

The objects passed in are always counted, whatever their kind.
"""

import dataclasses
from typing import NamedTuple, Tuple

from memlens import _core
from memlens._util import check_bool, check_int, format_bytes, qualname, result

__all__ = ["sizeof", "deep_size", "breakdown", "size_by_type", "Node", "TypeRow", "SizeStats"]


def sizeof(obj):
    """Bytes the allocator handed out for ``obj`` itself.

    Includes the GC header, the 3.11+ pre-header, the variable part, memory
    the object owns that is not an object (a list's item array, a dict's
    tables, ...), and for instances their values array / inline values or
    their ``__dict__``.  ``sys.getsizeof`` leaves several of these out.  A
    ``__sizeof__`` written in Python is not called (it is the program's
    view, not the allocation); a C one is.
    """
    return _core.sizeof(obj)


class SizeStats(NamedTuple):
    """What :func:`deep_size` found, with ``stats=True``.

    A NamedTuple, unlike memlens's other results: it replaces the plain int
    ``deep_size`` returns, and callers unpack it
    (``nbytes, count, warnings, scratch = deep_size(x, stats=True)``).
    """

    bytes: int     #: bytes counted
    count: int     #: objects counted
    warnings: int  #: objects whose C __sizeof__ failed (sized by basic size),
                   #: or that hold memory the walk cannot see (docs/sizing.md)
    scratch: int   #: peak scratch memory of the walk, freed before returning


def deep_size(*objs, shared=False, stats=False):
    """Bytes of everything reachable from ``objs``, each object once.

    See the module docstring for exactly what is counted; ``shared=True``
    also counts classes, modules, functions and the interpreter's shared
    values.  With ``stats=True`` returns a :class:`SizeStats` (bytes, count,
    warnings, scratch) instead of the bytes alone; ``warnings`` counts the
    objects whose C ``__sizeof__`` raised or returned a non-int or negative
    value, which are sized by their type's basic size instead, and the
    objects holding memory the walk cannot see (numpy record arrays holding
    objects, numpy 2 StringDType arrays).
    """
    check_bool("deep_size() shared", shared)
    if stats:
        return SizeStats(*_core.deep_size(objs, shared))
    return _core.deep_size(objs, shared)[0]


@result
class TypeRow:
    """One row of :func:`size_by_type`: a type, its object count and bytes.

    ``name`` is the type's qualified name (``module.Class``); iterating
    gives ``(name, count, bytes)``, so a row unpacks like a 3-tuple.
    """

    type: type
    count: int
    bytes: int
    name: str = dataclasses.field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "name", qualname(self.type))

    def __iter__(self):
        return iter((self.name, self.count, self.bytes))

    def __repr__(self):
        return f"TypeRow(name={self.name!r}, count={self.count}, bytes={self.bytes})"


def size_by_type(*objs, shared=False):
    """Rows of (type name, count, bytes) over everything reachable from
    ``objs``, largest first.  Each row also has ``.type``."""
    check_bool("size_by_type() shared", shared)
    rows = [TypeRow(t, c, b) for t, c, b in _core.size_by_type(objs, shared)]
    rows.sort(key=lambda r: (-r.bytes, r.name))
    return rows


@result
class Node:
    """A node of :func:`breakdown`.

    ``label`` is the edge from the parent (``.attr``, ``[3]``, ``['key']``,
    ``<key 'k'>`` for a dict key, ``{item}`` for a set member, ``<type>``
    otherwise); ``own`` the object's own bytes; ``deep`` its bytes plus
    everything below it in the walk (each object belongs to the first node
    that reached it, so the children's ``deep`` add up with ``own`` and
    ``more_bytes`` to the parent's); ``count`` the objects in ``deep``;
    ``children`` the largest children (a tuple); ``more_count``/``more_bytes``
    what the children not shown hold.  ``str(node)`` is :meth:`format`.
    """

    label: str
    type_name: str
    own: int
    deep: int
    count: int
    more_count: int
    more_bytes: int
    children: Tuple["Node", ...] = ()

    def __repr__(self):
        return (f"Node(label={self.label!r}, type_name={self.type_name!r}, "
                f"own={self.own}, deep={self.deep}, count={self.count}, "
                f"children={len(self.children)})")

    def walk(self):
        """Yield (depth, node) for this node and every node below it."""
        stack = [(0, self)]
        while stack:
            d, node = stack.pop()
            yield d, node
            for child in reversed(node.children):
                stack.append((d + 1, child))

    def __str__(self):
        return self.format()

    def format(self):
        """The tree as an indented table: what, type, own, deep, %, objects."""
        total = self.deep or 1
        lines = [f"{'what':<44} {'type':<16} {'own':>10} {'deep':>10} {'%':>6} {'objects':>9}"]
        # explicit stack: a node, then its children, then its "... more" line
        stack = [(0, self, False)]
        while stack:
            d, node, more_line = stack.pop()
            if more_line:
                more = ("  " * (d + 1) + f"... {node.more_count:,} more object{'' if node.more_count == 1 else 's'}")[:44]
                lines.append(
                    f"{more:<44} {'':<16} {'':>10} {format_bytes(node.more_bytes):>10} "
                    f"{100.0 * node.more_bytes / total:>5.1f}% {node.more_count:>9,}"
                )
                continue
            name = ("  " * d + (node.label or "(root)"))[:44]
            lines.append(
                f"{name:<44} {node.type_name[:16]:<16} {format_bytes(node.own):>10} "
                f"{format_bytes(node.deep):>10} {100.0 * node.deep / total:>5.1f}% {node.count:>9,}"
            )
            if node.more_count:
                stack.append((d, node, True))
            for child in reversed(node.children):
                stack.append((d + 1, child, False))
        return "\n".join(lines)


def breakdown(obj, depth=2, *, limit=10, shared=False):
    """A tree of what ``deep_size(obj)`` is made of, ``depth`` levels deep.

    Each node has ``label`` (the edge from its parent: ``.attr``, ``[3]``,
    ``['key']``), ``type_name``, ``own`` and ``deep`` bytes, and up to
    ``limit`` children, largest first; ``str(node)`` renders an indented
    table.  The root's ``deep`` equals ``deep_size(obj)``.
    """
    check_int("breakdown() depth", depth)
    check_int("breakdown() limit", limit)
    check_int("breakdown() depth", depth, 0)
    check_int("breakdown() limit", limit, 0)
    check_bool("breakdown() shared", shared)
    rows = _core.breakdown(obj, depth, limit, shared)
    # Rows are breadth-first (a parent before its children): build the
    # immutable nodes from the last row back, children first.
    kids = [[] for _ in rows]
    for i, row in enumerate(rows):
        if row[0] >= 0:
            kids[row[0]].append(i)
    nodes = [None] * len(rows)
    for i in range(len(rows) - 1, -1, -1):
        _, label, type_name, own, deep, count, more_count, more_bytes = rows[i]
        nodes[i] = Node(label, type_name, own, deep, count, more_count, more_bytes,
                        tuple(nodes[j] for j in kids[i]))
    return nodes[0]
