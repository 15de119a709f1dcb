"""memlens.capture: the one module through which the CLI and the report
model reach the engine's capture format and timeline sampler."""

import os
import struct

import pytest

import memlens
from memlens import capture
from memlens.report import model


def test_round_trip_through_the_facade(tmp_path):
    # GIVEN a table of a short exact trace and a hand-made one-sample timeline
    memlens.start(frames=4)
    try:
        keep = [bytearray(1000) for _ in range(10)]
        table = capture.take_table()
    finally:
        memlens.stop()
    samples = struct.pack("<4Q", 5_000_000, 12000, 15000, 1 << 20)
    path = tmp_path / "run.mlcap"
    # WHEN it is written and read back
    capture.write(path, table, {"command": "memlens run x.py", "exit_code": "3"}, 10.0, samples,
                  [("app.Entry", 3, 3000)])
    raw = capture.read(path)
    # THEN every part comes back as written
    assert raw.meta == {"command": "memlens run x.py", "exit_code": "3"}
    assert (raw.interval_ms, raw.timeline, raw.classes) == (10.0, samples, [("app.Entry", 3, 3000)])
    assert (raw.table.total, raw.table.peak, raw.table.nstacks) == (table.total, table.peak, table.nstacks)
    # and the report model builds on it
    cap = model.load(path)
    assert cap.timeline == [model.Sample(0.005, 12000, 15000, 1 << 20)]
    assert cap.meta["exit_code"] == "3" and cap.classes == [model.ClassRow("app.Entry", 3, 3000)]
    del keep


def test_read_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.mlcap"
    bad.write_bytes(b"not a capture at all, not even close" * 4)
    with pytest.raises(capture.CaptureError) as e:
        capture.read(bad)
    assert not isinstance(e.value, capture.CaptureReadError)
    assert str(e.value) == f"{bad}: not a valid memlens capture file (bad magic header)"
    missing = tmp_path / "missing.mlcap"
    with pytest.raises(capture.CaptureReadError) as e:
        capture.read(missing)
    assert str(e.value) == f"{missing}: cannot read: No such file or directory"
    # the report model raises the same classes
    assert model.CaptureError is capture.CaptureError and model.CaptureReadError is capture.CaptureReadError


def test_write_into_a_missing_directory_is_an_oserror(tmp_path):
    memlens.start(frames=1)
    try:
        table = capture.take_table()
    finally:
        memlens.stop()
    with pytest.raises(OSError):
        capture.write(tmp_path / "no" / "such" / "dir.mlcap", table, {}, 10.0, b"", None)
    assert not os.path.exists(tmp_path / "no")


def test_nothing_running():
    assert not memlens.is_tracing()
    assert capture.take_table() is None
    assert capture.stop_timeline() == (0.0, b"", b"")


def _make_in_many_stacks(n):
    keep = []
    for i in range(n):
        ns = {}
        exec(compile(f"def f():\n    return [0] * {i % 7 + 1}\n\nx = f()\n", f"gen{i % 50}.py", "exec"), ns)
        keep.append(ns["x"])
    return keep


def test_stacks_share_one_tuple_per_distinct_frame(tmp_path):
    # GIVEN a table of many stacks over fewer distinct frames, written and
    # read back
    memlens.start(frames=8)
    try:
        keep = _make_in_many_stacks(2000)
        table = capture.take_table()
    finally:
        memlens.stop()
    path = tmp_path / "run.mlcap"
    capture.write(path, table, {}, 0.0, b"")
    for t in (table, capture.read(path).table):
        rows = t.stacks()
        # THEN each distinct (file, line, function) is one tuple object,
        # whatever number of stacks hold it (a report's memory per stack
        # was mostly these tuples)
        occurrences = [f for row in rows for f in row[0]]
        distinct = set(occurrences)
        assert len(occurrences) > 2 * len(distinct)
        assert len({id(f) for f in occurrences}) == len(distinct)
        assert all(type(f) is tuple and len(f) == 3 for f in distinct)
        # and the report model merges them into one Frame each, the figures
        # unchanged: every stack's bytes are in it once
        cap = model.load(path)
        assert sum(s.size for s in cap.stacks) == sum(row[1] for row in rows) == t.total
        frames = [f for s in cap.stacks for f in s.frames]
        assert len({id(f) for f in frames}) == len(set(frames))
    del keep
