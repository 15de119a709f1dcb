"""Tests of the allocation tracer against tracemalloc as ground truth."""
import gc
import subprocess
import sys
import threading
import tracemalloc

import pytest

import memlens
from memlens import _core, _testcore



pytestmark = pytest.mark.usefixtures("no_tracer_left")


# -- workloads (each allocation site on its own line) -------------------------

class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y


def make_strings(n):
    return [str(i) * 5 for i in range(n)]              # LINE_STRINGS


def make_points(n):
    return [Point(i * 1000, i * 2000) for i in range(n)]  # LINE_POINTS


def make_bytes(n, size):
    return [bytes(size) for _ in range(n)]            # LINE_BYTES


def peak_then_small():
    big = [bytearray(1000) for _ in range(3000)]      # LINE_BIG
    del big
    return [bytearray(100) for _ in range(1000)]      # LINE_SMALL


def workload():
    keep = []
    keep.append(make_strings(20000))
    keep.append(make_points(5000))
    keep.append(make_bytes(300, 5000))
    keep.append(peak_then_small())
    return keep


def line_of(marker):
    with open(__file__) as f:
        for i, text in enumerate(f, 1):
            if text.rstrip().endswith("# " + marker):
                return i
    raise AssertionError(marker)


def measure_tracemalloc(fn, frames=1):
    tracemalloc.start(frames)
    try:
        result = fn()
        cur, peak = tracemalloc.get_traced_memory()
        snap = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    return result, cur, peak, snap


def measure_memlens(fn, frames=16, sample_bytes=0):
    memlens.start(frames=frames, sample_bytes=sample_bytes)
    try:
        result = fn()
        cur, peak = memlens.traced_memory()
        snap = memlens.take_snapshot()
    finally:
        memlens.stop()
    return result, cur, peak, snap


# -- lifecycle ------------------------------------------------------------------

def test_start_stop_is_tracing():
    assert not memlens.is_tracing()
    memlens.start()
    assert memlens.is_tracing()
    with pytest.raises(RuntimeError, match="already tracing"):
        memlens.start()
    memlens.stop()
    assert not memlens.is_tracing()
    memlens.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not tracing"):
        memlens.take_snapshot()


@pytest.mark.parametrize("kwargs, exc", [
    ({"frames": 0}, ValueError), ({"frames": 10000}, ValueError), ({"frames": "3"}, TypeError),
    ({"sample_bytes": -1}, ValueError), ({"sample_bytes": 1.5}, TypeError),
])
def test_start_rejects_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        memlens.start(**kwargs)
    assert not memlens.is_tracing()


def test_public_names_exported():
    for name in ["start", "stop", "is_tracing", "traced_memory", "reset_peak", "trace",
                 "take_snapshot", "Snapshot", "Statistic", "Frame", "Traceback", "tracer_memory"]:
        assert name in memlens.__all__
        assert hasattr(memlens, name)


def test_allocators_restored_exactly_after_stop():
    # GIVEN an allocation that needs the original allocator afterwards
    memlens.start()
    x = [bytearray(100) for _ in range(1000)]
    memlens.stop()
    # WHEN blocks allocated under tracing are freed after stop
    del x
    # THEN nothing is traced and the process is fine
    assert memlens.traced_memory() == (0, 0)


# -- exactness against tracemalloc ----------------------------------------------

def test_current_and_peak_match_tracemalloc_within_1_percent():
    workload()  # warm up caches, specialisation, interned strings
    kept_t, cur_t, peak_t, _ = measure_tracemalloc(workload)
    kept_m, cur_m, peak_m, snap = measure_memlens(workload)
    assert cur_t > 3_000_000
    assert abs(cur_m - cur_t) <= 0.01 * cur_t, (cur_m, cur_t)
    assert abs(peak_m - peak_t) <= 0.01 * peak_t, (peak_m, peak_t)
    # (the (current, peak) tuple itself is a traced allocation)
    assert 0 <= snap.total - cur_m < 200 and 0 <= snap.peak - peak_m < 200


def test_top_lines_are_the_lines_tracemalloc_names():
    workload()
    _, _, _, tsnap = measure_tracemalloc(workload)
    _, _, _, msnap = measure_memlens(workload)
    tstats = [s for s in tsnap.statistics("lineno") if s.traceback[0].filename == __file__][:4]
    mstats = [s for s in msnap.statistics("lineno") if s.traceback[0].filename == __file__][:4]
    assert [(s.traceback[0].lineno) for s in mstats] == [s.traceback[0].lineno for s in tstats]
    for m, t in zip(mstats, tstats):
        assert abs(m.size - t.size) <= 0.01 * t.size
        assert abs(m.count - t.count) <= 0.01 * t.count + 2
    assert mstats[0].traceback[0].lineno in (line_of("LINE_STRINGS"), line_of("LINE_BYTES"))


def test_statistic_str_like_tracemalloc():
    _, _, _, snap = measure_memlens(lambda: make_bytes(100, 1000))
    stat = snap.statistics("lineno")[0]
    assert stat.count == 101  # 100 bytes objects and the list holding them
    assert str(stat) == (f"{__file__}:{line_of('LINE_BYTES')}: size={round(stat.size / 1024)} KiB, "
                         f"count=101, average={round(stat.size / 101)} B")
    tstat = measure_tracemalloc(lambda: make_bytes(100, 1000))[3].statistics("lineno")[0]
    assert str(tstat) == str(stat)


def test_filename_and_function_keys_and_cumulative():
    _, _, _, snap = measure_memlens(workload)
    by_file = {s.traceback[0].filename: s for s in snap.statistics("filename")}
    assert by_file[__file__].traceback[0].lineno == 0
    by_func = {s.traceback[0].function: s for s in snap.statistics("function")
               if s.traceback[0].filename == __file__}
    # 3.9-3.11 run comprehensions in a function of their own; 3.12+ inline them
    fn = "make_bytes" if sys.version_info >= (3, 12) else "<listcomp>"
    assert str(by_func[fn].traceback) == f"{__file__}:{fn}"
    assert by_func[fn].size >= 300 * 5000
    # cumulative: `workload` is on every stack of the workload, once each
    cum = {s.traceback[0].function: s for s in snap.statistics("function", cumulative=True)
           if s.traceback[0].filename == __file__}
    parts = sum(by_func[f].size for f in by_func if f not in ("workload",))
    assert cum["workload"].size >= parts * 0.99
    with pytest.raises(ValueError):
        snap.statistics("traceback", cumulative=True)
    with pytest.raises(ValueError, match="key_type"):
        snap.statistics("bogus")


def test_traceback_is_innermost_first_and_limited():
    def inner():
        return [bytearray(64) for _ in range(500)]

    def middle():
        return inner()

    def outer():
        return middle()

    _, _, _, snap = measure_memlens(outer, frames=16)
    top = max(snap.statistics("traceback"), key=lambda s: s.size)
    names = [f.function for f in top.traceback]
    assert names[:3] == ["<listcomp>", "inner", "middle"] or names[:3] == ["inner", "middle", "outer"]
    assert "outer" in names
    _, _, _, snap2 = measure_memlens(outer, frames=2)
    assert all(len(s.traceback) <= 2 for s in snap2.statistics("traceback"))


