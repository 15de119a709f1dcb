"""Sizes, tolerances and the limits that apply to one test.

A size is an int (bytes) or text: ``"24 MB"`` (1000-based KB/MB/GB/TB),
``"24 MiB"`` (1024-based KiB/MiB/GiB/TiB), ``"512 B"`` or ``"512"``.  A
tolerance is a size or a percentage (``"10%"``).
"""

import re
from typing import Optional, Tuple

from memlens._util import result

__all__ = ["parse_size", "parse_tolerance", "Tolerance", "Limits", "resolve"]

_UNITS = {
    "": 1, "B": 1,
    "KB": 1000, "MB": 1000 ** 2, "GB": 1000 ** 3, "TB": 1000 ** 4,
    "KIB": 1024, "MIB": 1024 ** 2, "GIB": 1024 ** 3, "TIB": 1024 ** 4,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")
_EXPECTED = "expected bytes as an int or text like '24 MB', '1.5 GiB', '512 B'"


def parse_size(value):
    """Bytes of `value` (an int, or text with a unit); ValueError with a
    one-line message otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"bad size {value!r}: {_EXPECTED}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"bad size {value!r}: a size cannot be negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"bad size {value!r}: {_EXPECTED}")
    m = _SIZE.fullmatch(value)
    unit = m and _UNITS.get(m.group(2).upper())
    if not unit:
        raise ValueError(f"bad size {value!r}: {_EXPECTED}")
    return round(float(m.group(1)) * unit)


@result
class Tolerance:
    """How much a figure may grow over its baseline: ``fraction`` (0.1 for
    ``"10%"``) or ``bytes``; exactly one is set."""

    text: str
    fraction: Optional[float] = None
    bytes: Optional[int] = None

    def allowed(self, old):
        """The largest figure that is no increase beyond the tolerance."""
        if self.fraction is not None:
            return old + int(old * self.fraction)
        return old + self.bytes


def parse_tolerance(value):
    """A :class:`Tolerance` from ``"10%"``, a size, or an int (bytes)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        number = value.strip()[:-1].strip()
        try:
            fraction = float(number) / 100
        except ValueError:
            fraction = -1.0
        if not fraction >= 0:  # also catches nan
            raise ValueError(f"bad tolerance {value!r}: expected a percentage like '10%' or a size "
                             "like '1 MB'")
        return Tolerance(value.strip(), fraction=fraction)
    try:
        return Tolerance(str(value).strip(), bytes=parse_size(value))
    except ValueError:
        raise ValueError(f"bad tolerance {value!r}: expected a percentage like '10%' or a size "
                         "like '1 MB'") from None


@result
class Limits:
    """What applies to one test: ``memory`` (bytes of peak, or None),
    ``leaks`` (bytes left allocated, or None), ``runs`` (1, or the measured
    runs of slope mode after one warm-up), and the fnmatch patterns
    ``memory_ignore`` / ``leaks_ignore`` that filter the frames of each
    figure.  ``source_*`` says where a limit came from ("marker", "option",
    "ini") for the failure text."""

    memory: Optional[int] = None
    leaks: Optional[int] = None
    runs: int = 1
    memory_ignore: Tuple[str, ...] = ()
    leaks_ignore: Tuple[str, ...] = ()
    memory_text: Optional[str] = None
    leaks_text: Optional[str] = None


def _marker_args(name, mark, allowed):
    """(size, kwargs) of a limit marker; ValueError on misuse."""
    if len(mark.args) != 1:
        raise ValueError(f"{name}() takes one size, got {len(mark.args)} positional arguments")
    unknown = set(mark.kwargs) - set(allowed)
    if unknown:
        raise ValueError(f"{name}() got unexpected keyword argument {sorted(unknown)[0]!r} "
                         f"(allowed: {', '.join(allowed)})")
    return mark.args[0], mark.kwargs


def _ignore_list(name, value):
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not all(isinstance(p, str) for p in value):
        raise ValueError(f"{name}(ignore=...) must be a list of fnmatch patterns (str)")
    return tuple(value)


def resolve(memory_mark, leaks_mark, defaults):
    """The :class:`Limits` of a test from its closest ``limit_memory`` and
    ``limit_leaks`` markers (or None) over `defaults` (a Limits from the
    command line and ini).  ValueError with a one-line message for a bad
    marker."""
    memory, memory_text = defaults.memory, defaults.memory_text
    leaks, leaks_text = defaults.leaks, defaults.leaks_text
    runs = 1
    memory_ignore = defaults.memory_ignore
    leaks_ignore = defaults.leaks_ignore
    if memory_mark is not None:
        size, kw = _marker_args("limit_memory", memory_mark, ("ignore",))
        memory = None if size is None else parse_size(size)
        memory_text = None if size is None else str(size)
        memory_ignore += _ignore_list("limit_memory", kw.get("ignore"))
    if leaks_mark is not None:
        size, kw = _marker_args("limit_leaks", leaks_mark, ("runs", "ignore"))
        leaks = None if size is None else parse_size(size)
        leaks_text = None if size is None else str(size)
        runs = kw.get("runs", 1)
        if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
            raise ValueError(f"limit_leaks(runs=...) must be an int >= 1, got {runs!r}")
        leaks_ignore += _ignore_list("limit_leaks", kw.get("ignore"))
    return Limits(memory, leaks, runs, memory_ignore, leaks_ignore, memory_text, leaks_text)
