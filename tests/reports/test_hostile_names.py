"""Hostile input to the renderers: captures that amplify (one long name
repeated down a deep stack), names that would end the HTML report's
script, terminal escapes, and names that are not UTF-8 (lone surrogates).
Every format must stay bounded, render, and print nothing a terminal or a
parser would act on."""

import gzip
import json
import re
import struct

import pytest

from memlens.report import collapsed, html, jsonfmt, pprof, text
from memlens.report.model import Capture, ClassRow, Frame, Sample, StackStat

NAME = "/x/" + "a" * 100_000   # one 100 KB file name ...
DEPTH = 25_000                 # ... in a stack of 25,000 copies of one frame


def _section(tag, payload):
    return struct.pack("<4sIQ", tag, 0, len(payload)) + payload


def _hostile_capture(capture_bytes, name=NAME, depth=DEPTH):
    """A valid capture, byte by byte (csrc/capture/cap_format.c): one frame
    (`name`:7 f) and one stack of `depth` copies of it, 1000 B in 1 block
    at exit, 2000 B in 2 blocks at the peak."""
    strings = [name.encode(), b"f"]
    strs = struct.pack("<I", len(strings)) + b"".join(struct.pack("<I", len(s)) + s for s in strings)
    frms = struct.pack("<I", 1) + struct.pack("<IIi", 0, 1, 7)
    one = 1 << 16  # counts are in 1/65536 blocks
    stks = struct.pack("<I", 1) + struct.pack("<IQQQQ", depth, 1000, one, 2000, 2 * one) + \
        struct.pack("<I", 0) * depth
    meta = struct.pack("<QQQII", 1000, 2000, 0, depth, 0)
    body = b"\x89MLNSCAP" + struct.pack("<HH", 1, 1) + _section(b"META", meta) + \
        _section(b"STRS", strs) + _section(b"FRMS", frms) + _section(b"STKS", stks)
    return body + _section(b"END ", struct.pack("<Q", capture_bytes.fnv1a(body)))


# The hostile frame as the human formats show it: the middle of each long
# name cut out, and said how much.
_BASE = "a" * 70 + "[...99860 chars...]" + "a" * 70
_LABEL = _BASE + ":7 f"
_PATH = "/x/" + "a" * 67 + "[...99863 chars...]" + "a" * 70


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, capture_bytes):
    path = tmp_path_factory.mktemp("hostile") / "h.mlcap"
    path.write_bytes(_hostile_capture(capture_bytes))
    return path


