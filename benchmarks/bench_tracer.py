"""Allocation tracer overhead, side by side in one run.

Each allocation-heavy workload (and, where numpy, pandas and sqlite3 are
installed, native-heavy ones: most of their memory taken by C code) is timed
in a fresh interpreter under: no tracing, tracemalloc with 1 and 16 frames,
memray with --trace-python-allocators and in its default mode (if
installed), memlens exact with 16 frames with native tracing off and on, and
memlens sampled every 512 KiB, and (for scale) PEP 445 hooks that do
nothing but call the allocator below.  Prints the slowdown against no tracing
(best of --repeat runs, each the fastest of --inner calls of the workload
under the same tracer) and memlens' own memory per live traced block.

    python benchmarks/bench_tracer.py [--repeat 3] [--inner 3] [--quick] [--depth N]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r'''
import gc, json, os, sys, time
mode, workload, scale, depth = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
inner = int(sys.argv[5]) if len(sys.argv) > 5 else 1

class Point:
    def __init__(self, x, y, z):
        self.x = x
        self.y = y
        self.z = z

def objects():
    keep = []
    for r in range(int(20 * scale)):
        pts = [Point(i, i * 1000, i * 0.5) for i in range(10000)]
        keep.append(pts[::100])
    return keep

def dict_list_churn():
    out = 0
    for r in range(int(30 * scale)):
        d = {}
        for i in range(5000):
            d[i] = [i, str(i), (i, i + 1)]
        out += len(d)
        lst = [v for v in d.values() if v[0] % 3]
        out += len(lst)
    return out

def json_roundtrip():
    doc = {"users": [{"id": i, "name": "user%d" % i, "tags": ["a", "b", str(i)],
                      "score": i * 1.5, "active": bool(i % 2)} for i in range(2000)]}
    out = 0
    for r in range(int(10 * scale)):
        s = json.dumps(doc)
        out += len(json.loads(s)["users"])
    return out

def string_building():
    out = 0
    for r in range(int(20 * scale)):
        parts = []
        for i in range(10000):
            parts.append("line %d: %s" % (i, "x" * (i % 50)))
        s = "\n".join(parts)
        out += len(s.split("\n"))
    return out

def retain():
    # builds a large live heap: what tracer memory per live block is measured on
    keep = []
    for r in range(int(10 * scale)):
        keep.append([Point(i, i * 1000, str(i)) for i in range(30000)])
        keep.append({"k%d" % i: [i] for i in range(20000)})
    return keep

# Native-heavy workloads: most of their memory is taken by C code with
# malloc (numpy's data, sqlite's pages), which memlens sees with native=True.
def numpy_small():
    import numpy as np
    out = 0.0
    for r in range(int(3000 * scale)):
        a = np.arange(64, dtype=np.float64)
        b = a * 2.0 + 1.0
        out += float(np.concatenate([a, b]).sum())
    return out

def numpy_large():
    import numpy as np
    out = 0.0
    for r in range(int(6 * scale)):
        a = np.ones(2_000_000)
        b = a * 2
        c = np.concatenate([a, b])
        out += float(c[-1])
    return out

def pandas_groupby():
    import numpy as np
    import pandas as pd
    n = int(200_000 * scale)
    df = pd.DataFrame({"k": np.arange(n) % 1000, "v": np.arange(n, dtype=np.float64),
                       "s": ["x%d" % (i % 100) for i in range(n)]})
    out = 0.0
    for r in range(3):
        g = df.groupby("k").agg({"v": "sum", "s": "first"})
        m = df.merge(g, left_on="k", right_index=True)
        out += float(m["v_x"].sum())
    return out

def sqlite_inserts():
    import sqlite3
    db = sqlite3.connect(":memory:")
    db.execute("create table t (id integer primary key, name text, score real)")
    n = int(60_000 * scale)
    db.executemany("insert into t values (?, ?, ?)", (((i, "name %d" % i, i * 0.5) for i in range(n))))
    out = db.execute("select count(*), sum(score) from t").fetchone()[0]
    db.close()
    return out

WORKLOADS = {"retain": retain, "objects": objects, "dict_list_churn": dict_list_churn,
             "json_roundtrip": json_roundtrip, "string_building": string_building,
             "numpy_small": numpy_small, "numpy_large": numpy_large, "pandas_groupby": pandas_groupby,
             "sqlite_inserts": sqlite_inserts}
fn = WORKLOADS[workload]

def deep(n, f):
    # run the workload `depth` frames deeper than the script's own
    if n == 0:
        return f()
    return deep(n - 1, f)

# Every mode imports every tool before the warm-up, so that all of them start
# from the same heap.  Where pymalloc's arenas fall matters more than one
# would think: importing any few modules (memlens, or decimal + email) made
# the untraced string_building run 1.3x slower here, by shifting it onto an
# arena boundary that pymalloc then frees and maps again on every round
# (twice the page faults).  Measured against a baseline that did not import
# memlens, that would be charged to the tracer.
import tracemalloc
import memlens
from memlens import _core, _testcore  # every mode imports the same modules (see above)
try:
    import memray
except ImportError:
    pass
fn()  # warm up (imports, caches, specialisation)
gc.collect()
stop = lambda: None
extra = {}
if mode == "tracemalloc1" or mode == "tracemalloc16":
    tracemalloc.start(1 if mode == "tracemalloc1" else 16)
    stop = tracemalloc.stop
elif mode == "memray" or mode == "memray_default":
    import tempfile
    path = os.path.join(tempfile.mkdtemp(), "bench.bin")
    tracker = memray.Tracker(path, trace_python_allocators=mode == "memray")
    tracker.__enter__()
    stop = lambda: tracker.__exit__(None, None, None)
elif mode == "hooks_only":
    _testcore.trace_chain_only(True)
    stop = lambda: _testcore.trace_chain_only(False)
elif mode.startswith("memlens"):
    memlens.start(frames=16, sample_bytes=512 * 1024 if mode == "memlens_sampled" else 0,
                  native=mode != "memlens16_py")
    stop = memlens.stop
# CPU time of this process: the machine is shared, and waiting for a core is
# not overhead of the tool being measured.
# The fastest of `inner` calls: a call of 25-45 ms is at the mercy of the
# machine, and the first one under a tracer also fills its tables.  The
# previous call's result is dropped before the clock starts.
elapsed = None
result = None
for _ in range(inner):
    result = None
    t0 = time.process_time()
    result = deep(depth, fn)
    t = time.process_time() - t0
    elapsed = t if elapsed is None else min(elapsed, t)
if mode.startswith("memlens"):
    extra["tracer_memory"] = memlens.tracer_memory()
    extra["live_blocks"] = _core.trace_live_blocks()
stop()
print(json.dumps({"time": elapsed, **extra}))
'''

MODES = ["none", "tracemalloc1", "tracemalloc16", "memray", "memray_default", "memlens16_py", "memlens16",
         "memlens_sampled", "hooks_only"]
LABELS = {
    "none": "no tracing",
    "tracemalloc1": "tracemalloc 1 frame",
    "tracemalloc16": "tracemalloc 16 frames",
    "memray": "memray --trace-python-allocators",
    "memray_default": "memray's default (native malloc/mmap, not pymalloc)",
    "memlens16_py": "memlens exact, 16 frames, native=False (Python's allocator only)",
    "memlens16": "memlens exact, 16 frames, native=True (the default: C extensions' malloc/mmap too)",
    "memlens_sampled": "memlens sampled 512 KiB (native too)",
    "hooks_only": "PEP 445 hooks that only chain to the allocator: the floor under any tracer",
}
WORKLOADS = ["objects", "dict_list_churn", "json_roundtrip", "string_building", "retain"]
NATIVE_WORKLOADS = {"numpy_small": "numpy", "numpy_large": "numpy", "pandas_groupby": "pandas",
                    "sqlite_inserts": "sqlite3"}


def have_module(name):
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def have_memray():
    try:
        import memray  # noqa: F401
    except ImportError:
        return False
    return True


def run(script, mode, workload, scale, depth, inner=1):
    proc = subprocess.run([sys.executable, script, mode, workload, str(scale), str(depth), str(inner)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode}/{workload} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def geomean(xs):
    p = 1.0
    for x in xs:
        p *= x
    return p ** (1.0 / len(xs))


SNAPSHOT_CHILD = r'''
import json, sys, time
tool = sys.argv[1]
def build(n):
    return [bytearray(8) for _ in range(n)]   # two blocks each: object and buffer
if tool == "memlens":
    import memlens
    memlens.start(frames=16)
    data = build(500_000)
    t0 = time.perf_counter()
    stats = memlens.take_snapshot().statistics("lineno")
    elapsed = time.perf_counter() - t0
    blocks = sum(s.count for s in stats)
else:
    import tracemalloc
    tracemalloc.start(16)
    data = build(500_000)
    t0 = time.perf_counter()
    stats = tracemalloc.take_snapshot().statistics("lineno")
    elapsed = time.perf_counter() - t0
    blocks = sum(s.count for s in stats)
print(json.dumps({"time": elapsed, "blocks": blocks}))
'''


MEMORY_CHILD = r'''
import json, sys
tool, size, holes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
old = None
if holes:
    # a heap allocated before tracing starts, with every holes-th block freed:
    # the traced blocks then land in those holes, spread over the whole heap
    old = [bytes(size - 33) for _ in range(600_000)]
    del old[::holes]
n = 600_000 // holes if holes else min(200_000, (120 << 20) // size)
if tool == "memlens":
    import memlens
    from memlens import _core
    memlens.start(frames=16)
    usage, live = memlens.tracer_memory, _core.trace_live_blocks
else:
    import tracemalloc
    tracemalloc.start(16)
    usage = tracemalloc.get_tracemalloc_memory
    live = lambda: len(tracemalloc.take_snapshot().traces)
warm = [bytes(size - 33) for _ in range(1000)]
m0, b0 = usage(), live()
data = [bytes(size - 33) for _ in range(n)]
m1, b1 = usage(), live()
print(json.dumps({"per_block": (m1 - m0) / (b1 - b0)}))
'''


def memory_per_block(tmp):
    """Tracer memory per live block on heaps made of blocks of one size: the
    worst case for an address-indexed map is a heap of blocks just below a
    tier's limit (memlens keeps blocks up to 112 bytes, below 960 bytes and
    bigger ones in three different structures).  Then the weak spot of such
    a map: traced blocks scattered in the holes of a heap made before
    tracing started, so that few of them share each page of the map."""
    script = os.path.join(tmp, "mem.py")
    with open(script, "w") as f:
        f.write(MEMORY_CHILD)

    def measure(tool, size, holes):
        proc = subprocess.run([sys.executable, script, tool, str(size), str(holes)],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        return json.loads(proc.stdout.strip().splitlines()[-1])["per_block"]

    sizes = [48, 112, 120, 600, 950, 2048, 8192]
    print("Tracer memory per block added, on a heap made only of blocks of one size:")
    print(f"  {'block size':<12}" + "".join(f"{s:>8}" for s in sizes))
    for tool in ("memlens", "tracemalloc"):
        print(f"  {tool:<12}" + "".join(f"{measure(tool, size, 0):>6.1f} B" for size in sizes))
    print("... and 48-byte blocks filling the holes of a 600k-block heap allocated before")
    print("start(), one hole every 4 / every 20 blocks:")
    for tool in ("memlens", "tracemalloc"):
        print(f"  {tool:<12}" + "".join(f"{measure(tool, 48, h):>6.1f} B" for h in (4, 20)))


def snapshot_speed(tmp):
    script = os.path.join(tmp, "snap.py")
    with open(script, "w") as f:
        f.write(SNAPSHOT_CHILD)
    print("take_snapshot().statistics('lineno') with about 1M live blocks, 16 frames:")
    for tool in ("tracemalloc", "memlens"):
        proc = subprocess.run([sys.executable, script, tool], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {tool:<12} {r['time'] * 1000:8.1f} ms  ({r['blocks']} blocks)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smaller workloads")
    ap.add_argument("--inner", type=int, default=3,
                    help="calls of the workload per run, the fastest counted (default 3)")
    ap.add_argument("--depth", type=int, default=0,
                    help="extra Python frames under the workload (default 0: 3-4 frames in all)")
    args = ap.parse_args()
    scale = 0.3 if args.quick else 1.0
    modes = [m for m in MODES if not m.startswith("memray") or have_memray()]
    workloads = WORKLOADS + [w for w, mod in NATIVE_WORKLOADS.items() if have_module(mod)]
    print(f"Python {sys.version.split()[0]}; CPU time, best of {args.repeat} runs x {args.inner} calls; "
          f"{args.depth} extra frames under each workload")
    if not have_memray():
        print("memray: not installed")
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "child.py")
        with open(script, "w") as f:
            f.write(CHILD)
        ratios = {m: [] for m in modes}
        per_block = []
        header = f"{'workload':<18}" + "".join(f"{m:>17}" for m in modes)
        python_ratios = {m: [] for m in modes}  # the pure-Python workloads only
        print(header)
        for w in workloads:
            best = {}
            for _ in range(args.repeat):
                for m in modes:  # interleaved so machine noise hits every mode alike
                    r = run(script, m, w, scale, args.depth, args.inner)
                    if m not in best or r["time"] < best[m]["time"]:
                        best[m] = r
            base = best["none"]["time"]
            cells = []
            for m in modes:
                ratio = best[m]["time"] / base
                ratios[m].append(ratio)
                if w in WORKLOADS:
                    python_ratios[m].append(ratio)
                cells.append(f"{best['none']['time'] * 1000:>13.0f} ms" if m == "none" else f"{ratio:>16.2f}x")
            print(f"{w:<18}" + "".join(cells))
            r = best["memlens16"]
            if r.get("live_blocks"):
                per_block.append((w, r["tracer_memory"], r["live_blocks"]))
        print(f"{'geometric mean':<18}" + "".join(
            f"{'':>17}" if m == "none" else f"{geomean(ratios[m]):>16.2f}x" for m in modes))
        print(f"{'  Python only':<18}" + "".join(
            f"{'':>17}" if m == "none" else f"{geomean(python_ratios[m]):>16.2f}x" for m in modes))
        native_cost = geomean([a / b for a, b in zip(python_ratios["memlens16"], python_ratios["memlens16_py"])])
        print(f"native=True over native=False on the Python workloads: {100 * (native_cost - 1):+.1f}%")
        print()
        for m in modes:
            print(f"  {m:<17} = {LABELS[m]}")
        print()
        print("memlens exact, tracer memory per live traced block at the end of each workload")
        print("(only 'retain' keeps a large heap alive; the others keep a few blocks, so the")
        print("fixed-size part of the tables dominates):")
        for w, mem, blocks in per_block:
            print(f"  {w:<18} {mem / blocks:6.1f} B/block  ({mem / 2**20:.1f} MiB for {blocks} blocks)")
        print()
        memory_per_block(tmp)
        print()
        snapshot_speed(tmp)


if __name__ == "__main__":
    main()
