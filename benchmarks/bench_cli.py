"""`memlens run` overhead and capture size, side by side in one run.

For each tracer benchmark workload (benchmarks/bench_tracer.py), in fresh
interpreters:
  python child.py                      -- no tracing
  python child.py (memlens.start(16))  -- the tracer alone, in-process
  memlens run --frames 16 child.py     -- the command: tracer + timeline
The workload's own timer is compared (best of --repeat), and the whole
process's wall time too (start-up, capture writing and summary included).
Then a long allocation-heavy run reports the capture size per minute.

    python benchmarks/bench_cli.py [--repeat 3] [--quick] [--long-seconds 30]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_tracer  # noqa: E402

LONG = textwrap.dedent('''\
    import random, sys, time
    # An allocation-heavy service loop: requests build records, a bounded
    # cache keeps some, the rest is garbage; many call sites and depths.
    class Record:
        def __init__(self, i):
            self.id = i
            self.name = "rec-%d" % i
            self.tags = [str(i % 7), str(i % 11)]
    cache = {}
    def parse(i):
        return {"id": i, "payload": "x" * (i % 300), "items": list(range(i % 40))}
    def handle(i, depth):
        if depth:
            return handle(i, depth - 1)
        rec = Record(i)
        doc = parse(i)
        if i % 10 == 0:
            cache[i % 50_000] = (rec, doc)
        return len(doc["payload"])
    deadline = time.monotonic() + float(sys.argv[1])
    i = n = 0
    rng = random.Random(0)
    while time.monotonic() < deadline:
        for _ in range(1000):
            n += handle(i, rng.randrange(8))
            i += 1
    print(i, "requests")
''')


def run(cmd, cwd):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=cwd)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["time"], wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smaller workloads, 10 s long run")
    ap.add_argument("--long-seconds", type=float, default=None)
    ap.add_argument("--workloads", default=",".join(bench_tracer.WORKLOADS),
                    help="comma-separated subset of the workloads")
    ap.add_argument("--no-long", action="store_true", help="skip the long capture-size run")
    args = ap.parse_args()
    scale = 0.3 if args.quick else 1.0
    long_s = args.long_seconds or (10.0 if args.quick else 30.0)
    py = sys.executable
    print(f"Python {py and sys.version.split()[0]}; best of {args.repeat}; workloads from bench_tracer.py")
    with tempfile.TemporaryDirectory() as tmp:
        child = os.path.join(tmp, "child.py")
        with open(child, "w") as f:
            f.write(bench_tracer.CHILD)
        cap = os.path.join(tmp, "c.mlcap")
        cmds = {
            "python": [py, child, "none"],
            "tracer": [py, child, "memlens16"],
            # the timeline's own cost: the same command with one sample an hour
            "run_no_tl": [py, "-m", "memlens", "run", "-q", "--frames", "16", "--interval", "3600000",
                          "-o", cap, child, "none"],
            "run": [py, "-m", "memlens", "run", "-q", "--frames", "16", "-o", cap, child, "none"],
        }
        print(f"{'workload':<18}{'python':>10}{'tracer':>9}{'run':>9}{'timeline':>10}"
              f"{'wall python':>13}{'wall run':>10}")
        rows = []
        for w in args.workloads.split(","):
            best = {}
            for _ in range(args.repeat):
                for k, c in cmds.items():  # interleaved: noise hits all alike
                    t, wall = run(c + [w, str(scale), "0"], tmp)
                    b = best.setdefault(k, [t, wall])
                    b[0], b[1] = min(b[0], t), min(b[1], wall)
            base = best["python"][0]
            r_tr, r_run = best["tracer"][0] / base, best["run"][0] / base
            r_tl = best["run"][0] / best["run_no_tl"][0]
            rows.append((r_tr, r_run, r_tl, best["run"][1] / best["python"][1]))
            print(f"{w:<18}{base * 1000:>8.0f}ms{r_tr:>8.2f}x{r_run:>8.2f}x{r_tl:>9.3f}x"
                  f"{best['python'][1]:>12.2f}s{best['run'][1] / best['python'][1]:>9.2f}x")
        g = [bench_tracer.geomean([r[i] for r in rows]) for i in range(4)]
        print(f"{'geometric mean':<18}{'':>10}{g[0]:>8.2f}x{g[1]:>8.2f}x{g[2]:>9.3f}x{'':>13}{g[3]:>9.2f}x")
        print("  tracer = memlens.start(frames=16) in the program, after its warm-up; run = memlens run "
              "--frames 16 (tracing from the start, runner frames under every stack, 10 ms timeline);\n"
              "  timeline = run / the same run with the timeline sampling once an hour (target <= 1.05x); "
              "wall = whole process incl. start-up and capture")
        print()
        if args.no_long:
            return
        prog = os.path.join(tmp, "long.py")
        with open(prog, "w") as f:
            f.write(LONG)
        t0 = time.perf_counter()
        proc = subprocess.run([py, "-m", "memlens", "run", "-q", "-o", cap, prog, str(long_s)],
                              capture_output=True, text=True, timeout=3600, cwd=tmp)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        size = os.path.getsize(cap)
        from memlens.report import model

        c = model.load(cap)
        print(f"long run: {long_s:.0f} s of an allocation-heavy loop ({proc.stdout.split()[0]} requests), "
              f"{len(c.stacks)} stacks, {len(c.timeline)} timeline samples")
        print(f"capture: {size / 1e6:.3f} MB = {size / 1e6 / (wall / 60):.3f} MB per minute of run "
              f"(the timeline is capped at 32768 samples = 1 MiB; stacks are aggregated)")


if __name__ == "__main__":
    main()
