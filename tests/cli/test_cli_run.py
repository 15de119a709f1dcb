"""`memlens run`: the program runs as under `python script.py`, its output
and exit code are preserved, and the capture's numbers match tracemalloc."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from memlens.report import model


IDENTITY = """\
    import json, sys
    print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__,
                      "file": __file__, "main_is_me": sys.modules["__main__"].__dict__ is globals(),
                      "spec": repr(__spec__), "package": __package__}))
"""


def test_script_sees_what_python_gives_it(tmp_path, run_memlens, run_python, write):
    # GIVEN a script in a subdirectory that prints its view of the world
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub / "who.py", IDENTITY)
    # WHEN it runs under python and under memlens run, from the parent dir
    plain = run_python("sub/who.py", "a", "--flag", "-m", cwd=tmp_path)
    ours = run_memlens("run", "-q", "-o", "c.mlcap", "sub/who.py", "a", "--flag", "-m", cwd=tmp_path)
    # THEN argv, sys.path[0], __name__, __file__ and __main__ are the same
    assert plain.returncode == 0 and ours.returncode == 0, ours.stderr
    assert json.loads(ours.stdout) == json.loads(plain.stdout)
    assert ours.stderr == ""


def test_module_sees_what_python_m_gives_it(tmp_path, run_memlens, run_python, write):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    write(pkg / "who.py", IDENTITY)
    plain = run_python("-m", "pkg.who", "x", "-q", cwd=tmp_path)
    ours = run_memlens("run", "-q", "-o", "c.mlcap", "-m", "pkg.who", "x", "-q", cwd=tmp_path)
    assert plain.returncode == 0 and ours.returncode == 0, ours.stderr
    a, b = json.loads(plain.stdout), json.loads(ours.stdout)
    # python -m runs in the real __main__ module with a spec; runpy's
    # run_module gives the same names, argv and path.
    for key in ("argv", "path0", "name", "file", "package"):
        assert a[key] == b[key], key


@pytest.mark.parametrize("body, code, err", [
    ("import sys; sys.exit(3)", 3, ""),
    ("import sys; sys.exit()", 0, ""),
    ("import sys; sys.exit('bye now')", 1, "bye now\n"),
    ("raise SystemExit(256 + 7)", 7, ""),
])
def test_exit_codes_are_the_programs(tmp_path, body, code, err, run_memlens, run_python, write):
    write(tmp_path / "p.py", "print('out')\n" + body + "\n")
    plain = run_python("p.py", cwd=tmp_path)
    ours = run_memlens("run", "-q", "-o", "c.mlcap", "p.py", cwd=tmp_path)
    assert plain.returncode == ours.returncode == code
    assert ours.stdout == plain.stdout == "out\n"
    assert ours.stderr == plain.stderr == err
    assert (tmp_path / "c.mlcap").exists()


def test_uncaught_exception_prints_traceback_and_writes_capture(tmp_path, run_memlens, run_python, write):
    write(tmp_path / "boom.py", """\
        import sys
        keep = [bytes(1000) for _ in range(100)]
        def f():
            raise ValueError("boom")
        print("before", file=sys.stderr)
        f()
    """)
    plain = run_python("boom.py", cwd=tmp_path)
    ours = run_memlens("run", "-o", "c.mlcap", "boom.py", cwd=tmp_path)
    assert ours.returncode == plain.returncode == 1
    # The program's stderr (traceback included) comes first, unchanged.
    assert ours.stderr.startswith(plain.stderr), ours.stderr
    assert "memlens" not in plain.stderr
    tb = ours.stderr[:len(plain.stderr)]
    assert "runpy" not in tb and "memlens" not in tb
    cap = model.load(tmp_path / "c.mlcap")
    assert cap.meta["exit_code"] == "1"
    lines = {(os.path.basename(f.filename), f.lineno): size for f, size, _ in cap.lines("leaks")}
    assert lines[("boom.py", 2)] >= 100 * 1000


def test_syntax_error_is_reported_like_python(tmp_path, run_memlens, run_python, write):
    write(tmp_path / "bad.py", "x = (\n")
    plain = run_python("bad.py", cwd=tmp_path)
    ours = run_memlens("run", "-q", "-o", "c.mlcap", "bad.py", cwd=tmp_path)
    assert ours.returncode == plain.returncode == 1
    assert "SyntaxError" in ours.stderr and "Traceback" not in ours.stderr


def test_ctrl_c_writes_the_capture_and_exits_130(tmp_path, child_env, write):
    write(tmp_path / "slow.py", """\
        import sys, time
        data = [bytearray(100_000) for _ in range(50)]
        print("ready", flush=True)
        time.sleep(60)
    """)
    # SIGINT as a terminal delivers it: a suite started in the background by
    # a non-interactive shell inherits SIGINT ignored, and Python keeps that
    # (the program would then sleep its 60 s and exit 0).
    # The reset happens in a small Python that then execs memlens, not in a
    # preexec_fn: Python code between fork and exec in this (threaded, under
    # ASan not fork-safe) test process can deadlock the child.
    reset_then_exec = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                       "os.execv(sys.executable, [sys.executable, '-m', 'memlens'] + sys.argv[1:])")
    p = subprocess.Popen([sys.executable, "-c", reset_then_exec, "run", "-o", "c.mlcap", "slow.py"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    assert p.stdout.readline() == "ready\n"
    time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130
    assert "KeyboardInterrupt" in err
    cap = model.load(tmp_path / "c.mlcap")
    assert cap.meta["exit_code"] == "130"
    assert cap.view_total("leaks") >= 50 * 100_000


def test_second_ctrl_c_while_the_capture_is_written_is_ignored(tmp_path, run_memlens, write):
    # GIVEN a program ended by Ctrl-C whose traceback printing (done by
    # memlens once the program has ended, just before the capture is
    # written) gets a second Ctrl-C
    write(tmp_path / "twice.py", """\
        import os, signal, sys
        data = [bytearray(100_000) for _ in range(50)]
        def hook(*exc):
            os.kill(os.getpid(), signal.SIGINT)
            sys.__excepthook__(*exc)
        sys.excepthook = hook
        raise KeyboardInterrupt
    """)
    r = run_memlens("run", "-q", "-o", "c.mlcap", "twice.py", cwd=tmp_path)
    # THEN the second one is ignored: the capture is written, exit 130
    assert r.returncode == 130, r.stderr
    assert "interrupted" not in r.stderr
    cap = model.load(tmp_path / "c.mlcap")
    assert cap.meta["exit_code"] == "130"
    assert cap.view_total("leaks") >= 50 * 100_000


def test_capture_that_cannot_be_read_back_is_one_line(tmp_path, run_memlens, write):
    # GIVEN a capture written where it cannot be read back for the summary
    write(tmp_path / "p.py", """\
        data = [bytearray(1000) for _ in range(10)]
        raise SystemExit(3)
    """)
    r = run_memlens("run", "-o", os.devnull, "p.py", cwd=tmp_path)
    # THEN one line instead of the summary, and the program's exit code
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "no summary" in r.stderr, r.stderr


def test_usage_errors_are_one_line_exit_2(tmp_path, run_memlens):
    cases = [
        ("run", "missing.py"),
        ("run", "--frames", "0", "x.py"),
        ("run", "--bogus", "x.py"),
        ("run", "-o", str(tmp_path / "nodir" / "c.mlcap"), "x.py"),
        ("run",),
        ("run", "-m", "no_such_module_xyz"),
        ("report", str(tmp_path / "missing.mlcap")),
        ("report", "--format", "xml", "c.mlcap"),
        ("plot", "c.mlcap", "-o", "out.jpg"),
        ("plot", str(tmp_path / "missing.mlcap"), "-o", "out.png"),
    ]
    (tmp_path / "x.py").write_text("")
    for args in cases:
        r = run_memlens(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and "error" in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr


GROUND_TRUTH = """\
    import json, os, sys
    if os.environ.get("TM"):
        import tracemalloc
        tracemalloc.start(1)
    big = bytearray(3_000_000)                          # line 5: kept
    names = ["n%07d" % i for i in range(20_000)]         # line 6: kept
    tmp = [bytes(5000) for _ in range(1000)]             # line 7: freed before exit
    del tmp
    if os.environ.get("TM"):
        snap = tracemalloc.take_snapshot()
        out = {}
        for st in snap.statistics("lineno"):
            f = st.traceback[0]
            if f.filename == __file__:
                out[f.lineno] = st.size
        print(json.dumps(out))