def test_peak_statistics_show_what_made_the_peak():
    _, cur, peak, snap = measure_memlens(peak_then_small)
    big_line, small_line = line_of("LINE_BIG"), line_of("LINE_SMALL")
    live = {s.traceback[0].lineno: s for s in snap.statistics("lineno")}
    at_peak = {s.traceback[0].lineno: s for s in snap.peak_statistics("lineno")}
    assert big_line not in live
    assert at_peak[big_line].count >= 2 * 3000  # bytearray objects and their buffers
    assert at_peak[big_line].size >= 3000 * 1000
    assert small_line not in at_peak or at_peak[small_line].count < 1000
    # the peak picture adds up to the peak
    assert sum(s.size for s in snap.peak_statistics("traceback")) == snap.peak
    assert sum(s.size for s in snap.statistics("traceback")) == snap.total
    assert snap.peak >= peak >= 3000 * 1000


def test_reset_peak():
    memlens.start()
    big = bytearray(5_000_000)
    del big
    cur, peak = memlens.traced_memory()
    assert peak >= 5_000_000 > cur
    memlens.reset_peak()
    cur2, peak2 = memlens.traced_memory()
    assert peak2 == cur2 < 5_000_000
    snap = memlens.take_snapshot()
    assert sum(s.size for s in snap.peak_statistics("traceback")) == snap.peak


def test_compare_to():
    memlens.start()
    a = memlens.take_snapshot()
    data = make_bytes(200, 1000)
    b = memlens.take_snapshot()
    memlens.stop()
    diffs = [d for d in b.compare_to(a, "lineno") if d.traceback[0].lineno == line_of("LINE_BYTES")]
    assert len(diffs) == 1
    assert diffs[0].count_diff == 201  # and the list
    assert diffs[0].size_diff == diffs[0].size >= 200 * 1000
    assert "(+201)" in str(diffs[0])
    del data


def test_statistic_diff_equality_and_hash():
    # GIVEN two comparisons of the same snapshots
    memlens.start()
    a = memlens.take_snapshot()
    data = make_bytes(20, 1000)
    b = memlens.take_snapshot()
    memlens.stop()
    first, second = b.compare_to(a, "lineno"), b.compare_to(a, "lineno")
    # THEN they are equal, and hash alike (as tracemalloc.StatisticDiff)
    assert first == second and first[0] is not second[0]
    assert {hash(d) for d in first} == {hash(d) for d in second}
    assert len(set(first) | set(second)) == len(first)
    # and a diff differing in any field, or of another type, is not equal
    d = first[0]
    fields = (d.traceback, d.size, d.size_diff, d.count, d.count_diff)
    for i in range(1, 5):
        changed = list(fields)
        changed[i] += 1
        assert memlens.StatisticDiff(*changed) != d
    assert memlens.StatisticDiff(*fields) == d
    assert d != memlens.Statistic(d.traceback, d.size, d.count) and d != fields
    del data


def test_trace_context_manager():
    with memlens.trace(frames=4) as t:
        data = make_bytes(50, 2000)
    assert not memlens.is_tracing()
    stat = t.snapshot.statistics("lineno")[0]
    assert stat.traceback[0].lineno == line_of("LINE_BYTES") and stat.count == 51
    assert t.snapshot.traceback_limit == 4
    del data


def test_snapshot_own_allocations_are_not_traced():
    memlens.start()
    data = make_bytes(10, 100)
    before = memlens.traced_memory()[0]
    snaps = [memlens.take_snapshot() for _ in range(5)]
    after = memlens.traced_memory()[0]
    memlens.stop()
    # the C tables of a snapshot are built with tracing paused (only the
    # small Python wrappers and the list count)
    assert after - before < 1000, (before, after)
    del data, snaps


# -- RAW domain, realloc, blocks from before start ------------------------------

def test_failed_realloc_keeps_the_block_and_counts_nothing():
    # GIVEN a traced 1000-byte RAW block
    memlens.start()
    p = _testcore.raw_malloc(1000)
    base = memlens.traced_memory()[0]
    c0 = _core.lineprof_thread_counters(False)
    # WHEN a realloc() of it fails (a bare try: pytest.raises allocates
    # kilobytes of its own)
    failed = False
    try:
        _testcore.raw_realloc(p, 1 << 60)
    except MemoryError:
        failed = True
    c1 = _core.lineprof_thread_counters(False)
    assert failed
    grown = memlens.traced_memory()[0] - base
    _testcore.raw_free(p)
    after_free = memlens.traced_memory()[0] - base
    memlens.stop()
    # THEN the block is still traced (its free takes its 1000 bytes off) ...
    assert 900 <= grown - after_free <= 1100
    # ... and the thread's counters (the line profiler's) show neither an
    # allocation nor a free of it (the exception costs a few hundred bytes)
    assert c1[0] - c0[0] < 1000 and c1[1] - c0[1] < 1000


def test_raw_domain_malloc_realloc_free():
    memlens.start()
    base = memlens.traced_memory()[0]
    # (each call also returns a traced 32-byte int holding the address)
    p = _testcore.raw_malloc(1000)
    assert 1000 <= memlens.traced_memory()[0] - base <= 1100
    p = _testcore.raw_realloc(p, 50_000)  # moves metadata
    assert 50_000 <= memlens.traced_memory()[0] - base <= 50_100
    p = _testcore.raw_realloc(p, 10)
    assert 10 <= memlens.traced_memory()[0] - base <= 110
    _testcore.raw_free(p)
    del p
    assert memlens.traced_memory()[0] - base <= 100
    snap = memlens.take_snapshot()
    memlens.stop()
    assert not [s for s in snap.statistics("lineno") if s.size in (1000, 50_000, 10)]


def test_blocks_allocated_before_start_are_ignored_when_freed():
    old = [bytearray(200) for _ in range(2000)]
    raw = _testcore.raw_malloc(3000)
    memlens.start()
    memlens.traced_memory()  # its result tuple lands in a free list: take it first
    base = memlens.traced_memory()[0]
    del old  # ~500 KB allocated before start()
    _testcore.raw_free(raw)
    after = memlens.traced_memory()[0]
    memlens.stop()
    # Nothing was subtracted for the untraced blocks (that would be ~500 KB
    # below base, or a wrapped-around huge number); a few interpreter blocks
    # made meanwhile (the int `base` itself) may be counted.
    assert base - 1024 < after < base + 1024


def test_raw_allocations_without_the_gil_go_to_the_calling_line():
    # GIVEN C code that releases the GIL and allocates in the RAW domain
    # (after one allocation with the GIL at the same call: its kept-blocks
    # array, from the C heap)
    memlens.start()
    kept = _testcore.raw_churn_nogil(1000, 100, 50)  # LINE_RAW_NOGIL
    snap = memlens.take_snapshot()
    for a in kept:
        _testcore.raw_free(a)
    memlens.stop()
    # THEN its blocks are on the line that called it: the thread's frames
    # cannot change while it runs without the GIL (native threads, which
    # have no frames, are on the empty stack: tests/api/test_native.py)
    on_line = [s for s in snap.statistics("lineno") if s.traceback and s.traceback[0].lineno == line_of(
        "LINE_RAW_NOGIL")]
    assert on_line and on_line[0].count >= 50 and on_line[0].size >= 50 * 100
    assert not [s for s in snap.statistics("traceback") if len(s.traceback) == 0 and s.count >= 50]


