"""Run capture files: round trip, and corrupt/truncated/foreign files give
a one-line ValueError (CLI: one line, non-zero exit), never a crash."""

import inspect
import os
import struct
import subprocess
import sys
import textwrap

import pytest

import memlens
from memlens import _core
from memlens.report import model


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("cap") / "c.mlcap"
    memlens.start(frames=4)
    _core.timeline_start(1.0)
    keep = [bytearray(1000) for _ in range(50)]
    interval, tl = _core.timeline_stop()
    table = _core.trace_take_snapshot()
    memlens.stop()
    del keep
    _core.cap_run_write(str(path), table, {"command": "memlens run x.py", "exit_code": "0"},
                        interval, tl, [("app.Thing", 5, 280), ("dict", 2, 368)])
    return path


def test_round_trip(capture, capture_bytes):
    table, meta, interval, tl, classes = _core.cap_run_read(str(capture))
    assert meta == {"command": "memlens run x.py", "exit_code": "0"}
    assert interval == 1.0 and len(tl) % 32 == 0 and len(tl) >= 64
    assert classes == [("app.Thing", 5, 280), ("dict", 2, 368)]
    cap = model.load(capture)
    assert cap.classes[0].name == "app.Thing"
    assert cap.view_total("leaks") >= 50 * 1000
    # a run capture is still a snapshot file for memlens.Snapshot.load
    snap = memlens.Snapshot.load(capture)
    assert snap.total == table.total and snap.peak == table.peak
    assert [t for t, _, _ in capture_bytes.sections(capture.read_bytes())] == \
        [b"META", b"STRS", b"FRMS", b"STKS", b"ALOC", b"RUNM", b"TMLN", b"CLSS", b"END "]
    # format 2.0 (deflated sections; since 1.1 cumulative per-stack totals,
    # so the allocated view is exact)
    assert capture.read_bytes()[8:12] == b"\x02\x00\x00\x00"
    assert cap.allocated_exact
    assert all(s.alloc_size >= max(s.size, s.peak_size) for s in cap.stacks)


def test_plain_snapshot_reads_as_a_capture(tmp_path):
    with memlens.trace(frames=2) as t:
        keep = bytearray(10_000)
    t.snapshot.dump(tmp_path / "s.mlcap")
    cap = model.load(tmp_path / "s.mlcap")
    assert cap.meta == {} and cap.timeline == [] and cap.classes is None
    assert cap.total == t.snapshot.total
    del keep


def test_capture_size_is_aggregated(tmp_path):
    # 200k allocations from one line make one stack, not 200k records.
    memlens.start(frames=4)
    _core.timeline_start(1.0)
    for _ in range(200_000):
        bytearray(100)
    interval, tl = _core.timeline_stop()
    table = _core.trace_take_snapshot()
    memlens.stop()
    _core.cap_run_write(str(tmp_path / "c.mlcap"), table, {}, interval, tl, None)
    assert os.path.getsize(tmp_path / "c.mlcap") < 64 * 1024


FUZZ = textwrap.dedent("""\
    import os, random, struct, sys
    from memlens import _core
    src, work = sys.argv[1], sys.argv[2]
    data = open(src, "rb").read()
    exec(sys.argv[3])  # the tests' CaptureBytes class (conftest.py)
    reseal, sections = CaptureBytes.reseal, CaptureBytes.sections
    def check(blob):
        with open(work, "wb") as f:
            f.write(blob)
        try:
            _core.cap_run_read(work)
        except ValueError as e:
            msg = str(e)
            assert "\\n" not in msg and "memlens capture" in msg, msg
            return 0
        return 1
    loaded = 0
    for n in range(len(data)):                  # every truncation
        loaded += check(data[:n])
    for i in range(len(data)):                  # every byte flipped
        b = bytearray(data); b[i] ^= 0x5A
        loaded += check(bytes(b))
    # Corrupt the run sections (and the allocated totals) but keep the checksum right, so the section
    # parsers themselves see the damage.
    rng = random.Random(1)
    run = [s for s in sections(data) if s[0] in (b"ALOC", b"RUNM", b"TMLN", b"CLSS")]
    ok = 0
    for _ in range(3000):
        tag, off, n = rng.choice(run)
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            b[off + rng.randrange(n)] = rng.randrange(256)
        ok += check(reseal(bytes(b)))
    assert loaded == 0, loaded
    print("ok", ok)
""")


