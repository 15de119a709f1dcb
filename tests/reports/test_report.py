"""Report renderers, tested on a hand-built model (no tracer), plus the
HTML report in a real headless browser."""

import gzip
import json
import os
import sys

import pytest

from memlens.report import collapsed, html, jsonfmt, pprof, text
from memlens.report.model import Capture, Frame, StackStat


def test_views_select_the_right_numbers(make_capture):
    cap = make_capture()
    assert [(s.frames[0].function, b, n) for s, b, n in cap.view("peak")] == \
        [("load", 8000, 2), ("put", 5000, 5), ("<module>", 100, 1)]
    assert [(s.frames[0].function, b, n) for s, b, n in cap.view("leaks")] == \
        [("put", 3000, 3), ("<module>", 100, 1)]
    # without cumulative totals "allocated" is max(peak, exit) per stack
    assert not cap.allocated_exact
    assert cap.view_total("allocated") == 13100
    assert cap.peak_time == 0.5


def test_text_report_tables(make_capture):
    out = text.render(make_capture(), "leaks")
    assert "Peak traced memory: 12.8 KiB at 0.50 s" in out
    assert "Still allocated at exit: 3.0 KiB in 4 blocks from 2 stacks" in out
    rows = [l.split() for l in out.splitlines()]
    assert ["2.9", "KiB", "3", "cache.py:20", "put", "<-", "main.py:10", "<module>"] in rows
    assert "app.Entry" in out
    assert "Top classes" not in text.render(make_capture(classes=False), "peak")
    with pytest.raises(ValueError):
        text.render(make_capture(), "bogus")


def test_text_top_lines_show_short_paths(tmp_path, monkeypatch):
    # GIVEN lines in a file under the current directory, one under a
    # sys.path entry (as the stdlib is), one elsewhere and a frozen module
    lib = tmp_path / "lib"
    monkeypatch.setattr(sys, "path", [str(lib)] + sys.path)
    os.makedirs(tmp_path / "work")
    monkeypatch.chdir(tmp_path / "work")
    mine = Frame(str(tmp_path / "work" / "examples" / "app.py"), 39, "render")
    stdlib = Frame(str(lib / "json" / "encoder.py"), 258, "iterencode")
    other = Frame("/elsewhere/x.py", 5, "f")
    frozen = Frame("<frozen runpy>", 88, "_run_code")
    cap = Capture(stacks=[StackStat((f,), 1000 - 10 * i, 1, 0, 0)
                          for i, f in enumerate((mine, stdlib, other, frozen))])
    # WHEN the text report lists the top lines
    out = text.render(cap, "leaks")
    rows = out.split("Top lines:")[1].splitlines()[2:]
    # THEN they read as the README shows them: relative to the current
    # directory, else the import path below sys.path, else in full
    assert [r[24:] for r in rows] == [
        f"examples{os.sep}app.py:39 render",
        f"...{os.sep}json{os.sep}encoder.py:258 iterencode",
        "/elsewhere/x.py:5 f",
        "<frozen runpy>:88 _run_code",
    ]


def test_summary_lists_peak_and_leaks(make_capture):
    out = text.summary(make_capture())
    peak_part, leak_part = out.split("Still allocated at exit (leak candidates):")
    assert "cache.py:30 load" in peak_part
    assert "cache.py:30 load" not in leak_part and "cache.py:20 put" in leak_part


def test_json_schema(make_capture):
    d = json.loads(jsonfmt.render(make_capture()))
    assert d["schema"] == "memlens.report" and d["version"] == 1
    assert d["totals"]["peak_bytes"] == 13100 and d["totals"]["exit_blocks"] == 4
    assert d["totals"]["peak_time_s"] == 0.5
    assert d["timeline"]["traced"] == [0, 13100, 3100]
    frames = d["frames"]
    s0 = d["stacks"][0]
    assert [frames[i]["function"] for i in s0["frames"]] == ["put", "<module>"]
    assert (s0["peak_bytes"], s0["exit_bytes"], s0["allocated_bytes"]) == (5000, 3000, 5000)
    assert d["classes"][0] == {"name": "app.Entry", "count": 3, "bytes": 3000}


