"""Hostile objects: classes and __sizeof__ methods written to break a
memory tool.  The heap-wide calls go on with a safe name or a saturated
figure; the crash-prone ones run in a fresh interpreter.

memlens never calls a __sizeof__ written in Python (docs/sizing.md), so
the code that runs in the middle of a walk comes from a C __sizeof__ that
calls back into Python: memlens._testcore.CallbackSizeof(fn)."""
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


CLASS_SWAP = """
import gc, sys, memlens
from memlens._testcore import CallbackSizeof
class B(CallbackSizeof): pass
junk = []
def swap(self):
    self.__class__ = B
    globals().pop("A", None); gc.collect()
    # reuse the freed class's memory
    for n in range(700, 1200, 8): junk.append(bytearray(b"\\xff" * n))
    return 100
class A(CallbackSizeof): pass
holder = [A(swap)]
fn = sys.argv[1]
r = getattr(memlens, fn)(holder if fn != "sizeof" else holder[0])
print(type(holder[0]).__name__, r if fn != "breakdown" else r.count)
"""


@pytest.mark.parametrize("fn", ["sizeof", "deep_size", "breakdown", "size_by_type"])
def test_a_sizeof_that_reassigns_the_class_and_frees_it(run_python, fn):
    # GIVEN a __sizeof__ that moves its object to another class and lets
    # the old class be collected (its memory reused), WHEN sized, THEN no
    # use of the freed class: the call returns, the object is a B now
    r = run_python("-c", CLASS_SWAP, fn, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("B ")


DROP_VISITED = """
import sys, memlens
from memlens._testcore import CallbackSizeof as Evil
def evil(self):
    holder[1] = None                           # frees what the walk already visited
    junk.extend(bytearray(b"\\xff" * 64) for _ in range(2000))
    return 64
junk = []
holder = [None, ["x" * 100 + str(i) for i in range(1000)] + ["y" * (1 << 20) + "!"] * 2]
holder[0] = Evil(evil)
fn = sys.argv[1]
if fn == "census":
    print(memlens.census(retained=True).count(Evil))
elif fn == "retained":
    print(memlens.retained_size(holder) > 0)
else:
    print(len(memlens.why_alive(holder[0])) >= 0)
"""


ADVISE_DROP = """
import memlens
from memlens._testcore import CallbackSizeof
def evil(self):
    holder[1] = None   # the str the advisor's duplicate table kept
    return 64
holder = [None, "x" * (1 << 20) + "!"]
holder[0] = CallbackSizeof(evil)
print(type(memlens.advise(min_saving=0)).__name__)
"""


def test_the_advisor_keeps_what_it_compares_later(run_python):
    r = run_python("-c", ADVISE_DROP, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "list"


@pytest.mark.parametrize("fn", ["census", "retained", "why"])
def test_a_sizeof_that_frees_what_was_visited(run_python, fn):
    # GIVEN a __sizeof__ that drops objects the walk met before it (strs the
    # advisor's duplicate tables and pending list hold), WHEN any heap-wide
    # call runs, THEN it returns and nothing freed is read again
    r = run_python("-c", DROP_VISITED, fn, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_a_sizeof_of_sys_maxsize_saturates_and_warns():
    from memlens._testcore import CallbackSizeof

    class Big(CallbackSizeof):
        def __init__(self):
            super().__init__(lambda self: sys.maxsize)

    class Huge(CallbackSizeof):
        def __init__(self):
            super().__init__(lambda self: 1 << 46)  # plausible one by one, not 200,000 of them

    x = [Big(), Big(), Big()]
    stats = memlens.deep_size(x, stats=True)
    # sys.maxsize is no object's size: each is a warning and the generic rule
    assert stats.warnings == 3
    assert 0 < stats.bytes == memlens.deep_size(x) < 10_000
    assert all(r.bytes > 0 for r in memlens.size_by_type(x))
    many = [Huge() for _ in range(200_000)]
    assert memlens.deep_size(many) == sys.maxsize  # saturated, never wrapped negative
    (row,) = [r for r in memlens.size_by_type(many) if r.name.endswith("Huge")]
    assert row.count == 200_000 and row.bytes == sys.maxsize
    del many
