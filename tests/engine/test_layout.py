"""Version-specific layouts: memlens' one mirror of CPython's private
structures (csrc/cpython/cpy_object.h and cpy_frame.h).

The first tests check sizes that follow from the object mirror against
tracemalloc.  The rest read the mirror directly through memlens._testcore's
probes and compare each accessor with what the interpreter itself says
(sys._getframe(), sys.getsizeof, tracemalloc).  Each test names the CPython
versions whose branch it covers, and is skipped, with the reason, where an
accessor does not exist; CI runs the suite on every version 3.9-3.13, so
every branch is exercised there.
"""
import dis
import gc
import sys
import tracemalloc
import weakref

import pytest

import memlens
from memlens import _testcore

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
        snap = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # 3.12+: the first call of a class's __init__ may allocate on the def
    # line (the code object's own caches, at its RESUME): the function's
    # memory, not the instance's; how much depends on what ran before.
    init = getattr(getattr(make, "__init__", None), "__code__", None)
    if init is not None:
        built -= sum(t.size for t in snap.traces
                     if t.traceback[0].filename == init.co_filename
                     and t.traceback[0].lineno == init.co_firstlineno)
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


# ---- the frame mirror (cpy_frame.h), through _testcore.layout_stack() ---------

# enum _frameowner (3.11+)
OWNED_BY_THREAD, OWNED_BY_GENERATOR, OWNED_BY_FRAME_OBJECT, OWNED_BY_CSTACK = 0, 1, 2, 3


def _python_view():
    """The frames from layout_stack()'s caller outwards, as sys._getframe()
    and f_back show them, read while they are suspended where the mirror
    read them."""
    out = []
    f = sys._getframe(1)  # 0 is this callback's own frame
    while f is not None:
        out.append({"frame": f, "code": f.f_code, "lineno": f.f_lineno, "lasti": f.f_lasti,
                    "globals": f.f_globals})
        f = f.f_back
    return out


def _reported(raw):
    """The raw frames a traceback shows: not shims, not frames yet to start."""
    return [r for r in raw if r["decoded"] is not None]


def _through_c(fn):
    """Call fn from C (map's next), so that 3.12+ put a shim frame under it."""
    return list(map(lambda _: fn(), [None]))[0]


def test_frame_mirror_walks_the_stack_that_sys_getframe_sees():
    # GIVEN a stack with a call from C in it, read through the mirror
    # (layout_thread_frame, layout_frame_back, layout_frame_decode,
    # layout_frame_code, layout_frame_globals, layout_code_lineno)
    def inner():
        return _testcore.layout_stack(_python_view)

    raw, view = _through_c(inner)
    reported = _reported(raw)
    # THEN the reported frames are f_back's chain, frame for frame: the same
    # code objects, instructions, lines and globals
    assert len(reported) == len(view)
    assert reported[0]["code"] is inner.__code__
    for r, v in zip(reported, view):
        code, offset = r["decoded"]
        assert code is v["code"] and r["code"] is v["code"]
        assert offset * 2 == v["lasti"]  # code units vs bytes
        assert r["lineno"] == v["lineno"]
        assert r["globals"] is v["globals"]


@pytest.mark.skipif(PY < (3, 12), reason="C-stack shim frames are 3.12+")
def test_shim_frames_are_skipped_on_312():
    # GIVEN a function called from C (3.12+ push an entry shim under it)
    def inner():
        return _testcore.layout_stack(_python_view)

    raw, _ = _through_c(inner)
    # THEN the frame right under the lambda that map() called is a shim: no
    # code (layout_frame_code), not decoded, owned by the C stack
    lam = next(i for i, r in enumerate(raw) if r["code"] is not None and r["code"].co_name == "<lambda>")
    shim = raw[lam + 1]
    assert shim["owner"] == OWNED_BY_CSTACK
    assert shim["code"] is None and shim["decoded"] is None
    if PY >= (3, 13):
        assert shim["executable"] is None
    else:
        assert shim["executable"] is not None  # 3.12: the interpreter's trampoline code


@pytest.mark.skipif(PY < (3, 11), reason="interpreter frames and their owner are 3.11+")
def test_frame_owner_on_311():
    # GIVEN frames of a function and of a generator
    def inner():
        return _testcore.layout_stack(_python_view)

    def gen():
        yield _testcore.layout_stack(_python_view)

    raw, _ = inner()
    graw, gview = next(gen())
    # THEN layout_frame_owner says who owns them
    assert raw[0]["owner"] == OWNED_BY_THREAD
    assert graw[0]["owner"] == OWNED_BY_GENERATOR
    assert graw[0]["code"] is gview[0]["code"]
    # (OWNED_BY_FRAME_OBJECT is a frame that has returned but whose frame
    # object lives on: never on a running stack, so not seen here)
    assert {r["owner"] for r in raw} <= {OWNED_BY_THREAD, OWNED_BY_GENERATOR, OWNED_BY_CSTACK}


