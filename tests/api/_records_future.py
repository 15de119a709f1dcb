"""Records declared with string annotations (PEP 563), for test_records."""
from __future__ import annotations

import builtins
import typing
from typing import ClassVar, Optional

import memlens

Real = float  # an alias only evaluation can see through


class Stringy(memlens.Record):
    a: int
    b: float
    c: bool
    d: builtins.int
    e: Optional[int]
    f: typing.Optional[float]
    g: Real
    h: str
    i: int | None          # not evaluable on 3.9: an object field there and everywhere
    j: Stringy | None      # forward reference to the class itself
    k: list[int]
    counter: ClassVar[int] = 0
