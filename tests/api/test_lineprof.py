"""Line-by-line memory profile (memlens.lineprof): exact per-line figures
checked against the byte counts of what each line builds, and against
tracemalloc's traced deltas."""

import asyncio
import inspect
import os
import subprocess
import sys
import textwrap
import threading
import tracemalloc

import pytest

import memlens

MIB = 1024 * 1024
LIST_5M = 5_000_000 * 8  # the item array of [0] * 5_000_000
BIG_LIST_MIB = "38.1 MiB"
# 3.9/3.10: the first call of a function allocates a frame object that its
# code object keeps (co_zombieframe): real memory, charged to the calling line.
FRAME = 512 if sys.version_info < (3, 11) else 0


@pytest.fixture(autouse=True)
def clean_profiler():
    memlens.stop_profile()
    yield
    memlens.stop_profile()


def line_of(func, marker):
    """Absolute line number of the source line of `func` containing `marker`."""
    lines, first = inspect.getsourcelines(func)
    hits = [first + i for i, text in enumerate(lines) if marker in text]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def stats_by_line(func):
    return {s.lineno: s for s in memlens.line_stats(func)}


def mib(n):
    return f"{n / MIB:.1f} MiB"


# ---- exact figures -------------------------------------------------------------


def build_and_delete():
    a = [0] * 5_000_000  # BUILD
    del a  # DEL
    b = bytes(10_000_000); del b  # TRANSIENT
    return 1  # RET


def test_increment_of_a_big_list_and_its_del():
    # GIVEN a profiled function that builds a 5M-item list, then deletes it
    memlens.profile(build_and_delete)
    # WHEN it runs
    build_and_delete()
    st = stats_by_line(build_and_delete)
    build, dele = st[line_of(build_and_delete, "# BUILD")], st[line_of(build_and_delete, "# DEL")]
    # THEN the list's bytes (items + the list object unless the list free
    # list supplied it) show on its line and come back on the del line
    assert LIST_5M <= build.increment <= LIST_5M + 56 + 64
    assert mib(build.increment) == BIG_LIST_MIB
    assert dele.increment == -build.increment or dele.increment == -LIST_5M - 56
    assert mib(dele.increment) == "-" + BIG_LIST_MIB
    assert build.occurrences == dele.occurrences == 1
    assert build.peak >= build.increment
    assert dele.allocated == 0 and dele.peak == 0


def test_alloc_and_free_within_a_line_show_in_allocated_freed_peak_only():
    memlens.profile(build_and_delete)
    build_and_delete()
    tr = stats_by_line(build_and_delete)[line_of(build_and_delete, "# TRANSIENT")]
    # bytes(10_000_000) is one 10_000_033-byte block, freed on the same line
    assert tr.increment == 0
    assert tr.allocated == tr.freed
    assert 10_000_033 <= tr.allocated < 10_000_033 + 256
    assert 10_000_033 <= tr.peak < 10_000_033 + 256
    assert mib(tr.increment) == "0.0 MiB"
    assert mib(tr.peak) == "9.5 MiB"


def measured_with_tracemalloc():
    t0 = tracemalloc.get_traced_memory()[0]
    data = [str(i) for i in range(20_000)]  # DATA
    t1 = tracemalloc.get_traced_memory()[0]
    return data, t1 - t0


def test_increment_matches_tracemalloc():
    # GIVEN tracemalloc as ground truth, under memlens' hooks (memlens
    # started on top, so neither sees the other's own tables)
    tracemalloc.start()
    try:
        memlens.profile(measured_with_tracemalloc)
        data, delta = measured_with_tracemalloc()
        st = stats_by_line(measured_with_tracemalloc)[line_of(measured_with_tracemalloc, "# DATA")]
        memlens.stop_profile()
    finally:
        tracemalloc.stop()
    # THEN the line's increment is tracemalloc's delta, up to the few
    # temporaries of the get_traced_memory() lines around it
    assert delta > 20_000 * 40
    assert abs(st.increment - delta) < 256, (st.increment, delta)


def loop():
    keep = []  # KEEP
    for i in range(1000):  # FOR
        keep.append(bytearray(1000))  # APPEND
    return keep


