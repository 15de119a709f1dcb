"""Native memory: malloc/mmap calls of C code outside CPython's allocator
domains, traced through GOT patching (docs/tracer.md, "Native memory").

Ground truth: the sizes the test asks the C library for (memlens._testcore
calls malloc & co. directly, from its own GOT), and tracemalloc running at
the same time for the Python objects the calls themselves create (ints),
so that memlens' delta minus tracemalloc's is exactly the native bytes."""
import gc
import os
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

import memlens
from memlens import _testcore as tc

PAGE = os.sysconf("SC_PAGESIZE")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or os.uname().machine != "x86_64",
                                reason="GOT patching: x86-64 Linux")


@pytest.fixture(autouse=True)
def _no_tracer_left():
    yield
    tc.native_thread_free()
    memlens.stop()
    if tracemalloc.is_tracing():
        tracemalloc.stop()


class Both:
    """tracemalloc, then memlens on top of it: native() is memlens' delta
    beyond what tracemalloc saw.  (In this order tracemalloc's own tables,
    which it allocates from the RAW allocator it found at its start, are
    not seen by memlens.)"""

    def __init__(self, **kw):
        tracemalloc.start()
        memlens.start(**kw)
        # (memlens' figure is then never a cached small int)
        self.ballast = bytes(1000)
        self.base = self.read()
        # The readings' own ints are a constant few bytes apart in the two
        # tracers (memlens leaves the objects it returns out: they are made
        # with this thread's tracing paused); measured once, with nothing
        # native done, and taken off every later reading.
        self.artefact = 0
        self.artefact = self.native()

    @staticmethod
    def read():
        return memlens.traced_memory()[0], tracemalloc.get_traced_memory()[0]

    def native(self):
        now = self.read()
        return (now[0] - self.base[0]) - (now[1] - self.base[1]) - self.artefact


def test_every_allocation_function_counts_its_bytes_exactly():
    # GIVEN memlens with native tracing, and tracemalloc for the Python side
    both = Both()
    assert memlens.native_status()["native"]
    # WHEN C code calls each function directly, THEN each moves the native
    # total by exactly what it was asked for
    p = tc.native_call("malloc", 1000)
    assert both.native() == 1000
    q = tc.native_call("calloc", 7, 300)
    assert both.native() == 1000 + 2100
    p = tc.native_call("realloc", p, 50_000)
    assert both.native() == 50_000 + 2100
    p = tc.native_call("realloc", p, 10)
    assert both.native() == 10 + 2100
    q = tc.native_call("reallocarray", q, 40, 100)
    assert both.native() == 10 + 4000
    aligned = [tc.native_call("posix_memalign", 64, 3000), tc.native_call("aligned_alloc", 256, 4096),
               tc.native_call("memalign", 128, 777), tc.native_call("valloc", 5000)]
    assert both.native() == 10 + 4000 + 3000 + 4096 + 777 + 5000
    pv = tc.native_call("pvalloc", 5000)  # rounds up to whole pages
    assert both.native() == 10 + 4000 + 3000 + 4096 + 777 + 5000 + 2 * PAGE
    for a in [p, q, pv] + aligned:
        tc.native_call("free", a)
    assert both.native() == 0


def test_mappings_count_whole_pages_and_leave_as_they_are_unmapped():
    both = Both()
    m = tc.native_call("mmap", 10 * PAGE + 1)
    assert both.native() == 11 * PAGE
    # the start unmapped: the rest stays, at its new start
    tc.native_call("munmap", m, 3 * PAGE)
    assert both.native() == 8 * PAGE
    m2 = tc.native_call("mremap", m + 3 * PAGE, 8 * PAGE, 20 * PAGE)
    assert both.native() == 20 * PAGE
    tc.native_call("munmap", m2, 20 * PAGE)
    assert both.native() == 0


