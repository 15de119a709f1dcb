"""Issue 19: the capture stays compact as stack counts grow (format 2.0,
deflated sections: csrc/capture/cap_format.h), exact on the way back, and
its deflated sections refused in one line when they lie."""

import struct
import zlib

import pytest

import memlens
from memlens import capture
from memlens.report import model

FUNCS = 500


def _program(stacks, filename="prog.py"):
    """Code making `stacks` distinct allocation stacks, as
    benchmarks/bench_reports.py does: FUNCS functions, each called from
    stacks/FUNCS call sites, each call keeping one small list."""
    lines = ["keep = []"]
    for i in range(FUNCS):
        lines.append(f"def f{i}():\n    keep.append([{i}] * {i % 13 + 1})")
    for j in range(max(1, stacks // FUNCS)):
        body = "\n".join(f"    f{i}()" for i in range(FUNCS))
        lines.append(f"def g{j}():\n{body}")
    lines.append("\n".join(f"g{j}()" for j in range(max(1, stacks // FUNCS))))
    return compile("\n".join(lines) + "\n", filename, "exec")


def _table(stacks, filename="prog.py"):
    code = _program(stacks, filename)
    ns = {}
    memlens.start(frames=8)
    try:
        exec(code, ns)
        table = capture.take_table()
    finally:
        memlens.stop()
    return table, ns


def _same(a, b):
    assert a.stacks() == b.stacks()
    assert (a.total, a.peak) == (b.total, b.peak)


@pytest.mark.parametrize("stacks", [500, 100_000])
def test_round_trip_is_exact_and_compact(tmp_path, capture_bytes, stacks):
    # GIVEN a table of `stacks` distinct stacks
    table, ns = _table(stacks)
    assert len(table.stacks()) >= stacks
    # WHEN written as a snapshot and as a run capture, and read back
    snap = tmp_path / "snap.mlcap"
    table.dump(snap)
    run = tmp_path / "run.mlcap"
    samples = struct.pack("<4Q", 1, 2, 3, 4) * 40
    capture.write(run, table, {"command": "memlens run prog.py"}, 5.0, samples, [("dict", 3, 300)])
    # THEN both give back the very stacks and figures
    _same(memlens.Snapshot.load(snap)._table, table)
    raw = capture.read(run)
    _same(raw.table, table)
    assert (raw.meta, raw.timeline, raw.classes) == ({"command": "memlens run prog.py"}, samples,
                                                      [("dict", 3, 300)])
    # and the big sections are stored deflated, in a 2.0 file
    data = snap.read_bytes()
    assert data[8:12] == struct.pack("<HH", 2, 0)
    flags = capture_bytes.flags(data)
    assert all(flags[t] == capture_bytes.DEFLATED for t in (b"FRMS", b"STKS", b"ALOC")), flags
    assert flags[b"META"] == flags[b"END "] == 0  # too small to gain; END as stored
    # and the capture stays small per stack: measured 10 bytes per program
    # stack (1.0 MB for 100k; 5 per table row), 216 before deflating
    # (4.13 MiB for 20k): 24 leaves room, and plain sections fail
    if stacks >= 100_000:
        assert len(data) <= 24 * stacks, len(data)
        assert len(run.read_bytes()) <= 24 * stacks
    del ns


def test_plain_old_captures_still_read(tmp_path, capture_bytes):
    # GIVEN the same table as memlens 1.1 and 1.0 wrote it (plain sections;
    # 1.0: no ALOC) and as a 2.0 file without zlib (plain sections)
    table, ns = _table(2000)
    path = tmp_path / "new.mlcap"
    table.dump(path)
    new = path.read_bytes()
    v11 = capture_bytes.inflate(new, (1, 1))
    assert set(capture_bytes.flags(v11).values()) == {0}
    v10 = bytearray(new[:8] + struct.pack("<HH", 1, 0))
    for tag, off, n in capture_bytes.sections(v11):
        if tag != b"ALOC":
            v10 += v11[off - 16:off + n]
    v20plain = capture_bytes.inflate(new)
    for name, data in (("v11", v11), ("v10", capture_bytes.reseal(bytes(v10))), ("v20", v20plain)):
        p = tmp_path / f"{name}.mlcap"
        p.write_bytes(data)
        back = memlens.Snapshot.load(p)._table
        # THEN each reads back the same stacks
        assert [r[:5] for r in back.stacks()] == [r[:5] for r in table.stacks()], name
        assert model.load(p).view_total("leaks") == model.load(path).view_total("leaks")
    del ns


def test_hostile_names_round_trip(tmp_path):
    # GIVEN stacks in files whose names are not UTF-8 (surrogate-escaped
    # bytes) and hold lone surrogates, many enough that STRS is deflated
    names = [f"caf\udce9{i}.py" for i in range(60)] + ["odd\ud800.py"]
    memlens.start(frames=4)
    try:
        keep = []
        for i, name in enumerate(names):
            ns = {}
            exec(compile(f"x = [0] * {i + 1}\n", name, "exec"), ns)
            keep.append(ns["x"])
        table = capture.take_table()
    finally:
        memlens.stop()
    path = tmp_path / "names.mlcap"
    table.dump(path)
    back = memlens.Snapshot.load(path)._table
    files = {f[0] for row in back.stacks() for f in row[0]}
    # THEN the escaped bytes come back exactly, the lone surrogate as its
    # escape (cap_format.h)
    assert {f"caf\udce9{i}.py" for i in range(60)} <= files
    assert "odd\\ud800.py" in files
    assert len(back.stacks()) == len(table.stacks())
    del keep


# -- hostile deflated sections ------------------------------------------------

def _capture_with(capture_bytes, stks_section, major=2):
    """A snapshot capture (header major.0) whose STKS section is
    `stks_section` (header included), resealed."""
    body = b"\x89MLNSCAP" + struct.pack("<HH", major, 0) + \
        struct.pack("<4sIQ", b"META", 0, 32) + bytes(32) + \
        struct.pack("<4sIQI", b"STRS", 0, 4, 0) + struct.pack("<4sIQI", b"FRMS", 0, 4, 0) + stks_section
    return body + struct.pack("<4sIQQ", b"END ", 0, 8, capture_bytes.fnv1a(body))


EMPTY_STKS = struct.pack("<I", 0)


def _hostile(capture_bytes):
    good = zlib.compress(EMPTY_STKS)
    d = capture_bytes.DEFLATED

    def raw(body, flags=d):
        return struct.pack("<4sIQ", b"STKS", flags, len(body)) + body

    return {
        "truncated stream": (raw(struct.pack("<Q", 4) + good[:-3]), "length mismatch|bad compressed"),
        "not zlib": (raw(struct.pack("<Q", 4) + b"\x00garbage, not deflate"), "bad compressed section"),
        "no declared length": (raw(b"\x78\x9c"), "short compressed section"),
        "declares more": (capture_bytes.deflated(b"STKS", EMPTY_STKS, declared=5), "length mismatch"),
        "declares less": (capture_bytes.deflated(b"STKS", EMPTY_STKS + bytes(8), declared=4),
                          "length mismatch"),
        "bytes after the stream": (raw(struct.pack("<Q", 4) + good + b"xx"), "length mismatch"),
        "zip bomb": (capture_bytes.deflated(b"STKS", EMPTY_STKS, declared=1 << 40),
                     "declares more than it can hold"),
        "unknown flag": (raw(struct.pack("<Q", 4) + good, flags=2), "bad section header"),
    }


@pytest.mark.parametrize("case", ["truncated stream", "not zlib", "no declared length", "declares more",
                                  "declares less", "bytes after the stream", "zip bomb", "unknown flag"])
def test_lying_deflated_sections_are_one_line_errors(tmp_path, capture_bytes, case):
    section, why = _hostile(capture_bytes)[case]
    path = tmp_path / "bad.mlcap"
    path.write_bytes(_capture_with(capture_bytes, section))
    for load in (memlens.Snapshot.load, model.load):
        with pytest.raises(ValueError, match=why) as e:
            load(path)
        assert "\n" not in str(e.value) and "not a valid memlens capture" in str(e.value)


def test_a_well_formed_deflated_section_reads(tmp_path, capture_bytes):
    # the hand-made file of the cases above, with an honest STKS: it loads
    path = tmp_path / "ok.mlcap"
    path.write_bytes(_capture_with(capture_bytes, capture_bytes.deflated(b"STKS", EMPTY_STKS)))
    assert memlens.Snapshot.load(path)._table.stacks() == []


def test_deflated_sections_need_major_2(tmp_path, capture_bytes):
    # a 1.x file never had flags: one there is corruption, as 1.x said
    path = tmp_path / "bad.mlcap"
    path.write_bytes(_capture_with(capture_bytes, capture_bytes.deflated(b"STKS", EMPTY_STKS), major=1))
    with pytest.raises(ValueError, match="bad section header"):
        memlens.Snapshot.load(path)


def test_a_real_zip_bomb_is_bounded(load_probe, tmp_path, capture_bytes):
    # GIVEN a section that truly inflates 1032-fold (zeros), 64 MiB from
    # 64 KiB: within deflate's limit, so inflated, then refused by the
    # parser; the reader never holds more than the declared length
    n = 64 << 20
    stks = capture_bytes.deflated(b"STKS", struct.pack("<I", 0xFFFFFFFF) + bytes(n - 4), level=9)
    path = tmp_path / "bomb.mlcap"
    path.write_bytes(_capture_with(capture_bytes, stks))
    exc, msg, took, grew = load_probe("model", path)
    assert exc == "CaptureError" and "bad stack table" in msg, msg
    assert grew < 200 << 20 and took < 10


def test_a_stream_longer_than_declared_is_not_inflated_past_it(load_probe, tmp_path, capture_bytes):
    # GIVEN a section declaring 4 bytes whose stream inflates to 64 MiB
    stks = capture_bytes.deflated(b"STKS", bytes(64 << 20), declared=4, level=9)
    path = tmp_path / "long.mlcap"
    path.write_bytes(_capture_with(capture_bytes, stks))
    # WHEN loaded, THEN refused in one line, having inflated only 4 bytes
    exc, msg, took, grew = load_probe("model", path)
    assert exc == "CaptureError" and "length mismatch" in msg, msg
    assert grew < 32 << 20


def test_writing_and_reading_leave_zlib_out_of_the_programs_modules(run_ok, tmp_path):
    # GIVEN a program that has not imported zlib, traced
    out = run_ok(f"""
        import sys, memlens
        memlens.start()
        keep = [bytearray(100) for _ in range(1000)]
        snap = memlens.take_snapshot()
        memlens.stop()
        before = "zlib" in sys.modules
        # WHEN its snapshot is written (deflated) and read back
        snap.dump({str(tmp_path / "s.mlcap")!r})
        back = memlens.Snapshot.load({str(tmp_path / "s.mlcap")!r})
        # THEN zlib was used, but the program still finds it not imported
        print(before, "zlib" in sys.modules, back.total == snap.total)
    """)
    assert out.split() == ["False", "False", "True"]
    assert (tmp_path / "s.mlcap").read_bytes()[8:10] == b"\x02\x00"  # format 2: deflated sections
