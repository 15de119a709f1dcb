"""pprof profiles as Go's own pprof reads them (`go tool pprof -raw`)."""

import gzip
import sys

from memlens.report import model, pprof

PROGRAM = """\
def keep():
    return bytearray(5_000_000)

def temp():
    t = bytearray(8_000_000)
    return len(t)

k = keep()
temp()
"""


def _line(samples, filename, lineno, index):
    return sum(v[index] for v, frames in samples if frames and frames[0][1].endswith(filename)
               and frames[0][2] == lineno)


def test_go_pprof_reads_a_runs_profile_exactly(tmp_path, run_memlens, go_pprof):
    # GIVEN a run that keeps a 5 MB buffer and frees an 8 MB one before exit
    (tmp_path / "p.py").write_text(PROGRAM)
    assert run_memlens("run", "-q", "-o", "c.mlcap", "p.py", cwd=tmp_path).returncode == 0
    r = run_memlens("report", "c.mlcap", "--format", "pprof", "-o", "p.pb.gz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # WHEN Go's pprof reads its profile
    types, samples = go_pprof(tmp_path / "p.pb.gz")
    # THEN it has the six sample types, and each buffer is where it was
    # made with its exact size (sys.getsizeof: the object and its buffer):
    # the kept one in use at exit and at the peak, the freed one only at
    # the peak; in all, in use at exit is the capture's total
    assert types == ["alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes",
                     "peak_objects/count", "peak_space/bytes"]
    inuse, peak, alloc = 3, 5, 1
    kept, freed = sys.getsizeof(bytearray(5_000_000)), sys.getsizeof(bytearray(8_000_000))
    assert _line(samples, "p.py", 2, inuse) == _line(samples, "p.py", 2, peak) == kept
    assert _line(samples, "p.py", 5, alloc) == _line(samples, "p.py", 5, peak) == freed
    assert _line(samples, "p.py", 5, inuse) == 0
    cap = model.load(tmp_path / "c.mlcap")
    assert sum(v[inuse] for v, _ in samples) == cap.total
    assert sum(v[peak] for v, _ in samples) == sum(s.peak_size for s in cap.stacks)


def test_go_pprof_reads_a_hand_built_profile(tmp_path, make_capture, go_pprof):
    # GIVEN the hand-built capture's profile
    path = tmp_path / "p.pb.gz"
    path.write_bytes(pprof.render(make_capture()))
    # THEN Go's pprof reads the figures it was given, stack by stack
    _, samples = go_pprof(path)
    got = {tuple((f, ln) for f, _, ln in frames): v for v, frames in samples}
    assert got[(("put", 20), ("<module>", 10))] == [5, 5000, 3, 3000, 5, 5000]
    assert got[(("load", 30), ("<module>", 10))] == [2, 8000, 0, 0, 2, 8000]
    assert got[(("<module>", 10),)] == [1, 100, 1, 100, 1, 100]
    assert gzip.decompress(path.read_bytes()) == pprof.encode_profile(make_capture())


def test_a_block_with_no_python_frame_is_not_dropped(tmp_path, go_pprof):
    # GIVEN a capture with a stack of no frames (a block allocated before
    # any Python frame: seen in a forked child on 3.9)
    from memlens.report.model import Capture, Frame, StackStat

    cap = Capture(stacks=[StackStat((), 456, 1, 456, 1), StackStat((Frame("/a.py", 3, "f"),), 100, 1, 100, 1)])
    path = tmp_path / "p.pb.gz"
    path.write_bytes(pprof.render(cap))
    # THEN Go's pprof keeps its bytes, on an "<unknown>" location as
    # tracemalloc names such blocks (a sample with no location was dropped)
    _, samples = go_pprof(path)
    assert sorted((v[3], [f for f, _, _ in frames]) for v, frames in samples) == [
        (100, ["f"]), (456, ["<unknown>"])]
