"""Snapshot.filter_traces with memlens.Filter / DomainFilter, against
tracemalloc as ground truth.

The program: two small modules written for the test allocate bytearrays of
known sizes on known lines (a bytearray of n bytes is two blocks, the
object and its buffer, whose bytes add up to sys.getsizeof()).  tracemalloc
and memlens trace the same run at once (tracemalloc first, memlens on top
of it: each sees the program's allocations), and the same filters, built
once with each module's classes, must keep exactly the same bytes and
blocks per line, and exactly the bytes the program created."""
import importlib
import os
import sys
import tracemalloc

import pytest

import memlens
from memlens import _testcore as tc

A_SRC = """\
def one():
    return bytearray(1_000_000)
def two():
    return bytearray(2_000_000)
"""
B_SRC = """\
import flt_a
def three():
    return bytearray(3_000_000)
def calls_a():
    return flt_a.one()
"""

S1 = sys.getsizeof(bytearray(1_000_000))
S2 = sys.getsizeof(bytearray(2_000_000))
S3 = sys.getsizeof(bytearray(3_000_000))


pytestmark = pytest.mark.usefixtures("no_tracer_left")


@pytest.fixture
def modules(tmp_path, write):
    write(tmp_path / "flt_a.py", A_SRC)
    write(tmp_path / "flt_b.py", B_SRC)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("flt_a"), importlib.import_module("flt_b")
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("flt_a", "flt_b"):
            sys.modules.pop(name, None)


def workload(a, b, keep):
    # Stored into a list made beforehand: the caller's line allocates nothing.
    keep[0] = a.one()
    keep[1] = a.two()
    keep[2] = b.three()
    keep[3] = b.calls_a()


@pytest.fixture
def snapshots(modules):
    """(memlens snapshot, tracemalloc snapshot) of one run of workload()."""
    a, b = modules
    keep = [None] * 4
    workload(a, b, keep)  # warm up: specialisation, caches
    keep[:] = [None] * 4
    tracemalloc.start(16)
    memlens.start(frames=16)
    try:
        workload(a, b, keep)
        msnap = memlens.take_snapshot()
        tsnap = tracemalloc.take_snapshot()
    finally:
        memlens.stop()
        tracemalloc.stop()
    return msnap, tsnap


def flt_lines(stats):
    """{(file, line): (size, count)} of the test modules' lines."""
    out = {}
    for s in stats:
        if len(s.traceback) and os.path.basename(s.traceback[0].filename).startswith("flt_"):
            out[(os.path.basename(s.traceback[0].filename), s.traceback[0].lineno)] = (s.size, s.count)
    return out


def flt_stacks(stats, oldest_first=False):
    """{((file, line), ... innermost first): (size, count)} of the stacks
    whose innermost frame is in a test module (tracemalloc's Traceback
    lists the oldest frame first)."""
    out = {}
    for s in stats:
        frames = [(os.path.basename(f.filename), f.lineno) for f in s.traceback]
        if oldest_first:
            frames.reverse()
        if frames and frames[0][0].startswith("flt_"):
            out[tuple(frames)] = (s.size, s.count)
    return out


def both(cls_name, *args, **kw):
    """The same filter built with memlens' class and with tracemalloc's."""
    return getattr(memlens, cls_name)(*args, **kw), getattr(tracemalloc, cls_name)(*args, **kw)


ALL = {("flt_a.py", 2): (2 * S1, 4), ("flt_a.py", 4): (S2, 2), ("flt_b.py", 3): (S3, 2)}


# -- the filters themselves ---------------------------------------------------

@pytest.mark.parametrize("args, kw", [
    ((True, "x.py"), {}),
    ((False, "/a/b/*.pyc", 7), {}),  # .pyc stands for its .py
    ((True, "m.pyc"), {"all_frames": True, "domain": 3}),
    ((False, "*"), {"lineno": 0, "all_frames": False, "domain": 0}),
])
def test_filter_attributes_are_tracemallocs(args, kw):
    ours, theirs = both("Filter", *args, **kw)
    for name in ("inclusive", "filename_pattern", "lineno", "all_frames", "domain"):
        assert getattr(ours, name) == getattr(theirs, name), name
    with pytest.raises(AttributeError):
        ours.filename_pattern = "y.py"  # read-only there too
    ours.lineno = 12  # and these are not
    assert ours.lineno == 12


