"""The one result convention (memlens._util.result: frozen, slotted
dataclasses) and the shared helpers of memlens._util: the byte formatter,
qualname and the argument checks."""

import copy
import dataclasses
import pickle

import pytest

import memlens
from memlens import _util
from memlens.advise import Advice
from memlens.census import CensusDiff, CensusRow, DiffRow
from memlens.ipython import MemitResult
from memlens.report.model import ClassRow, Sample
from memlens.sizing import Node


class Order:
    pass


def _frozen(obj, field):
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, field, 1)
    assert not hasattr(obj, "__dict__")


# ---- result types ------------------------------------------------------------


def test_type_row_equality_hash_repr_and_unpacking():
    # GIVEN two rows built from the same figures and one that differs
    a = memlens.TypeRow(Order, 1000, 98320)
    b = memlens.TypeRow(Order, 1000, 98320)
    c = memlens.TypeRow(Order, 999, 98320)
    # THEN they compare and hash by value, print as the README shows, and
    # unpack as (name, count, bytes)
    assert a == b and hash(a) == hash(b) and a != c
    assert repr(a) == f"TypeRow(name='{__name__}.Order', count=1000, bytes=98320)"
    assert tuple(a) == (f"{__name__}.Order", 1000, 98320)
    _frozen(a, "count")
    assert pickle.loads(pickle.dumps(a)) == a


def test_size_stats_stays_a_tuple():
    s = memlens.SizeStats(220066, 4001, 0, 53256)
    assert repr(s) == "SizeStats(bytes=220066, count=4001, warnings=0, scratch=53256)"
    nbytes, count, warnings, scratch = s
    assert (nbytes, count, s[1]) == (220066, 4001, 4001)


def test_node_is_an_immutable_tree():
    leaf = Node("[0]", "int", 32, 32, 1, 0, 0)
    root = Node("", "list", 64, 96, 2, 0, 0, (leaf,))
    assert root == Node("", "list", 64, 96, 2, 0, 0, (Node("[0]", "int", 32, 32, 1, 0, 0),))
    assert hash(root) == hash(Node("", "list", 64, 96, 2, 0, 0, (leaf,)))
    assert repr(root) == "Node(label='', type_name='list', own=64, deep=96, count=2, children=1)"
    assert [(d, n.label) for d, n in root.walk()] == [(0, ""), (1, "[0]")]
    assert str(root) == root.format() and root.format().splitlines()[1].startswith("(root)")
    _frozen(root, "own")


def test_breakdown_children_are_tuples_in_order():
    class Box:
        pass

    obj = Box()
    obj.a = [1.5] * 100
    obj.b = "x" * 5000
    tree = memlens.breakdown(obj, depth=1)
    assert isinstance(tree.children, tuple)
    assert tree.deep == memlens.deep_size(obj)
    assert [c.label for c in tree.children][:2] == [".b", ".a"]  # largest first


def test_census_rows_and_diffs():
    row = CensusRow(Order, 3, 300, None)
    assert row.name == f"{__name__}.Order" and row == CensusRow(Order, 3, 300)
    assert repr(row) == f"CensusRow(name='{__name__}.Order', count=3, bytes=300)"
    assert repr(CensusRow(Order, 3, 300, 500)).endswith(", retained=500)")
    d = DiffRow("x.Y", Order, 2, -64, 5, 640)
    assert repr(d) == "DiffRow(name='x.Y', count=+2, bytes=-64)" and hash(d) == hash(copy.copy(d))
    # GIVEN two censuses made by hand
    old = memlens.Census((CensusRow(Order, 1, 100),), 1, 100, 0, 0, False)
    new = memlens.Census((CensusRow(Order, 3, 300), CensusRow(int, 2, 56)), 5, 356, 0, 0, False)
    # THEN the rows are sorted, looked up by type, and the diff has the deltas
    assert [r.name for r in new.rows] == [f"{__name__}.Order", "int"]
    assert new.count(Order) == 3 and new.bytes(int) == 56
    diff = new.diff(old)
    assert diff == CensusDiff.between(new, old)
    assert [(r.name, r.count, r.bytes) for r in diff.rows] == [(f"{__name__}.Order", 2, 200), ("int", 2, 56)]
    assert (diff.count, diff.bytes) == (4, 256)
    assert str(diff) == diff.format()
    assert str(diff).splitlines()[0] == "memlens growth: +4 objects, +256 B"