def test_exact_allocated_view_has_no_caveat(make_capture):
    # GIVEN a capture with cumulative totals (churn: load allocated 80000 B
    # in total, of which 8000 B were live at the peak)
    cap = make_capture()
    for st, (asize, acount) in zip(cap.stacks, [(5000, 5), (80000, 20), (100, 1)]):
        st.alloc_size, st.alloc_count = asize, acount
    assert cap.allocated_exact
    # THEN the view uses them, and no format calls it a lower bound
    assert [(s.frames[0].function, b, n) for s, b, n in cap.view("allocated")] == \
        [("load", 80000, 20), ("put", 5000, 5), ("<module>", 100, 1)]
    out = text.render(cap, "allocated")
    assert "Allocated during the run: 83.1 KiB" in out and "lower bound" not in out
    assert json.loads(jsonfmt.render(cap))["totals"]["allocated_exact"] is True
    assert "lower bound" not in html.render(cap)
    assert 13 not in decode(gzip.decompress(pprof.render(cap)))
    # and without them, every format says so
    assert "lower bound" in text.render(make_capture(), "allocated")
    assert json.loads(jsonfmt.render(make_capture()))["totals"]["allocated_exact"] is False
    assert "lower bound" in html.render(make_capture())
    prof = decode(gzip.decompress(pprof.render(make_capture())))
    assert [b"lower bound" in prof[6][i] for i in prof[13]] == [True]


def test_collapsed_stacks(make_capture):
    out = collapsed.render(make_capture(), "peak")
    assert out.splitlines() == [
        "<module> (main.py:10) 100",
        "<module> (main.py:10);load (cache.py:30) 8000",
        "<module> (main.py:10);put (cache.py:20) 5000",
    ]
    assert collapsed.render(make_capture(), "leaks").splitlines() == [
        "<module> (main.py:10) 100",
        "<module> (main.py:10);put (cache.py:20) 3000",
    ]


# ---- a minimal protobuf decoder, independent of the encoder -------------

def _varint(b, i):
    shift = result = 0
    while True:
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return result, i


def decode(b):
    """{field: [values]}: ints for varints, bytes for length-delimited."""
    out = {}
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise AssertionError(f"unexpected wire type {wt}")
        out.setdefault(num, []).append(v)
    return out


def packed(b):
    vals, i = [], 0
    while i < len(b):
        v, i = _varint(b, i)
        vals.append(v)
    return vals


def test_pprof_profile_decodes(make_capture):
    raw = gzip.decompress(pprof.render(make_capture()))
    prof = decode(raw)
    strings = [s.decode() for s in prof[6]]
    assert strings[0] == ""
    types = [(strings[decode(t)[1][0]], strings[decode(t)[2][0]]) for t in prof[1]]
    assert types == [("alloc_objects", "count"), ("alloc_space", "bytes"),
                     ("inuse_objects", "count"), ("inuse_space", "bytes")]
    assert strings[prof[14][0]] == "inuse_space"
    funcs = {}
    for f in prof[5]:
        d = decode(f)
        funcs[d[1][0]] = (strings[d[2][0]], strings[d[4][0]])
    locs = {}
    for loc in prof[4]:
        d = decode(loc)
        line = decode(d[4][0])
        locs[d[1][0]] = (funcs[line[1][0]], line[2][0])
    samples = {}
    for s in prof[2]:
        d = decode(s)
        stack = tuple(locs[i] for i in packed(d[1][0]))
        samples[stack] = packed(d[2][0])
    put = ((("put", "/app/cache.py"), 20), (("<module>", "/app/main.py"), 10))
    load = ((("load", "/app/cache.py"), 30), (("<module>", "/app/main.py"), 10))
    assert samples[put] == [5, 5000, 3, 3000]
    assert samples[load] == [2, 8000, 0, 0]
    assert samples[((("<module>", "/app/main.py"), 10),)] == [1, 100, 1, 100]
    assert prof[10] == [1_500_000_000]


def test_html_is_self_contained(make_capture):
    page = html.render(make_capture())
    assert page.startswith("<!DOCTYPE html>")
    low = page.lower()
    for bad in ("src=\"http", "href=\"http", "src='http", "@import", "url(http", "cdn"):
        assert bad not in low
    assert "<script src" not in low and "<link" not in low
    # the data is embedded, and "</" cannot close the script element early
    evil = make_capture()
    evil.stacks[0] = StackStat((Frame("</script><b>x.py", 1, "f"),), 1, 1, 1, 1)
    assert "</script><b>" not in html.render(evil)


@pytest.mark.slow
def test_html_renders_and_zooms_in_a_browser(tmp_path, make_capture, dump_dom):
    # GIVEN the HTML report of a capture
    page = tmp_path / "r.html"
    page.write_text(html.render(make_capture()))
    # WHEN a headless browser loads it with the self-test, which clicks the
    # widest frame under the root
    dom = dump_dom(page.as_uri() + "#selftest")
    # THEN the flame graph drew frames, zoomed into the clicked one, and the
    # timeline and tables are there
    assert 'id="selftest-result">PASS zoomed=&lt;module&gt; (main.py:10)' in dom, dom[-2000:]
    assert "hover=true" in dom and "matches=0" not in dom
    assert "leaks_bytes=3100" in dom  # 3000 + 100 still allocated at exit
    assert dom.count('class="fr') >= 3
    assert 'id="peak-marker"' in dom
    assert "cache.py:20" in dom and "app.Entry" in dom