def test_domain_filter_attributes_are_tracemallocs():
    ours, theirs = both("DomainFilter", False, 5)
    assert (ours.inclusive, ours.domain) == (theirs.inclusive, theirs.domain) == (False, 5)
    with pytest.raises(AttributeError):
        ours.domain = 1


def test_filters_are_public_and_lazy(run_ok):
    # GIVEN a fresh interpreter
    out = run_ok("""\
        import sys
        import memlens
        before = set(sys.modules)
        print(memlens.Filter.__module__, memlens.DomainFilter.__name__, "Filter" in memlens.__all__)
        # fnmatch is imported only when a snapshot is filtered
        print("fnmatch" in set(sys.modules) - before)
    """)
    assert out.split() == ["memlens.tracer", "DomainFilter", "True", "False"]


# -- filtering, against tracemalloc and the bytes created -----------------------

CASES = {
    # name: (filters as (class, args, kwargs), the lines kept)
    "one file": ([("Filter", (True, "*flt_a.py"), {})],
                 {k: v for k, v in ALL.items() if k[0] == "flt_a.py"}),
    "its .pyc": ([("Filter", (True, "*/flt_a.pyc"), {})],
                 {k: v for k, v in ALL.items() if k[0] == "flt_a.py"}),
    "one line": ([("Filter", (True, "*flt_a.py", 2), {})], {("flt_a.py", 2): (2 * S1, 4)}),
    "line of a file that has no such line": ([("Filter", (True, "*flt_b.py", 2), {})], {}),
    "innermost frame only": ([("Filter", (True, "*flt_b.py"), {})], {("flt_b.py", 3): (S3, 2)}),
    # calls_a() allocates in flt_a.py, from flt_b.py: all_frames sees it
    "all frames": ([("Filter", (True, "*flt_b.py"), {"all_frames": True})],
                   {("flt_b.py", 3): (S3, 2), ("flt_a.py", 2): (S1, 2)}),
    "excluding a file": ([("Filter", (False, "*flt_a.py"), {})], {("flt_b.py", 3): (S3, 2)}),
    "excluding a file on any frame": (
        [("Filter", (True, "*flt_*.py"), {}), ("Filter", (False, "*flt_b.py"), {"all_frames": True})],
        {("flt_a.py", 2): (S1, 2), ("flt_a.py", 4): (S2, 2)}),
    "any inclusive, no exclusive": (
        [("Filter", (True, "*flt_a.py"), {}), ("Filter", (True, "*flt_b.py"), {}),
         ("Filter", (False, "*flt_a.py", 4), {})],
        {("flt_a.py", 2): (2 * S1, 4), ("flt_b.py", 3): (S3, 2)}),
    "exclusive wins over inclusive": (
        [("Filter", (True, "*flt_a.py", 2), {}), ("Filter", (False, "*flt_a.py"), {})], {}),
    "no match": ([("Filter", (True, "*nowhere.py"), {})], {}),
    "domain 0": ([("Filter", (True, "*flt_a.py"), {"domain": 0})],
                 {k: v for k, v in ALL.items() if k[0] == "flt_a.py"}),
    "another domain includes nothing": ([("Filter", (True, "*flt_a.py"), {"domain": 1})], {}),
    "another domain excludes nothing": ([("Filter", (False, "*flt_a.py"), {"domain": 1})], ALL),
    "domain filter, domain 0": ([("DomainFilter", (True, 0), {})], ALL),
    "domain filter, other domain": ([("DomainFilter", (True, 7), {})], {}),
    "domain filter excluding 0": ([("DomainFilter", (False, 0), {})], {}),
    "domain filter excluding another": ([("DomainFilter", (False, 7), {}),
                                         ("Filter", (True, "*flt_b.py"), {})], {("flt_b.py", 3): (S3, 2)}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_filtered_lines_are_exactly_tracemallocs_and_the_bytes_created(snapshots, case):
    # GIVEN one run traced by both
    msnap, tsnap = snapshots
    assert flt_lines(msnap.statistics("lineno")) == flt_lines(tsnap.statistics("lineno")) == ALL
    specs, expected = CASES[case]
    ours = [getattr(memlens, c)(*a, **k) for c, a, k in specs]
    theirs = [getattr(tracemalloc, c)(*a, **k) for c, a, k in specs]
    # WHEN both snapshots are filtered alike
    mf = msnap.filter_traces(ours)
    tf = tsnap.filter_traces(theirs)
    # THEN the test modules' lines are the same in both, to the byte and
    # block, and are exactly what the program created there
    assert flt_lines(mf.statistics("lineno")) == flt_lines(tf.statistics("lineno")) == expected
    stacks = flt_stacks(mf.statistics("traceback"))
    assert stacks == flt_stacks(tf.statistics("traceback"), oldest_first=True)
    assert sum(size for size, _ in stacks.values()) == sum(size for size, _ in expected.values())
    # AND the filtered snapshot's totals are its own blocks'
    assert mf.total == sum(s.size for s in mf.statistics("traceback"))
    assert mf.peak == sum(row[3] for row in mf.stacks())
    assert mf.traceback_limit == msnap.traceback_limit and mf.sample_bytes == 0


def test_an_inclusive_file_filter_totals_exactly_what_the_file_created(snapshots):
    msnap, _ = snapshots
    only_a = msnap.filter_traces([memlens.Filter(True, "*flt_a.py")])
    assert only_a.total == 2 * S1 + S2
    assert only_a.peak == 2 * S1 + S2  # all still live at the high-water mark
    # AND the rest is exactly the complement
    rest = msnap.filter_traces([memlens.Filter(False, "*flt_a.py")])
    assert only_a.total + rest.total == sum(row[1] for row in msnap.stacks())
    assert len(only_a.stacks()) + len(rest.stacks()) == len(msnap.stacks())


def test_an_empty_filter_list_gives_an_equal_snapshot(snapshots):
    msnap, _ = snapshots
    for empty in ([], (), iter([])):
        same = msnap.filter_traces(empty)
        assert same is not msnap
        assert same.stacks() == msnap.stacks()
        assert (same.total, same.peak, same.traceback_limit) == (msnap.total, msnap.peak, msnap.traceback_limit)
        assert same.statistics("lineno") == msnap.statistics("lineno")


def test_filters_may_come_from_any_iterable(snapshots):
    msnap, _ = snapshots
    gen = (memlens.Filter(True, f"*flt_{x}.py") for x in "ab")
    assert flt_lines(msnap.filter_traces(gen).statistics("lineno")) == ALL


def test_tracemallocs_own_filters_are_accepted(snapshots):
    # Code written for tracemalloc keeps its filters.
    msnap, tsnap = snapshots
    filters = [tracemalloc.Filter(True, "*flt_b.py", all_frames=True), tracemalloc.DomainFilter(False, 7)]
    assert flt_lines(msnap.filter_traces(filters).statistics("lineno")) == \
        flt_lines(tsnap.filter_traces(filters).statistics("lineno")) == \
        {("flt_b.py", 3): (S3, 2), ("flt_a.py", 2): (S1, 2)}


@pytest.mark.parametrize("filters, message", [
    (3, "filters must be a list of filters, not int"),
    (None, "not NoneType"),
    ([memlens.Filter(True, "*"), "x.py"], "Filter or DomainFilter instances, not str"),
    ([object()], "not object"),
])
def test_an_item_that_is_not_a_filter_is_a_type_error(snapshots, filters, message):
    msnap, _ = snapshots
    with pytest.raises(TypeError, match=message):
        msnap.filter_traces(filters)


def test_statistics_compare_to_and_dump_work_on_a_filtered_snapshot(snapshots, tmp_path):
    msnap, _ = snapshots
    only_a = msnap.filter_traces([memlens.Filter(True, "*flt_a.py")])
    only_a2 = msnap.filter_traces([memlens.Filter(True, "*flt_a.py", 2)])
    # compare_to: what line 4 adds
    diffs = [d for d in only_a.compare_to(only_a2, "lineno") if d.size_diff]
    assert [(d.traceback[0].lineno, d.size_diff, d.count_diff) for d in diffs] == [(4, S2, 2)]
    # cumulative statistics count the callers' frames too
    cum = flt_lines(only_a.statistics("lineno", cumulative=True))
    assert cum[("flt_b.py", 5)] == (S1, 2)
    # dump / load round trip
    only_a.dump(tmp_path / "a.mlsnap")
    back = memlens.Snapshot.load(tmp_path / "a.mlsnap")
    assert back.stacks() == only_a.stacks() and back.total == only_a.total == 2 * S1 + S2
    # only the frames its stacks use are kept
    used = {f for row in only_a._table.stacks() for f in row[0]}
    assert set(only_a._table.frames()) == used


def test_filtering_a_filtered_snapshot_composes(snapshots):
    msnap, _ = snapshots
    step = msnap.filter_traces([memlens.Filter(True, "*flt_*.py")]).filter_traces(
        [memlens.Filter(False, "*flt_a.py", 4)])
    assert flt_lines(step.statistics("lineno")) == {k: v for k, v in ALL.items() if k != ("flt_a.py", 4)}


# -- tracemalloc's documented example ---------------------------------------------

def test_documented_example_drops_import_machinery_and_unknown_frames(tmp_path, write):
    # GIVEN a run that imports a module (the import system's frames are
    # "<frozen importlib._bootstrap>" then) and, where native tracing works,
    # has blocks with no Python frame at all (tracemalloc's "<unknown>")
    write(tmp_path / "flt_imp.py", "DATA = bytearray(500_000)\n")
    native = sys.platform.startswith("linux") and os.uname().machine == "x86_64"
    sys.path.insert(0, str(tmp_path))
    tracemalloc.start(16)
    memlens.start(frames=16)
    try:
        mod = importlib.import_module("flt_imp")
        if native:
            tc.native_thread_malloc(200, 1000)
        msnap = memlens.take_snapshot()
        tsnap = tracemalloc.take_snapshot()
    finally:
        memlens.stop()
        tracemalloc.stop()
        if native:
            tc.native_thread_free()
        sys.path.remove(str(tmp_path))
        sys.modules.pop("flt_imp", None)
    dropped = ("<frozen importlib._bootstrap>", "<unknown>")
    full = msnap.statistics("lineno")
    assert any(s.traceback and s.traceback[0].filename == dropped[0] for s in full)
    if native:
        assert sum(s.size for s in full if not s.traceback) >= 200_000
    # WHEN filtered as tracemalloc's documentation does
    mf = msnap.filter_traces((memlens.Filter(False, dropped[0]), memlens.Filter(False, dropped[1])))
    tf = tsnap.filter_traces((tracemalloc.Filter(False, dropped[0]), tracemalloc.Filter(False, dropped[1])))
    top = mf.statistics("lineno")
    # THEN those frames are gone and every other line is as it was
    assert all(s.traceback and s.traceback[0].filename not in dropped for s in top)
    assert top == [s for s in full if s.traceback and s.traceback[0].filename not in dropped]
    assert not any(s.traceback[0].filename in dropped for s in tf.statistics("lineno"))
    # AND the module's line is what it created, as tracemalloc says
    line = {(s.traceback[0].filename, s.traceback[0].lineno): s.size for s in top}
    tline = {(s.traceback[0].filename, s.traceback[0].lineno): s.size for s in tf.statistics("lineno")}
    assert line[(mod.__file__, 1)] == tline[(mod.__file__, 1)] == sys.getsizeof(mod.DATA)
    if native:
        # the frameless blocks are "<unknown>" to an inclusive filter too
        unknown = msnap.filter_traces([memlens.Filter(True, "<unknown>")])
        assert [len(s.traceback) for s in unknown.statistics("traceback")] == [0]
        assert unknown.total == sum(s.size for s in full if not s.traceback)


# -- the engine's side (TraceTable.filter) ----------------------------------------

def test_engine_filter_checks_its_specs(snapshots):
    table = snapshots[0]._table
    n = len(table.frames()) + 1
    with pytest.raises(ValueError, match=f"match must have {n} bytes"):
        table.filter([(False, b"\x01")], [])
    with pytest.raises(TypeError):
        table.filter([[False, bytes(n)]], [])
    with pytest.raises(TypeError, match="exclude must be a sequence"):
        table.filter([], 3)
    # every byte set: everything kept; none: nothing
    assert table.filter([(False, b"\x01" * n)], []).stacks() == table.stacks()
    empty = table.filter([(True, bytes(n))], [])
    assert (empty.nstacks, empty.total, empty.peak, empty.frames()) == (0, 0, 0, [])


def test_filtering_leaks_no_reference(snapshots, modules):
    # The filtered tables hold references to the frames' file names; all
    # are dropped with them.
    msnap, _ = snapshots
    filename = modules[0].one.__code__.co_filename
    filters = [memlens.Filter(True, "*flt_*.py", all_frames=True), memlens.Filter(False, "*flt_a.py", 4)]
    msnap.filter_traces(filters)  # the fnmatch cache, once
    before = sys.getrefcount(filename)
    for _ in range(1000):
        msnap.filter_traces(filters).statistics("lineno")
    assert sys.getrefcount(filename) == before