def test_tracer_types_keep_tracemalloc_behaviour():
    f = memlens.Frame("a.py", 3, "f")
    assert f == memlens.Frame("a.py", 3, "f") and hash(f) == hash(("a.py", 3, "f"))
    assert repr(f) == "<Frame filename='a.py' lineno=3 function='f'>" and str(f) == "a.py:3"
    assert f.label() == "a.py:3 f"
    _frozen(f, "lineno")
    tb = memlens.Traceback([f, memlens.Frame("b.py", 9, "<module>")])
    assert isinstance(tb, tuple) and tb[1].lineno == 9 and len(tb) == 2 and str(tb) == "a.py:3"
    st = memlens.Statistic(tb, 2048, 2)
    assert st == memlens.Statistic(tb, 2048, 2) and len({st, memlens.Statistic(tb, 2048, 2)}) == 1
    assert str(st) == "a.py:3: size=2048 B, count=2, average=1024 B"
    assert repr(st) == "<Statistic traceback=a.py:3 size=2048 count=2>"
    diff = memlens.StatisticDiff(tb, 2048, -1024, 2, -1)
    assert str(diff) == "a.py:3: size=2048 B (-1024 B), count=2 (-1), average=1024 B"
    _frozen(diff, "size")
    assert pickle.loads(pickle.dumps(diff)) == diff


def test_the_report_model_uses_the_tracer_frame():
    from memlens.report import model

    assert model.Frame is memlens.Frame
    assert Sample(0.5, 1, 2, 3) == Sample(0.5, 1, 2, 3)
    _frozen(ClassRow("a.B", 1, 2), "bytes")


def test_line_stat_memit_and_advice():
    ls = memlens.LineStat("a.py", "f", 3, 1, 100, 150, 50, 120, 4096)
    assert ls == memlens.LineStat("a.py", "f", 3, 1, 100, 150, 50, 120, 4096)
    assert repr(ls) == ("<LineStat a.py:f (3) occurrences=1 increment=100 allocated=150 freed=50 "
                        "peak=120 mem_usage=4096>")
    _frozen(ls, "peak")
    m = MemitResult(1 << 20, 3 << 19, 0, 3 << 19, 3 << 19)
    assert m.peak == 5 << 19 and str(m) == "peak memory: 2.50 MiB, increment: 1.50 MiB"
    assert repr(m) == (f"<MemitResult baseline={1 << 20} peak_growth={3 << 19} net=0 "
                       f"allocated={3 << 19} freed={3 << 19}>")
    a = Advice("slots", Order, 70000, 1000, "Use slots.", "class Order:\n    __slots__ = ()\n",
               blockers=["one"], slots=())
    assert a.blockers == ("one",) and hash(a) == hash(dataclasses.replace(a))
    assert repr(a) == f"Advice(kind='slots', target='{__name__}.Order', saving=70000, count=1000)"
    assert str(a) == a.format() and a.format().splitlines()[0] == f"[slots] {__name__}.Order: save 68.4 KiB"
    _frozen(a, "saving")


# ---- helpers -----------------------------------------------------------------


@pytest.mark.parametrize("n, short, tm, tm_signed", [
    (0, "0 B", "0 B", "+0 B"),
    (812, "812 B", "812 B", "+812 B"),
    (1023, "1023 B", "1023 B", "+1023 B"),
    (10752, "10.5 KiB", "10.5 KiB", "+10.5 KiB"),
    (20480, "20.0 KiB", "20.0 KiB", "+20.0 KiB"),
    (200 * 1024, "200.0 KiB", "200 KiB", "+200 KiB"),
    (-10752, "-10.5 KiB", "-10.5 KiB", "-10.5 KiB"),
    (99 * 1024 * 1024 + 512 * 1024, "99.5 MiB", "99.5 MiB", "+99.5 MiB"),
    (3 * 1024 ** 3, "3.0 GiB", "3072 MiB", "+3072 MiB"),
    (5 * 1024 ** 4, "5120.0 GiB", "5120 GiB", "+5120 GiB"),
])
def test_format_bytes_styles(n, short, tm, tm_signed):
    assert _util.format_bytes(n) == short
    assert _util.format_bytes(n, tracemalloc=True) == tm
    assert _util.format_bytes(n, tracemalloc=True, sign=True) == tm_signed


def test_format_bytes_fixed_unit():
    assert _util.format_bytes(5 << 20, unit="MiB") == "5.0 MiB"
    assert _util.format_bytes(3 << 19, unit="MiB", digits=2) == "1.50 MiB"
    assert _util.format_bytes(-(1 << 19), unit="MiB") == "-0.5 MiB"


def test_qualname():
    assert _util.qualname(int) == "int"
    assert _util.qualname(Order) == f"{__name__}.Order"
    assert _util.qualname(dataclasses.Field) == "dataclasses.Field"


def test_argument_checks():
    _util.check_bool("f() x", True)
    with pytest.raises(TypeError, match=r"^f\(\) x must be a bool, not int$"):
        _util.check_bool("f() x", 1)
    _util.check_int("f() n", 0, 0)
    with pytest.raises(TypeError, match=r"^f\(\) n must be an int, not bool$"):
        _util.check_int("f() n", True)
    with pytest.raises(ValueError, match=r"^f\(\) n must be >= 0, got -1$"):
        _util.check_int("f() n", -1, 0)
    with pytest.raises(ValueError, match=r"^frames must be between 1 and 512, not 0$"):
        memlens.start(frames=0)
