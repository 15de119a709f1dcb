"""The pytest plugin's overhead, side by side in one run.

Each suite runs in fresh pytest processes, three ways:
  pytest                 -- no memory measurement
  pytest --memlens       -- memlens's plugin (every test's peak and leaks)
  pytest --memray        -- pytest-memray (bench extra), for comparison
on two suites:
  generated   -- a few hundred small tests that allocate (lists, dicts,
                 strings, bytearrays, a class), some parametrized;
  more-itertools -- a real project's own suite: the sdist of
                 more-itertools 10.5.0 ships its tests and needs nothing
                 but pytest (``pip download`` fetches it once into the cache
                 folder; the suite is skipped if that fails).
The wall time of the whole pytest process is compared (best of --repeat).

    python benchmarks/bench_pytest.py [--repeat 3] [--tests 400] [--cache DIR]
"""
import argparse
import glob
import importlib.metadata
import os
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time

REAL = "more-itertools==10.5.0"

GENERATED = textwrap.dedent('''\
    import pytest

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

    def test_list_{i}():
        data = [str(j) * 3 for j in range(2000)]
        assert len(data) == 2000

    def test_dict_{i}():
        d = {{j: [j] * 4 for j in range(1000)}}
        assert len(d) == 1000

    def test_objects_{i}():
        pts = [Point(j, j + 1) for j in range(1500)]
        assert pts[-1].y == 1500

    @pytest.mark.parametrize("n", [1_000, 100_000])
    def test_buffer_{i}(n):
        assert len(bytearray(n)) == n
''')


def _memlens_args():
    # The entry point loads the plugin when memlens is installed with it;
    # from a checkout (PYTHONPATH=src) it takes -p.
    # every distribution, as pluggy looks (duplicates included)
    names = {ep.name for dist in importlib.metadata.distributions() for ep in dist.entry_points
             if ep.group == "pytest11"}
    return [] if "memlens" in names else ["-p", "memlens.pytest.plugin"]


def _has_memray():
    try:
        importlib.metadata.version("pytest-memray")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _time(args, cwd, env, repeat):
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=cwd, env=env,
                              capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if proc.returncode not in (0, 1):
            raise SystemExit(f"pytest {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        best = dt if best is None else min(best, dt)
    return best


def _real_suite(cache):
    """The extracted more-itertools sdist (its tests/ folder inside), or
    None with the reason printed."""
    found = glob.glob(os.path.join(cache, "more-itertools-10.5.0", "tests"))
    if found:
        return os.path.dirname(found[0])
    os.makedirs(cache, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                           REAL, "-d", cache], capture_output=True, text=True)
    archives = glob.glob(os.path.join(cache, "more-itertools-10.5.0.tar.gz"))
    if proc.returncode != 0 or not archives:
        print(f"more-itertools: skipped, pip download failed: {proc.stderr.strip()[-300:]}")
        return None
    with tarfile.open(archives[0]) as tar:
        tar.extractall(cache)
    return os.path.join(cache, "more-itertools-10.5.0")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tests", type=int, default=400, help="generated tests (about; default 400)")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "memlens-bench-pytest"))
    args = ap.parse_args()

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    common = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    modes = [("pytest", ["-p", "no:memray"] if _has_memray() else []),
             ("pytest --memlens", (["-p", "no:memray"] if _has_memray() else []) + _memlens_args()
              + ["--memlens"])]
    if _has_memray():
        modes.append(("pytest --memray", ["--memray"]))
    else:
        print("pytest-memray is not installed (pip install pytest-memray): its column is left out")

    suites = []
    gen = tempfile.mkdtemp(prefix="memlens-bench-suite-")
    per_file = 5  # tests per GENERATED block
    for i in range(max(1, args.tests // per_file)):
        with open(os.path.join(gen, f"test_gen_{i // 20}_{i}.py"), "w") as f:
            f.write(GENERATED.format(i=i))
    suites.append((f"generated ({max(1, args.tests // per_file) * per_file} tests)", gen, ["."]))
    real = _real_suite(args.cache)
    if real is not None:
        real_env = dict(env, PYTHONPATH=os.pathsep.join([real, env["PYTHONPATH"]]))
        suites.append(("more-itertools 10.5.0 (663 tests + subtests)", real, ["tests"], real_env))

    print(f"Python {sys.version.split()[0]}, best of {args.repeat}, wall time of the pytest process")
    header = f"{'suite':<46}" + "".join(f"{name:>20}" for name, _ in modes)
    print(header)
    for suite in suites:
        title, cwd, paths = suite[:3]
        suite_env = suite[3] if len(suite) > 3 else env
        times = [_time(common + extra + paths, cwd, suite_env, args.repeat) for _, extra in modes]
        row = f"{title:<46}" + "".join(
            f"{t:>12.2f} s" + (f" {t / times[0]:>4.2f}x" if k else "      ")
            for k, t in enumerate(times))
        print(row)


if __name__ == "__main__":
    main()
