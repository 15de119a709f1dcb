"""memlens.Record against the usual ways to define a small class.

For each kind of class, in one run on this interpreter:

* bytes/inst, 3 float -- tracemalloc-traced bytes per instance of a class
  with three float fields, *including* the three float values (each made
  by arithmetic, so each is its own 24-byte object unless stored unboxed);
* bytes/inst, 3 obj -- the same class shape with three str fields that all
  point to one shared string (the instance alone: header, slots, GC header);
* construct -- ns per ``C(x, y, z)`` call with three existing floats;
* read obj / read float -- ns per iteration of ``for o in objs: o.x``
  over 2,000 instances (one read per iteration, as code that uses a
  record pays it; the bare loop ``for o in objs: o`` is printed below the
  table, so the cost of LOAD_ATTR alone can be read off too).

Then the targets of the issue are checked against the rows they name.
Comparison tools that are not installed print 'not installed'
(``pip install -e '.[bench]'`` installs attrs, recordclass, msgspec).
"""
import collections
import dataclasses
import gc
import sys
import timeit
import tracemalloc

import memlens

N_MEM = 10_000
N_TIME = 2_000


def _plain():
    class F:
        def __init__(self, x, y, z):
            self.x = x
            self.y = y
            self.z = z

    return F, F


def _slots():
    class F:
        __slots__ = ("x", "y", "z")

        def __init__(self, x, y, z):
            self.x = x
            self.y = y
            self.z = z

    return F, F


def _dataclass(**kw):
    def make():
        @dataclasses.dataclass(**kw)
        class F:
            x: float
            y: float
            z: float

        @dataclasses.dataclass(**kw)
        class O:
            x: str
            y: str
            z: str

        return F, O

    return make


def _namedtuple():
    F = collections.namedtuple("F", "x y z")
    return F, F


def _attrs():
    import attrs

    @attrs.define
    class F:
        x: float
        y: float
        z: float

    @attrs.define
    class O:
        x: str
        y: str
        z: str

    return F, O


def _recordclass():
    from recordclass import dataobject

    class F(dataobject):
        x: float
        y: float
        z: float

    class O(dataobject):
        x: str
        y: str
        z: str

    return F, O


def _msgspec(**kw):
    def make():
        import msgspec

        class F(msgspec.Struct, **kw):
            x: float
            y: float
            z: float

        class O(msgspec.Struct, **kw):
            x: str
            y: str
            z: str

        return F, O

    return make


def _memlens():
    class F(memlens.Record):
        x: float
        y: float
        z: float

    class O(memlens.Record):
        x: str
        y: str
        z: str

    return F, O


ROWS = [
    ("plain class", _plain),
    ("__slots__", _slots),
    ("dataclass", _dataclass()),
    ("dataclass(slots=True)", _dataclass(slots=True) if sys.version_info >= (3, 10) else None),
    ("namedtuple", _namedtuple),
    ("attrs define (slots)", _attrs),
    ("recordclass.dataobject", _recordclass),
    ("msgspec.Struct", _msgspec()),
    ("msgspec.Struct gc=False", _msgspec(gc=False)),
    ("memlens.Record", _memlens),
]


def bytes_per_instance(make):
    objs = [None] * N_MEM
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(N_MEM):
            objs[i] = make(i)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / N_MEM


def best_ns(stmt, setup_ns, number, per):
    timer = timeit.Timer(stmt, globals=setup_ns)
    best = min(timer.repeat(repeat=7, number=number))
    return best / (number * per) * 1e9


def measure(F, O):
    floats = [(i * 1.5, i + 0.5, i - 0.25) for i in range(N_TIME)]
    s = "shared"
    row = {
        "mem_f": bytes_per_instance(lambda i: F(i * 1.5, i + 0.5, i - 0.25)),
        "mem_o": bytes_per_instance(lambda i: O(s, s, s)),
    }
    ns = {"F": F, "vals": floats}
    row["construct"] = best_ns("for a, b, c in vals: F(a, b, c)", ns, 20, N_TIME)
    fobjs = [F(*v) for v in floats]
    oobjs = [O(s, s, s) for _ in range(N_TIME)]
    row["loop"] = best_ns("for o in objs: o", {"objs": fobjs}, 200, N_TIME)
    row["read_f"] = best_ns("for o in objs: o.x", {"objs": fobjs}, 200, N_TIME)
    row["read_o"] = best_ns("for o in objs: o.x", {"objs": oobjs}, 200, N_TIME)
    return row


def main():
    print(f"memlens.Record benchmark -- Python {sys.version.split()[0]}, "
          f"{N_MEM} instances for bytes, best of 7 for times")
    header = (f"{'class':<25} {'B/inst 3 float':>14} {'B/inst 3 obj':>12} "
              f"{'construct ns':>12} {'read obj ns':>11} {'read float ns':>13}")
    print(header)
    print("-" * len(header))
    results = {}
    for name, factory in ROWS:
        if factory is None:
            print(f"{name:<25} {'(needs Python 3.10+)':>14}")
            continue
        try:
            F, O = factory()
        except ImportError:
            print(f"{name:<25} {'not installed':>14}")
            continue
        r = measure(F, O)
        results[name] = r
        print(f"{name:<25} {r['mem_f']:>14.1f} {r['mem_o']:>12.1f} {r['construct']:>12.1f} "
              f"{r['read_o']:>11.1f} {r['read_f']:>13.1f}")

    m = results["memlens.Record"]
    sl = results["__slots__"]
    print(f"(bare loop 'for o in objs: o': {m['loop']:.1f} ns per iteration)")
    print()
    print("targets (issue 5):")
    print(f"  bytes, 3 floats incl. values: {m['mem_f']:.1f} (target 40; __slots__ "
          f"{sl['mem_f']:.1f}, plain {results['plain class']['mem_f']:.1f})")
    print(f"  bytes, 3 object fields:       {m['mem_o']:.1f} (target 16 + 3*8 + 16 = 56)")
    ref = results.get("dataclass(slots=True)") or sl
    ref_name = "dataclass(slots=True)" if "dataclass(slots=True)" in results else "__slots__"
    print(f"  construction vs {ref_name}: {m['construct'] / ref['construct']:.2f}x "
          f"(target <= 1.00)")
    print(f"  object read vs __slots__:  {m['read_o'] / sl['read_o']:.2f}x (target <= 1.20)")
    print(f"  float read vs __slots__:   {m['read_f'] / sl['read_f']:.2f}x (target <= 2.00)")


if __name__ == "__main__":
    main()