def test_loop_occurrences_and_sums():
    memlens.profile(loop)
    keep = loop()
    st = stats_by_line(loop)
    app = st[line_of(loop, "# APPEND")]
    assert app.occurrences == 1000
    assert st[line_of(loop, "# FOR")].occurrences == 1001
    # 1000 bytearrays of 1000 bytes (object + buffer), plus the list's growth
    ba = sys.getsizeof(bytearray(1000))
    assert 1000 * ba <= app.increment <= 1000 * ba + 9000
    assert app.allocated - app.freed == app.increment
    # the function's lines add up to what it returned (list + contents)
    total = sum(s.increment for s in memlens.line_stats(loop))
    assert abs(total - memlens.deep_size(keep)) < 200
    del keep


# ---- nesting, recursion, generators, async, exceptions, threads ---------------


def inner():
    return [0] * 100_000  # INNER


def outer():
    x = inner()  # CALL_INNER
    y = [0] * 200_000  # OUTER_OWN
    return x, y


def test_nested_profiled_functions_charge_the_innermost():
    memlens.profile(inner)
    memlens.profile(outer)
    outer()
    so, si = stats_by_line(outer), stats_by_line(inner)
    # the innermost profiled frame gets the bytes; the caller's line does not
    # count them again
    # (FRAME: on 3.9/3.10 a function's first call allocates a frame that
    # its code object keeps for the next call)
    assert 800_000 <= si[line_of(inner, "# INNER")].increment <= 800_000 + 120
    assert abs(so[line_of(outer, "# CALL_INNER")].increment) < 120 + FRAME
    assert 1_600_000 <= so[line_of(outer, "# OUTER_OWN")].increment <= 1_600_000 + 120


def plain_helper():
    return [0] * 100_000


def calls_plain():
    x = plain_helper()  # CALL_PLAIN
    return x


def test_call_to_unprofiled_function_counts_for_the_line():
    memlens.profile(calls_plain)
    calls_plain()
    st = stats_by_line(calls_plain)[line_of(calls_plain, "# CALL_PLAIN")]
    assert 800_000 <= st.increment <= 800_000 + 120 + FRAME
    # and the helper's lines are not profiled
    assert memlens.line_stats(plain_helper) == []


def recurse(n):
    if n == 0:  # TEST
        return []
    part = [0] * 10_000  # PART
    rest = recurse(n - 1)  # RECURSE
    return [part] + rest


def test_recursion_counts_each_level_once():
    memlens.profile(recurse)
    recurse(5)
    st = stats_by_line(recurse)
    part = st[line_of(recurse, "# PART")]
    assert part.occurrences == 5
    assert 5 * 80_000 <= part.increment <= 5 * 80_120
    assert st[line_of(recurse, "# TEST")].occurrences == 6
    # the recursive call line holds only the list concatenations it makes
    # itself (the inner levels' lines hold theirs)
    assert st[line_of(recurse, "# RECURSE")].increment < 2_000 + 5 * FRAME


def gen():
    for i in range(3):  # GEN_FOR
        block = [0] * 50_000  # GEN_BLOCK
        yield block  # GEN_YIELD


def test_generator():
    memlens.profile(gen)
    out = []
    for b in gen():
        out.append(b)
        junk = [0] * 500_000  # allocations between resumptions belong to nobody
        del junk
    st = stats_by_line(gen)
    blk = st[line_of(gen, "# GEN_BLOCK")]
    assert blk.occurrences == 3
    assert 3 * 400_000 <= blk.increment <= 3 * 400_000 + 400
    for s in memlens.line_stats(gen):
        assert s.peak < 4_000_000  # the 4 MB junk never lands on gen's lines


def sub_gen():
    for i in range(2):
        chunk = [0] * 25_000  # SUB_CHUNK
        yield chunk


def delegating():
    first = [0] * 10_000  # DELEG_FIRST
    yield from sub_gen()  # DELEG_FROM
    yield first


async def async_items():
    for i in range(3):
        item = [0] * 5_000  # AGEN_ITEM
        yield item


async def consume_async():
    out = []
    async for item in async_items():
        out.append(item)  # AGEN_CONSUME
    return out