class _Stream:
    def __init__(self, tty):
        self.tty = tty
        self.text = ""

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_progress_only_on_a_terminal_and_only_when_slow():
    import time

    from memlens.cli.common import Progress

    tty, pipe, quick = _Stream(True), _Stream(False), _Stream(True)
    with Progress("rendering html", stream=tty, delay=0.05):
        time.sleep(0.3)
    with Progress("rendering html", stream=pipe, delay=0.05):
        time.sleep(0.3)
    with Progress("rendering html", stream=quick, delay=5):
        pass
    assert "memlens: rendering html..." in tty.text and tty.text.endswith("\r\033[K")
    assert pipe.text == "" and quick.text == ""


# ---- the Advice section (memlens run --advise) ------------------------------

def _advice_entry(**over):
    a = {"kind": "generator", "target": "prog.py:2", "saving": 3 * 2**20, "count": 1,
         "text": "line 2 builds a list <b>", "patch": "total = sum(x for x in r)",
         "location": "/p/prog.py:2", "blockers": [], "diff": "--- prog.py\n+++ prog.py\n"}
    a.update(over)
    return a


def test_advice_in_json_and_html(make_capture):
    # GIVEN a capture whose run metadata carries the advisor's suggestions
    cap = make_capture()
    advice = [_advice_entry(), _advice_entry(kind="weakref", target="m.CACHE", patch=None, diff=None,
                                             blockers=["x </pre><script>"])]
    cap = Capture(cap.stacks, cap.total, cap.peak, meta=dict(cap.meta, advice=json.dumps(advice)))
    # WHEN the json and HTML reports render it
    d = jsonfmt.to_dict(cap)
    page = html.render(cap)
    # THEN the json has them parsed (not as a raw metadata string) ...
    assert d["advice"] == advice and "advice" not in d["meta"]
    # ... and the HTML has an Advice section with each saving, patch and
    # diff, every text escaped
    section = page.split("<h2>Advice</h2>", 1)[1].split('<div id="classes">', 1)[0]
    assert "[generator] prog.py:2: save 3.0 MiB" in section
    assert "<pre>total = sum(x for x in r)</pre>" in section
    assert "<pre>--- prog.py\n+++ prog.py\n</pre>" in section
    assert "list &lt;b&gt;" in section and "x &lt;/pre&gt;&lt;script&gt;" in section
    assert "<script>" not in section


def test_no_advice_section_without_advice(make_capture):
    # GIVEN a capture of a run without --advise
    cap = make_capture()
    # THEN json says null and the page has no Advice section
    assert jsonfmt.to_dict(cap)["advice"] is None
    assert "<h2>Advice</h2>" not in html.render(cap)


@pytest.mark.parametrize("bad", ["not json", "{}", json.dumps([{"kind": "x"}]),
                                 json.dumps([_advice_entry(saving="12")]),
                                 json.dumps([_advice_entry(blockers=[3])])])
def test_malformed_advice_is_refused(make_capture, bad):
    # GIVEN run metadata whose advice entry is not what memlens writes
    cap = make_capture()
    # THEN the capture is refused with a ValueError naming the entry
    with pytest.raises(ValueError, match="advice"):
        Capture(cap.stacks, cap.total, cap.peak, meta=dict(cap.meta, advice=bad))


def test_view_counts_are_the_views_rows_and_blocks():
    # GIVEN a capture of many stacks, some empty in one view or another
    import random

    rnd = random.Random(7)
    names = [Frame(f"m{i}.py", rnd.randrange(1, 4), f"f{i % 3}") for i in range(12)]
    stacks = []
    for i in range(3000):
        frames = tuple(rnd.choice(names) for _ in range(rnd.randrange(1, 4)))
        size = rnd.choice([0, 64, 64, 128, 1000, 5000])
        stacks.append(StackStat(frames, size, rnd.choice([0, 1, 2]), rnd.choice([0, 64, 4096]), 1))
    cap = Capture(stacks=stacks)
    # THEN counting a view without sorting it gives the sorted view's figures
    for view in ("peak", "leaks", "allocated"):
        full = cap.view(view)
        assert cap.view_counts(view) == (len(full), sum(r[2] for r in full))
