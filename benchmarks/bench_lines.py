"""Line-by-line profile overhead, side by side in one run.

The same memory_profiler-style script runs in a fresh interpreter; its two
loop-heavy functions are decorated with the builtin ``@profile``: `dense`
(the worst case: every line a few tens of nanoseconds, and allocating) and
`typical` (each line does some real work).  Modes:

- plain: ``profile`` is the identity;
- ``python -m memory_profiler script.py`` (if installed: the ``bench`` extra);
- ``python -m memlens run --lines script.py``.

The script times its own calls of the profiled functions (start-up and the
final report are left out); the figures are the fastest call over --calls
calls in each of --repeat runs (the machine is noisy), memory_profiler's its
single call.

With --floor, also the two parts of memlens' cost each alone: CPython's
line events delivered to a handler that does nothing, and the allocation
tracer with no line events (on 3.9-3.11 the empty handler is a trace
function, so the typical loop's figure there includes json's own lines).

    python benchmarks/bench_lines.py [--repeat 5] [--n 20000] [--tables] [--floor]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import textwrap

SCRIPT = textwrap.dedent('''\
    import json, sys, time

    @profile
    def dense(n):
        # Worst case: every line is a few tens of ns and allocates.
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
    def typical(n):
        # Lines that do a little work each: formatting, sorting, parsing.
        rows = []
        for i in range(n):
            rec = {"id": i, "name": f"user{i}", "tags": sorted(["b", "a", str(i % 7)])}
            text = json.dumps(rec)
            rows.append(json.loads(text)["name"].upper())
        return rows

    if __name__ == "__main__":
        n, calls = int(sys.argv[1]), int(sys.argv[2])
        for name, func, size in (("dense", dense, n), ("typical", typical, n // 4)):
            for _ in range(calls):
                t0 = time.perf_counter()
                func(size)
                print("ELAPSED", name, time.perf_counter() - t0, file=sys.stderr)
''')

PLAIN = textwrap.dedent('''\
    import builtins, runpy, sys
    builtins.profile = lambda f: f
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
''')

# The two parts of `memlens run --lines`, each alone (--floor): what any
# exact line profiler pays on these loops, whatever its own code does.
#   events: CPython's line events delivered to a handler that does nothing
#     (3.12+: a builtin registered with sys.monitoring for the profiled
#     functions' LINE events; 3.9-3.11: a C trace function, installed around
#     each call of a profiled function);
#   tracer: memlens' allocation tracer in the mode the profiler runs it
#     (totals and per-thread counters, no stacks), no line events.
FLOOR = textwrap.dedent('''\
    import builtins, functools, operator, runpy, sys
    from memlens import _core, _testcore
    what = sys.argv[1]
    if what == "tracer":
        _core.trace_start(0, 0)
        builtins.profile = lambda f: f
    elif sys.version_info >= (3, 12):
        mon = sys.monitoring
        mon.use_tool_id(mon.PROFILER_ID, "floor")
        mon.register_callback(mon.PROFILER_ID, mon.events.LINE, operator.is_)
        def profile(f):
            mon.set_local_events(mon.PROFILER_ID, f.__code__, mon.events.LINE)
            return f
        builtins.profile = profile
    else:
        def profile(f):
            @functools.wraps(f)
            def wrapper(*args):
                _testcore.lineprof_null_trace(True)
                try:
                    return f(*args)
                finally:
                    _testcore.lineprof_null_trace(False)
            return wrapper
        builtins.profile = profile
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
''')


def run(cmd, env):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    times = {}
    for line in r.stderr.splitlines():
        if line.startswith("ELAPSED"):
            _, name, t = line.split()
            times[name] = min(times.get(name, float(t)), float(t))
    if len(times) != 2:
        raise SystemExit(f"no timing from {' '.join(cmd)}\n{r.stderr}")
    return times, r.stdout


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--n", type=int, default=20000, help="loop iterations of the profiled function")
    p.add_argument("--calls", type=int, default=5, help="calls of each function per run")
    p.add_argument("--skip-memory-profiler", action="store_true")
    p.add_argument("--tables", action="store_true", help="also print both tools' tables")
    p.add_argument("--floor", action="store_true",
                   help="also time the line events alone (empty handler) and the tracer alone")
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
        calls = str(args.calls)
        modes = [
            ("plain", [sys.executable, "-c", PLAIN, script, n, calls]),
            ("memlens run --lines", [sys.executable, "-m", "memlens", "run", "--lines", script, n, calls]),
        ]
        if args.floor:
            modes += [
                ("  line events, empty handler", [sys.executable, "-c", FLOOR, "events", script, n, calls]),
                ("  allocation tracer alone", [sys.executable, "-c", FLOOR, "tracer", script, n, calls]),
            ]
        if have_mp:
            # memory_profiler is slow: one call of each function is enough.
            modes.append(("python -m memory_profiler",
                          [sys.executable, "-m", "memory_profiler", script, n, "1"]))
        best = {}
        out = {}
        for name, cmd in modes:
            # memory_profiler is slow, but its run-to-run noise decides the
            # ratio as much as memlens': best of --repeat runs for every mode.
            reps = args.repeat
            for _ in range(reps):
                times, stdout = run(cmd, env)
                for work, t in times.items():
                    best[name, work] = min(best.get((name, work), t), t)
            out[name] = stdout

    print(f"Python {sys.version.split()[0]}; fastest call of {args.calls} in each of {args.repeat} runs "
          f"(memory_profiler: 1 call in each run); time of the profiled calls only")
    for work, what in (("dense", f"dense loop, n={args.n}: 7 cheap allocating lines per iteration"),
                       ("typical", f"typical loop, n={args.n // 4}: 3 lines of real work per iteration")):
        print(f"{what}")
        base = best["plain", work]
        for name, _ in modes:
            t = best[name, work]
            print(f"  {name:<28} {t * 1000:9.1f} ms   {t / base:7.2f}x plain")
        if have_mp:
            ratio = best["python -m memory_profiler", work] / best["memlens run --lines", work]
            print(f"  memlens is {ratio:.0f}x faster than memory_profiler")
    if args.tables:
        print()
        print("memlens' tables:")
        print(out["memlens run --lines"])
        if have_mp:
            print("memory_profiler's tables:")
            print(out["python -m memory_profiler"])


if __name__ == "__main__":
    main()