def test_yield_from_and_async_generators():
    for f in (sub_gen, delegating, async_items, consume_async):
        memlens.profile(f)
    kept = list(delegating())
    got = asyncio.run(consume_async())
    sub = stats_by_line(sub_gen)[line_of(sub_gen, "# SUB_CHUNK")]
    assert sub.occurrences == 2 and 2 * 200_000 <= sub.increment <= 2 * 200_000 + 400
    st = stats_by_line(delegating)
    assert 80_000 <= st[line_of(delegating, "# DELEG_FIRST")].increment <= 80_000 + 200
    # the chunks are the innermost generator's, not the delegating line's
    assert abs(st[line_of(delegating, "# DELEG_FROM")].increment) < 1_000
    item = stats_by_line(async_items)[line_of(async_items, "# AGEN_ITEM")]
    assert item.occurrences == 3 and 3 * 40_000 <= item.increment <= 3 * 40_000 + 400
    assert len(got) == 3 and len(kept) == 3


async def agen_work():
    a = [0] * 30_000  # ASYNC_A
    await asyncio.sleep(0)
    b = [0] * 60_000  # ASYNC_B
    return len(a) + len(b)


def test_async_function():
    memlens.profile(agen_work)
    asyncio.run(agen_work())
    st = stats_by_line(agen_work)
    assert 240_000 <= st[line_of(agen_work, "# ASYNC_A")].increment <= 240_000 + 400
    assert 480_000 <= st[line_of(agen_work, "# ASYNC_B")].increment <= 480_000 + 400


def raises():
    a = [0] * 40_000  # RAISE_ALLOC
    raise ValueError(len(a))  # RAISE_NOW


def catches():
    try:
        raises()  # CALL_RAISES
    except ValueError:
        pass  # EXCEPT_END
    b = [0] * 20_000  # AFTER
    return b


def test_exception_unwinds_profiled_frames():
    memlens.profile(raises)
    memlens.profile(catches)
    catches()
    sr, sc = stats_by_line(raises), stats_by_line(catches)
    assert 320_000 <= sr[line_of(raises, "# RAISE_ALLOC")].increment <= 320_000 + 200
    assert sr[line_of(raises, "# RAISE_NOW")].occurrences == 1
    # the traceback keeps the raising frame (and its list) until the except
    # clause ends: the list's free shows on the caller's line that ends it
    # (the exception and traceback objects go with it)
    assert -320_000 - 600 <= sc[line_of(catches, "# EXCEPT_END")].increment <= -320_000
    assert 160_000 <= sc[line_of(catches, "# AFTER")].increment <= 160_000 + 200
    assert sc[line_of(catches, "# AFTER")].occurrences == 1


def threaded(n, barrier):
    barrier.wait()
    mine = [0] * n  # THREAD_ALLOC
    barrier.wait()
    return mine


def test_threads_are_attributed_to_their_own_lines():
    memlens.profile(threaded)
    barrier = threading.Barrier(2)
    results = []
    t = threading.Thread(target=lambda: results.append(threaded(100_000, barrier)))
    t.start()
    # meanwhile this thread allocates a lot, outside any profiled function
    barrier.wait()
    noise = [bytes(1000) for _ in range(2000)]
    barrier.wait()
    t.join()
    st = stats_by_line(threaded)[line_of(threaded, "# THREAD_ALLOC")]
    assert st.occurrences == 1
    assert 800_000 <= st.increment <= 800_000 + 120
    assert st.allocated < 800_000 + 1000  # not this thread's 2 MB of noise
    del noise


def gen_closed():
    held = [0] * 10_000  # GC_HELD
    try:
        while True:
            yield len(held)  # GC_YIELD
    finally:
        tail = [0] * 20_000  # GC_FINALLY
        del tail


def test_generator_closed_early_and_thrown_into():
    # GIVEN a profiled generator suspended at a yield
    memlens.profile(gen_closed)
    memlens.profile(build_and_delete)
    g = gen_closed()
    next(g)
    # WHEN it is thrown into (caught nowhere) and then a profiled function runs
    with pytest.raises(KeyError):
        g.throw(KeyError("x"))
    g2 = gen_closed()
    next(g2)
    g2.close()
    build_and_delete()
    # THEN the finally block's lines ran in the generator's frame twice, and
    # the profiler's stack is balanced: the next function's figures are exact
    st = stats_by_line(gen_closed)
    fin = st[line_of(gen_closed, "# GC_FINALLY")]
    assert fin.occurrences == 2
    assert 2 * 160_000 <= fin.allocated <= 2 * 160_000 + 400
    build = stats_by_line(build_and_delete)[line_of(build_and_delete, "# BUILD")]
    assert mib(build.increment) == BIG_LIST_MIB
    assert build.occurrences == 1


