"""memlens.advise beside the census of the same heap.

Run: make bench  (or .venv/bin/python benchmarks/bench_advise.py [millions])

Builds a heap of about 5M objects (instances with numeric and string
attributes, lists, dicts), then times, in one run, memlens.census() (when
this build has it) and a plain memlens.deep_size walk over every
GC-tracked object -- the walk both are built on -- and memlens.advise().
Target (issue 8): advise at most 2x the census.
"""
import gc
import sys
import time

import memlens


class Trade:
    def __init__(self, i):
        self.id = i * 1000
        self.px = i * 0.5
        self.qty = i % 1000 * 100
        self.venue = "-".join(["XN", str(i % 7)])


def build(millions):
    n = int(millions * 1_000_000 / 5)  # ~5 objects per trade
    return [Trade(i) for i in range(n)]


def best(fn, repeat=3):
    t = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


def main():
    millions = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    data = build(millions)
    gc.collect()
    gc.disable()  # the timings should not include collections
    try:
        nobj = memlens.deep_size(gc.get_objects(), stats=True).count
        print(f"Python {sys.version.split()[0]}, heap of {nobj / 1e6:.1f}M objects")
        rows = []
        if hasattr(memlens, "census"):
            rows.append(("memlens.census()", best(lambda: memlens.census())))
        rows.append(("deep_size(gc.get_objects(), shared=True)", best(lambda: memlens.deep_size(gc.get_objects(), shared=True))))
        t_adv = best(lambda: memlens.advise(), repeat=2)
        base = rows[0][1]
        for name, t in rows + [("memlens.advise()", t_adv)]:
            print(f"{name:<38} {t:7.2f} s  {t * 1e9 / nobj:6.0f} ns/object  {t / base:5.2f}x {rows[0][0]}")
    finally:
        gc.enable()
    del data


if __name__ == "__main__":
    main()
