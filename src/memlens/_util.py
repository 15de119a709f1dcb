"""Helpers shared by every Python module of memlens (private).

* :func:`result` -- the one shape of memlens's result types: a frozen,
  slotted dataclass, on every supported Python (3.9's dataclasses have no
  ``slots=True``);
* :func:`format_bytes` -- bytes as the reports print them;
* :func:`qualname` -- a class's name as the tables print it;
* :func:`check_bool`, :func:`check_int` -- argument checks with the
  messages of the public API.
"""

import dataclasses

__all__ = ["result", "format_bytes", "MIB", "qualname", "check_bool", "check_int"]

MIB = 1024 * 1024


# ---- result types ----------------------------------------------------------------


def _getstate(self):
    return tuple(getattr(self, f.name) for f in dataclasses.fields(self))


def _setstate(self, state):
    # Frozen: the fields are set as the generated __init__ sets them.
    for f, value in zip(dataclasses.fields(self), state):
        object.__setattr__(self, f.name, value)


def result(cls):
    """Class decorator: ``cls`` as a frozen dataclass with ``__slots__``.

    What ``@dataclass(frozen=True, slots=True)`` gives on 3.10+, written
    once so that 3.9 gets the same class: field-wise ``==`` and ``hash``,
    ``FrozenInstanceError`` on assignment, no instance ``__dict__``, and
    pickling / ``copy`` / ``dataclasses.replace`` through the fields.  A
    ``__repr__``, ``__eq__`` or ``__hash__`` the class defines itself is
    kept (as dataclass() does).  Fields declared with ``init=False`` are set
    in ``__post_init__`` with ``object.__setattr__``.

    The class is rebuilt with its slots, as dataclasses does: its methods
    must not use zero-argument ``super()`` (the cell would name the class
    before the rebuild).
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    names = tuple(f.name for f in dataclasses.fields(cls))
    body = dict(cls.__dict__)
    for name in names:
        body.pop(name, None)  # defaults live in __init__ and the Field objects
    body.pop("__dict__", None)
    body.pop("__weakref__", None)
    body["__slots__"] = names
    body.setdefault("__getstate__", _getstate)
    body.setdefault("__setstate__", _setstate)
    new = type(cls)(cls.__name__, cls.__bases__, body)
    new.__qualname__ = cls.__qualname__
    return new


# ---- text ------------------------------------------------------------------------

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(n, *, unit=None, digits=1, tracemalloc=False, sign=False):
    """Bytes as text, in one of the three styles memlens prints.

    * default: the census, breakdown, advice and capture reports --
      ``812 B``, ``10.5 KiB``, ``3.2 MiB``, up to GiB: whole bytes below
      1 KiB, else ``digits`` decimals of the largest unit below 1024;
    * ``unit="MiB"``: always that unit, ``digits`` decimals (the line
      profile, ``%memit``, the plot);
    * ``tracemalloc=True``: tracemalloc's rounding (``12 KiB``, ``99.5 MiB``,
      up to TiB), with a ``+``/``-`` sign if ``sign`` (the tracer's
      ``Statistic`` / ``StatisticDiff`` text).
    """
    if unit is not None:
        return f"{n / 1024 ** _UNITS.index(unit):.{digits}f} {unit}"
    if tracemalloc:
        plus = "+" if sign else ""
        size = n
        for u in _UNITS:
            if abs(size) < 100 and u != "B":
                return f"{size:{plus}.1f} {u}"
            if abs(size) < 10 * 1024 or u == "TiB":
                return f"{size:{plus}.0f} {u}"
            size /= 1024
    size = float(n)
    for u in _UNITS[:4]:
        if abs(size) < 1024 or u == "GiB":
            return f"{int(size)} B" if u == "B" else f"{size:.{digits}f} {u}"
        size /= 1024
    raise AssertionError("unreachable")


# The descriptors of `type` itself: reading a class's name through them
# runs none of its metaclass's code (a property named __module__ that raises,
# say) and always gives what the interpreter stored.
_TYPE_MODULE = type.__dict__["__module__"]
_TYPE_QUALNAME = type.__dict__["__qualname__"]
# What a class is called when it has no usable name.
UNNAMED = "<unnamed>"


def type_module(tp):
    """The module a class says it was defined in, or None when it has no
    str there (``__module__`` deleted, rebound to an int ...).  Never runs
    the class's or its metaclass's code and never raises."""
    try:
        mod = _TYPE_MODULE.__get__(tp, type)
    except Exception:  # no __module__ in the class dict of a heap type
        return None
    return mod if isinstance(mod, str) else None


def qualname(tp):
    """``module.QualName`` of a class, the bare qualified name for builtins;
    ``<unnamed>`` parts for a class whose names are not strs.  Like
    :func:`type_module`, safe on any class."""
    mod = type_module(tp)
    try:
        name = _TYPE_QUALNAME.__get__(tp, type)
    except Exception:
        name = None
    if not isinstance(name, str):
        name = UNNAMED
    return name if mod in (None, "builtins") else f"{mod}.{name}"


# ---- argument checks -------------------------------------------------------------


def check_bool(what, value):
    """TypeError ``<what> must be a bool, not <type>`` unless `value` is a
    bool; `what` names the argument as the message does (``"census()
    retained"``)."""
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be a bool, not {type(value).__name__}")


def check_int(what, value, minimum=None, *, requirement=None, word="got"):
    """TypeError unless `value` is an int (a bool is not), ValueError if it
    is below `minimum`: ``<what> must be <requirement>, <word> <value>``,
    where `requirement` defaults to ``>= <minimum>``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        requirement = requirement or f">= {minimum}"
        raise ValueError(f"{what} must be {requirement}, {word} {value}")