# A child with a memory limit of its own (a bare MemoryError traceback is
# what the unbounded renderers gave): it loads the capture and renders
# every format under tracemalloc, and prints each one's peak and time.
_MEASURE = """
import json, resource, sys, time, tracemalloc
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from memlens.report import collapsed, html, jsonfmt, model, pprof, text
out = {}
for fmt in ("load", "text", "summary", "json", "html", "pprof", "collapsed"):
    tracemalloc.start()
    t0 = time.perf_counter()
    if fmt == "load":
        cap = model.load(sys.argv[1])
        r = ""
    elif fmt == "text":
        r = text.render(cap, "peak")
    elif fmt == "summary":
        r = text.summary(cap)
    elif fmt == "json":
        r = jsonfmt.render(cap)
    elif fmt == "html":
        r = html.render(cap)
    elif fmt == "pprof":
        r = pprof.render(cap)
    else:
        try:
            collapsed.render(cap, "peak")
            r = "rendered"
        except collapsed.OutputTooLarge as e:
            r = str(e)
    out[fmt] = [tracemalloc.get_traced_memory()[1], time.perf_counter() - t0,
                r if fmt == "collapsed" else len(r)]
    tracemalloc.stop()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_long_name_down_a_deep_stack_stays_bounded(hostile, run_python, tmp_path):
    # GIVEN a 200 KB capture whose one stack repeats a 100 KB name 25,000 times
    size = hostile.stat().st_size
    assert size < 210_000
    # WHEN a child with 1 GiB of address space loads it and renders each format
    proc = run_python("-c", _MEASURE, hostile, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    # THEN each step peaks at a small multiple of the file and takes well
    # under a second (unbounded, text took 2.4 GB and 9 s, collapsed 4.9 GB
    # and 21 s).  Loading peaks near 11x: the engine's TraceTable.stacks()
    # makes a (file, line, function) tuple per frame reference (4 bytes in
    # the file); json's indented list of frame ids is about as large.
    for fmt, (peak, seconds, _) in got.items():
        assert peak < 16 * size, (fmt, peak)
        assert seconds < 3, (fmt, seconds)
    # and the outputs are small: labels built once, frames referenced by id
    assert got["json"][2] < 2 * size and got["html"][2] < 2 * size and got["pprof"][2] < 5000
    # collapsed must repeat the name per frame: it refuses, with the figures
    assert got["collapsed"][2] == (
        "collapsed output would be 2500175005 bytes (2.3 GiB), over this capture's limit of "
        "16777216 bytes (16.0 MiB: the larger of 16 MiB and 64 times its 200072 bytes of stack "
        "tables); --format pprof or json store each frame once")


def test_text_report_of_a_deep_stack_shows_three_elided_frames(hostile, run_memlens, tmp_path):
    # WHEN the command renders the hostile capture as text
    proc = run_memlens("report", hostile, "--format", "text", timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # THEN the row shows the innermost frame and two callers, each name
    # elided in the middle, and the top line's path likewise
    assert proc.stdout.splitlines() == [
        "Peak traced memory: 2.0 KiB",
        "Still allocated at exit: 1000 B in 1 blocks from 1 stacks",
        "",
        "Top stacks at the peak: 2.0 KiB",
        "       bytes    blocks  location",
        f"     2.0 KiB         2  {_LABEL}  <- {_LABEL}  <- {_LABEL}  <- ...",
        "",
        "Top lines:",
        "       bytes    blocks  line",
        f"     2.0 KiB         2  {_PATH}:7 f",
    ]


def test_collapsed_refuses_past_its_bound_in_one_line(hostile, run_memlens, tmp_path):
    out = tmp_path / "out.folded"
    proc = run_memlens("report", hostile, "--format", "collapsed", "-o", out, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr == (
        "memlens report: error: collapsed output would be 2500175005 bytes (2.3 GiB), over this "
        "capture's limit of 16777216 bytes (16.0 MiB: the larger of 16 MiB and 64 times its 200072 "
        "bytes of stack tables); --format pprof or json store each frame once\n")
    assert not out.exists()


def _decode(b):
    out, i = {}, 0
    while i < len(b):
        key, i = _varint(b, i)
        if key & 7 == 0:
            v, i = _varint(b, i)
        else:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        out.setdefault(key >> 3, []).append(v)
    return out


def _varint(b, i):
    shift = value = 0
    while True:
        c = b[i]
        i += 1
        value |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return value, i


def _packed(b):
    vals, i = [], 0
    while i < len(b):
        v, i = _varint(b, i)
        vals.append(v)
    return vals


def test_pprof_names_each_frame_once(hostile, tmp_path, go_pprof):
    from memlens.report import model

    rendered = pprof.render(model.load(hostile))
    prof = _decode(gzip.decompress(rendered))
    # one function and one location, the name once in the string table,
    # and the sample's stack is 25,000 references to location 1
    assert len(prof[5]) == 1 and len(prof[4]) == 1
    assert [s for s in prof[6] if s.startswith(b"/x/")] == [NAME.encode()]
    (sample,) = prof[2]
    s = _decode(sample)
    assert _packed(s[1][0]) == [1] * DEPTH
    assert _packed(s[2][0]) == [2, 2000, 1, 1000, 2, 2000]  # no ALOC: allocated = max(peak, exit)
    # and Go's pprof reads it: one sample, 25,000 frames deep
    (tmp_path / "p.pb.gz").write_bytes(rendered)
    _, samples = go_pprof(tmp_path / "p.pb.gz")
    assert [(v, len(frames)) for v, frames in samples] == [([2, 2000, 1, 1000, 2, 2000], DEPTH)]


# ---- the HTML report ----------------------------------------------------

EVIL_FILE = "/app/</script><!--<script>x.py"
EVIL_FUNC = "f\u2028g</script>"


def _evil_capture(make_capture):
    """make_capture's model plus a stack in a file named to end or alter
    the script element, and a 5,000-frame stack under main.py:10."""
    cap = make_capture()
    main = make_capture.frames[0]
    evil = Frame(EVIL_FILE, 1, EVIL_FUNC)
    deep = tuple(Frame("/app/deep.py", i, "rec") for i in range(5000, 0, -1)) + (main,)
    cap.stacks += [StackStat((evil, main), 40, 1, 4000, 1), StackStat(deep, 500, 1, 500, 1)]
    return cap


def _payload(page):
    m = re.search(r'<script type="application/json" id="memlens-data">(.*?)</script>', page, re.S)
    return m.group(1)


def test_html_data_escapes_what_could_end_or_alter_the_script(make_capture):
    cap = _evil_capture(make_capture)
    page = html.render(cap)
    payload = _payload(page)
    # no character of the data can end the element or change the parser's state
    for ch in "<>&\u2028\u2029":
        assert ch not in payload
    # and the data is the JSON report, intact
    d = json.loads(payload)
    assert d["frames"] == jsonfmt.to_dict(cap)["frames"]
    assert {"file": EVIL_FILE, "line": 1, "function": EVIL_FUNC} in d["frames"]
    assert page.count("<script") == 2 and page.count("</script>") == 2


@pytest.mark.slow
def test_html_with_script_breaking_names_and_a_5000_frame_stack_runs(tmp_path, make_capture, dump_dom):
    # GIVEN the HTML report of a capture with a file named
    # "</script><!--<script>x.py", a function with U+2028 in it, and a stack
    # of 5,000 frames
    page = tmp_path / "r.html"
    page.write_text(html.render(_evil_capture(make_capture)), encoding="utf-8")
    # WHEN a browser loads it and runs the self-test
    dom = dump_dom(page.as_uri() + "#selftest")
    # THEN the script ran: the self-test passed (it zoomed, hovered,
    # searched, switched to the leaks view: 3000 + 100 + 40 + 500 bytes)
    assert 'id="selftest-result">PASS zoomed=&lt;module&gt; (main.py:10)' in dom, dom[-3000:]
    assert "leaks_bytes=3640" in dom
    assert 'id="peak-marker"' in dom
    # the flame graph stops at 1000 rows and says how many frames are left
    # (all, main.py:10, then 5,000 frames of deep.py)
    assert dom.count('class="fr') < 1200
    assert "... 4002 more frames: click a frame to zoom in" in dom
    # and the names are shown as text, the line separator escaped
    assert "<td>/app/&lt;/script&gt;&lt;!--&lt;script&gt;x.py:1</td><td>f\\u2028g&lt;/script&gt;</td>" in dom


# ---- terminal escapes ---------------------------------------------------

TITLE = "\x1b]0;pwned\x07"   # sets the terminal's title


def _escape_capture():
    f = Frame(f"/app/{TITLE}.py", 3, "g\r\v\f\u2028\x9b")
    main = Frame("/app/main.py", 1, "<module>")
    return Capture(stacks=[StackStat((f, main), 100, 1, 200, 2)], total=100, peak=200,
                   meta={"command": f"memlens run {TITLE}.py", "exit_code": "0", "python": "3.11\x1b[2J"},
                   classes=[ClassRow(f"app.{TITLE}", 1, 100)])


_SHOWN = "\\x1b]0;pwned\\x07.py:3 g\\x0d\\x0b\\x0c\\u2028\\u009b"


def test_text_report_and_summary_escape_control_characters():
    cap = _escape_capture()
    out = text.render(cap, "peak")
    assert out.splitlines() == [
        "memlens: memlens run \\x1b]0;pwned\\x07.py  (exit code 0, Python 3.11\\x1b[2J)",
        "Peak traced memory: 200 B",
        "Still allocated at exit: 100 B in 1 blocks from 1 stacks",
        "",
        "Top stacks at the peak: 200 B",
        "       bytes    blocks  location",
        f"       200 B         2  {_SHOWN}  <- main.py:1 <module>",
        "",
        "Top lines:",
        "       bytes    blocks  line",
        "       200 B         2  /app/\\x1b]0;pwned\\x07.py:3 g\\x0d\\x0b\\x0c\\u2028\\u009b",
        "",
        "Top classes by instance bytes at exit:",
        "       bytes  instances  class",
        "       100 B          1  app.\\x1b]0;pwned\\x07",
    ]
    summary = text.summary(cap)
    assert f"       100 B         1  {_SHOWN}  <- main.py:1 <module>" in summary.splitlines()
    for bad in "\x1b\x07\r\v\f\u2028\x9b":
        assert bad not in out and bad not in summary


def test_collapsed_escapes_controls_and_the_frame_separator():
    cap = Capture(stacks=[StackStat((Frame("/app/a;b\r.py", 3, "f\v\f\u2028 x;y"),), 100, 1, 100, 1)])
    assert collapsed.render(cap, "leaks") == "f\\x0b\\x0c\\u2028 x\\x3by (a\\x3bb\\x0d.py:3) 100\n"


@pytest.mark.slow
def test_run_summary_and_report_print_no_escape_from_a_name(tmp_path, run_memlens, write):
    # GIVEN a program whose code comes from a "file" whose name sets the
    # terminal's title
    write(tmp_path / "app.py", f"""\
        src = "def make():\\n    return [bytearray(1000) for _ in range(200)]\\n"
        ns = {{}}
        exec(compile(src, {'/tmp/' + TITLE + '.py'!r}, "exec"), ns)
        keep = ns["make"]()
        """)
    # WHEN memlens runs it and prints the summary, and renders the capture
    run = run_memlens("run", "-o", tmp_path / "c.mlcap", tmp_path / "app.py", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    report = run_memlens("report", tmp_path / "c.mlcap", "--view", "leaks", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    # THEN the name is shown escaped, and neither ESC nor BEL is printed
    assert "\\x1b]0;pwned\\x07.py:2 " in run.stderr and "\\x1b]0;pwned\\x07.py:2 " in report.stdout
    for out in (run.stderr, report.stdout):
        assert "\x1b" not in out and "\x07" not in out


# ---- names that are not UTF-8 ---------------------------------------------

def _surrogate_capture():
    """Names as surrogateescape decodes bytes that are not UTF-8 (0xff,
    0x80), and a lone high surrogate."""
    f = Frame("/app/\udcff.py", 1, "f\udc80")
    g = Frame("/app/main.py", 2, "<module>\ud800")
    return Capture(stacks=[StackStat((f, g), 100, 1, 200, 2, 300, 3)], total=100, peak=200,
                   meta={"command": "memlens run \udcff.py", "python": "3.11", "duration_s": "1.0"},
                   interval_ms=10.0, timeline=[Sample(0.0, 0, 0, 0), Sample(1.0, 100, 200, 0)],
                   classes=[ClassRow("C\udcfe", 1, 100)])


def test_every_renderer_takes_names_that_are_not_utf8():
    cap = _surrogate_capture()
    # text: escaped as the bytes they stand for
    out = text.render(cap, "peak")
    assert "       200 B         2  \\xff.py:1 f\\x80  <- main.py:2 <module>\\ud800" in out.splitlines()
    assert "memlens: memlens run \\xff.py  (1.00 s, Python 3.11)" in out.splitlines()
    assert "       100 B          1  C\\xfe" in out.splitlines()
    out.encode("utf-8")
    text.summary(cap).encode("utf-8")
    # JSON: \udcff escapes are valid JSON text; they read back as the same str
    out = jsonfmt.render(cap)
    assert out.isascii()
    d = json.loads(out)
    assert [f["file"] for f in d["frames"]] == ["/app/\udcff.py", "/app/main.py"]
    assert d["meta"]["command"] == "memlens run \udcff.py" and d["classes"][0]["name"] == "C\udcfe"
    # HTML: a page that encodes as UTF-8, the title escaped
    page = html.render(cap)
    page.encode("utf-8")
    assert "<title>memlens: memlens run \\xff.py</title>" in page
    # collapsed: escaped like text
    assert collapsed.render(cap, "peak") == "<module>\\ud800 (main.py:2);f\\x80 (\\xff.py:1) 200\n"
    # pprof: strings are valid UTF-8, the surrogates escaped as in text
    prof = _decode(gzip.decompress(pprof.render(cap)))
    strings = [s.decode("utf-8") for s in prof[6]]
    assert "/app/\\xff.py" in strings and "f\\x80" in strings and "<module>\\ud800" in strings