# -- dump / load --------------------------------------------------------------------

def test_dump_load_round_trip(tmp_path):
    _, _, _, snap = measure_memlens(workload)
    path = tmp_path / "snap.mlcap"
    snap.dump(path)
    back = memlens.Snapshot.load(path)
    assert (back.total, back.peak, back.sample_bytes, back.traceback_limit) == \
        (snap.total, snap.peak, snap.sample_bytes, snap.traceback_limit)
    for key in ("lineno", "filename", "function", "traceback"):
        assert back.statistics(key) == snap.statistics(key)
        assert back.peak_statistics(key) == snap.peak_statistics(key)
    # compact: a few bytes per stack
    assert path.stat().st_size < 200 + 200 * len(snap.stacks())


def test_table_dump_method_writes_the_same_file_as_trace_dump(tmp_path):
    # GIVEN a snapshot's table
    _, _, _, snap = measure_memlens(workload)
    table = snap._table
    # WHEN it is written by TraceTable.dump and by _core.trace_dump
    table.dump(tmp_path / "method.mlcap")
    _core.trace_dump(table, str(tmp_path / "function.mlcap"))
    # THEN the files are the same, and anything but a table is refused
    assert (tmp_path / "method.mlcap").read_bytes() == (tmp_path / "function.mlcap").read_bytes()
    with pytest.raises(TypeError):
        _core.trace_dump(object(), str(tmp_path / "x.mlcap"))


