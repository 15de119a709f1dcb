"""Hostile objects: classes and __sizeof__ methods written to break a
memory tool.  The heap-wide calls go on with a safe name or a saturated
figure; the crash-prone ones run in a fresh interpreter."""
import sys

import pytest

import memlens

ODD_CLASSES = """
class Meta(type):
    @property
    def __module__(cls):
        raise RuntimeError("no module for you")

class RaisingModule(metaclass=Meta):
    pass

class IntModule:
    pass
IntModule.__module__ = 5

keep = [RaisingModule() for _ in range(7)] + [IntModule() for _ in range(5)]
"""


@pytest.fixture()
def odd():
    ns = {"__name__": "app"}
    exec(ODD_CLASSES, ns)
    return ns


def test_odd_classes_are_named_safely_by_size_by_type(odd):
    rows = {r.name: r.count for r in memlens.size_by_type(odd["keep"])}
    assert rows["app.RaisingModule"] == 7  # __module__ as stored in the class (its metaclass's property is not run)
    assert rows["IntModule"] == 5          # not a str: left out of the name


def test_odd_classes_do_not_break_the_census_or_the_advisor(odd):
    c = memlens.census()
    counts = {r.name: r.count for r in c.rows}
    assert counts.get("app.RaisingModule") == 7 and counts.get("IntModule") == 5
    assert dict((m, n) for m, n, _ in c.by_module())["app"] >= 7
    memlens.advise(min_saving=0)  # goes on (no AttributeError, no RuntimeError)


def test_qualname_falls_back_to_unnamed():
    from memlens import _util

    T = type("T", (), {})
    T.__qualname__ = "Q"
    assert _util.qualname(T) == f"{__name__}.Q"
    assert _util.qualname(int) == "int"
    assert _util.type_module(odd_meta_class()) == __name__  # stored; the property is not run
    Odd = type("Odd", (), {})
    Odd.__module__ = 5
    assert _util.type_module(Odd) is None and _util.qualname(Odd) == "Odd"


def odd_meta_class():
    class Meta(type):
        @property
        def __module__(cls):
            raise RuntimeError("boom")

    return Meta("X", (), {})
