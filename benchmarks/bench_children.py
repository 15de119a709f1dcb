"""Following child processes: what it costs, side by side in one run.

Two programs, each run in fresh interpreters (best of --repeat, whole
process wall time: start-up, every child, capture writing):

  pool     -- a multiprocessing pool (spawn, 2 workers) running 8
              allocation-heavy tasks: the work is in the children.
  nochild  -- an allocation-heavy loop that starts no children.

Each under:
  python prog.py                            -- no tracing
  memlens run -q --no-children prog.py      -- the first process traced
  memlens run -q prog.py                    -- every process traced (default)

The ratios printed: the pool under memlens vs python (the tracer's overhead
now paid in every worker), and, for the program without children,
following vs --no-children (the cost of following when there is nothing to
follow: it should be 1.00 within noise).

    python benchmarks/bench_children.py [--repeat 5] [--quick]
"""
import argparse
import os
import sys
import tempfile
import textwrap

from _common import best

POOL = textwrap.dedent('''\
    import multiprocessing as mp, sys
    def task(n):
        # records, strings and lists: what a data-pipeline worker makes
        rows = [{"id": i, "name": "row-%d" % i, "tags": [i % 7, i % 11]} for i in range(n)]
        return sum(len(r["name"]) for r in rows)
    if __name__ == "__main__":
        n = int(sys.argv[1])
        with mp.get_context("spawn").Pool(2) as p:
            print(sum(p.map(task, [n] * 8)))
''')

NOCHILD = textwrap.dedent('''\
    import sys
    n = int(sys.argv[1])
    total = 0
    for k in range(8):
        rows = [{"id": i, "name": "row-%d" % i, "tags": [i % 7, i % 11]} for i in range(n)]
        total += sum(len(r["name"]) for r in rows)
    print(total)
''')




def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smaller tasks")
    args = ap.parse_args()
    n = "30000" if args.quick else "150000"
    py = sys.executable
    print(f"Python {sys.version.split()[0]}; best of {args.repeat}; {n} rows per task, 8 tasks")
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in (("pool", POOL), ("nochild", NOCHILD)):
            with open(os.path.join(tmp, f"{name}.py"), "w") as f:
                f.write(text)
        times = {}
        for name in ("pool", "nochild"):
            prog = [f"{name}.py", n]
            times[name, "python"] = best([py, *prog], tmp, args.repeat)
            times[name, "no-children"] = best([py, "-m", "memlens", "run", "-q", "--no-children", "-o",
                                               "c.mlcap", *prog], tmp, args.repeat)
            times[name, "children"] = best([py, "-m", "memlens", "run", "-q", "-o", "c.mlcap", *prog],
                                           tmp, args.repeat)
        print(f"{'program':<9} {'python':>8} {'--no-children':>14} {'children':>9}")
        for name in ("pool", "nochild"):
            print(f"{name:<9} {times[name, 'python']:>7.3f}s {times[name, 'no-children']:>13.3f}s "
                  f"{times[name, 'children']:>8.3f}s")
        print(f"pool under memlens run (children followed) / python: "
              f"{times['pool', 'children'] / times['pool', 'python']:.2f}x")
        print(f"pool, --no-children / python (workers untraced):   "
              f"{times['pool', 'no-children'] / times['pool', 'python']:.2f}x")
        print(f"no children: memlens run / --no-children:           "
              f"{times['nochild', 'children'] / times['nochild', 'no-children']:.2f}x")
        print(f"no children: memlens run / python:                  "
              f"{times['nochild', 'children'] / times['nochild', 'python']:.2f}x")


if __name__ == "__main__":
    main()