"""


def test_leaks_and_peak_match_tracemalloc(tmp_path, run_memlens, child_env, write):
    # GIVEN a program whose per-line live memory tracemalloc measures
    write(tmp_path / "gt.py", GROUND_TRUTH)
    env = child_env()
    env["TM"] = "1"
    truth = subprocess.run([sys.executable, "gt.py"], cwd=tmp_path, capture_output=True, text=True,
                           env=env, timeout=60)
    truth = {int(k): v for k, v in json.loads(truth.stdout).items()}
    # WHEN memlens runs it
    r = run_memlens("run", "-o", "c.mlcap", "gt.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cap = model.load(tmp_path / "c.mlcap")
    leaks = {f.lineno: size for f, size, _ in cap.lines("leaks") if f.filename.endswith("gt.py")}
    peak = {f.lineno: size for f, size, _ in cap.lines("peak") if f.filename.endswith("gt.py")}
    # THEN what is left at exit, per line, is what tracemalloc sees
    assert leaks[5] == truth[5]
    assert leaks[6] == truth[6]
    assert 7 not in leaks
    # and the peak picture holds the freed temporaries too (1000 blocks of
    # bytes(5000), each 5000 + the bytes header, plus the list)
    assert peak[7] >= 1000 * 5000
    assert cap.peak >= leaks[5] + leaks[6] + peak[7]
    # the summary names the peak and the leak lines
    assert "Peak traced memory" in r.stderr and "gt.py:5" in r.stderr and "gt.py:6" in r.stderr
    assert "capture written to" in r.stderr


def test_timeline_records_samples(tmp_path, run_memlens, write):
    write(tmp_path / "t.py", """\
        import time
        keep = []
        for i in range(20):
            keep.append(bytearray(200_000))
            time.sleep(0.01)
    """)
    r = run_memlens("run", "-q", "--interval", "5", "-o", "c.mlcap", "t.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cap = model.load(tmp_path / "c.mlcap")
    dur = float(cap.meta["duration_s"])
    # one sample at start, one per interval (fewer when a loaded machine
    # wakes the sampler late, never more), one at the end
    assert 5 <= len(cap.timeline) <= 3 + dur / 0.005
    ts = [s.t for s in cap.timeline]
    assert ts == sorted(ts)
    assert cap.timeline[-1].traced >= 20 * 200_000
    assert cap.timeline[-1].peak == max(s.peak for s in cap.timeline)
    assert all(s.rss > 0 for s in cap.timeline)
    # the traced bytes grow along the run
    assert cap.timeline[len(ts) // 2].traced < cap.timeline[-1].traced


def test_capture_has_the_census_table(tmp_path, run_memlens, write):
    write(tmp_path / "p.py", "class Kept:\n    pass\n\nkept = [Kept() for _ in range(1000)]\n")
    r = run_memlens("run", "-o", "c.mlcap", "p.py", cwd=tmp_path)
    cap = model.load(tmp_path / "c.mlcap")
    rows = {c.name: c for c in cap.classes}
    kept = [c for name, c in rows.items() if name.endswith("Kept")]
    assert kept and kept[0].count == 1000
    assert "Top classes" in r.stderr


@pytest.mark.parametrize("cmd", [[], ["run"], ["report"], ["plot"]])
def test_help(tmp_path, cmd, run_memlens):
    r = run_memlens(*cmd, "--help", cwd=tmp_path)
    assert r.returncode == 0 and "usage: memlens" in r.stdout


def test_console_script_and_module_agree(tmp_path):
    # `python -m memlens` and the `memlens` entry point are the same main()
    from memlens.__main__ import main

    assert main(["run", "--frames", "0", "x.py"]) == 2


FAKE_CENSUS = """\
import sys, memlens
from collections import namedtuple
Row = namedtuple("Row", "name count bytes")
class Census:
    def top(self, n):
        return [Row("app.Order", 1000, 96000), Row("dict", 10, 2720)][:n]