def test_a_native_thread_without_the_gil_is_counted_on_the_empty_stack():
    # GIVEN a native thread never registered with Python
    both = Both()
    tc.native_thread_malloc(200, 1000)
    # THEN its 200 blocks are counted to the byte, and freed by another one
    assert both.native() == 200_000
    tc.native_thread_free()
    assert both.native() == 0
    # AND they are on no Python stack
    tc.native_thread_malloc(200, 1000)
    stats = {s.traceback: s.size for s in memlens.take_snapshot().statistics("traceback")}
    assert max(size for tb, size in stats.items() if len(tb) == 0) >= 200_000


def test_blocks_are_attributed_to_the_python_line_that_called_into_c():
    memlens.start()
    p = tc.native_call("malloc", 3_000_000)  # NATIVE_LINE
    snap = memlens.take_snapshot()
    tc.native_call("free", p)
    top = snap.statistics("lineno")[0]
    assert top.size >= 3_000_000
    frame = top.traceback[0]
    line = [i for i, text in enumerate(open(__file__), 1) if text.rstrip().endswith("# NATIVE_LINE")][0]
    assert (os.path.basename(frame.filename), frame.lineno) == ("test_native.py", line)


def test_native_false_traces_only_pythons_allocator():
    both = Both(native=False)
    assert not memlens.native_status()["native"]
    p = tc.native_call("malloc", 100_000)
    assert both.native() == 0
    tc.native_call("free", p)


@pytest.mark.parametrize("native", [True, False])
def test_pytracemalloc_track_is_counted_once(native):
    # GIVEN a buffer declared with PyTraceMalloc_Track (as numpy does),
    # malloc()ed first: seen by the malloc hook too when native is on
    both = Both(native=native)
    p = tc.native_call("malloc", 40_000)
    tc.native_call("track", p, 40_000)
    # THEN memlens counts it once, as tracemalloc (which counts the Track)
    # does: memlens' delta equals tracemalloc's
    assert both.native() == 0
    tc.native_call("untrack", p)
    assert both.native() == 0
    tc.native_call("free", p)
    assert both.native() == 0


def test_pure_python_peak_is_the_same_with_native_on_and_off():
    def workload():
        keep = [bytes(1000) for _ in range(2000)]
        keep += [str(i) * 10 for i in range(20_000)]
        junk = [[i] * 100 for i in range(1000)]
        del junk
        return keep

    peaks = []
    for native in (True, False, True):
        gc.collect()
        tracemalloc.start()
        memlens.start(native=native)
        base = memlens.traced_memory()[0], tracemalloc.get_traced_memory()[0]
        keep = workload()
        ours = memlens.traced_memory()[1] - base[0]
        theirs = tracemalloc.get_traced_memory()[1] - base[1]
        memlens.stop()
        tracemalloc.stop()
        del keep
        peaks.append((ours, theirs))
    for ours, theirs in peaks:
        assert abs(ours - theirs) <= theirs * 0.01, peaks
    assert abs(peaks[0][0] - peaks[1][0]) <= peaks[1][0] * 0.01, peaks


def test_numpy_arrays_match_tracemalloc():
    np = pytest.importorskip("numpy")
    # GIVEN the program
    gc.collect()
    tracemalloc.start()
    memlens.start()
    base = memlens.traced_memory()[0], tracemalloc.get_traced_memory()[0]
    a = np.ones(6_250_000)
    b = a * 2
    c = np.concatenate([a, b])
    ours = [x - base[0] for x in memlens.traced_memory()]
    theirs = [x - base[1] for x in tracemalloc.get_traced_memory()]
    del a, b, c
    after = memlens.traced_memory()[0] - base[0], tracemalloc.get_traced_memory()[0] - base[1]
    memlens.stop()
    tracemalloc.stop()
    # THEN the 200 MB of buffers are there once (numpy both mallocs them and
    # declares them with PyTraceMalloc_Track), like tracemalloc's figures
    assert 200_000_000 <= ours[0] <= 200_000_000 + 4096
    assert ours == pytest.approx(theirs, abs=1024)
    assert after[0] == pytest.approx(after[1], abs=1024)