def test_frame_object_is_the_one_sys_getframe_made():
    # GIVEN a frame whose frame object exists, and one that has none yet
    def fresh():
        return _testcore.layout_stack(_python_view)

    me = sys._getframe()
    raw, view = fresh()
    # THEN layout_frame_object: the caller's is the object sys._getframe()
    # returned; the fresh frame's is none on 3.11+ (made lazily), the frame
    # itself on 3.9/3.10 (the frame object is the frame)
    mine = next(r for r in raw if r["code"] is me.f_code)
    assert mine["frame_object"] is me
    if PY >= (3, 11):
        assert raw[0]["frame_object"] is None
    else:
        assert raw[0]["frame_object"] is view[0]["frame"]
        assert raw[0]["address"] == id(view[0]["frame"])


def test_frame_locals_and_their_names():
    # GIVEN a frame with plain locals, a cell and a free variable
    free = object()

    def with_locals(a, b):
        c = [a, b]
        cell = object()

        def uses():
            return cell, free

        raw, _ = _testcore.layout_stack(_python_view)
        return raw[0], (a, b, c, cell), uses

    top, (a, b, c, cell), uses = with_locals(object(), object())
    co = top["code"]
    # THEN layout_code_nlocalsplus counts every slot, layout_code_localname
    # names them, and layout_frame_locals holds the values (cells for the
    # cell and free variables)
    names = set(co.co_varnames) | set(co.co_cellvars) | set(co.co_freevars)
    assert top["nlocalsplus"] == len(co.co_varnames) + len(co.co_cellvars) + len(co.co_freevars)
    assert set(top["locals"]) <= names
    assert top["locals"]["a"] is a and top["locals"]["b"] is b and top["locals"]["c"] is c
    assert top["locals"]["cell"].cell_contents is cell
    assert top["locals"]["free"].cell_contents is free


def test_frame_signature_the_tracer_caches():
    # GIVEN the signature the tracer compares frames by (layout_frame_sig)
    def inner():
        return _testcore.layout_stack(_python_view)

    raw, view = _through_c(inner)
    for r, v in zip(_reported(raw), view):
        frame, code, instr = r["sig"]
        # THEN it names the frame, and its instruction in the version's units
        assert frame == r["address"]
        if PY >= (3, 11):
            assert code is None  # the instruction pointer stands for the code
            assert instr == r["instr"]
            assert instr - r["code_units"] == v["lasti"]
        elif PY >= (3, 10):
            assert code is v["code"] and instr * 2 == v["lasti"]
        else:
            assert code is v["code"] and instr == v["lasti"]


@pytest.mark.skipif(PY < (3, 11), reason="_co_firsttraceable and frames yet to start are 3.11+")
def test_first_traceable_is_the_first_resume_on_311():
    # GIVEN frames of a closure, whose code makes cells before it starts
    free = []

    def closure():
        return free, _testcore.layout_stack(_python_view)

    _, (raw, _) = closure()
    resume = dis.opmap["RESUME"]
    for r in _reported(raw):
        co = r["executable"]
        units = co.co_code[::2]  # opcodes, one per code unit
        # THEN layout_code_first_traceable is the index of the first RESUME,
        # and every reported frame has run past it (layout_frame_instr)
        assert r["first_traceable"] == units.index(resume)
        assert r["instr"] >= r["code_units"] + 2 * r["first_traceable"]
    assert _reported(raw)[0]["first_traceable"] > 0  # COPY_FREE_VARS comes first


@pytest.mark.skipif(PY >= (3, 12), reason="only the 3.9-3.11 line profiler sets f_trace_lines")
def test_frame_object_trace_lines_3_9_to_3_11():
    # GIVEN a frame object (layout_frameobject_set_trace_lines, 3.11's
    # mirrored struct _frame head, 3.9/3.10's public struct)
    f = sys._getframe()
    try:
        # WHEN the flag is set through the mirror
        _testcore.layout_set_trace_lines(f, False)
        # THEN Python's f_trace_lines says the same
        assert f.f_trace_lines is False
        _testcore.layout_set_trace_lines(f, True)
        assert f.f_trace_lines is True
    finally:
        f.f_trace_lines = True


# ---- the object mirror (cpy_object.h), through _testcore.layout_object() ------

# Py_TPFLAGS_MANAGED_DICT (3.11+)
_MANAGED_DICT = 1 << 4


class _Plain:
    def __init__(self):
        self.a = None
        self.b = None


class _Slots:
    __slots__ = ("a",)


class _SlotsWeak:
    __slots__ = ("a", "__weakref__")


class _BigInt(int):
    pass


def test_preheader_size_is_what_getsizeof_adds():
    # layout_preheader_size: the GC header (3.11+: and the two pre-header
    # words) in front of the object, which sys.getsizeof adds to __sizeof__
    # (not static types such as `int`: their tp_is_gc says they have no GC
    # header, which 3.11's getsizeof counts anyway)
    objs = [_Plain(), _Slots(), _SlotsWeak(), [1], (1, 2), {"a": 1}, 12345678, "str", _Plain,
            _BigInt(10**40)]
    for o in objs:
        assert _testcore.layout_object(o)["preheader_size"] == sys.getsizeof(o) - type(o).__sizeof__(o), o