memlens.census = lambda: Census()
from memlens.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_census_rows_reach_summary_capture_and_reports(tmp_path, run_memlens, run_python):
    # GIVEN a census engine (stand-in with the agreed row fields)
    (tmp_path / "p.py").write_text("x = [1] * 10\n")
    (tmp_path / "with_census.py").write_text(FAKE_CENSUS)
    # WHEN memlens run uses it
    r = run_python("with_census.py", "run", "-o", "c.mlcap", "p.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # THEN the summary, the capture and the reports have the class table
    assert "Top classes by instance bytes at exit:" in r.stderr and "app.Order" in r.stderr
    cap = model.load(tmp_path / "c.mlcap")
    assert [(c.name, c.count, c.bytes) for c in cap.classes] == [("app.Order", 1000, 96000), ("dict", 10, 2720)]
    out = run_memlens("report", "c.mlcap", "--format", "json", cwd=tmp_path)
    assert json.loads(out.stdout)["classes"][0] == {"name": "app.Order", "count": 1000, "bytes": 96000}


def test_program_that_stops_the_tracer_gets_one_line(tmp_path, run_memlens, write):
    write(tmp_path / "p.py", "import memlens\nmemlens.stop()\nprint('ok')\n")
    r = run_memlens("run", "-o", "c.mlcap", "p.py", cwd=tmp_path)
    assert r.stdout == "ok\n" and r.returncode == 1
    assert r.stderr.count("\n") == 1 and "stopped the tracer" in r.stderr


def test_forked_child_that_returns_does_not_write_the_capture(tmp_path, run_memlens, write):
    write(tmp_path / "f.py", """\
        import os, sys
        pid = os.fork()
        if pid == 0:
            raise ValueError("in the child")
        _, st = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(st) if hasattr(os, "waitstatus_to_exitcode") else st >> 8)
    """)
    r = run_memlens("run", "-o", "c.mlcap", "f.py", cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout == "child exit 1\n"
    assert "ValueError: in the child" in r.stderr
    # one summary: the parent's
    assert r.stderr.count("capture written to") == 1
    assert model.load(tmp_path / "c.mlcap").meta["exit_code"] == "0"


def test_symlinked_script_path0_is_the_real_directory(tmp_path, run_memlens, run_python, write):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").mkdir()
    write(tmp_path / "real" / "who.py", IDENTITY)
    os.symlink(tmp_path / "real" / "who.py", tmp_path / "link" / "who.py")
    plain = run_python("link/who.py", cwd=tmp_path)
    ours = run_memlens("run", "-q", "-o", "c.mlcap", "link/who.py", cwd=tmp_path)
    assert json.loads(ours.stdout) == json.loads(plain.stdout)
    assert json.loads(ours.stdout)["path0"].endswith("real")


def test_sampled_run_says_numbers_are_estimates(tmp_path, run_memlens, write):
    write(tmp_path / "p.py", "keep = [bytearray(1000) for _ in range(5000)]\n")
    r = run_memlens("run", "--sample-bytes", "65536", "-o", "c.mlcap", "p.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "numbers are estimates" in r.stderr
    cap = model.load(tmp_path / "c.mlcap")
    assert cap.sample_bytes == 65536
    # an unbiased estimate of ~5 MB: well within a factor of two
    assert 2_500_000 < cap.view_total("leaks") < 10_000_000


def test_directory_with_main_runs_like_python(tmp_path, run_memlens, run_python, write):
    app = tmp_path / "app"
    app.mkdir()
    write(app / "__main__.py", IDENTITY)
    plain = run_python("app", "z", cwd=tmp_path)
    ours = run_memlens("run", "-q", "-o", "c.mlcap", "app", "z", cwd=tmp_path)
    assert ours.returncode == 0, ours.stderr
    a, b = json.loads(plain.stdout), json.loads(ours.stdout)
    for key in ("argv", "path0", "name", "file"):
        assert a[key] == b[key], key


def test_module_from_the_console_script(tmp_path, run_memlens, child_env, write):
    # The console script's sys.path[0] is its bin directory, not the cwd:
    # -m must still find modules in the current directory, as python -m does.
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    write(pkg / "who.py", IDENTITY)
    r = subprocess.run([sys.executable, "-c",
                        "import sys; sys.path[0] = '/nonexistent-bin'; from memlens.__main__ import main; "
                        "sys.exit(main(['run', '-q', '-o', 'c.mlcap', '-m', 'pkg.who', 'x']))"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60, env=child_env())
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["path0"] == str(tmp_path)
    missing = run_memlens("run", "-q", "-o", "c.mlcap", "-m", "pkg.nothere", cwd=tmp_path)
    assert missing.returncode == 1 and "No module named" in missing.stderr
    assert "Traceback" not in missing.stderr and missing.stderr.count("\n") == 1


CHURN = """\
    def churn(n):
        for _ in range(n):
            buf = bytes(100_000)
            del buf


    keep = [bytearray(1000) for _ in range(100)]
    churn(1000)
"""


def test_allocated_view_is_exact(tmp_path, run_memlens, write):
    # GIVEN a program that allocates and frees 1000 x bytes(100_000) on
    # line 3, and the size tracemalloc gives one such block
    import tracemalloc
    tracemalloc.start()
    here = sys._getframe().f_lineno + 1
    one = bytes(100_000)
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    del one
    (stat,) = [s for s in snap.statistics("lineno") if s.traceback[0].filename == __file__
               and s.traceback[0].lineno == here]
    block = stat.size
    # (3.9's eval loop adds one small block of its own on a loop body's line)
    extra = 1 if sys.version_info < (3, 10) else 0
    write(tmp_path / "churn.py", CHURN)
    # WHEN memlens runs it and reports the allocated view
    r = run_memlens("run", "-q", "-o", "c.mlcap", "churn.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = run_memlens("report", "c.mlcap", "--view", "allocated", cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    # THEN line 3 comes first with 1000 blocks, although nothing of it is
    # live at exit, and the view is exact (no lower-bound caveat)
    lines = rep.stdout.splitlines()
    head = lines.index(next(l for l in lines if l.startswith("Allocated during the run")))
    assert "lower bound" not in rep.stdout
    first = lines[head + 2].split()
    assert 1000 <= int(first[2]) <= 1000 + extra and first[3] == "churn.py:3" and first[4] == "churn"
    cap = model.load(tmp_path / "c.mlcap")
    assert cap.allocated_exact
    line3 = next((b, n) for f, b, n in cap.lines("allocated") if f.lineno == 3 and f.function == "churn")
    assert 1000 <= line3[1] <= 1000 + extra and abs(line3[0] - 1000 * block) <= 0.01 * 1000 * block
    assert 0 <= line3[0] - 1000 * block <= 64 * extra
    assert not [f for f, _, _ in cap.lines("leaks") if f.lineno == 3 and f.function == "churn"]
    # (the peak holds at most one of them)
    assert next(b for f, b, _ in cap.lines("peak") if f.lineno == 3 and f.function == "churn") == block
    js = json.loads(run_memlens("report", "c.mlcap", "--format", "json", cwd=tmp_path).stdout)
    assert js["totals"]["allocated_exact"] is True
    frames = js["frames"]
    top = max(js["stacks"], key=lambda s: s["allocated_bytes"])
    assert frames[top["frames"][0]]["line"] == 3
    assert (top["allocated_bytes"], top["allocated_blocks"]) == line3
    html = run_memlens("report", "c.mlcap", "--format", "html", "-o", "r.html", cwd=tmp_path)
    assert html.returncode == 0
    assert "lower bound" not in (tmp_path / "r.html").read_text()


# -- memlens run -c code --------------------------------------------------------

C_IDENTITY = """\
import json, sys
print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__,
                  "file": "__file__" in globals(), "spec": repr(__spec__), "package": __package__,
                  "loader": repr(__loader__), "main_is_me": sys.modules["__main__"].__dict__ is globals(),
                  "frame_file": sys._getframe().f_code.co_filename}))
"""


def test_c_code_sees_what_python_c_gives_it(tmp_path, run_memlens, run_python):
    # GIVEN code that prints its view of the world, and arguments that look
    # like options (after -c's code they are the program's, as for python)
    args = ("a", "--flag", "-m", "mod", "x.py")
    # WHEN it runs under python -c and under memlens run -c
    plain = run_python("-c", C_IDENTITY, *args, cwd=tmp_path)
    ours = run_memlens("run", "-q", "-o", "c.mlcap", "-c", C_IDENTITY, *args, cwd=tmp_path)
    # THEN argv (['-c', ...]), sys.path[0], __main__ and the file name are the same
    assert plain.returncode == 0 and ours.returncode == 0, ours.stderr
    assert json.loads(ours.stdout) == json.loads(plain.stdout)
    assert json.loads(ours.stdout)["argv"] == ["-c", *args]
    assert ours.stderr == ""


def test_c_capture_puts_the_allocation_on_its_string_line(tmp_path, run_memlens):
    # GIVEN code allocating 5 MB on its line 2, kept to the end, and 2 MB on
    # line 3, freed
    code = "import sys\nkeep = bytearray(5_000_000)\ntmp = bytearray(2_000_000); del tmp\n"
    # WHEN it runs under memlens run -c (the -cCODE spelling, as python's)
    r = run_memlens("run", "-q", "-o", "c.mlcap", "-c" + code, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # THEN the capture has them on <string> lines 2 and 3 exactly: the object
    # and its buffer, sys.getsizeof() bytes in 2 blocks
    cap = model.load(tmp_path / "c.mlcap")
    leaks = {(f.filename, f.lineno): (size, count) for f, size, count in cap.lines("leaks")}
    assert leaks[("<string>", 2)] == (sys.getsizeof(bytearray(5_000_000)), 2)
    assert ("<string>", 3) not in leaks
    peak = {(f.filename, f.lineno): size for f, size, _ in cap.lines("peak")}
    assert peak[("<string>", 3)] == sys.getsizeof(bytearray(2_000_000))
    assert cap.meta["command"] == "memlens run -c " + repr(code)
    assert cap.meta["argv"] == "-c"


@pytest.mark.parametrize("code, rc", [
    ("import sys; sys.exit(3)", 3),
    ("import sys; sys.exit('bye now')", 1),
    ("raise SystemExit(256 + 7)", 7),
    ("x = 1\n1 / 0\n", 1),
    ("x = 1\ny = = 2\n", 1),  # SyntaxError on line 2
])
def test_c_exit_codes_and_errors_are_pythons(tmp_path, code, rc, run_memlens, run_python):
    plain = run_python("-c", code, cwd=tmp_path)
    ours = run_memlens("run", "-q", "-o", "c.mlcap", "-c", code, cwd=tmp_path)
    assert ours.returncode == plain.returncode == rc
    # The traceback (without memlens' frames) or message is python's.
    assert ours.stderr == plain.stderr, ours.stderr
    assert "memlens" not in ours.stderr and "runpy" not in ours.stderr


def test_c_default_capture_name(tmp_path, run_memlens):
    r = run_memlens("run", "-q", "-c", "pass", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [p.name.split(".")[0] for p in tmp_path.glob("*.mlcap")] == ["memlens-c"]


@pytest.mark.parametrize("args, message", [
    (("run", "-c"), "memlens run: error: argument -c: expected the code to run\n"),
    (("run", "-q", "--frames", "4", "-c"), "memlens run: error: argument -c: expected the code to run\n"),
    (("advise", "-c"), "memlens advise: error: argument -c: expected the code to run\n"),
])
def test_c_without_code_is_a_one_line_usage_error(tmp_path, run_memlens, args, message):
    r = run_memlens(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == message


def test_c_and_another_program_cannot_go_together(tmp_path):
    # Through the command line everything after -c's code is the program's
    # (the tests above); a caller building the arguments itself gets one line.
    import argparse

    from memlens.cli import run
    from memlens.cli.common import UsageError

    args = argparse.Namespace(script="x.py", module=None, code="pass", args=[], rss=False, lines=False,
                              min_saving=run.DEFAULT_MIN_SAVING, advise=False, diff=False, frames=16,
                              sample_bytes=0, interval=10.0)
    with pytest.raises(UsageError, match="^a script and -c cannot go together: give one program$"):
        run._validate(run._Run(args))


_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def test_max_rss_is_the_programs_and_memlens_own_work_is_apart(tmp_path, run_python, write):
    # GIVEN a program of 20,000 distinct stacks holding little memory (the
    # shape of a real program's imports): reading its capture back for the
    # summary takes more memory than the program did
    write(tmp_path / "p.py", """\
        import resource
        keep = []
        for i in range(20000):
            ns = {}
            exec(compile(f"def f():\\n    return [0] * {i % 50 + 1}\\n", f"gen{i}.py", "exec"), ns)
            keep.append(ns["f"]())
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    """)
    # WHEN it runs under `memlens run`, from a parent that reads the whole
    # process's max RSS once it has ended
    write(tmp_path / "parent.py", """\
        import resource, subprocess, sys
        r = subprocess.run([sys.executable, "-m", "memlens", "run", "-o", "c.mlcap", "p.py"],
                           capture_output=True, text=True)
        sys.stderr.write(r.stderr)
        print(r.stdout.strip(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
    """)
    r = run_python("parent.py", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    program_max, process_max = map(int, r.stdout.split())
    # THEN the max RSS the summary shows is the timeline's, which ended with
    # the program: its own max RSS at its last line (and the few pages the
    # runner touches between that line and the last sample)
    cap = model.load(tmp_path / "c.mlcap")
    shown = max(s.rss for s in cap.timeline)
    assert cap.timeline[-1].t <= float(cap.meta["duration_s"]) + 0.05
    assert 0.8 * program_max <= shown <= program_max + (256 << 10)
    # AND memlens's own end-of-run work is the rest of the process's max
    # RSS, said apart (to the summary's one decimal; the process may touch
    # a few more pages after the summary is printed, at its exit: 79 KB
    # seen on 3.13)
    line = next(ln for ln in r.stderr.splitlines() if "memlens itself:" in ln)
    num, unit = line.split("memlens itself:")[1].split()[:2]
    own = float(num) * _UNITS[unit]
    rest = process_max - max(shown, program_max)
    assert rest > 1 << 20
    assert 0.95 * rest - 0.06 * _UNITS[unit] <= own <= rest + 0.06 * _UNITS[unit] + 8192


def _table(out, title):
    """The rows of the text table under the line starting with `title`:
    [(bytes text, blocks, location)]."""
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith(title)) + 2
    rows = []
    while i < len(lines) and lines[i].strip() and "more stacks" not in lines[i]:
        size, unit, count, location = lines[i].split(None, 3)
        rows.append((f"{size} {unit}", int(count), location))
        i += 1
    return rows


def test_imports_fold_into_one_frame_named_after_the_module(tmp_path, run_memlens, write):
    # GIVEN a program importing pkg.mod, which allocates 5 MiB at import
    # time, and the bytes tracemalloc gives that line
    import tracemalloc
    tracemalloc.start()
    here = sys._getframe().f_lineno + 1
    data = bytearray(5 * 1024 * 1024)
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    del data
    exact = sum(s.size for s in snap.statistics("lineno") if s.traceback[0].filename == __file__
                and s.traceback[0].lineno == here)
    (tmp_path / "pkg").mkdir()
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "mod.py", "data = bytearray(5 * 1024 * 1024)\n")
    write(tmp_path / "prog.py", "import pkg.mod\nimport json\n")
    # WHEN memlens runs it
    r = run_memlens("run", "-o", "c.mlcap", "prog.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # THEN the summary's first row is the module's line under one frame,
    # "import pkg.mod", with the bytes of that line
    first = _table(r.stderr, "Top stacks at the peak")[0]
    assert first[2] == "mod.py:1 <module>  <- import pkg.mod  <- prog.py:1 <module>", r.stderr
    assert first[0] == "5.0 MiB"
    from memlens.report import fold

    cap = model.load(tmp_path / "c.mlcap")
    (row,) = [s for s in fold.fold_capture(cap).stacks if [f.label() for f in s.frames[:2]] ==
              ["mod.py:1 <module>", "import pkg.mod"]]
    assert row.peak_size == row.size == exact
    # and the report folds the same way; --keep-import-frames shows the
    # frames as recorded, in report and in run's summary
    rep = run_memlens("report", "c.mlcap", cwd=tmp_path)
    assert _table(rep.stdout, "Top stacks at the peak")[0][2] == first[2]
    assert "<frozen importlib._bootstrap>" not in rep.stdout
    raw = run_memlens("report", "c.mlcap", "--keep-import-frames", cwd=tmp_path)
    top = _table(raw.stdout, "Top stacks at the peak")[0][2]
    assert top.startswith("mod.py:1 <module>  <- <frozen importlib._bootstrap>:") and "import pkg.mod" not in top
    again = run_memlens("run", "-o", "d.mlcap", "--keep-import-frames", "prog.py", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "<frozen importlib._bootstrap>" in _table(again.stderr, "Top stacks at the peak")[0][2]
    # and no two rows of a table print alike: they merged
    for out in (rep.stdout, raw.stdout, r.stderr, again.stderr):
        for title in ("Top stacks at the peak", "Still allocated at exit (leak"):
            if title in out:
                locations = [loc for _, _, loc in _table(out, title)]
                assert len(set(locations)) == len(locations), out
    # the json export keeps the frames as recorded
    js = run_memlens("report", "c.mlcap", "--format", "json", cwd=tmp_path).stdout
    assert "_find_and_load" in js and "import pkg.mod" not in js


@pytest.mark.slow
def test_html_report_draws_the_folded_import(tmp_path, run_memlens, write, dump_dom):
    # GIVEN the HTML report of a program that imports pkg.mod
    (tmp_path / "pkg").mkdir()
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "mod.py", "data = bytearray(5 * 1024 * 1024)\n")
    write(tmp_path / "prog.py", "import pkg.mod\n")
    assert run_memlens("run", "-q", "-o", "c.mlcap", "prog.py", cwd=tmp_path).returncode == 0
    for args, name in (((), "folded.html"), (("--keep-import-frames",), "raw.html")):
        r = run_memlens("report", "c.mlcap", "--format", "html", "-o", name, *args, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    # WHEN a browser draws them, THEN the flame graph has one box "import
    # pkg.mod" above the module's line; kept, the import system's frames
    folded = dump_dom((tmp_path / "folded.html").as_uri())
    assert 'data-name="import pkg.mod"' in folded and "_find_and_load (" not in folded
    raw = dump_dom((tmp_path / "raw.html").as_uri())
    assert 'data-name="import pkg.mod"' not in raw and 'data-name="_find_and_load (' in raw
