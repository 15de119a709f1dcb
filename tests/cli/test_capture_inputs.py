"""What a capture reader is handed and what a capture writer is asked to
store, from the command line and the report loader:

* names that are not UTF-8 (a script file name with a Latin-1 byte, an
  argument that is not text): ``memlens run`` writes them, the capture
  keeps their bytes, every report format shows them escaped;
* files that are not captures and must be refused in one line, quickly and
  without reading them whole: devices, FIFOs, directories, a 2 GB file of
  garbage, a valid header whose section claims 1 TB.

The readers run in a child process (hangs and runaway memory fail one test,
not the suite), under an address-space limit so that a reader that reads
without bound fails instead of taking the machine.
"""

import gzip
import json
import os
import struct
import textwrap

import pytest

from memlens import capture
from memlens.report import model

SCRIPT = os.fsdecode(b"caf\xe9.py")     # 'caf\udce9.py'
ARG = os.fsdecode(b"\xff")              # '\udcff'


# ---- names that are not UTF-8 -------------------------------------------

def _run_latin1_script(run_memlens, tmp_path, exit_code):
    script = tmp_path / SCRIPT
    script.write_text(textwrap.dedent(f"""\
        import sys
        def work():
            return [bytearray(1000) for _ in range(50)]
        keep = work()
        assert sys.argv[1:] == [{ARG!r}], sys.argv
        sys.exit({exit_code})
    """))
    out = tmp_path / "run.mlcap"
    r = run_memlens("run", "-q", "-o", out, script, ARG, cwd=tmp_path)
    return r, out, script


@pytest.mark.parametrize("exit_code", [0, 3])
def test_run_writes_names_that_are_not_utf8(run_memlens, tmp_path, exit_code):
    # GIVEN a script whose file name has the byte 0xe9 and an argument 0xff
    # WHEN it runs under memlens run
    r, out, script = _run_latin1_script(run_memlens, tmp_path, exit_code)
    # THEN the program's exit code survives, no traceback, and the capture
    # is written
    assert r.returncode == exit_code, r.stderr
    assert "Traceback" not in r.stderr and "UnicodeEncodeError" not in r.stderr
    assert out.is_file()
    # AND the names read back exactly as Python gave them to memlens
    raw = capture.read(out)
    assert raw.meta["argv"].split("\n") == [str(script), ARG]
    assert raw.meta["command"] == f"memlens run {script} {ARG}"
    assert raw.meta["exit_code"] == str(exit_code)
    files = {f[0] for row in raw.table.stacks() for f in row[0]}
    assert str(script) in files


FORMATS = ["text", "json", "html", "collapsed", "pprof"]