@pytest.mark.parametrize("dummy", [0])
def test_fuzz_never_crashes(capture, tmp_path, dummy, capture_bytes):
    # In a subprocess: a crash fails this test, not the suite.
    script = tmp_path / "fuzz.py"
    script.write_text(FUZZ)
    r = subprocess.run([sys.executable, str(script), str(capture), str(tmp_path / "w.mlcap"),
                        inspect.getsource(capture_bytes)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("ok")


@pytest.mark.parametrize("blob, why", [
    (b"", "too short"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "bad magic"),
    (b"\x89MLNSCAP\x09\x00\x00\x00", "version 9 is not supported"),
])
def test_foreign_files_one_line_error(tmp_path, blob, why):
    p = tmp_path / "f.mlcap"
    p.write_bytes(blob)
    with pytest.raises(model.CaptureError, match=why):
        model.load(p)
    r = subprocess.run([sys.executable, "-m", "memlens", "report", str(p)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and why.split()[0] in r.stderr and "Traceback" not in r.stderr


def _write_with_meta(path, meta):
    memlens.start(frames=1)
    table = _core.trace_take_snapshot()
    memlens.stop()
    _core.cap_run_write(str(path), table, meta, 1.0, b"", None)


@pytest.mark.parametrize("key, value", [
    ("duration_s", "abc"), ("duration_s", "nan"), ("duration_s", "-1"), ("duration_s", "1e300"),
    ("start_time_ns", "zz"), ("start_time_ns", "-5"), ("start_time_ns", " 5"), ("start_time_ns", "9" * 30),
])
def test_bad_numeric_metadata_is_a_capture_error(tmp_path, key, value):
    # GIVEN a capture whose run metadata has a number that is not one
    p = tmp_path / "m.mlcap"
    _write_with_meta(p, {"command": "memlens run x.py", key: value})
    # THEN loading it says so in one line, naming the entry
    with pytest.raises(model.CaptureError, match=key) as e:
        model.load(p)
    assert "\n" not in str(e.value)


def test_good_numeric_metadata_is_parsed_once(tmp_path):
    p = tmp_path / "m.mlcap"
    _write_with_meta(p, {"duration_s": "1.250000", "start_time_ns": "1700000000000000000"})
    cap = model.load(p)
    assert cap.duration_s == 1.25 and cap.start_time_ns == 1700000000000000000
    assert model.load(tmp_path / "m.mlcap").meta["duration_s"] == "1.250000"


@pytest.mark.parametrize("fmt", ["text", "pprof"])
def test_bad_numeric_metadata_cli_one_line(tmp_path, fmt):
    # GIVEN a capture whose duration is not a number, WHEN reported as text
    # or pprof (the formats that use it), THEN one line and exit 1, not a
    # traceback
    p = tmp_path / "m.mlcap"
    _write_with_meta(p, {"command": "memlens run x.py", "duration_s": "abc"})
    r = subprocess.run([sys.executable, "-m", "memlens", "report", str(p), "--format", fmt,
                        "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1 and "duration_s" in r.stderr and "Traceback" not in r.stderr


def test_report_into_a_closed_pipe_is_quiet(tmp_path):
    # GIVEN a report bigger than a pipe buffer (a long timeline in JSON)
    p = tmp_path / "big.mlcap"
    memlens.start(frames=1)
    table = _core.trace_take_snapshot()
    memlens.stop()
    _core.cap_run_write(str(p), table, {}, 1.0, bytes(32 * 20000), None)
    # WHEN stdout is a pipe whose reader has gone (`| head` that finished)
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([sys.executable, "-m", "memlens", "report", str(p), "--format", "json"],
                              stdout=w, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(w)
    # THEN it stops quietly (no traceback, no "Exception ignored"), exit 1
    assert proc.stderr == "" and proc.returncode == 1


def _unreadable_file(tmp_path):
    """A path that is a file but cannot be read."""
    if os.geteuid() != 0:
        p = tmp_path / "locked.mlcap"
        p.write_bytes(b"")
        p.chmod(0)
        return str(p)
    # root reads any file; /proc/self/mem is a file whose read fails (EIO)
    if not os.path.isfile("/proc/self/mem"):
        pytest.skip("no unreadable file available to root here")
    return "/proc/self/mem"


def test_unreadable_capture_exits_2(tmp_path):
    # GIVEN an existing capture path that cannot be read (the README: an
    # unreadable capture exits 2; a corrupt one 1)
    path = _unreadable_file(tmp_path)
    with pytest.raises(model.CaptureReadError):
        model.load(path)
    cmds = [["report", path]]
    try:
        import matplotlib  # noqa: F401  (plot checks for it before reading)
        cmds.append(["plot", path, "-o", str(tmp_path / "p.png")])
    except ImportError:
        pass
    for cmd in cmds:
        r = subprocess.run([sys.executable, "-m", "memlens", *cmd], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 2, (cmd, r.stderr)
        assert r.stderr.count("\n") == 1 and "cannot read" in r.stderr and "Traceback" not in r.stderr


def test_truncated_capture_cli(capture, tmp_path):
    p = tmp_path / "t.mlcap"
    p.write_bytes(capture.read_bytes()[:-7])
    for cmd in (["report", str(p), "--format", "html", "-o", str(tmp_path / "r.html")],
                ["plot", str(p), "-o", str(tmp_path / "p.png")]):
        r = subprocess.run([sys.executable, "-m", "memlens", *cmd], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


def test_write_rejects_bad_arguments(tmp_path):
    memlens.start(frames=1)
    table = _core.trace_take_snapshot()
    memlens.stop()
    p = str(tmp_path / "x.mlcap")
    with pytest.raises(ValueError):
        _core.cap_run_write(p, table, {}, 1.0, b"123", None)
    with pytest.raises(TypeError):
        _core.cap_run_write(p, table, {1: "x"}, 1.0, b"", None)
    with pytest.raises(TypeError):
        _core.cap_run_write(p, table, {}, 1.0, b"", [("x", 1)])
    with pytest.raises(TypeError):
        _core.cap_run_write(p, object(), {}, 1.0, b"", None)
    with pytest.raises(OSError):
        _core.cap_run_write(str(tmp_path / "no" / "x"), table, {}, 1.0, b"", None)
    for bad in (float("nan"), -1.0, float("inf"), 1e13):
        with pytest.raises(ValueError, match="interval_ms"):
            _core.cap_run_write(p, table, {}, bad, b"", None)


@pytest.mark.parametrize("meta, classes, exc", [
    ({"k": 1}, None, TypeError),
    ({1: "v"}, None, TypeError),
    ({}, [("x", 1)], TypeError),
    ({}, [("x", "1", 2)], TypeError),
    ({}, [(b"x", 1, 2)], TypeError),
])
def test_a_refused_write_leaves_no_file(tmp_path, meta, classes, exc):
    memlens.start(frames=1)
    table = _core.trace_take_snapshot()
    memlens.stop()
    # GIVEN metadata or class rows that cannot be written
    p = tmp_path / "x.mlcap"
    # WHEN the write is refused, THEN no file is left behind (the snapshot
    # sections used to be on disk already, a valid snapshot-only file) ...
    with pytest.raises(exc):
        _core.cap_run_write(p, table, meta, 1.0, b"", classes)
    assert not p.exists()
    # ... and a file already there is left as it was
    p.write_bytes(b"old")
    with pytest.raises(exc):
        _core.cap_run_write(p, table, meta, 1.0, b"", classes)
    assert p.read_bytes() == b"old"


def test_write_to_a_file_that_cannot_be_read_back(tmp_path):
    # The run writer used to write the snapshot, read it back and write
    # again: /dev/null gave "snapshot writer produced a short file".
    memlens.start(frames=1)
    table = _core.trace_take_snapshot()
    memlens.stop()
    _core.cap_run_write(os.devnull, table, {"k": "v"}, 1.0, bytes(32), [("x", 1, 2)])


def test_write_takes_any_path_like(tmp_path):
    # GIVEN a table, WHEN written to a pathlib.Path (and to bytes)
    memlens.start(frames=1)
    table = _core.trace_take_snapshot()
    memlens.stop()
    _core.cap_run_write(tmp_path / "a.mlcap", table, {"k": "v"}, 2.0, b"", None)
    _core.cap_run_write(os.fsencode(tmp_path / "b.mlcap"), table, {}, 2.0, b"", None)
    # THEN both read back
    for name in ("a.mlcap", "b.mlcap"):
        _, meta, interval, _, _ = _core.cap_run_read(tmp_path / name)
        assert interval == 2.0
    assert _core.cap_run_read(tmp_path / "a.mlcap")[1] == {"k": "v"}


def test_capture_without_allocated_totals_keeps_the_caveat(capture, tmp_path, capture_bytes):
    # GIVEN a capture as memlens wrote it before cumulative totals (format
    # 1.0: no ALOC section)
    data = capture_bytes.inflate(capture.read_bytes())
    old = bytearray(data[:8] + b"\x01\x00\x00\x00")
    for tag, off, n in capture_bytes.sections(data):
        if tag not in (b"ALOC", b"END "):
            old += data[off - 16:off + n]
    old += struct.pack("<4sIQQ", b"END ", 0, 8, 0)
    p = tmp_path / "old.mlcap"
    p.write_bytes(capture_bytes.reseal(bytes(old)))
    # WHEN it is read and reported
    cap = model.load(p)
    # THEN it still loads, with the allocated view as the lower bound, and
    # every format says so
    assert not cap.allocated_exact and all(s.alloc_size is None for s in cap.stacks)
    assert cap.view_total("leaks") == model.load(capture).view_total("leaks")
    r = subprocess.run([sys.executable, "-m", "memlens", "report", str(p), "--view", "allocated"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "lower bound" in r.stdout
    r = subprocess.run([sys.executable, "-m", "memlens", "report", str(p), "--format", "json"],
                       capture_output=True, text=True, timeout=60)
    assert '"allocated_exact": false' in r.stdout
    # folded stacks have no room for it: the note goes to stderr, and only
    # for the allocated view of such a capture
    for path, view, noted in ((p, "allocated", True), (p, "leaks", False), (capture, "allocated", False)):
        r = subprocess.run([sys.executable, "-m", "memlens", "report", str(path), "--format", "collapsed",
                            "--view", view], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout and "lower bound" not in r.stdout
        assert ("lower bound" in r.stderr) == noted, (path, view, r.stderr)
