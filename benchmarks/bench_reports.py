"""Captures of many stacks: the end-of-run summary, every report format and
the capture's size, memlens and memray side by side in one run.

One program makes --stacks distinct allocation stacks (500 functions, each
called from stacks/500 call sites, each call keeping one small list), the
shape of a real program's imports.  Whole-process wall times (best of
--repeat):

  python prog.py                        -- no tracing
  memlens run -q prog.py                -- trace, write the capture
  memlens run prog.py                   -- and print the summary
  memlens report c.mlcap --format F     -- text, html, json, pprof, collapsed
  memray run --trace-python-allocators [--aggregate] prog.py
                                        -- where memray is installed (it sees
                                           every block, as memlens does)
  memray summary/stats/flamegraph/table -- its reporters on its full log

Printed: memlens run / memlens run -q (the summary's cost), each report's
time, and the capture sizes against memray's aggregated and full logs.

    python benchmarks/bench_reports.py [--stacks 100000] [--repeat 3]
"""
import argparse
import os
import shutil
import sys
import tempfile

from _common import best

FUNCS = 500



def program(stacks):
    callers = max(1, stacks // FUNCS)
    lines = ["keep = []"]
    for i in range(FUNCS):
        lines.append(f"def f{i}():\n    keep.append([{i}] * {i % 13 + 1})")
    for j in range(callers):
        body = "\n".join(f"    f{i}()" for i in range(FUNCS))
        lines.append(f"def g{j}():\n{body}")
    lines.append("\n".join(f"g{j}()" for j in range(callers)))
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stacks", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    py = sys.executable
    memray = shutil.which("memray", path=os.path.dirname(py)) or shutil.which("memray")
    print(f"Python {sys.version.split()[0]}; best of {args.repeat}; {args.stacks} stacks")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "prog.py"), "w") as f:
            f.write(program(args.stacks))
        t = {}
        t["python"] = best([py, "prog.py"], tmp, args.repeat)
        t["memlens -q"] = best([py, "-m", "memlens", "run", "-q", "-o", "c.mlcap", "prog.py"], tmp, args.repeat)
        t["memlens"] = best([py, "-m", "memlens", "run", "-o", "c.mlcap", "prog.py"], tmp, args.repeat)
        for fmt, out in (("text", "r.txt"), ("html", "r.html"), ("json", "r.json"), ("pprof", "r.pb.gz"),
                         ("collapsed", "r.folded")):
            t[f"report {fmt}"] = best([py, "-m", "memlens", "report", "c.mlcap", "--format", fmt, "-o", out],
                                      tmp, args.repeat)
        sizes = {"memlens capture": os.path.getsize(os.path.join(tmp, "c.mlcap"))}
        if memray:
            t["memray run"] = best([memray, "run", "-f", "-q", "--trace-python-allocators", "-o", "m.bin", "prog.py"], tmp, args.repeat)
            t["memray run --aggregate"] = best([memray, "run", "-f", "-q", "--trace-python-allocators", "--aggregate", "-o", "a.bin",
                                                "prog.py"], tmp, args.repeat)
            for rep in ("summary", "stats"):
                t[f"memray {rep}"] = best([memray, rep, "m.bin"], tmp, args.repeat)
            for rep in ("flamegraph", "table"):
                t[f"memray {rep}"] = best([memray, rep, "-f", "-o", f"m-{rep}.html", "m.bin"], tmp, args.repeat)
            sizes["memray full log"] = os.path.getsize(os.path.join(tmp, "m.bin"))
            sizes["memray aggregated"] = os.path.getsize(os.path.join(tmp, "a.bin"))
        for name, took in t.items():
            print(f"  {name:<26} {took:7.3f} s")
        print(f"memlens run / memlens run -q (the summary's cost):  {t['memlens'] / t['memlens -q']:.2f}x")
        print(f"memlens run -q / python:                            {t['memlens -q'] / t['python']:.2f}x")
        for name, size in sizes.items():
            print(f"  {name:<26} {size / 2**20:7.2f} MiB")
        if memray:
            print(f"memlens run -q / memray run:                        {t['memlens -q'] / t['memray run']:.2f}x")
            print(f"report html / memray flamegraph:                    "
                  f"{t['report html'] / t['memray flamegraph']:.2f}x")
            print(f"report text / memray summary:                       "
                  f"{t['report text'] / t['memray summary']:.2f}x")
            print(f"capture / memray aggregated:                        "
                  f"{sizes['memlens capture'] / sizes['memray aggregated']:.2f}x")
            print(f"capture / memray full log:                          "
                  f"{sizes['memlens capture'] / sizes['memray full log']:.2f}x")
        else:
            print("memray is not installed: its side is left out")


if __name__ == "__main__":
    main()