def test_a_library_loaded_after_start_is_traced_and_let_go(tmp_path):
    # GIVEN a shared library built here, loaded (ctypes) after start() and
    # unloaded, in a loop
    import ctypes
    import _ctypes

    src = tmp_path / "liballoc.c"
    src.write_text("#include <stdlib.h>\nvoid *take(size_t n) { return malloc(n); }\n"
                   "void give(void *p) { free(p); }\n")
    lib = tmp_path / "liballoc.so"
    r = subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(src)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("no C compiler: " + r.stderr[-200:])
    both = Both()
    for _ in range(20):
        h = ctypes.CDLL(str(lib))
        h.take.restype = ctypes.c_void_p
        h.give.argtypes = [ctypes.c_void_p]
        p = h.take(123_457)
        # THEN its malloc is seen, to the byte
        assert both.native() == 123_457
        h.give(p)
        assert both.native() == 0
        _ctypes.dlclose(h._handle)
        del h
    # AND after stop() a library still loaded calls the real functions
    h = ctypes.CDLL(str(lib))
    h.take.restype = ctypes.c_void_p
    h.give.argtypes = [ctypes.c_void_p]
    memlens.stop()
    tracemalloc.stop()
    p = h.take(1000)
    h.give(p)
    memlens.start()
    before = memlens.traced_memory()[0]
    p = h.take(50_000)
    assert memlens.traced_memory()[0] - before >= 50_000
    h.give(p)


def _run(code, **kw):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, **kw)


@pytest.mark.slow
def test_start_stop_loop_while_c_code_allocates_on_another_thread(child_env):
    # In a subprocess: a crash fails this test only
    r = _run("""\
        import memlens
        from memlens import _testcore as tc
        tc.native_churn(True)
        for i in range(300):
            memlens.start(sample_bytes=0 if i % 2 else 4096)
            memlens.traced_memory()
            memlens.stop()
        tc.native_churn(False)
        print("ok")
    """, env=child_env())
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr[-2000:]


@pytest.mark.slow
def test_fork_while_native_tracing_with_an_allocating_thread(child_env):
    r = _run("""\
        import os
        import memlens
        from memlens import _testcore as tc
        memlens.start()
        tc.native_churn(True)
        codes = []
        for _ in range(40):
            pid = os.fork()
            if pid == 0:
                before = memlens.traced_memory()[0]
                p = tc.native_call("malloc", 70_000)
                grew = memlens.traced_memory()[0] - before
                tc.native_call("free", p)
                os._exit(0 if grew >= 70_000 else 3)
            codes.append(os.waitpid(pid, 0)[1])
        tc.native_churn(False)
        memlens.stop()
        print(sorted(set(codes)))
    """, env=child_env())
    assert r.returncode == 0 and r.stdout == "[0]\n", r.stdout + r.stderr[-2000:]


def test_sampled_mode_estimates_native_bytes():
    # GIVEN 400 native blocks of 50 kB sampled at a 64 kB mean interval
    both = Both(sample_bytes=65536)
    blocks = [tc.native_call("malloc", 50_000) for _ in range(400)]
    est = memlens.traced_memory()[0] - both.base[0]
    for p in blocks:
        tc.native_call("free", p)
    # THEN the unbiased estimate is near the 20 MB (each block is sampled
    # with p = 0.54: the relative error's sd is about 4.6%)
    assert est == pytest.approx(20_000_000, rel=0.2)


def test_the_line_profiler_shows_native_bytes_on_their_line(run_ok):
    # GIVEN a profiled function whose line 4 mallocs 3 MB in C
    out = run_ok("""\
        import memlens
        from memlens import _testcore as tc
        def f():
            p = tc.native_call("malloc", 3_000_000)
            tc.native_call("free", p)
        f = memlens.profile(f)
        f()
        for s in memlens.line_stats(f):
            print(s.lineno, s.increment, s.allocated)
        memlens.stop_profile()
    """)
    rows = {int(n): (int(inc), int(alloc)) for n, inc, alloc in (line.split() for line in out.splitlines())}
    # THEN line 4 holds the 3 MB (and the address's int), line 5 frees it
    inc, alloc = rows[4]
    assert 3_000_000 <= inc <= 3_000_064 and 3_000_000 <= alloc <= 3_000_064
    assert rows[5][0] == -3_000_000


