"""What a capture writer is asked to store, from the command line: names
that are not UTF-8 (a script file name with a Latin-1 byte, an argument
that is not text).  ``memlens run`` writes them, the capture keeps their
bytes, every report format shows them escaped.
"""

import gzip
import json
import os
import textwrap

import pytest

from memlens import capture

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
def test_every_report_format_escapes_the_latin1_name(run_memlens, latin1_capture, tmp_path, fmt):
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
