"""Line-by-line profile overhead, side by side in one run.

The same memory_profiler-style script (a loop-heavy function decorated with
the builtin ``@profile``, one cheap allocating statement per line) runs in a
fresh interpreter:

- plain: ``profile`` is the identity;
- ``python -m memory_profiler script.py`` (if installed: the ``bench`` extra);
- ``python -m memlens run --lines script.py``.

The script times its own call of the profiled function (start-up and the
final report are left out) and the figures are the best of --repeat runs.

    python benchmarks/bench_lines.py [--repeat 3] [--n 20000]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import textwrap

SCRIPT = textwrap.dedent('''\
    import sys, time

    @profile
    def work(n):
        keep = []
        total = 0
        for i in range(n):
            s = "item %d" % i
            d = {"k": s, "v": i}
            total += len(s)
            if i % 10 == 0:
                keep.append(d)
        big = [0] * 1_000_000
        del big
        return keep, total

    @profile
    def build(n):
        rows = [(i, str(i)) for i in range(n)]
        return rows

    if __name__ == "__main__":
        n = int(sys.argv[1])
        t0 = time.perf_counter()
        work(n)
        build(n)
        t1 = time.perf_counter()
        print("ELAPSED", t1 - t0, file=sys.stderr)
''')

PLAIN = textwrap.dedent('''\
    import builtins, runpy, sys
    builtins.profile = lambda f: f
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
''')


def run(cmd, env):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    for line in r.stderr.splitlines():
        if line.startswith("ELAPSED"):
            return float(line.split()[1]), r.stdout
    raise SystemExit(f"no timing from {' '.join(cmd)}\n{r.stderr}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--n", type=int, default=20000, help="loop iterations of the profiled function")
    p.add_argument("--skip-memory-profiler", action="store_true")
    args = p.parse_args()

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    try:
        import memory_profiler  # noqa: F401
        have_mp = not args.skip_memory_profiler
    except ImportError:
        have_mp = False

    with tempfile.TemporaryDirectory() as d:
        script = os.path.join(d, "profiled.py")
        with open(script, "w") as f:
            f.write(SCRIPT)
        n = str(args.n)
        modes = [
            ("plain", [sys.executable, "-c", PLAIN, script, n]),
            ("memlens run --lines", [sys.executable, "-m", "memlens", "run", "--lines", script, n]),
        ]
        if have_mp:
            modes.append(("python -m memory_profiler",
                          [sys.executable, "-m", "memory_profiler", script, n]))
        best = {}
        out = {}
        for name, cmd in modes:
            # memory_profiler is slow: one run of it is enough to rank it.
            reps = 1 if "memory_profiler" in name else args.repeat
            times = []
            for _ in range(reps):
                t, stdout = run(cmd, env)
                times.append(t)
            best[name] = min(times)
            out[name] = stdout

    print(f"Python {sys.version.split()[0]}, loop-heavy profiled function, n={args.n} "
          f"(about {7 * args.n} line events)")
    base = best["plain"]
    for name, t in best.items():
        print(f"  {name:<28} {t * 1000:9.1f} ms   {t / base:7.2f}x plain")
    if have_mp:
        ratio = best["python -m memory_profiler"] / best["memlens run --lines"]
        print(f"  memlens is {ratio:.0f}x faster than memory_profiler")
    print()
    print("memlens' table:")
    print(out["memlens run --lines"])
    if have_mp:
        print("memory_profiler's table:")
        print(out["python -m memory_profiler"])


if __name__ == "__main__":
    main()