def test_c_code_that_released_the_gil_is_attributed_to_its_caller():
    # GIVEN C code that mallocs with the GIL released, called in a loop
    memlens.start()
    blocks = []
    for _ in range(20):
        blocks.append(tc.native_malloc_nogil(1_000_003))  # NOGIL_LINE
    snap = memlens.take_snapshot()
    for p in blocks:
        tc.native_call("free", p)
    line = [i for i, text in enumerate(open(__file__), 1) if text.rstrip().endswith("# NOGIL_LINE")][0]
    on_line = sum(s.size for s in snap.statistics("lineno")
                  if s.traceback and (s.traceback[0].filename, s.traceback[0].lineno) == (__file__, line))
    # THEN its blocks are on the line that called it (the thread's frames
    # cannot change while it runs without the GIL), all but those made
    # before the line's stack was in the thread's cache (the first call's,
    # and one after the cache was refilled for another line: 18 of 20 here)
    assert on_line >= 16 * 1_000_003


def test_an_in_memory_sqlite_database_is_counted_on_its_lines():
    import sqlite3

    gc.collect()
    memlens.start()
    base = memlens.traced_memory()[0]
    db = sqlite3.connect(":memory:")
    db.execute("create table t (id integer primary key, name text, data blob)")
    for i in range(10):
        db.executemany("insert into t values (?, ?, ?)",  # SQLITE_LINE
                       [(i * 1000 + j, "name %d" % j, b"x" * 4000) for j in range(1000)])
    grown = memlens.traced_memory()[0] - base
    pages = db.execute("pragma page_count").fetchone()[0] * db.execute("pragma page_size").fetchone()[0]
    snap = memlens.take_snapshot()
    db.close()
    freed = grown - (memlens.traced_memory()[0] - base)
    line = [i for i, text in enumerate(open(__file__), 1) if text.rstrip().endswith("# SQLITE_LINE")][0]
    on_line = sum(s.size for s in snap.statistics("lineno")
                  if s.traceback and (s.traceback[0].filename, s.traceback[0].lineno) == (__file__, line))
    # THEN the database's 40 MB of pages are counted (and the page cache's
    # headers: a few % more), on the insert line, and closing it frees them
    assert pages > 40_000_000
    assert pages <= grown <= pages * 1.10, (pages, grown)
    assert on_line >= 0.98 * pages
    assert freed == pytest.approx(grown, rel=0.01)


def test_native_memory_is_the_native_share_now_and_at_the_peak():
    # GIVEN Python objects and native blocks live at once
    memlens.start()
    keep = [bytes(1000) for _ in range(100)]
    p = tc.native_call("malloc", 5_000_000)
    q = tc.native_call("mmap", 3 * PAGE)
    # THEN native_memory() is exactly the native bytes, also at the peak
    assert memlens.native_memory() == (5_000_000 + 3 * PAGE, 5_000_000 + 3 * PAGE)
    tc.native_call("free", p)
    tc.native_call("munmap", q, 3 * PAGE)
    assert memlens.native_memory() == (0, 5_000_000 + 3 * PAGE)
    del keep


