"""_core._record_layout(): the engine's record layout figures, which the
advisor prices its record suggestions with, against real instances."""

import importlib
import struct

import pytest

import memlens
from memlens import _core

# (memlens.advise is the function once the package is imported)
advise = importlib.import_module("memlens.advise")

pytestmark = pytest.mark.skipif(struct.calcsize("P") != 8, reason="figures for 64-bit builds")


def test_layout_figures():
    assert _core._record_layout() == {
        "kinds": ("object", "int", "float", "bool"),
        "sizes": (8, 8, 8, 1),
        "header": 16,
        "align": 8,
        "pointer": 8,
        "gc_head": 16,
    }
    # a new dict each call: changing one changes nothing else
    _core._record_layout()["header"] = 0
    assert _core._record_layout()["header"] == 16


class Numbers(memlens.Record):
    a: int
    b: float
    flag: bool


class Mixed(memlens.Record, weakref=True):
    a: int
    label: str
    flag: bool


def test_storage_names_match_fields():
    assert [f.storage for f in memlens.fields(Numbers)] == ["int64", "double", "bool"]


@pytest.mark.parametrize("cls, args, kinds, weakref, size", [
    # 16 header + 8 + 8 + 1, rounded to 24 + 8 = 40; no object field, no GC header
    (Numbers, (1, 2.0, True), ["int", "float", "bool"], False, 40),
    # 16 + 8 + 8 + 1 -> 40, + 8 weakref slot, + 16 GC header (an object field)
    (Mixed, (1, "x", False), ["int", "str", "bool"], True, 64),
])
def test_advisor_prices_records_as_the_engine_lays_them_out(cls, args, kinds, weakref, size):
    # GIVEN a record class and the advisor's description of the same fields
    # THEN the advisor's size is the size of a real instance
    assert memlens.sizeof(cls(*args)) == size
    assert advise._record_size(kinds, weakref) == size
