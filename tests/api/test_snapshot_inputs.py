"""Snapshot.dump / Snapshot.load with hostile names and hostile files:
frames whose names are not UTF-8 round-trip exactly, and a path that is
not a capture is refused in one line, quickly, without reading it whole.
(The report loader and the CLI: tests/cli/test_capture_inputs.py.)"""

import os
import sys

import pytest

import memlens

FILE = "/app/" + os.fsdecode(b"caf\xe9.py")   # a Latin-1 byte, as os.fsdecode gives it
FUNC = os.fsdecode(b"f\xff\x80")               # two bytes that are not UTF-8


def _snapshot_of(filename, funcname):
    """A snapshot whose innermost frames are `funcname` in `filename`."""
    code = compile("def f():\n    return [bytearray(1000) for _ in range(20)]\n", filename, "exec")
    ns = {}
    exec(code, ns)
    f = ns["f"]
    changes = {"co_name": funcname}
    if sys.version_info >= (3, 11):
        changes["co_qualname"] = funcname
    f.__code__ = f.__code__.replace(**changes)
    memlens.start(frames=4)
    try:
        keep = f()
        snap = memlens.take_snapshot()
    finally:
        memlens.stop()
    del keep
    return snap


def _frames(snap):
    return {(fr.filename, fr.function) for tb, *_ in snap.stacks() for fr in tb}


def test_dump_and_load_round_trip_names_that_are_not_utf8(tmp_path, capture_bytes):
    # GIVEN a snapshot with a frame named by surrogate-escaped bytes
    snap = _snapshot_of(FILE, FUNC)
    assert (FILE, FUNC) in _frames(snap)
    # WHEN dumped and loaded
    path = tmp_path / "s.mlcap"
    snap.dump(path)
    back = memlens.Snapshot.load(path)
    # THEN every name is exactly as it was, and the file holds the bytes
    # the names stand for (in its string table, once inflated: deflated
    # when it is 256 bytes or more, as it is when the test process's other
    # frames are in the snapshot)
    assert _frames(back) == _frames(snap)
    assert snap.stacks() == back.stacks()
    data = capture_bytes.inflate(path.read_bytes())
    assert os.fsencode(FILE) in data and os.fsencode(FUNC) in data


def test_other_lone_surrogates_are_stored_backslash_escaped(tmp_path):
    # GIVEN names with lone surrogates that no bytes decode to (U+D800, a
    # high surrogate; U+DC7F, a low one below the surrogateescape range)
    snap = _snapshot_of("/app/\ud800.py", "g\udc7f")
    path = tmp_path / "s.mlcap"
    # WHEN dumped, THEN no error: they are stored as the text of their
    # escape, and read back so (the reports print them the same way)
    snap.dump(path)
    assert ("/app/\\ud800.py", "g\\udc7f") in _frames(memlens.Snapshot.load(path))


def test_dump_in_a_child_does_not_crash_on_surrogates(run_code, tmp_path):
    # the same through a fresh interpreter: no traceback, exit 0
    r = run_code(f"""
        import memlens
        code = compile("x = [bytearray(100) for _ in range(10)]", {FILE!r}, "exec")
        with memlens.trace(frames=2) as t:
            exec(code, {{}})
        t.snapshot.dump({str(tmp_path / 'c.mlcap')!r})
        s = memlens.Snapshot.load({str(tmp_path / 'c.mlcap')!r})
        assert any(f.filename == {FILE!r} for tb, *_ in s.stacks() for f in tb)
    """)
    assert r.returncode == 0, r.stderr


# ---- files that are not captures ------------------------------------------


@pytest.mark.parametrize("kind", ["devzero", "fifo", "directory", "sparse-garbage", "sparse-huge-section",
                                  "huge-section-small-file"])
def test_load_refuses_promptly_in_one_line(load_probe, hostile_file, tmp_path, kind):
    # GIVEN something that is not a capture
    path, why = hostile_file(kind, tmp_path)
    # WHEN Snapshot.load is given it (in a child: a hang or a runaway
    # allocation fails this test only)
    name, msg, took, grew = load_probe("snapshot", path)
    # THEN one line that says why, in well under a second, with little
    # memory
    expected = {"devzero": "OSError", "fifo": "OSError", "directory": "IsADirectoryError"}
    assert name == expected.get(kind, "ValueError"), msg
    assert why in msg and "\n" not in msg, msg
    assert took < 1.0, took
    assert grew < 50 << 20, grew
