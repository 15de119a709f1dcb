"""Whole-heap census: memlens vs guppy3, pympler and a gc.get_objects loop.

Builds heaps of 1M and 5M objects (instances with int/str/list attributes,
dicts, tuples) and times, side by side in one run:

* memlens.census()                 -- count + bytes per type
* memlens.census(retained=True)    -- plus a dominator tree of the heap
* memlens.retained_size(x)         -- one object's retained size
* guppy3  hpy().heap()             -- the anchor (>= 5x slower is the target)
* pympler muppy.get_objects() + summary.summarize()
* gc.get_objects() + sys.getsizeof in a Python loop

Usage: python benchmarks/bench_census.py [--sizes 1000000,5000000] [--skip pympler,guppy]

memlens runs first: guppy3 creates every instance's __dict__ on 3.11+ and
so changes the heap the others would see.  Each tool runs once per size
(the machine is shared; these are not micro-benchmarks).
"""
import argparse
import gc
import sys
import time

import memlens


class Record:
    def __init__(self, i):
        self.id = i * 1000          # an int object
        self.name = f"rec-{i}"      # a str object
        self.tags = [i * 0.5]       # a list and a float


def build(n_objects):
    """About n_objects objects: each record is 5 (instance, int, str, list,
    float); every 10th record also gets a dict and a tuple."""
    out = []
    n_records = n_objects // 5
    for i in range(n_records):
        r = Record(i)
        if i % 10 == 0:
            r.meta = {"k": (i, i + 1)}
        out.append(r)
    return out


def timed(fn):
    t = time.perf_counter()
    res = fn()
    return time.perf_counter() - t, res


def gc_loop():
    total = 0
    n = 0
    for o in gc.get_objects():
        total += sys.getsizeof(o)
        n += 1
    return n, total


def pympler_summary():
    from pympler import muppy, summary
    objs = muppy.get_objects()
    rows = summary.summarize(objs)
    return len(objs), rows


def guppy_heap():
    from guppy import hpy
    h = hpy().heap()
    return h.count, h.size


def run(size, skip):
    gc.collect()
    heap = build(size)
    gc.collect()
    gc.disable()
    results = []
    try:
        t, c = timed(memlens.census)
        n = c.total_count
        results.append(("memlens.census()", t, n, c.scratch))
        print(f"\n== heap of {n:,} live objects ({len(heap):,} records)")
        t, cr = timed(lambda: memlens.census(retained=True))
        results.append(("memlens.census(retained=True)", t, cr.total_count, cr.scratch))
        t, r = timed(lambda: memlens.retained_size(heap))
        results.append(("memlens.retained_size(heap)", t, n, None))
        t, _ = timed(gc_loop)
        results.append(("gc.get_objects+getsizeof loop", t, n, None))
        if "pympler" not in skip:
            try:
                t, _ = timed(pympler_summary)
                results.append(("pympler muppy+summary", t, n, None))
            except ImportError:
                print("(pympler not installed)")
        if "guppy" not in skip:
            try:
                t, _ = timed(guppy_heap)
                results.append(("guppy3 hpy().heap()", t, n, None))
            except ImportError:
                print("(guppy3 not installed)")
    finally:
        gc.enable()
    base = results[0][1]
    print(f"{'tool':<32} {'seconds':>8} {'ns/object':>10} {'vs census':>10} {'scratch B/obj':>14}")
    for name, t, count, scratch in results:
        per = t * 1e9 / max(count, 1)
        scr = f"{scratch / max(count, 1):.1f}" if scratch else ""
        print(f"{name:<32} {t:>8.3f} {per:>10.1f} {t / base:>9.1f}x {scr:>14}")
    print(f"Record row: count={c.count(Record):,} bytes={c.bytes(Record):,}; "
          f"retained(Record)={cr.retained(Record):,}; retained_size(heap)={r:,}")
    guppy = [t for name, t, _, _ in results if name.startswith("guppy")]
    if guppy:
        print(f"memlens.census is {guppy[0] / base:.1f}x faster than guppy3 (target >= 5x)")
    del heap


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,5000000")
    ap.add_argument("--skip", default="", help="comma-separated: pympler,guppy")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    print(f"Python {sys.version.split()[0]}")
    for size in (int(s) for s in args.sizes.split(",")):
        run(size, skip)


if __name__ == "__main__":
    main()