def test_load_rejects_corrupt_and_truncated_files(tmp_path):
    _, _, _, snap = measure_memlens(lambda: make_bytes(20, 100), frames=3)
    path = tmp_path / "snap.mlcap"
    snap.dump(path)
    data = path.read_bytes()
    bad = tmp_path / "bad.mlcap"
    # every truncation
    for n in range(len(data)):
        bad.write_bytes(data[:n])
        with pytest.raises(ValueError, match="not a valid memlens capture"):
            memlens.Snapshot.load(bad)
    # every single-byte corruption past the version
    for i in range(12, len(data), max(1, len(data) // 400)):
        corrupt = bytearray(data)
        corrupt[i] ^= 0x5A
        bad.write_bytes(bytes(corrupt))
        with pytest.raises(ValueError):
            memlens.Snapshot.load(bad)
    bad.write_bytes(b"not a capture at all")
    with pytest.raises(ValueError, match="bad magic"):
        memlens.Snapshot.load(bad)
    bad.write_bytes(data[:8] + b"\x07\x00" + data[10:])
    with pytest.raises(ValueError, match="version 7"):
        memlens.Snapshot.load(bad)
    with pytest.raises(FileNotFoundError):
        memlens.Snapshot.load(tmp_path / "missing.mlcap")


# -- sampled mode ------------------------------------------------------------------------

def assert_sampled_estimates_converge(sizes, counts, exact_size, exact_count, single_runs=False):
    """The sampled runs' size and count estimates for blocks of
    bytes(100), bytes(1000) and bytes(10000), 3000 each, sampled every
    16384 bytes, against the exact figures.  The standard error follows from
    the sampling law: a block of s bytes, sampled with probability
    p = 1 - exp(-s/N), adds variance s**2 (1-p)/p to the size estimate and
    (1-p)/p to the count estimate.  5 standard errors: a false alarm once in
    a million runs."""
    import math
    import statistics

    block_sizes = [sys.getsizeof(bytes(s)) for s in (100, 1000, 10000) * 3000]
    ps = [1 - math.exp(-b / 16384) for b in block_sizes]
    var_size = sum(b * b * (1 - p) / p for b, p in zip(block_sizes, ps))
    var_count = sum((1 - p) / p for p in ps)
    for est, exact_value, var in ((sizes, exact_size, var_size), (counts, exact_count, var_count)):
        mean = statistics.mean(est)
        sem = math.sqrt(var / len(est))
        assert abs(mean - exact_value) < 5 * sem + 0.001 * exact_value, (mean, exact_value, sem)
        if single_runs:
            assert all(abs(e - exact_value) < 8 * math.sqrt(var) for e in est)


def sampled_workload():
    return [bytes(s) for s in (100, 1000, 10000) * 3000]  # LINE_SAMPLED


def test_sampled_estimates_are_unbiased(sanitized):
    # GIVEN the exact figures of a workload
    _, _, _, exact = measure_memlens(sampled_workload)
    line = line_of("LINE_SAMPLED")
    ex = next(s for s in exact.statistics("lineno") if s.traceback[0].lineno == line)
    # WHEN it runs many times sampled
    runs = 12 if sanitized else 30
    sizes, counts = [], []
    for _ in range(runs):
        _, _, _, snap = measure_memlens(sampled_workload, sample_bytes=16384)
        st = [s for s in snap.statistics("lineno") if s.traceback[0].lineno == line]
        sizes.append(st[0].size if st else 0)
        counts.append(st[0].count if st else 0)
        assert snap.sample_bytes == 16384
    # THEN the mean estimate converges on the exact value, and single runs
    # are in the right ballpark
    assert_sampled_estimates_converge(sizes, counts, ex.size, ex.count, single_runs=True)


def test_sampled_mode_records_few_blocks():
    memlens.start(sample_bytes=512 * 1024)
    data = [bytearray(100) for _ in range(50000)]
    nblocks = _core.trace_live_blocks()
    memlens.stop()
    assert nblocks < 100  # ~5 MB / 512 KiB ~ 10 samples
    del data


def test_sampled_mode_sees_every_free_and_realloc_of_a_sampled_block():
    # GIVEN blocks so big that every one is sampled (p = 1 - exp(-64))
    memlens.start(sample_bytes=16384)
    try:
        base, _ = memlens.traced_memory()
        data = [bytearray(1 << 20) for _ in range(20)]
        built, _ = memlens.traced_memory()
        # WHEN each is grown in place (a realloc of a sampled block), then freed
        for b in data:
            b.extend(bytes(1 << 19))
        grown, _ = memlens.traced_memory()
        del data, b
        freed, _ = memlens.traced_memory()
    finally:
        memlens.stop()
    # THEN the estimates follow the blocks exactly (weights are 1 at p = 1)
    assert built - base == pytest.approx(20 * (1 << 20), rel=0.01)
    assert grown - base == pytest.approx(20 * (3 << 19), rel=0.01)
    assert abs(freed - base) < (1 << 20)


def test_sampled_mode_sees_frees_of_small_sampled_blocks():
    # GIVEN churn of small blocks, of which a few hundred are sampled
    memlens.start(sample_bytes=4096)
    try:
        base, _ = memlens.traced_memory()
        for _ in range(20):
            junk = [bytes(100) for _ in range(10000)]
            del junk
        after, _ = memlens.traced_memory()
        blocks = _core.trace_live_blocks()
    finally:
        memlens.stop()
    # THEN nothing sampled stays behind: had frees been missed, ~27 MB of
    # estimated bytes would remain
    assert abs(after - base) < (1 << 20)
    assert blocks < 100


def test_exact_run_after_a_sampled_run_is_exact():
    # GIVEN a sampled run (the free() filter on), stopped
    memlens.start(sample_bytes=4096)
    junk = [bytes(100) for _ in range(10000)]
    memlens.stop()
    del junk
    # WHEN an exact run follows, THEN every block and every free is seen
    memlens.start()
    try:
        base, _ = memlens.traced_memory()
        data = [bytes(100) for _ in range(10000)]
        built, _ = memlens.traced_memory()
        del data
        freed, _ = memlens.traced_memory()
    finally:
        memlens.stop()
    per = sys.getsizeof(bytes(100))
    assert built - base == pytest.approx(10000 * per + sys.getsizeof([None] * 10000), rel=0.02)
    assert abs(freed - base) < 4096


def test_sampled_mode_tracer_memory_is_small_per_sampled_block():
    # GIVEN sampled mode over a 40 MB heap of 100-byte blocks (about 1 in 41
    # sampled, scattered over the whole heap)
    memlens.start(sample_bytes=4096)
    try:
        m0, b0 = memlens.tracer_memory(), _core.trace_live_blocks()
        data = [bytes(67) for _ in range(400_000)]
        m1, b1 = memlens.tracer_memory(), _core.trace_live_blocks()
    finally:
        memlens.stop()
    # THEN the tracer keeps a side-table slot per sampled block, not a map
    # page (which cost 1160 bytes per sampled block)
    assert b1 - b0 > 5000
    assert (m1 - m0) / (b1 - b0) <= 64, (m1 - m0, b1 - b0)
    del data


# -- coexistence with tracemalloc ---------------------------------------------------------

@pytest.mark.parametrize("order", ["memlens_first", "tracemalloc_first"])
@pytest.mark.parametrize("stop_order", ["fifo", "lifo"])
def test_coexists_with_tracemalloc(order, stop_order):
    starts = [lambda: memlens.start(), lambda: tracemalloc.start()]
    stops = [memlens.stop, tracemalloc.stop]
    if order == "tracemalloc_first":
        starts.reverse()
        stops.reverse()
    for s in starts:
        s()
    data = make_bytes(1000, 1000)
    m_cur = memlens.traced_memory()[0]
    t_cur = tracemalloc.get_traced_memory()[0]
    assert m_cur >= 1_000_000 and t_cur >= 1_000_000
    assert abs(m_cur - t_cur) < 0.05 * t_cur
    if stop_order == "lifo":
        stops.reverse()
    stops[0]()
    del data
    more = make_bytes(100, 1000)
    stops[1]()
    del more
    # and both can start again cleanly
    memlens.start()
    x = make_bytes(10, 100000)
    assert memlens.traced_memory()[0] >= 1_000_000
    memlens.stop()
    del x


def test_interleaved_with_tracemalloc_in_a_loop():
    # every start/stop order, many times: hook contexts are reused, not leaked
    for i in range(100):
        if i % 2:
            memlens.start(); tracemalloc.start(); memlens.stop(); tracemalloc.stop()
        else:
            tracemalloc.start(); memlens.start(); tracemalloc.stop(); memlens.stop()
    memlens.start()
    data = make_bytes(10, 10000)
    assert memlens.traced_memory()[0] >= 100_000
    memlens.stop()
    del data


# -- threads, fork, loops ---------------------------------------------------------------------

def test_threads_are_traced_with_their_own_stacks():
    def thread_body(out):
        out.append(make_points(2000))

    memlens.start()
    out = []
    threads = [threading.Thread(target=thread_body, args=(out,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = memlens.take_snapshot()
    memlens.stop()
    st = [s for s in snap.statistics("traceback") if s.traceback and
          s.traceback[0].lineno == line_of("LINE_POINTS")]
    assert sum(s.count for s in st) >= 4 * 2000 * 2  # instance + its dict/values or ints
    assert any(f.function == "thread_body" for s in st for f in s.traceback)
    del out


def test_threaded_stress_with_stop_from_another_thread():
    stop_flag = threading.Event()
    errors = []

    def churn():
        try:
            while not stop_flag.is_set():
                d = {i: str(i) for i in range(200)}
                lst = [bytearray(i % 300) for i in range(200)]
                kept = _testcore.raw_churn_nogil(200, 64, 2)
                for a in kept:
                    _testcore.raw_free(a)
                del d, lst
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(30):
            memlens.start(frames=8, sample_bytes=0 if i % 2 else 4096)
            x = [str(j) for j in range(2000)]
            stopper = threading.Thread(target=memlens.stop)
            snap = memlens.take_snapshot()
            stopper.start()
            stopper.join()
            assert not memlens.is_tracing()
            if i % 2:
                # exact: the strings built after start() are in the snapshot
                assert snap.total >= sum(map(sys.getsizeof, x))
            del x
    finally:
        stop_flag.set()
        for t in threads:
            t.join()
    assert not errors


def test_start_stop_loop_does_not_leak():
    code = make_strings.__code__
    memlens.start()
    make_strings(10)
    memlens.stop()
    gc.collect()
    refs = sys.getrefcount(code)
    for _ in range(200):
        memlens.start(frames=4)
        make_strings(10)
        snap = memlens.take_snapshot()
        snap.statistics("traceback")
        memlens.stop()
    gc.collect()
    assert sys.getrefcount(code) == refs  # interned stacks drop their code references


def test_fork_child_keeps_tracing(run_ok):
    out = run_ok("""
        import os, memlens
        memlens.start()
        parent_data = [bytearray(1000) for _ in range(1000)]
        pid = os.fork()
        if pid == 0:
            before = memlens.traced_memory()[0]
            child_data = [bytearray(1000) for _ in range(500)]
            after = memlens.traced_memory()[0]
            ok = memlens.is_tracing() and after - before >= 500_000
            snap = memlens.take_snapshot()
            memlens.stop()
            os._exit(0 if ok and snap.total >= 1_000_000 else 3)
        _, status = os.waitpid(pid, 0)
        memlens.stop()
        print("child", os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8)
    """)
    assert out.strip() == "child 0"


@pytest.mark.not_sanitized("GCC 12's ASan allocator is not fork-safe: a child forked while "
                    "another thread is inside malloc inherits ASan's allocator lock held (seen in gdb: the "
                    "child waits in SizeClassAllocator64::GetFromAllocator)")
def test_fork_while_other_threads_allocate(run_ok):
    out = run_ok("""
        import os, threading, memlens
        from memlens import _testcore
        memlens.start(frames=4)
        done = threading.Event()
        def churn():
            while not done.is_set():
                for a in _testcore.raw_churn_nogil(100, 64, 1):
                    _testcore.raw_free(a)
                x = [str(i) for i in range(100)]
        ts = [threading.Thread(target=churn) for _ in range(2)]
        for t in ts: t.start()
        codes = []
        for _ in range(20):
            pid = os.fork()
            if pid == 0:
                y = [bytearray(100) for _ in range(100)]
                memlens.take_snapshot()
                memlens.stop()
                os._exit(0)
            codes.append(os.waitpid(pid, 0)[1])
        done.set()
        for t in ts: t.join()
        memlens.stop()
        print(sum(codes))
    """)
    assert out.strip() == "0"


def test_tracer_memory_is_reported_and_small_per_block(sanitized):
    memlens.start()
    data = make_points(100_000)
    mem = memlens.tracer_memory()
    blocks = _core.trace_live_blocks()
    memlens.stop()
    assert blocks >= 200_000
    assert 0 < mem
    if not sanitized:  # ASan's malloc spreads blocks out with redzones
        assert mem / blocks <= 32, (mem, blocks)
    del data


def test_snapshot_of_many_blocks_is_fast(sanitized):
    import time
    memlens.start()
    data = [bytearray(10) for _ in range(200_000)]
    t0 = time.perf_counter()
    snap = memlens.take_snapshot()
    stats = snap.statistics("lineno")
    elapsed = time.perf_counter() - t0
    memlens.stop()
    assert stats[0].count >= 200_000
    assert elapsed < (5.0 if sanitized else 0.5)
    del data


def test_blocks_freed_while_a_snapshot_is_built_are_forgotten():
    # GIVEN traced garbage cycles that a collection will free
    memlens.start()
    base = memlens.traced_memory()[0]
    old = gc.get_threshold()
    junk = [[] for _ in range(2000)]
    for item in junk:
        item.append(item)
    del junk, item
    # WHEN a collection runs inside take_snapshot (its own allocations trigger it)
    gc.set_threshold(1)
    try:
        snap = memlens.take_snapshot()
    finally:
        gc.set_threshold(*old)
    gc.collect()
    del snap
    # THEN the freed blocks left the map and the totals
    assert memlens.traced_memory()[0] - base < 5000


# -- stacks: the per-thread cache of callers must never mix stacks up ----------------

def alloc_leaf():
    return bytearray(64)                               # LINE_LEAF


def caller_a(out):
    out.append(alloc_leaf())                           # LINE_CALLER_A


def caller_b(out):
    out.append(alloc_leaf())                           # LINE_CALLER_B


def gen_alloc():
    while True:
        yield bytearray(48)                            # LINE_GEN


def resume_a(g, out):
    out.append(next(g))                                # LINE_RESUME_A


def resume_b(g, out):
    out.append(next(g))                                # LINE_RESUME_B


def stacks_through(snap, line):
    by = {}
    for s in snap.statistics("traceback"):
        if s.traceback and s.traceback[0].lineno == line:
            key = tuple((f.function, f.lineno) for f in s.traceback[:2])
            by[key] = by.get(key, 0) + s.count
    return by


def test_same_function_from_alternating_callers_gets_each_callers_stack():
    out = []
    memlens.start(frames=8)
    for i in range(1000):
        caller_a(out)
        caller_b(out)
        caller_b(out)
    snap = memlens.take_snapshot()
    memlens.stop()
    by = stacks_through(snap, line_of("LINE_LEAF"))
    # each bytearray(64) is two blocks (object and buffer)
    assert by[("alloc_leaf", line_of("LINE_LEAF")), ("caller_a", line_of("LINE_CALLER_A"))] == 2000
    assert by[("alloc_leaf", line_of("LINE_LEAF")), ("caller_b", line_of("LINE_CALLER_B"))] == 4000


def test_generator_resumed_from_different_callers():
    out = []
    g = gen_alloc()
    next(g)
    memlens.start(frames=8)
    for i in range(500):
        resume_a(g, out)
        resume_b(g, out)
        resume_b(g, out)
    snap = memlens.take_snapshot()
    memlens.stop()
    by = stacks_through(snap, line_of("LINE_GEN"))
    # (3.9/3.10 make one extra small allocation there; tracemalloc sees it too)
    assert abs(by[("gen_alloc", line_of("LINE_GEN")), ("resume_a", line_of("LINE_RESUME_A"))] - 1000) <= 2
    assert abs(by[("gen_alloc", line_of("LINE_GEN")), ("resume_b", line_of("LINE_RESUME_B"))] - 2000) <= 2


def test_python_callback_called_from_c():
    # the callback runs under a C function (sorted); 3.12+ puts a shim frame there
    kept = []
    memlens.start(frames=8)
    keys = sorted(range(2000), key=lambda i: kept.append(bytearray(40)) or i)  # LINE_CALLBACK
    snap = memlens.take_snapshot()
    memlens.stop()
    tbs = [s for s in snap.statistics("traceback")
           if s.traceback and s.traceback[0].lineno == line_of("LINE_CALLBACK")
           and s.traceback[0].function == "<lambda>"]
    assert sum(s.count for s in tbs) >= 2000
    names = [f.function for f in tbs[0].traceback]
    assert names[:2] == ["<lambda>", "test_python_callback_called_from_c"]
    del keys, kept


def test_stop_gives_the_tracer_memory_back(sanitized):
    memlens.start()
    data = make_points(50_000)
    assert memlens.tracer_memory() > 200_000
    memlens.stop()
    # the map's leaves are zeroed and released (only directory pages stay:
    # more of them when malloc spreads blocks out, as under ASan)
    assert memlens.tracer_memory() < (1024 if sanitized else 64) * 1024
    del data


def test_many_gil_less_raw_calls_are_all_counted():
    # GIVEN far more GIL-less RAW calls than the queue for them holds
    memlens.start()
    base = memlens.traced_memory()[0]
    kept = _testcore.raw_churn_nogil(20_000, 100, 100)
    # THEN nothing is lost: exactly the 100 kept blocks of 100 bytes remain
    # (plus the list of their addresses, made with the GIL)
    snap = memlens.take_snapshot()
    assert not snap.incomplete
    grown = memlens.traced_memory()[0] - base
    for a in kept:
        _testcore.raw_free(a)
    after = memlens.traced_memory()[0] - base
    memlens.stop()
    # (`grown` itself is a traced 32-byte int)
    assert 100 * 100 - 64 <= grown - after <= 100 * 100


def test_module_needs_little_static_tls():
    # initial-exec TLS of a dlopen()ed module comes out of a small surplus
    # glibc shares among all modules: more than a few dozen bytes and the
    # import can fail ("cannot allocate memory in static TLS block")
    try:
        out = subprocess.run(["readelf", "-lW", _core.__file__], capture_output=True, text=True)
    except OSError:
        pytest.skip("readelf not available")
    if out.returncode != 0:
        pytest.skip("readelf failed")
    tls = [line.split() for line in out.stdout.splitlines() if line.strip().startswith("TLS")]
    assert tls, "no TLS segment"
    memsz = int(tls[0][5], 16)
    assert memsz <= 128, memsz


def test_many_distinct_stacks_grow_the_stack_table():
    # 6000 allocation sites (more than the initial 4096 stack records)
    src = "def many(out):\n" + "".join(f"    out.append(bytearray({i % 7 + 1}))\n" for i in range(6000))
    ns = {}
    exec(compile(src, "<many>", "exec"), ns)
    out = []
    memlens.start(frames=4)
    ns["many"](out)
    snap = memlens.take_snapshot()
    memlens.stop()
    # Not line 1 (the def line): on 3.12+, once sys.monitoring has been used
    # in the process (the line profiler's tests), CPython allocates its
    # instrumentation data for a code object at its first run, there.
    lines = [s for s in snap.statistics("lineno")
             if s.traceback and s.traceback[0].filename == "<many>" and s.traceback[0].lineno != 1]
    assert len(lines) == 6000
    assert {s.traceback[0].lineno for s in lines} == set(range(2, 6002))
    assert sum(s.count for s in lines) >= 2 * 6000  # objects and buffers (and list growth)
    del out


def test_many_large_blocks_grow_and_shrink_the_side_table():
    # blocks of 1 KiB or more keep their size in a side hash table
    memlens.start()
    base = memlens.traced_memory()[0]
    blocks = [bytearray(2000 + i % 100) for i in range(5000)]
    expected = sum(2000 + i % 100 + 1 for i in range(5000))  # buffer has a NUL byte
    grown = memlens.traced_memory()[0] - base
    # free every other one, then the rest (exercises deletion in probe chains)
    del blocks[::2]
    half = memlens.traced_memory()[0] - base
    del blocks
    after = memlens.traced_memory()[0] - base
    memlens.stop()
    assert expected <= grown <= expected + 5000 * 64 + 50_000
    assert grown - half >= expected / 2 * 0.98
    assert after < 1000


# Block sizes on both sides of each boundary between the map's tiers (fine
# map up to 112 bytes, medium map below 960, side table from 960 on).
TIER_SIZES = [1, 100, 112, 113, 127, 128, 500, 959, 960, 1023, 1024, 5000, 300_000]


@pytest.mark.parametrize("size", TIER_SIZES)
def test_every_tier_keeps_exact_sizes_and_sees_every_free(size):
    n = 300
    memlens.start()
    data = [None] * n
    base = memlens.traced_memory()[0]
    for i in range(n):
        data[i] = bytes(size)  # LINE_TIER
    grown = memlens.traced_memory()[0] - base
    snap = memlens.take_snapshot()
    data[:] = [None] * n
    freed = memlens.traced_memory()[0] - base
    memlens.stop()
    line = line_of("LINE_TIER")
    st = [s for s in snap.statistics("lineno") if s.traceback[0].lineno == line]
    per = sys.getsizeof(bytes(size))  # exactly what bytes() asks the allocator for
    assert (st[0].size, st[0].count) == (n * per, n)
    # (the loop's int `i` and similar small blocks may come and go)
    assert n * per <= grown <= n * per + 200
    assert abs(freed) <= 200


def test_realloc_moves_a_block_through_every_tier():
    memlens.start()
    b = bytearray()
    line = line_of("LINE_GROW")
    seen = []
    for size in TIER_SIZES + TIER_SIZES[::-1]:
        # PyObject_Realloc of the buffer:
        b[:] = bytes(size)  # LINE_GROW
        st = [s for s in memlens.take_snapshot().statistics("lineno")
              if s.traceback[0].lineno == line]
        seen.append((size, b.__alloc__(), st[0].size if st else None, st[0].count if st else None))
    base = memlens.traced_memory()[0]
    alloc = b.__alloc__()
    del b
    after = memlens.traced_memory()[0] - base
    memlens.stop()
    # the one buffer's traced size follows its allocation exactly, up or down
    # (a bytearray drops its buffer when emptied: size 1 keeps one)
    for size, want, got, count in seen:
        assert (got, count) == (want, 1), seen
    assert -alloc - sys.getsizeof(bytearray()) - 200 <= after <= -alloc


@pytest.mark.parametrize("size", [100, 500, 2000])
def test_gil_less_raw_blocks_of_every_tier_are_all_counted(size):
    memlens.start()
    base = memlens.traced_memory()[0]
    kept = _testcore.raw_churn_nogil(5000, size, 100)
    grown = memlens.traced_memory()[0] - base
    for a in kept:
        _testcore.raw_free(a)
    after = memlens.traced_memory()[0] - base
    memlens.stop()
    assert 100 * size - 64 <= grown - after <= 100 * size


@pytest.mark.not_sanitized("ASan's malloc spreads blocks out with redzones")
@pytest.mark.parametrize("size", [48, 112, 120, 150, 600, 940, 2048, 8192])
def test_tracer_memory_is_at_most_32_bytes_per_block_whatever_their_size(size, run_ok):
    # GIVEN a heap made only of blocks of one size (the worst case for an
    # address-indexed map: the address space it spans per block), in a fresh
    # interpreter: in a long-lived one new blocks fill holes left all over
    # the heap, and the map's pages are shared by fewer of them (README)
    out = run_ok(f"""
        import memlens
        from memlens import _core
        size = {size}
        n = min(200_000, (120 << 20) // size)
        memlens.start()
        warm = [bytes(size - 33) for _ in range(1000)]  # directories, filters
        mem0, blocks0 = memlens.tracer_memory(), _core.trace_live_blocks()
        data = [bytes(size - 33) for _ in range(n)]
        mem1, blocks1 = memlens.tracer_memory(), _core.trace_live_blocks()
        memlens.stop()
        print((mem1 - mem0) / (blocks1 - blocks0))
    """)
    # THEN each block added costs the tracer at most 32 bytes
    assert float(out) <= 32


@pytest.mark.not_sanitized("ASan's malloc spreads blocks out with redzones")
@pytest.mark.parametrize("every", [4, 20])
def test_blocks_filling_holes_of_an_older_heap_cost_little_and_are_exact(every, run_ok):
    # GIVEN a heap allocated before tracing, with a hole every 4 or 20
    # blocks (tracing started in a long-running process), in a fresh
    # interpreter
    out = run_ok(f"""
        import sys
        import memlens
        from memlens import _core
        old = [bytes(15) for _ in range(600_000)]
        del old[::{every}]
        n = 600_000 // {every}
        memlens.start()
        data = [None] * n
        base, m0 = memlens.traced_memory()[0], memlens.tracer_memory()
        b0 = _core.trace_live_blocks()
        for i in range(n):
            data[i] = bytes(15)  # these fill the holes, scattered over the heap
        grown = memlens.traced_memory()[0] - base
        per_block = (memlens.tracer_memory() - m0) / (_core.trace_live_blocks() - b0)
        data[:] = [None] * n
        freed = memlens.traced_memory()[0] - base
        memlens.stop()
        print(n, grown, freed, per_block, sys.getsizeof(bytes(15)))
    """)
    n, grown, freed, per_block, size = out.split()
    # THEN every block and every free is still exact (many of them live in
    # the side table: opening a map page per few blocks would cost 4 KiB
    # each -- measured 219 bytes per block before the page budget)
    assert int(n) * int(size) <= int(grown) <= int(n) * int(size) + 200
    assert abs(int(freed)) <= 200
    # AND the tracer's memory for them is at most 32 bytes per block, plus
    # the 256 KiB of map pages any program may open before its blocks pay
    # for them (trace_map.c: map_may_open_page)
    assert float(per_block) <= 32 + (256 << 10) / int(n)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="interpreters with a GIL of their own: 3.12+")
def test_subinterpreter_with_its_own_gil_while_tracing(run_ok):
    # GIVEN tracing, WHEN a subinterpreter with a GIL of its own (isolated,
    # the default of the private _interpreters module) runs and allocates
    # THEN its calls take the GIL-less path (the hooks stop trusting the
    # one-interpreter shortcut while it exists), nothing crashes, and the
    # main interpreter's blocks are still counted
    out = run_ok("""
        import sys
        try:
            import _interpreters as interpreters      # 3.13
        except ImportError:
            import _xxsubinterpreters as interpreters  # 3.12
        import memlens
        memlens.start()
        base = memlens.traced_memory()[0]
        iid = interpreters.create()
        interpreters.run_string(iid, "x = [bytes(100) for _ in range(20000)]\\ndel x")
        data = [bytes(100) for _ in range(10000)]
        mid = memlens.traced_memory()[0] - base
        interpreters.destroy(iid)
        del data
        after = memlens.traced_memory()[0] - base
        snap = memlens.take_snapshot()
        memlens.stop()
        print(mid, after, snap.incomplete, sys.getsizeof(bytes(100)))
    """)
    mid, after, incomplete, per = out.split()
    assert int(mid) >= 10000 * int(per)
    assert int(after) < int(mid) - 10000 * int(per)
    assert incomplete == "False"


def test_deepest_stacks_are_cut_at_the_frame_limit():
    def recurse(n):
        if n == 0:
            return bytearray(32)
        return recurse(n - 1)

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 2000))
    try:
        memlens.start(frames=512)
        kept = [recurse(600) for _ in range(3)]
        snap = memlens.take_snapshot()
        memlens.stop()
    finally:
        sys.setrecursionlimit(old)
    deepest = max(len(s.traceback) for s in snap.statistics("traceback"))
    assert deepest == 512
    del kept


# -- allocated totals (cumulative, freed blocks included) ---------------------------------

def churn_bytes(n, size):
    for _ in range(n):
        b = bytes(size)                               # LINE_CHURN
        del b


def tracemalloc_block_size():
    """Traced size of one bytes(100_000) (tracemalloc, by line, so that
    nothing else the interpreter allocates meanwhile is counted)."""
    tracemalloc.start(1)
    try:
        obj = bytes(100_000)                          # LINE_ONE_BLOCK
        snap = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    del obj
    line = line_of("LINE_ONE_BLOCK")
    (stat,) = [s for s in snap.statistics("lineno") if s.traceback[0].lineno == line]
    assert stat.count == 1
    return stat.size


# 3.9's eval loop allocates one small block of its own (58 bytes, once) on
# the line of a loop body: allowed for there, and nowhere else.
EXTRA_39 = 1 if sys.version_info < (3, 10) else 0


def stat_at(stats, line):
    return next(s for s in stats if s.traceback[0].lineno == line)


def test_allocated_counts_blocks_freed_before_the_snapshot():
    # GIVEN 1000 blocks of 100 kB, each freed before the next is made
    one = tracemalloc_block_size()
    line = line_of("LINE_CHURN")
    # WHEN the loop runs traced
    _, cur, _, snap = measure_memlens(lambda: churn_bytes(1000, 100_000))
    # THEN the line allocated 1000 blocks of tracemalloc's size, of which
    # nothing is live; it is the top line of allocated_statistics
    alloc = snap.allocated_statistics("lineno")
    assert alloc[0].traceback[0].lineno == line
    assert 1000 <= alloc[0].count <= 1000 + EXTRA_39
    assert abs(alloc[0].size - 1000 * one) <= 0.01 * 1000 * one
    # exact mode: to the byte
    assert 0 <= alloc[0].size - 1000 * one <= 64 * EXTRA_39
    assert not [s for s in snap.statistics("lineno") if s.traceback[0].lineno == line]
    assert cur < one
    # the other keys group the same totals (the function also made the
    # loop's ints)
    fn = [s for s in snap.allocated_statistics("function") if s.traceback[0].function == "churn_bytes"]
    assert 1000 * one <= fn[0].size <= 1.01 * 1000 * one
    tb = snap.allocated_statistics("traceback")[0]
    assert tb.traceback[0].lineno == line and tb.size == alloc[0].size


def alloc_one(size):
    return bytes(size)                                # LINE_ONE


def keep_300():
    return [alloc_one(5000) for _ in range(300)]


def test_allocated_equals_live_when_nothing_is_freed():
    # GIVEN a line that frees nothing: allocated == live, and both equal
    # what tracemalloc says is live on that line
    _, _, _, tm = measure_tracemalloc(keep_300)
    _, _, _, snap = measure_memlens(lambda: (keep_300(), workload()))
    line = line_of("LINE_ONE")
    tm_stat = next(s for s in tm.statistics("lineno") if s.traceback[0].lineno == line)
    live = stat_at(snap.statistics("lineno"), line)
    alloc = stat_at(snap.allocated_statistics("lineno"), line)
    assert (alloc.size, alloc.count) == (live.size, live.count) == (tm_stat.size, tm_stat.count)
    # and everywhere allocated >= what was live at the peak and at the end
    peak = {s.traceback: s for s in snap.peak_statistics("traceback")}
    now = {s.traceback: s for s in snap.statistics("traceback")}
    for s in snap.allocated_statistics("traceback"):
        for other in (peak.get(s.traceback), now.get(s.traceback)):
            if other is not None:
                assert s.size >= other.size and s.count >= other.count
    # LINE_BIG's blocks were all freed: not live, not at the peak of the
    # small ones... but allocated, 3000 of them
    big = stat_at(snap.allocated_statistics("lineno"), line_of("LINE_BIG"))
    assert big.count >= 3000
    assert not [s for s in snap.statistics("lineno") if s.traceback[0].lineno == line_of("LINE_BIG")
                and s.count >= 3000]


def test_allocated_counts_a_realloc_as_an_allocation_of_the_new_size():
    memlens.start()
    p = _testcore.raw_malloc(1000)                  # LINE_RAW_MALLOC
    p = _testcore.raw_realloc(p, 50_000)            # LINE_RAW_REALLOC
    _testcore.raw_free(p)
    snap = memlens.take_snapshot()
    memlens.stop()
    alloc = snap.allocated_statistics("lineno")
    # (each call also allocates the int holding the address: under 100 B)
    m = stat_at(alloc, line_of("LINE_RAW_MALLOC"))
    r = stat_at(alloc, line_of("LINE_RAW_REALLOC"))
    assert 1000 <= m.size < 1100
    assert 50_000 <= r.size < 50_100


def test_allocated_includes_gil_less_raw_calls():
    # GIVEN GIL-less RAW churn: 20000 x (malloc 100, realloc to 200, free),
    # then 100 kept blocks of 100 bytes, on the calling line
    memlens.start()
    kept = _testcore.raw_churn_nogil(20_000, 100, 100)  # LINE_RAW_CHURN
    after = memlens.take_snapshot()
    for a in kept:
        _testcore.raw_free(a)
    memlens.stop()
    st = stat_at([s for s in after.allocated_statistics("lineno") if s.traceback], line_of("LINE_RAW_CHURN"))
    # THEN every one of them is counted: 20000 x (100 + 200) + 100 x 100,
    # besides the C array of 100 pointers and the list and ints returned
    raw = 20_000 * 300 + 100 * 100
    assert raw <= st.size <= raw + 800 + 100 * 32 + 1000 and 20_000 * 2 + 100 <= st.count <= 20_000 * 2 + 203


def sampled_churn():
    for s in (100, 1000, 10000) * 3000:
        b = bytes(s)                                  # LINE_SAMPLED_CHURN
        del b


def test_sampled_allocated_totals_converge_to_exact(sanitized):
    # GIVEN the exact allocated figures of a loop that frees what it makes
    line = line_of("LINE_SAMPLED_CHURN")
    _, _, _, exact = measure_memlens(sampled_churn)
    ex = stat_at(exact.allocated_statistics("lineno"), line)
    assert ex.count == 9000
    # WHEN it runs many times sampled
    runs = 12 if sanitized else 30
    sizes, counts = [], []
    for _ in range(runs):
        _, _, _, snap = measure_memlens(sampled_churn, sample_bytes=16384)
        st = [s for s in snap.allocated_statistics("lineno") if s.traceback[0].lineno == line]
        sizes.append(st[0].size if st else 0)
        counts.append(st[0].count if st else 0)
    # THEN the mean estimate converges on the exact value
    assert_sampled_estimates_converge(sizes, counts, ex.size, ex.count)


def test_allocated_totals_survive_dump_and_load(tmp_path):
    _, _, _, snap = measure_memlens(lambda: (churn_bytes(50, 10_000), workload()))
    path = tmp_path / "snap.mlcap"
    snap.dump(path)
    back = memlens.Snapshot.load(path)
    for key in ("lineno", "filename", "function", "traceback"):
        assert back.allocated_statistics(key) == snap.allocated_statistics(key)
    assert back.stacks() == snap.stacks()
    rows = back._table.stacks()
    assert back._table.has_allocated and all(len(r) == 7 for r in rows)


def without_aloc(data):
    """A capture as memlens wrote it before allocated totals (format 1.0):
    the ALOC section dropped, the checksum recomputed."""
    import struct
    out, i = bytearray(data[:8] + b"\x01\x00\x00\x00"), 12
    while i < len(data):
        tag, _res, n = struct.unpack_from("<4sIQ", data, i)
        if tag == b"END ":
            break
        if tag != b"ALOC":
            out += data[i:i + 16 + n]
        i += 16 + n
    h = 0xcbf29ce484222325
    for byte in out:
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return bytes(out) + struct.pack("<4sIQQ", b"END ", 0, 8, h)


def test_captures_without_allocated_totals_still_load(tmp_path, capture_bytes):
    _, _, _, snap = measure_memlens(lambda: churn_bytes(10, 1000))
    path = tmp_path / "snap.mlcap"
    snap.dump(path)
    assert path.read_bytes()[8:12] == b"\x02\x00\x00\x00"  # format 2.0
    # the file memlens 1.1 wrote: plain sections
    data = capture_bytes.inflate(path.read_bytes(), (1, 1))
    old = tmp_path / "old.mlcap"
    old.write_bytes(without_aloc(data))
    back = memlens.Snapshot.load(old)
    assert back.statistics("traceback") == snap.statistics("traceback")
    assert back.stacks() == snap.stacks()
    assert not back._table.has_allocated
    assert all(len(r) == 5 for r in back._table.stacks())
    with pytest.raises(ValueError, match="no allocated totals"):
        back.allocated_statistics("lineno")


def test_bad_allocated_section_is_a_clear_error(tmp_path, capture_bytes):
    import struct
    _, _, _, snap = measure_memlens(lambda: churn_bytes(10, 1000))
    path = tmp_path / "snap.mlcap"
    snap.dump(path)
    data = bytearray(capture_bytes.inflate(path.read_bytes()))
    i = 12
    while True:
        tag, _res, n = struct.unpack_from("<4sIQ", data, i)
        if tag == b"ALOC":
            break
        i += 16 + n
    struct.pack_into("<I", data, i + 16, struct.unpack_from("<I", data, i + 16)[0] + 1)  # n: one more stack
    old = tmp_path / "bad.mlcap"
    # reseal so the parser itself sees the damage
    body = bytes(data[:len(data) - 24])
    h = 0xcbf29ce484222325
    for byte in body:
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    old.write_bytes(body + struct.pack("<4sIQQ", b"END ", 0, 8, h))
    with pytest.raises(ValueError, match="bad allocated-totals table"):
        memlens.Snapshot.load(old)


def test_allocated_statistics_rejects_bad_keys():
    _, _, _, snap = measure_memlens(lambda: churn_bytes(1, 10))
    with pytest.raises(ValueError):
        snap.allocated_statistics("nope")
    with pytest.raises(ValueError):
        snap.allocated_statistics("traceback", cumulative=True)
    with pytest.raises(ValueError):
        snap._table.group("lineno", False, True, True)


def test_chaining_hooks_for_the_benchmark_floor():
    # GIVEN the hooks bench_tracer.py times as the floor under any tracer
    _testcore.trace_chain_only(True)
    try:
        # THEN allocation goes through them, tracemalloc chains on top of them
        # and still counts exactly, and memlens cannot start meanwhile
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            data = bytearray(1 << 20)
            after, _ = tracemalloc.get_traced_memory()
            assert after - before >= 1 << 20
            # other hooks sit above them: they are not removed under them
            with pytest.raises(RuntimeError, match="installed above"):
                _testcore.trace_chain_only(False)
        finally:
            tracemalloc.stop()
        del data
        with pytest.raises(RuntimeError, match="chaining hooks"):
            memlens.start()
        with pytest.raises(RuntimeError, match="already installed"):
            _testcore.trace_chain_only(True)
    finally:
        _testcore.trace_chain_only(False)
    # AND once removed, tracing works as before
    memlens.start()
    x = bytearray(100_000)
    cur, _ = memlens.traced_memory()
    memlens.stop()
    assert cur >= 100_000
    del x


def test_snapshot_stacks_share_one_frame_per_distinct_frame():
    # GIVEN a snapshot of many stacks over few distinct frames
    memlens.start(frames=8)
    keep = []
    for i in range(1500):
        ns = {}
        exec(compile(f"def f():\n    return [0] * {i % 7 + 1}\n\nx = f()\n", f"gen{i % 40}.py", "exec"), ns)
        keep.append(ns["x"])
    snap = memlens.take_snapshot()
    memlens.stop()
    rows = snap.stacks()
    # THEN each distinct frame is one Frame object in every Traceback that
    # has it, and the figures are the table's
    frames = [f for tb, *_ in rows for f in tb]
    assert len(frames) > 2 * len(set(frames))
    assert len({id(f) for f in frames}) == len(set(frames))
    assert all(isinstance(tb, memlens.Traceback) for tb, *_ in rows)
    assert sum(r[1] for r in rows) == snap.total
    assert [tuple(tuple(f) for f in r[0]) for r in snap._table.stacks()] == \
        [tuple((f.filename, f.lineno, f.function) for f in tb) for tb, *_ in rows]
    del keep