@pytest.fixture(scope="module")
def latin1_capture(run_python, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("latin1")
    r, out, script = _run_latin1_script(lambda *a, **kw: run_python("-m", "memlens", *a, **kw), tmp_path, 0)
    assert r.returncode == 0, r.stderr
    return out, script


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_report_format_escapes_the_latin1_name(run_memlens, latin1_capture, tmp_path, fmt, go_pprof):
    # GIVEN the capture of caf\xe9.py, WHEN reported in each format
    cap, script = latin1_capture
    dest = tmp_path / f"report.{fmt}"
    r = run_memlens("report", cap, "--format", fmt, "-o", dest)
    # THEN it renders, and the name is shown escaped as the byte it was
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    data = dest.read_bytes()
    if fmt == "pprof":
        data = gzip.decompress(data)
        # Go's pprof reads it, the name as the profile escaped it
        _, samples = go_pprof(dest)
        assert any(f.endswith("caf\\xe9.py") for _, frames in samples for _, f, _ in frames)
    if fmt == "json":
        # JSON keeps names as recorded: the \udce9 escape reads back as the
        # same str
        assert b"caf\\udce9.py" in data
        names = {f["file"] for f in json.loads(data)["frames"]}
        assert str(script) in names
    else:
        assert b"caf\\xe9.py" in data, data[:2000]
    if fmt in ("text", "html"):
        # the command line in the header: the argument's byte escaped too
        assert b"\\xff" in data
    if fmt != "pprof":
        data.decode("utf-8")  # every text format is valid UTF-8


# ---- files that are not captures ------------------------------------------




KINDS = ["devzero", "fifo", "directory", "sparse-garbage", "sparse-huge-section"]
# What a loader raises: OSError (memlens.Snapshot.load) or its one-line
# CaptureReadError (the report model) for what cannot be read as a file,
# ValueError / CaptureError for a file that is not a valid capture.
UNREADABLE = {"devzero", "fifo", "directory"}


@pytest.mark.parametrize("kind", KINDS)
def test_report_loader_refuses_promptly_in_one_line(load_probe, hostile_file, tmp_path, kind):
    # GIVEN something that is not a capture, WHEN the report model loads it
    path, why = hostile_file(kind, tmp_path)
    exc, msg, took, grew = load_probe("model", path)
    # THEN one line saying why, fast, without reading the file whole
    assert exc == ("CaptureReadError" if kind in UNREADABLE else "CaptureError"), msg
    assert why in msg and "\n" not in msg and msg.startswith(path)
    assert took < 1.0, took
    assert grew < 50 << 20, grew


@pytest.mark.parametrize("kind", KINDS)
def test_report_command_refuses_promptly_in_one_line(run_python, hostile_file, tmp_path, kind, sanitized):
    # GIVEN something that is not a capture, WHEN `memlens report` is given it
    path, _ = hostile_file(kind, tmp_path)
    # (a parent of its own, so that RUSAGE_CHILDREN is memlens' alone)
    parent = textwrap.dedent("""\
        import json, resource, subprocess, sys, time
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "memlens", "report", sys.argv[1]],
                           capture_output=True, text=True, timeout=30)
        took = time.monotonic() - t0
        grew = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        print(json.dumps([r.returncode, r.stdout, r.stderr, took, grew]))
    """)
    r = run_python("-c", parent, path, timeout=60)
    assert r.returncode == 0, r.stderr
    code, out, err, took, grew = json.loads(r.stdout)
    # THEN one line and no traceback: exit 2 for what cannot be read as a
    # file, 1 for a file that is not a valid capture
    assert code == (2 if kind in UNREADABLE else 1), err
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert took < 10.0, took  # the interpreter's start included
    # The whole process, imports included: 16 MiB here.  Under ASan every
    # block the imports free stays in its 256 MiB quarantine, so the bound
    # there only says that the file (2 GB sparse, /dev/zero) was not read.
    assert grew < (400 if sanitized else 100) << 20, grew


def test_a_capture_that_lies_about_its_counts_allocates_little(load_probe, tmp_path, capture_bytes):
    # GIVEN a capture whose string table claims 2**32-1 strings in a 4-byte
    # section (each string needs at least its 4-byte length)
    header = b"\x89MLNSCAP" + struct.pack("<HH", 1, 1)
    body = header + struct.pack("<4sIQ", b"META", 0, 32) + bytes(32) + \
        struct.pack("<4sIQI", b"STRS", 0, 4, 0xFFFFFFFF) + \
        struct.pack("<4sIQI", b"FRMS", 0, 4, 0) + struct.pack("<4sIQI", b"STKS", 0, 4, 0)
    path = tmp_path / "lies.mlcap"
    path.write_bytes(body + struct.pack("<4sIQQ", b"END ", 0, 8, capture_bytes.fnv1a(body)))
    # WHEN loaded, THEN refused in one line, with nothing allocated for them
    exc, msg, took, grew = load_probe("model", path)
    assert exc == "CaptureError" and "bad string table" in msg, msg
    assert grew < 50 << 20


def test_unreadable_capture_still_says_cannot_read(tmp_path):
    # the one-line form of CaptureReadError is unchanged for ordinary errors
    missing = tmp_path / "missing.mlcap"
    with pytest.raises(model.CaptureReadError, match="cannot read: No such file or directory"):
        model.load(missing)