def test_run_summary_and_reports_split_python_and_native(tmp_path, run_memlens, write):
    # GIVEN a program holding 30 MB of native blocks at its peak
    write(tmp_path / "app.py", """\
        from memlens import _testcore as tc
        data = [bytes(1000) for _ in range(1000)]
        p = tc.native_call("malloc", 30_000_000)
        tc.native_call("free", p)
    """)
    r = run_memlens("run", "-o", "c.mlcap", "app.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # THEN the summary splits the peak, and the json report has the figures
    assert "native blocks 28.6 MiB" in r.stderr
    j = run_memlens("report", "c.mlcap", "--format", "json", cwd=tmp_path)
    import json

    totals = json.loads(j.stdout)["totals"]
    assert totals["native_peak_bytes"] == 30_000_000 and totals["native_exit_bytes"] == 0
    assert totals["peak_bytes"] >= 30_000_000 + 1000 * 1000
    # AND --no-native records no split
    r = run_memlens("run", "--no-native", "-o", "d.mlcap", "app.py", cwd=tmp_path)
    totals = json.loads(run_memlens("report", "d.mlcap", "--format", "json", cwd=tmp_path).stdout)["totals"]
    assert totals["native_peak_bytes"] is None and totals["peak_bytes"] < 30_000_000


@pytest.mark.slow
def test_a_pandas_pipeline_peak_matches_tracemalloc():
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")

    def work():
        n = 1_000_000
        df = pd.DataFrame({"k": np.arange(n) % 1000, "v": np.arange(n, dtype=np.float64), "w": np.ones(n)})
        g = df.groupby("k").agg({"v": "sum", "w": "mean"})
        m = df.merge(g, left_on="k", right_index=True)
        return len(m)

    work()  # imports, caches
    gc.collect()
    # GIVEN a 1M-row DataFrame built, grouped and merged
    tracemalloc.start()
    memlens.start()
    base = memlens.traced_memory()[0], tracemalloc.get_traced_memory()[0]
    work()
    ours = memlens.traced_memory()[1] - base[0]
    theirs = tracemalloc.get_traced_memory()[1] - base[1]
    memlens.stop()
    tracemalloc.stop()
    # THEN the peak is tracemalloc's (which sees pandas' numpy buffers
    # through PyTraceMalloc_Track) within 2%: each buffer counted once,
    # whether numpy took it with malloc (native: numpy 2.4) or from
    # PyMem_RawMalloc (numpy 2.5)
    assert theirs > 50_000_000
    assert ours == pytest.approx(theirs, rel=0.02)


def test_the_timeline_has_the_native_series(tmp_path, run_memlens, write):
    # GIVEN a program that holds 30 MB of native blocks for 200 ms
    write(tmp_path / "app.py", """\
        import time
        from memlens import _testcore as tc
        data = [bytes(1000) for _ in range(2000)]
        p = tc.native_call("malloc", 30_000_000)
        time.sleep(0.2)
        tc.native_call("free", p)
        time.sleep(0.05)
    """)
    assert run_memlens("run", "-q", "-o", "c.mlcap", "app.py", cwd=tmp_path).returncode == 0
    from memlens.report import model

    cap = model.load(tmp_path / "c.mlcap")
    # THEN every sample has its native share, which reached the 30 MB and
    # came back to 0, always within the traced bytes
    assert max(s.native for s in cap.timeline) == 30_000_000
    assert cap.timeline[-1].native == 0
    assert all(s.native <= s.traced for s in cap.timeline)
    # AND --no-native records no native series
    assert run_memlens("run", "-q", "--no-native", "-o", "d.mlcap", "app.py", cwd=tmp_path).returncode == 0
    assert all(s.native is None for s in model.load(tmp_path / "d.mlcap").timeline)


def test_a_native_timeline_must_match_the_timeline(tmp_path, capture_bytes):
    from memlens import _core
    from memlens.capture import CaptureError, read

    memlens.start()
    table = _core.trace_take_snapshot()
    memlens.stop()
    # WHEN the native column does not have one u64 per sample, THEN no file
    with pytest.raises(ValueError, match="one u64 per timeline sample"):
        _core.cap_run_write(str(tmp_path / "x.mlcap"), table, {}, 1.0, bytes(64), None, bytes(8))
    assert not (tmp_path / "x.mlcap").exists()
    # AND a capture whose TMLV section disagrees with TMLN is refused on load
    _core.cap_run_write(str(tmp_path / "y.mlcap"), table, {}, 1.0, bytes(64), None, bytes(16))
    assert read(tmp_path / "y.mlcap").native == bytes(16)
    data = bytearray((tmp_path / "y.mlcap").read_bytes())
    data[data.index(b"TMLV") + 16] = 3  # the count: 3 samples where the timeline has 2
    (tmp_path / "y.mlcap").write_bytes(capture_bytes.reseal(bytes(data)))
    with pytest.raises(CaptureError, match="bad native timeline"):
        read(tmp_path / "y.mlcap")
