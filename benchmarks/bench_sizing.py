"""memlens.deep_size beside pympler.asizeof and a pure-Python gc walk.

Run: make bench   (or .venv/bin/python benchmarks/bench_sizing.py)

Each structure is sized by all three in one run; the table prints the
best-of-N wall time, ns per object (objects as memlens counts them), the
bytes each tool reports, and memlens's speed-up over the others.
Targets (issue 2): >= 50x faster than pympler.asizeof, <= 40 ns per object.
"""
import gc
import sys
import time
from dataclasses import dataclass

import memlens

try:
    from pympler import asizeof as _asizeof
except ImportError:  # pragma: no cover - bench extra not installed
    _asizeof = None


class Plain:
    def __init__(self, i):
        self.id = i
        self.price = i * 0.25
        self.name = f"item-{i}"


@dataclass
class Row:
    key: int
    value: float
    tags: list


def instances_100k():
    return [Plain(i) for i in range(100_000)]


def dataclasses_100k():
    return [Row(i * 1000, i * 0.5, [i * 1000]) for i in range(100_000)]


def mixed_1m():
    # ~1M objects: dicts of lists of floats/strs/tuples
    return {f"k{j}": [(i * 1000, f"v{i}", i * 0.5) for i in range(62)] for j in range(4_000)}


def gc_walk(*objs):
    """The pure-Python reference walk: gc.get_referents + sys.getsizeof."""
    seen = set()
    stack = list(objs)
    total = 0
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        stack.extend(gc.get_referents(o))
    return total


def best(fn, arg, repeat):
    t = float("inf")
    result = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn(arg)
        t = min(t, time.perf_counter() - t0)
    return t, result


def main():
    print(f"Python {sys.version.split()[0]}")
    header = f"{'structure':<18} {'tool':<18} {'time':>9} {'ns/obj':>8} {'bytes':>12} {'memlens is':>12}"
    print(header)
    print("-" * len(header))
    for name, build in [("100k instances", instances_100k), ("100k dataclasses", dataclasses_100k),
                        ("1M-object mixed", mixed_1m)]:
        data = build()
        stats = memlens.deep_size(data, stats=True)
        n = stats.count
        t_ml, b_ml = best(memlens.deep_size, data, 5)
        rows = [("memlens.deep_size", t_ml, b_ml)]
        t_gc, b_gc = best(gc_walk, data, 1)
        rows.append(("gc.get_referents", t_gc, b_gc))
        if _asizeof is not None:
            t_pa, b_pa = best(_asizeof.asizeof, data, 1)
            rows.append(("pympler.asizeof", t_pa, b_pa))
            # pympler reads obj.__dict__, which creates a dict per instance
            # on 3.11+: the heap it measured is now bigger.
            grown = memlens.deep_size(data) - b_ml
        for tool, t, b in rows:
            ratio = "" if tool.startswith("memlens") else f"{t / t_ml:.0f}x faster"
            print(f"{name:<18} {tool:<18} {t * 1e3:>7.1f}ms {t * 1e9 / n:>8.1f} {b:>12,} {ratio:>12}")
        print(f"{'':<18} objects={n:,}  scratch={stats.scratch / n:.1f} B/object", end="")
        if _asizeof is not None:
            print(f"  heap grown by measuring with pympler: {grown:,} B", end="")
        print()
        del data
    if _asizeof is None:
        print("pympler not installed: pip install 'memlens[bench]'")


if __name__ == "__main__":
    main()