def short_job(n):
    return [0] * n  # SHORT_JOB


def test_many_threads():
    # (3.9-3.11: threads started after profiling began get the trace function)
    memlens.profile(short_job)
    threads = [threading.Thread(target=short_job, args=(1000,)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = stats_by_line(short_job)[line_of(short_job, "# SHORT_JOB")]
    assert st.occurrences == 20
    # each thread's list is freed by that thread after the call returns
    assert 20 * 8000 <= st.allocated <= 20 * 8000 + 20 * 120


def reads_own_trace_lines():
    return sys._getframe().f_trace_lines


def calls_reader():
    return reads_own_trace_lines()  # READER


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.9-3.11: the C trace function")
def test_frames_not_profiled_run_untraced():
    # GIVEN profiling on (3.9-3.11: the C trace function and the frame
    # evaluation switch, lp_eval_frame)
    memlens.profile(calls_reader)
    # WHEN a function that is not profiled runs, called from a profiled one
    # or not
    # THEN it got no event at all: tracing was off while it ran (a 'call'
    # event would have switched its line events off)
    assert calls_reader() is True
    assert reads_own_trace_lines() is True
    assert memlens.line_stats(reads_own_trace_lines) == []
    st = stats_by_line(calls_reader)
    assert st[line_of(calls_reader, "# READER")].occurrences == 1


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.9-3.11: the C trace function")
def test_frames_not_profiled_get_no_line_events_under_a_profile_function():
    # GIVEN profiling on and a profile function (cProfile's kind), which
    # keeps the thread in tracing mode everywhere
    memlens.profile(calls_reader)
    sys.setprofile(lambda *a: None)
    try:
        # WHEN a function that is not profiled runs
        got = (calls_reader(), reads_own_trace_lines())
    finally:
        sys.setprofile(None)
    # THEN 3.10/3.11: its frame's per-line events were switched off at its
    # 'call' event (lp_frame_no_lines: the 3.11 branch writes through a
    # mirror of the frame's layout); 3.9: the switch clears the trace
    # function itself, so the frame got no event to switch them off at
    expected = (sys.version_info < (3, 10),) * 2
    assert got == expected
    assert memlens.line_stats(reads_own_trace_lines) == []
    assert stats_by_line(calls_reader)[line_of(calls_reader, "# READER")].occurrences == 1


def middle_plain():
    a = [0] * 50_000
    return inner(), a


def outer_via_plain():
    x = middle_plain()  # VIA_PLAIN
    y = [0] * 200_000  # AFTER_PLAIN
    for _ in range(3):
        z = [0] * 1000  # LOOP_AFTER
    return x, y, z


def test_profiled_inside_unprofiled_inside_profiled():
    # GIVEN profiled -> not profiled -> profiled
    memlens.profile(outer_via_plain)
    memlens.profile(inner)
    # WHEN it runs (3.9-3.11: tracing goes off for the middle frame, on for
    # the inner one, and back on for the outer one when they return)
    outer_via_plain()
    so, si = stats_by_line(outer_via_plain), stats_by_line(inner)
    # THEN the middle frame's own list is the calling line's, the inner
    # one's is inner's, and the outer frame's later lines are all seen
    assert 400_000 <= so[line_of(outer_via_plain, "# VIA_PLAIN")].increment <= 400_000 + 240 + 2 * FRAME
    assert 800_000 <= si[line_of(inner, "# INNER")].increment <= 800_000 + 120
    assert 1_600_000 <= so[line_of(outer_via_plain, "# AFTER_PLAIN")].increment <= 1_600_000 + 120
    assert so[line_of(outer_via_plain, "# LOOP_AFTER")].occurrences == 3
    assert memlens.line_stats(middle_plain) == []


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.9-3.11: the C trace function")
def test_a_tracer_set_while_profiling_is_left_alone():
    # GIVEN profiling on, and a Python trace function installed from inside
    # a profiled function (a debugger attaching, say)
    events = []

    def tracer(frame, event, arg):
        if frame.f_code is reads_own_trace_lines.__code__:
            events.append(event)
        return tracer

    memlens.profile(calls_reader)
    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        # WHEN a function that is not profiled runs
        reads_own_trace_lines()
    finally:
        sys.settrace(old)
    # THEN that tracer got its events: memlens switches only its own tracing
    assert events[:2] == ["call", "line"]


# ---- report ---------------------------------------------------------------------


def test_table_format():
    memlens.profile(build_and_delete)
    build_and_delete()
    text = memlens.lineprof.format_profile()
    lines = text.splitlines()
    assert lines[0] == f"Filename: {__file__}"
    assert lines[1] == ""
    assert lines[2].split() == ["Line", "#", "Mem", "usage", "Increment", "Occurrences", "Line",
                                "Contents", "Allocated", "Freed", "Peak"]
    assert set(lines[3]) == {"="}
    build = [ln for ln in lines if "# BUILD" in ln][0]
    assert build.split()[:6] == [str(line_of(build_and_delete, "# BUILD")), "38.1", "MiB", "38.1",
                                 "MiB", "1"]
    dele = [ln for ln in lines if "# DEL" in ln][0]
    assert dele.split()[3:6] == ["-38.1", "MiB", "1"]


def test_reset_and_stop():
    memlens.profile(loop)
    loop()
    assert memlens.line_stats(loop)
    memlens.reset_profile()
    assert memlens.line_stats(loop) == []
    loop()
    assert stats_by_line(loop)[line_of(loop, "# APPEND")].occurrences == 1000
    memlens.stop_profile()
    assert memlens.line_stats() == []
    assert not memlens.is_tracing()


def test_tracer_runs_without_stacks_for_line_profiles():
    # The line profiler starts the tracer in its private totals-only mode
    # (frames 0); the public start() still asks for 1 frame or more.
    memlens.profile(loop)
    snap = memlens.take_snapshot()
    assert snap.traceback_limit == 0 and snap.sample_bytes == 0
    memlens.stop_profile()
    with pytest.raises(ValueError, match="between 1 and 512"):
        memlens.start(frames=0)
    assert not memlens.is_tracing()


def test_cprofile_runs_alongside():
    import cProfile

    memlens.profile(build_and_delete)
    prof = cProfile.Profile()
    prof.enable()
    try:
        build_and_delete()
    finally:
        prof.disable()
    build = stats_by_line(build_and_delete)[line_of(build_and_delete, "# BUILD")]
    assert mib(build.increment) == BIG_LIST_MIB


def test_profile_rejects_non_functions():
    with pytest.raises(TypeError, match="Python function"):
        memlens.profile(42)


def test_sampled_tracer_is_refused():
    memlens.start(sample_bytes=4096)
    try:
        with pytest.raises(RuntimeError, match="sampled"):
            memlens.profile(loop)
    finally:
        memlens.stop()


def test_repeated_runs_do_not_leak():
    memlens.profile(loop)
    loop()
    memlens.reset_profile()
    before = memlens.traced_memory()[0]
    for _ in range(20):
        loop()
    memlens.reset_profile()
    after = memlens.traced_memory()[0]
    assert abs(after - before) < 4096


def test_profile_and_stop_cycles_release_code_objects():
    # The profiler's records live on the C heap, untraced: what would leak
    # is a reference its table keeps on a code object after stop_profile().
    code = loop.__code__
    memlens.profile(loop)
    loop()
    memlens.stop_profile()
    refs = sys.getrefcount(code)
    for _ in range(50):
        memlens.profile(loop)
        loop()
        memlens.line_stats(loop)
        memlens.stop_profile()
    assert sys.getrefcount(code) == refs


# ---- python -m memlens.lineprof with memory_profiler-style scripts -------------

SCRIPT = textwrap.dedent("""\
    import sys

    @profile
    def my_func():
        a = [0] * 5_000_000
        b = [1] * 1000
        del a
        return b

    if __name__ == "__main__":
        my_func()
        print("args", sys.argv[1:])
""")


def test_module_runs_memory_profiler_scripts_unchanged(tmp_path):
    script = tmp_path / "mp_script.py"
    script.write_text(SCRIPT)
    r = subprocess.run([sys.executable, "-m", "memlens.lineprof", str(script), "x", "--y"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "args ['x', '--y']" in out
    assert f"Filename: {script}" in out
    row = [ln for ln in out.splitlines() if "a = [0] * 5_000_000" in ln][0]
    # Mem usage also holds what the script's import traced before the line
    assert row.split()[0] == "5" and row.split()[3:6] == ["38.1", "MiB", "1"]
    row = [ln for ln in out.splitlines() if "del a" in ln][0]
    assert row.split()[3:6] == ["-38.1", "MiB", "1"]


# ---- memlens run --lines ---------------------------------------------------------


def test_memlens_run_lines(tmp_path, run_memlens):
    # GIVEN a script written for memory_profiler (builtin `profile`)
    script = tmp_path / "mp_script.py"
    script.write_text(SCRIPT + "    raise SystemExit(3)\n")
    # WHEN run under `memlens run --lines` with its own arguments
    r = run_memlens("run", "--lines", str(script), "-q", "--lines", cwd=tmp_path)
    # THEN it runs unchanged, keeps its argv and exit code, and the table
    # is on stdout with exact figures; no capture is written
    assert r.returncode == 3, r.stderr
    assert "args ['-q', '--lines']" in r.stdout
    rows = r.stdout.splitlines()
    assert rows[rows.index(f"Filename: {script}") + 2].split()[:3] == ["Line", "#", "Mem"]
    row = [ln for ln in rows if "a = [0] * 5_000_000" in ln][0]
    assert row.split()[3:6] == ["38.1", "MiB", "1"]
    row = [ln for ln in rows if "del a" in ln][0]
    assert row.split()[3:6] == ["-38.1", "MiB", "1"]
    assert not list(tmp_path.glob("*.mlcap"))


def test_memlens_run_lines_exception_and_rss(tmp_path, run_memlens):
    script = tmp_path / "boom.py"
    script.write_text(textwrap.dedent("""\
        @profile
        def f():
            a = bytearray(3 * 1024 * 1024)
            raise KeyError("boom")

        f()
    """))
    r = run_memlens("run", "--lines", "--rss", str(script), cwd=tmp_path)
    assert r.returncode == 1
    assert "KeyError: 'boom'" in r.stderr
    row = [ln for ln in r.stdout.splitlines() if "a = bytearray" in ln][0]
    assert row.split()[3:6] == ["3.0", "MiB", "1"]
    assert float(row.split()[1]) > 3.0  # RSS of the whole process


def test_memlens_run_lines_exit_message(tmp_path, run_memlens):
    script = tmp_path / "bye.py"
    script.write_text("import sys\nsys.exit('bye now')\n")
    r = run_memlens("run", "--lines", str(script), cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip() == "bye now"


def test_memlens_run_rss_needs_lines(tmp_path, run_memlens):
    script = tmp_path / "s.py"
    script.write_text("pass\n")
    r = run_memlens("run", "--rss", str(script), cwd=tmp_path)
    assert r.returncode == 2
    assert "--rss goes with --lines" in r.stderr


# ---- IPython magics ----------------------------------------------------------------


@pytest.fixture
def ip():
    pytest.importorskip("IPython")
    from IPython.testing.globalipapp import get_ipython

    shell = get_ipython()
    shell.run_line_magic("load_ext", "memlens")
    yield shell
    memlens.stop()


def test_memit_line_and_cell(ip, capsys):
    ip.run_line_magic("memit", "x = [0] * 5_000_000")
    out = capsys.readouterr().out.strip()
    assert out.startswith("peak memory: ") and out.endswith("increment: 38.15 MiB")
    ip.run_cell_magic("memit", "n = 5_000_000", "y = [0] * n\ndel y")
    out = capsys.readouterr().out.strip()
    assert out.endswith("increment: 38.15 MiB")  # the peak, though y is gone after
    ip.user_ns.pop("x")


def test_memit_of_a_profiled_function():
    # GIVEN a profiled function (as %mlprun leaves it) that builds and drops
    # a 38 MiB list
    from memlens.ipython import memit

    memlens.profile(build_and_delete)
    # WHEN %memit runs it (the line boundaries inside it restart the line
    # profiler's own peak)
    r = memit(compile("build_and_delete()", "<memit>", "exec"), globals())
    # THEN the statement's peak growth is still the list's
    assert r.peak_growth >= LIST_5M
    assert str(r).endswith("increment: 38.15 MiB")


def test_memit_refuses_a_sampled_tracer():
    from memlens.ipython import memit

    memlens.start(sample_bytes=4096)
    try:
        with pytest.raises(RuntimeError, match="sampled"):
            memit(compile("x = [0] * 1000", "<memit>", "exec"), {})
    finally:
        memlens.stop()


def test_equal_code_from_another_file_is_profiled_too():
    # GIVEN the same source compiled under two file names: equal code
    # objects (== ignores the file name), distinct functions
    src = "def twin():\n    return [0] * 100_000\n"
    ns1, ns2 = {}, {}
    exec(compile(src, "<one>", "exec"), ns1)
    exec(compile(src, "<two>", "exec"), ns2)
    assert ns1["twin"].__code__ == ns2["twin"].__code__
    # WHEN both are profiled and the second runs
    memlens.profile(ns1["twin"])
    memlens.profile(ns2["twin"])
    ns2["twin"]()
    # THEN the second has its own table
    st = {s.lineno: s for s in memlens.line_stats(ns2["twin"])}
    assert st[2].increment >= 800_000


def test_mlprun_arguments():
    from memlens.ipython import _parse_mlprun

    assert _parse_mlprun("-f f f(3)") == (["f"], "f(3)")
    assert _parse_mlprun(" -f a.b -f c  x = a.b(c(1))") == (["a.b", "c"], "x = a.b(c(1))")
    assert _parse_mlprun("g(1)") == ([], "g(1)")


def test_mlprun(ip, capsys):
    ip.run_cell("def lp_g(n):\n    a = [0] * n\n    b = bytes(n)\n    del b\n    return a\n")
    capsys.readouterr()
    ip.run_line_magic("mlprun", "-f lp_g lp_g(5_000_000)")
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("Filename: ")
    assert rows[2].split()[:3] == ["Line", "#", "Mem"]
    a = [r for r in rows if "a = [0] * n" in r][0]
    assert a.split()[3:6] == ["38.1", "MiB", "1"]
    b = [r for r in rows if "del b" in r][0]
    assert b.split()[3:6] == ["-4.8", "MiB", "1"]


# ---- keep last: a function past line 256 ------------------------------------------


def past_256():
    x = 1  # P1
    y = x + 1  # P2
    while y < 5:  # P3
        y += 1  # P4
    return y  # P5


def test_lines_past_256_charge_nothing_for_the_event_machinery():
    # GIVEN a function whose lines allocate nothing (small ints are cached), at line numbers beyond
    # CPython's small-int cache (3.12+ passes them to the LINE callback as
    # int objects made for the call)
    assert line_of(past_256, "# P1") > 256
    memlens.profile(past_256)
    # WHEN it runs
    past_256()
    # THEN no line is charged any bytes
    stats = memlens.line_stats(past_256)
    assert len(stats) == 6
    for s in stats:
        assert (s.allocated, s.freed, s.increment, s.peak) == (0, 0, 0, 0), s


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.9-3.11: a C trace function")
def test_null_trace_for_the_benchmark_floor_leaves_the_profiler_alone():
    from memlens import _testcore

    # GIVEN the empty trace function bench_lines.py --floor times
    # WHEN it is installed and removed with the profiler off, it runs
    _testcore.lineprof_null_trace(True)
    try:
        assert build_and_delete() == 1
    finally:
        _testcore.lineprof_null_trace(False)
    # THEN while the profiler runs it refuses both ways, and the profile's
    # trace function keeps counting lines
    memlens.profile(build_and_delete)
    build_and_delete()
    with pytest.raises(RuntimeError, match="line profiler is running"):
        _testcore.lineprof_null_trace(True)
    with pytest.raises(RuntimeError, match="line profiler is running"):
        _testcore.lineprof_null_trace(False)
    build_and_delete()
    assert stats_by_line(build_and_delete)[line_of(build_and_delete, "# RET")].occurrences == 2