def test_instance_dict_is_never_created_by_reading_it():
    # layout_instance_dict / layout_instance_values
    o = _Plain()
    before = _testcore.layout_object(o)
    if PY >= (3, 11):
        # 3.11+: no dict until __dict__ is read; 3.11/3.12 keep a values
        # array meanwhile (3.13: inline values, layout_inline_values_size)
        assert before["instance_dict"] is None
        assert before["has_instance_values"] == (PY < (3, 13))
    else:
        assert before["instance_dict"] is o.__dict__
        assert before["has_instance_values"] is False
    d = o.__dict__
    after = _testcore.layout_object(o)
    assert after["instance_dict"] is d
    assert after["has_instance_values"] is False
    # var-sized objects keep their dict after the items (tp_dictoffset < 0)
    i = _BigInt(10**40)
    i.x = 1
    assert _testcore.layout_object(i)["instance_dict"] is i.__dict__
    assert _testcore.layout_object(_Slots())["instance_dict"] is None


@pytest.mark.skipif(PY < (3, 11), reason="instances without a dict (values, inline values) are 3.11+")
def test_instance_storage_accessors_add_up_to_the_allocation_on_311():
    # GIVEN a class whose shared keys have settled
    class Settled:
        def __init__(self):
            self.a = None
            self.b = None
            self.c = None

    warm = [Settled() for _ in range(100)]  # noqa: F841
    # WHEN instances are made under tracemalloc
    objs, built = _batch(Settled, 50)
    # THEN pre-header + object + values (3.11/3.12: a separate array,
    # layout_values_size; 3.13: inline, layout_inline_values_size) is what
    # was allocated for each
    per = set()
    for o in objs:
        p = _testcore.layout_object(o)
        per.add(p["preheader_size"] + Settled.__basicsize__ + p["instance_values_size"]
                + p["inline_values_size"])
        assert (p["inline_values_size"] > 0) == (PY >= (3, 13))
        assert p["has_cached_keys"] is True
    assert len(per) == 1 and per.pop() * len(objs) == built


def test_weakref_list_head():
    # layout_weakref_list: 3.12+ in the pre-header (managed weakref), else
    # at tp_weaklistoffset
    for o in (_Plain(), _SlotsWeak()):
        assert _testcore.layout_object(o)["weakref_list"] is None
        r = weakref.ref(o)
        assert _testcore.layout_object(o)["weakref_list"] is r
    assert _testcore.layout_object(_Slots())["weakref_list"] is None


def test_cached_keys_only_for_classes_with_shared_keys():
    # layout_cached_keys
    assert _testcore.layout_object(_Plain())["has_cached_keys"] is True
    assert _testcore.layout_object(_Slots())["has_cached_keys"] is False
    assert _testcore.layout_object(1.5)["has_cached_keys"] is False


def test_int_digits_and_allocation():
    # layout_long_ndigits / layout_long_size (the allocation rule is checked
    # against tracemalloc by test_int_allocation_rule)
    for x in (1, -1, 2**30 - 1, 2**30, -(2**45), 10**100, 7 * 10**300):
        p = _testcore.layout_object(x)
        nd = (abs(x).bit_length() + 29) // 30
        assert p["long_ndigits"] == nd, x
        if nd <= 1 and PY >= (3, 11):
            assert p["long_size"] == 32  # a whole PyLongObject
        else:
            assert p["long_size"] == sys.getsizeof(x), x


def test_dict_keys_size_is_what_sizeof_counts():
    # layout_dict_keys / layout_dictkeys_size against dict.__sizeof__, which
    # adds the keys it owns to the dict object (combined dicts: no values)
    empty = {}.__sizeof__()
    for n in (1, 5, 6, 11, 100, 1000, 50_000):
        for d in ({str(i): i for i in range(n)}, {i: i for i in range(n)}):
            p = _testcore.layout_object(d)
            assert p["dict_has_values"] is False
            assert p["dict_keys_size"] == d.__sizeof__() - empty, n


def test_dict_values_of_instance_dicts():
    # layout_dict_values / layout_values_embedded: an instance's dict is a
    # split dict over its values (3.13: the inline values, embedded in the
    # instance); a copy is combined
    o = _Plain()
    p = _testcore.layout_object(o.__dict__)
    assert p["dict_has_values"] is True
    assert p["dict_values_embedded"] is (PY >= (3, 13))
    q = _testcore.layout_object(dict(o.__dict__))
    assert q["dict_has_values"] is False and q["dict_values_embedded"] is False


@pytest.mark.skipif(PY < (3, 12), reason="immortal objects are 3.12+")
def test_immortal_on_312():
    # layout_is_immortal
    assert _testcore.layout_object(None)["immortal"] is True
    assert _testcore.layout_object(1)["immortal"] is True
    assert _testcore.layout_object(object())["immortal"] is False
    assert _testcore.layout_object(10**40)["immortal"] is False
