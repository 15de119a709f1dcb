"""Version-specific object layouts (csrc/cpython/cpy_layout.h).

Each test names the CPython versions whose layout branch it covers; CI runs
the suite on every version 3.9-3.13, so every branch is exercised there.
"""
import gc
import sys
import tracemalloc

import pytest

import memlens

PY = sys.version_info[:2]


def _batch(make, n):
    """Make n objects into a preallocated list; return (objs, traced bytes).

    Only the objects' own allocations happen between the two readings."""
    objs = [None] * n
    gc.collect()
    tracemalloc.start()
    try:
        # the first reading's result tuple lands in the tuple free list,
        # where it would count as traced: take it before measuring
        tracemalloc.get_traced_memory()
        before = tracemalloc.get_traced_memory()[0]
        i = 0
        while i < n:  # no range iterator inside the measurement
            objs[i] = make()
            i += 1
        built = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return objs, built


def test_instance_storage_of_every_instance_of_a_new_class():
    # 3.9/3.10: a dict per instance (split keys); 3.11/3.12: a values array
    # whose size shrinks over the first ~30 instances of a class; 3.13:
    # inline values whose size shrinks the same way.  Every instance, first
    # ones included, is sized exactly as allocated.
    class Fresh:  # a brand-new class: its shared keys have no history
        def __init__(self):
            self.a = None
            self.b = None
            self.c = None

    if PY < (3, 11):
        # 3.9/3.10 create the class's shared keys with its first instance:
        # they belong to the class, so make that one outside the measure.
        first = Fresh()
    # The very first instance: exact.
    first_objs, built = _batch(Fresh, 1)
    assert memlens.sizeof(first_objs[0]) == built
    # While the class's keys settle (its first ~30 instances on 3.11+), an
    # instance's slot count is known only to within the 8-slot granularity
    # of its recorded prefix: memlens takes the smallest count consistent
    # with it, so it may undercount such an instance by a few slots.
    early, built = _batch(Fresh, 40)
    early_sum = sum(memlens.sizeof(o) for o in early)
    assert built - 8 * 7 * 40 <= early_sum <= built
    # Once settled, every instance is exact.
    settled, built = _batch(Fresh, 100)
    assert sum(memlens.sizeof(o) for o in settled) == built


def test_materialized_dict_is_part_of_the_instance():
    # 3.11+: reading __dict__ creates a dict that takes over the values;
    # 3.9/3.10: the dict always exists.
    class C:
        def __init__(self):
            self.a = 1000.5
            self.b = None

    objs = [C() for _ in range(50)]
    before = [memlens.sizeof(o) for o in objs]
    drain = [{} for _ in range(200)]  # empty the dict free list first
    tracemalloc.start()
    try:
        t0 = tracemalloc.get_traced_memory()[0]
        for o in objs:
            o.__dict__
        grew = tracemalloc.get_traced_memory()[0] - t0
    finally:
        tracemalloc.stop()
    after = [memlens.sizeof(o) for o in objs]
    assert sum(after) - sum(before) == pytest.approx(grew, abs=64)
    if PY < (3, 11):
        assert grew == 0 and after == before
    else:
        assert grew > 0


def test_split_dict_copy_owns_its_tables():
    # A copy of an instance dict (split keys on every version) is a combined
    # dict that owns its keys table; the instance dicts share theirs.
    class C:
        def __init__(self):
            self.a = 1.5
            self.b = 2.5

    src = [C() for _ in range(100)]
    for o in src:
        o.__dict__  # noqa: B018 - 3.11+: materialize the split dicts first
    copies, built = _batch(lambda: dict(src[0].__dict__), 2000)
    assert sum(memlens.sizeof(d) for d in copies) == pytest.approx(built, rel=0.01)


@pytest.mark.skipif(PY < (3, 12), reason="immortal objects are 3.12+")
def test_immortal_objects_are_shared_on_312():
    import sys as _sys

    s = "an immortal interned identifier_"
    s = _sys.intern(s)
    assert memlens.deep_size([s]) == memlens.sizeof([s])
    assert memlens.deep_size([s], shared=True) == memlens.sizeof([s]) + memlens.sizeof(s)


def test_int_allocation_rule():
    # 3.9/3.10: 24 + 4 per digit; 3.11+: one-digit ints are 32 (a whole
    # PyLongObject), larger ones 24 + 4 per digit.
    small = [x for x in range(10**6, 10**6 + 1000)]
    two = [x for x in range(2**40, 2**40 + 1000)]
    assert {memlens.sizeof(x) for x in small} == {32 if PY >= (3, 11) else 28}
    assert {memlens.sizeof(x) for x in two} == {32}


def test_slots_and_weakref_instances():
    class S:
        __slots__ = ("a", "__weakref__")

    objs, built = _batch(S, 20)
    assert sum(memlens.sizeof(o) for o in objs) == built
