"""`memlens run` follows the Python processes a program starts: forked,
multiprocessing (fork, spawn, forkserver), subprocess and exec; each
writes its own capture into CAPTURE.d/ and the reports list them together.

Figures are checked against the buffers the children allocate: a
bytearray(n) is one block of n + 1 bytes (its trailing NUL) on the line
that makes it, plus its 56-byte object."""

import gzip
import json
import os
import shutil
import sys

import pytest

from memlens.report import processes

MB = 1_000_000
# What one bytearray(n) adds to its line beyond n: its NUL and its object
# (and, in a -c child, a few small objects of that line).
SLACK = 1024


def _line_peak(proc, filename_end, lineno):
    """Peak bytes on one line of a process's capture."""
    return sum(size for f, size, _ in proc.capture.lines("peak")
               if f.filename.endswith(filename_end) and f.lineno == lineno)


def _load(tmp_path, name="c.mlcap"):
    return processes.load_run(tmp_path / name)


ISSUE_PROGRAM = """\
    import multiprocessing as mp, subprocess, sys

    def work30(barrier):
        buf = bytearray(30_000_000)
        barrier.wait()
        barrier.wait()

    def work40(_):
        buf = bytearray(40_000_000)
        return len(buf)

    if __name__ == "__main__":
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(3)
        workers = [ctx.Process(target=work30, args=(barrier,)) for _ in range(2)]
        for w in workers:
            w.start()
        mine = bytearray(10_000_000)
        barrier.wait()          # both workers hold their 30 MB, the parent its 10 MB
        import time; time.sleep(0.3)
        barrier.wait()
        del mine
        for w in workers:
            w.join()
        with mp.get_context("forkserver").Pool(1) as p:
            print(p.map(work40, [0]))
        r = subprocess.run([sys.executable, "-c", "b = bytearray(50_000_000)\\nprint(len(b))"])
        print("sub", r.returncode, [w.exitcode for w in workers])
"""


@pytest.mark.slow
def test_spawn_forkserver_and_subprocess_children_are_each_on_their_line(tmp_path, run_memlens, run_python,
                                                                         write):
    # GIVEN the issue's program: two spawn workers (30 MB each, held at the
    # same time as the parent's 10 MB), a forkserver worker (40 MB) and a
    # subprocess of the same Python (50 MB)
    write(tmp_path / "app.py", ISSUE_PROGRAM)
    # WHEN it runs under memlens run and under python
    plain = run_python("app.py", cwd=tmp_path)
    r = run_memlens("run", "-q", "-o", "c.mlcap", "app.py", cwd=tmp_path)
    # THEN its output and exit code are python's
    assert r.returncode == plain.returncode == 0, r.stderr
    assert r.stdout == plain.stdout == "[40000000]\n50000000\nsub 0 [0, 0]\n"
    run = _load(tmp_path)
    by_kind = {}
    for p in run.processes:
        kind = ("root" if p is run.root else "spawn" if "spawn_main" in p.command
                else "forkserver-worker" if "forkserver" in p.command and p.parent
                and "forkserver" in p.parent.command
                else "forkserver" if "forkserver" in p.command
                else "subprocess" if "bytearray(50_000_000)" in p.command else "other")
        by_kind.setdefault(kind, []).append(p)
    # every process is listed, traced, and each worker's memory is on its line
    assert len(by_kind["spawn"]) == 2 and len(by_kind["forkserver-worker"]) == 1, by_kind
    assert len(by_kind["forkserver"]) == 1 and len(by_kind["subprocess"]) == 1
    for p in by_kind["spawn"]:
        assert 30 * MB < _line_peak(p, "app.py", 4) < 30 * MB + SLACK
        assert p.parent is run.root and p.exit_code == 0
    worker = by_kind["forkserver-worker"][0]
    assert 40 * MB < _line_peak(worker, "app.py", 9) < 40 * MB + SLACK
    sub = by_kind["subprocess"][0]
    assert 50 * MB < _line_peak(sub, "<string>", 1) < 50 * MB + SLACK
    assert sub.exit_code == 0 and sub.parent is run.root
    assert 10 * MB < _line_peak(run.root, "app.py", 18) < 10 * MB + SLACK
    # the combined peak: the 30 + 30 + 10 MB live at once, within 2% of
    # the sum of those three processes' peaks (their other memory is imports)
    # (and the resource tracker's imports, also alive then)
    _, peak, when = run.combined()
    t0 = min(p.start_ns for p in run.processes)
    at = t0 + when * 1e9
    live = [p for p in run.processes if p.capture.timeline and p.start_ns <= at <= p.end_ns]
    assert run.root in live and set(by_kind["spawn"]) <= set(live)
    together = sum(p.peak_bytes for p in live)
    assert 70 * MB < peak <= together
    assert together - peak <= 0.02 * together, (peak, together)


def test_fork_grandchild_exec_and_exit_codes(tmp_path, run_memlens, run_python, write):
    # GIVEN a child that forks a grandchild (os._exit(3)) and ends with
    # sys.exit(4), and a fork that execs a Python
    write(tmp_path / "f.py", """\
        import os, sys
        pid = os.fork()
        if pid == 0:
            a = bytearray(5_000_000)
            g = os.fork()
            if g == 0:
                b = bytearray(3_000_000)
                os._exit(3)
            os.waitpid(g, 0)
            sys.exit(4)
        _, st = os.waitpid(pid, 0)
        e = os.fork()
        if e == 0:
            os.execv(sys.executable, [sys.executable, "-c", "x = bytearray(7_000_000); print('exec ok')"])
        _, st2 = os.waitpid(e, 0)
        print(os.waitstatus_to_exitcode(st), os.waitstatus_to_exitcode(st2))
    """)
    plain = run_python("f.py", cwd=tmp_path)
    r = run_memlens("run", "-q", "-o", "c.mlcap", "f.py", cwd=tmp_path)
    assert r.returncode == plain.returncode == 0, r.stderr
    assert r.stdout == plain.stdout == "exec ok\n4 0\n"
    run = _load(tmp_path)
    depth = {p.pid: d for d, p in run.tree()}
    child = next(p for p in run.processes if _line_peak(p, "f.py", 4) > 0)
    grand = next(p for p in run.processes if _line_peak(p, "f.py", 7) > 0)
    execd = next(p for p in run.processes if "bytearray(7_000_000)" in p.command)
    # THEN each has its own allocation and no one else's (a forked child
    # does not count its parent's copy-on-write heap)
    assert 5 * MB < child.peak_bytes < 5 * MB + 64 * 1024
    assert 3 * MB < grand.peak_bytes < 3 * MB + 64 * 1024
    assert 7 * MB < _line_peak(execd, "<string>", 1) < 7 * MB + SLACK
    assert (child.exit_code, grand.exit_code, execd.exit_code) == (4, 3, 0)
    assert child.parent is run.root and grand.parent is child
    assert depth[grand.pid] == 2
    # the fork before its exec is listed as such, with the exec'd program's pid
    assert any(p.status == "exec" and p.pid == execd.pid for p in run.processes)


@pytest.mark.slow
def test_fifty_short_lived_children_in_parallel(tmp_path, run_memlens, write):
    # GIVEN 50 children forked at once, each allocating i * 10 kB
    write(tmp_path / "many.py", """\
        import os
        pids = []
        for i in range(1, 51):
            pid = os.fork()
            if pid == 0:
                keep = bytearray(i * 10_000)
                os._exit(i)
            pids.append(pid)
        codes = sorted(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids)
        print(codes == list(range(1, 51)))
    """)
    r = run_memlens("run", "-q", "-o", "c.mlcap", "many.py", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "True\n", r.stderr
    run = _load(tmp_path)
    kids = [p for p in run.processes if p is not run.root]
    # THEN all 50 are there, each with exactly its own bytearray and code
    assert len(kids) == 50 and all(p.parent is run.root for p in kids)
    for p in kids:
        assert p.exit_code is not None and 1 <= p.exit_code <= 50
        assert p.exit_code * 10_000 < _line_peak(p, "many.py", 6) <= p.exit_code * 10_000 + 200


def test_pool_whose_workers_are_killed(tmp_path, run_memlens, run_python, write):
    # GIVEN a fork ProcessPoolExecutor whose workers are SIGKILLed after
    # their tasks
    write(tmp_path / "pool.py", """\
        import multiprocessing as mp, os, signal, time
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool
        def task(n):
            global keep
            keep = bytearray(n)
            time.sleep(0.2)
            return os.getpid()
        if __name__ == "__main__":
            ex = ProcessPoolExecutor(2, mp_context=mp.get_context("fork"))
            pids = set(ex.map(task, [2_000_000] * 2))
            time.sleep(2.2)   # a periodic write (1 s after each worker started) happens meanwhile
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            try:
                ex.submit(task, 1).result()
            except BrokenProcessPool:
                print("broken")
            ex.shutdown()
            print(len(pids))
    """)
    r = run_memlens("run", "-q", "-o", "c.mlcap", "pool.py", cwd=tmp_path)
    # THEN the program is unchanged, and the killed workers are listed
    # incomplete, with what their last write had: the 2 MB still kept
    assert r.returncode == 0 and r.stdout.startswith("broken\n"), r.stderr
    run = _load(tmp_path)
    killed = [p for p in run.processes if p.exit_code == -9]
    assert len(killed) == int(r.stdout.split()[1]) and all(not p.complete for p in killed)
    assert all(2 * MB < p.exit_bytes < 2 * MB + 64 * 1024 for p in killed)
    text = run_memlens("report", "c.mlcap", cwd=tmp_path).stdout
    assert text.count("incomplete: figures up to its last write") == len(killed)


def test_parent_killed_by_sigkill_leaves_the_childrens_data(tmp_path, run_memlens, write):
    # GIVEN a program whose child allocates 20 MB and ends, then the
    # program kills itself with SIGKILL
    write(tmp_path / "k.py", """\
        import os, signal, subprocess, sys
        subprocess.run([sys.executable, "-c", "b = bytearray(20_000_000)"])
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = run_memlens("run", "-q", "-o", "c.mlcap", "k.py", cwd=tmp_path)
    assert r.returncode == -9
    # THEN the report still reads: the child complete, the parent listed
    # as not having ended
    run = _load(tmp_path)
    child = next(p for p in run.processes if p is not run.root)
    assert 20 * MB < _line_peak(child, "<string>", 1) < 20 * MB + SLACK and child.complete
    assert run.root is not None and not run.root.complete and run.root.status == "running"
    out = run_memlens("report", "c.mlcap", "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["processes"]) == 2


def test_no_children_and_non_python_children(tmp_path, run_memlens, run_python, write):
    # GIVEN a program starting a shell (not Python) and a Python child
    write(tmp_path / "p.py", """\
        import subprocess, sys
        print(subprocess.run(["sh", "-c", "echo from sh; exit 5"]).returncode)
        print(subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('X'))"],
                             env={"X": "own env"}).returncode)
    """)
    plain = run_python("p.py", cwd=tmp_path)
    # WHEN it runs with and without --no-children
    r = run_memlens("run", "-q", "-o", "c.mlcap", "p.py", cwd=tmp_path)
    n = run_memlens("run", "-q", "--no-children", "-o", "n.mlcap", "p.py", cwd=tmp_path)
    # THEN output and exit codes are python's either way; the shell and the
    # child given its own environment run untraced, unharmed
    assert r.stdout == n.stdout == plain.stdout == "from sh\n5\nown env\n0\n"
    assert r.returncode == n.returncode == 0 and r.stderr == n.stderr == ""
    assert not (tmp_path / "n.mlcap.d").exists()
    # and the report lists both as not traced, with their exit codes
    untraced = {p.exit_code: p for p in _load(tmp_path).processes if p.capture is None}
    assert set(untraced) == {5, 0} and untraced[5].command == "sh"
    assert all(p.status.startswith("not traced") and p.parent is not None for p in untraced.values())
    assert [p.pid for p in _load(tmp_path, "n.mlcap").processes] == [_load(tmp_path, "n.mlcap").root.pid]


def test_a_python_without_this_memlens_is_listed_not_traced(tmp_path, run_memlens, write):
    # GIVEN another Python version (which cannot load this memlens' engine)
    other = next((p for p in (f"/tmp/venv-3.{v}/bin/python" for v in (9, 10, 12, 13))
                  if os.path.exists(p) and not os.path.realpath(p).endswith(f"{sys.version_info[1]}")),
                 None)
    if other is None or f"3.{sys.version_info[1]}" in other:
        pytest.skip("no other Python version installed")
    write(tmp_path / "o.py", f"""\
        import os, subprocess
        # (PYTHONPATH: only memlens' bootstrap; the tests' path is this Python's)
        env = dict(os.environ, PYTHONPATH=os.environ["PYTHONPATH"].split(os.pathsep)[0])
        print(subprocess.run([{other!r}, "-c", "print('other ok')"], env=env).returncode)
    """)
    r = run_memlens("run", "-q", "-o", "c.mlcap", "o.py", cwd=tmp_path)
    # THEN it runs as it would, and the report says it was not traced
    assert r.returncode == 0 and r.stdout == "other ok\n0\n", r.stderr
    run = _load(tmp_path)
    child = next(p for p in run.processes if p is not run.root)
    assert child.capture is None and child.status.startswith("not traced") and child.parent is run.root
    assert "not traced" in run_memlens("report", "c.mlcap", cwd=tmp_path).stdout


def test_unwritable_bundle_is_one_line_before_the_program_runs(tmp_path, run_memlens, write):
    write(tmp_path / "p.py", "print('ran')\n")
    (tmp_path / "c.mlcap.d").write_text("a file where the bundle goes")
    r = run_memlens("run", "-o", "c.mlcap", "p.py", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "not a directory" in r.stderr, r.stderr
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "c.mlcap.d").unlink()
        (tmp_path / "ro").mkdir()
        os.chmod(tmp_path / "ro", 0o555)
        r = run_memlens("run", "-o", "ro/c.mlcap", "p.py", cwd=tmp_path)
        assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1, r.stderr


def test_reports_of_a_run_with_children(tmp_path, run_memlens, write, go_pprof):
    # GIVEN a run with one forked child holding 4 MB at exit
    write(tmp_path / "r.py", """\
        import os
        pid = os.fork()
        if pid == 0:
            keep = bytearray(4_000_000)
            os._exit(0)
        os.waitpid(pid, 0)
        mine = bytearray(1_000_000)
    """)
    assert run_memlens("run", "-q", "-o", "c.mlcap", "r.py", cwd=tmp_path).returncode == 0
    run = _load(tmp_path)
    child = next(p for p in run.processes if p is not run.root)
    # THEN json lists both processes with their own stacks
    d = json.loads(run_memlens("report", "c.mlcap", "--format", "json", cwd=tmp_path).stdout)
    rows = {p["pid"]: p for p in d["processes"]}
    assert set(rows) == {run.root.pid, child.pid}
    assert rows[child.pid]["ppid"] == run.root.pid and rows[child.pid]["exit_code"] == 0
    assert 4 * MB < rows[child.pid]["exit_bytes"] < 4 * MB + 64 * 1024
    assert sum(s["exit_bytes"] for s in rows[child.pid]["stacks"]) == rows[child.pid]["exit_bytes"]
    assert {"command", "peak_bytes", "duration"} <= set(rows[child.pid])
    assert d["combined"]["peak_bytes"] >= 4 * MB
    # --pid selects one process; text lists the tree
    one = json.loads(run_memlens("report", "c.mlcap", "--format", "json", "--pid", str(child.pid),
                                 cwd=tmp_path).stdout)
    assert "processes" not in one and one["totals"]["exit_bytes"] == child.exit_bytes
    text = run_memlens("report", "c.mlcap", cwd=tmp_path).stdout
    assert text.startswith("memlens: 2 processes; combined peak") and f"└ {child.pid}" in text
    bad = run_memlens("report", "c.mlcap", "--pid", "1", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no such process" in bad.stderr
    # collapsed: every line under its process; pprof: a pid label
    folded = run_memlens("report", "c.mlcap", "--format", "collapsed", "--view", "leaks", cwd=tmp_path).stdout
    mine = [ln for ln in folded.splitlines() if ln.startswith(f"pid {child.pid};")]
    assert sum(int(ln.rsplit(" ", 1)[1]) for ln in mine) == child.exit_bytes
    assert all(ln.startswith(("pid ",)) for ln in folded.splitlines())
    assert run_memlens("report", "c.mlcap", "--format", "pprof", "-o", "p.pb.gz", cwd=tmp_path).returncode == 0
    assert b"pid" in gzip.decompress((tmp_path / "p.pb.gz").read_bytes())
    # and Go's pprof reads it: both processes' bytes at exit are in it
    _, samples = go_pprof(tmp_path / "p.pb.gz")
    assert sum(v[3] for v, _ in samples) == sum(rows[pid]["exit_bytes"] for pid in rows)
    # html: a process selector with both, and the combined timeline
    page = run_memlens("report", "c.mlcap", "--format", "html", cwd=tmp_path).stdout
    assert page.count('<option value="') == 2 and 'id="combined"' in page
    assert page.count('id="memlens-proc-') == 2


def test_start_children_in_the_api(tmp_path, run_python, write):
    # GIVEN a program that traces itself and its spawn workers
    write(tmp_path / "api.py", """\
        import multiprocessing as mp, memlens
        def work(n):
            return len(bytearray(n))
        if __name__ == "__main__":
            memlens.start(children=str("bundle.mlcap.d"))
            with mp.get_context("spawn").Pool(1) as p:
                print(p.map(work, [6_000_000]))
            memlens.stop()
    """)
    r = run_python("api.py", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "[6000000]\n", r.stderr
    # THEN the worker's capture is in the bundle, its 6 MB on its line
    run = processes.load_run(tmp_path / "bundle.mlcap")
    assert run.root is None
    worker = next(p for p in run.processes if "spawn_main" in p.command)
    assert 6 * MB < _line_peak(worker, "api.py", 3) < 6 * MB + SLACK


def _proc(pid, ppid, start, end, timeline=(), total=0):
    from memlens.report.model import Capture, Sample

    cap = Capture(stacks=[], total=total, peak=max([v for _, v in timeline] + [total]),
                  timeline=[Sample(t, v, v, 0) for t, v in timeline])
    return processes.Process(pid, ppid, f"p{pid}", start, cap, "ended", 0, end)


def test_tree_survives_pid_reuse_and_combined_timeline_sums():
    # GIVEN pid 7 used twice: by a child of 1 (0-10 s), then by a child of
    # 2 (20-30 s); pid 8's parent is the second pid 7
    s = 1_000_000_000
    root = _proc(1, 0, 0, 40 * s, [(0, 100), (25, 100)])
    two = _proc(2, 1, 15 * s, 35 * s, [(0, 1000), (10, 1000)])
    first7 = _proc(7, 1, 1 * s, 10 * s, [(0, 50), (5, 70)])
    second7 = _proc(7, 2, 20 * s, 30 * s, [(0, 5000), (5, 5000)])
    eight = _proc(8, 7, 22 * s, 24 * s, [(0, 300), (1, 300)])
    procs = [root, two, first7, second7, eight]
    processes._link(procs)
    run = processes.Run(procs, root)
    # THEN the tree follows the lifetimes, not just the pids
    assert eight.parent is second7 and second7.parent is two and first7.parent is root
    # and the combined peak is the sum of what was live at one moment:
    # root 100 + two 1000 + second 7's 5000 + eight 300 at 22-23 s
    _, peak, when = run.combined()
    assert peak == 6400 and 22 <= when <= 23


def test_old_single_captures_still_report_as_before(tmp_path, run_memlens, write):
    # GIVEN a capture without a bundle (--no-children, or an older memlens)
    write(tmp_path / "p.py", "x = bytearray(1000)\n")
    assert run_memlens("run", "-q", "--no-children", "-o", "c.mlcap", "p.py", cwd=tmp_path).returncode == 0
    out = run_memlens("report", "c.mlcap", cwd=tmp_path).stdout
    # THEN the text report is the one-process report
    assert out.startswith("memlens: memlens run p.py") and "processes" not in out.splitlines()[0]
    shutil.rmtree(tmp_path / "c.mlcap.d", ignore_errors=True)


def test_a_damaged_child_capture_is_listed_not_fatal(tmp_path, run_memlens, write):
    # GIVEN a run with one child whose capture is then truncated
    write(tmp_path / "d.py", """\
        import os
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    """)
    assert run_memlens("run", "-q", "-o", "c.mlcap", "d.py", cwd=tmp_path).returncode == 0
    (child,) = (tmp_path / "c.mlcap.d").iterdir()
    child.write_bytes(child.read_bytes()[:100])
    # WHEN the run is reported
    r = run_memlens("report", "c.mlcap", cwd=tmp_path)
    # THEN the child is listed with why it cannot be read, the rest reported
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "unreadable:" in r.stdout and r.stdout.startswith("memlens: 2 processes")


@pytest.mark.slow
def test_html_process_selector_shows_the_chosen_process(tmp_path, run_memlens, write, dump_dom):
    # GIVEN the HTML report of a run whose child and parent allocate on
    # different lines
    write(tmp_path / "h.py", """\
        import os
        pid = os.fork()
        if pid == 0:
            child_keeps = bytearray(4_000_000)
            os._exit(0)
        os.waitpid(pid, 0)
        parent_keeps = bytearray(1_000_000)
    """)
    assert run_memlens("run", "-q", "-o", "c.mlcap", "h.py", cwd=tmp_path).returncode == 0
    assert run_memlens("report", "c.mlcap", "--format", "html", "-o", "r.html", cwd=tmp_path).returncode == 0
    page = (tmp_path / "r.html").as_uri()
    # WHEN a browser opens it on the first process, then on the child (#1)
    def lines_table(dom):
        return dom[dom.index('<table id="lines">'):].split("</table>")[0]

    first, child = lines_table(dump_dom(page)), lines_table(dump_dom(page + "#1"))
    # THEN each shows its own lines
    assert "h.py:7" in first and "h.py:4" not in first, first
    assert "h.py:4" in child and "h.py:7" not in child, child


def test_a_followed_child_sees_what_python_gives_it(tmp_path, run_memlens, run_python, write):
    # GIVEN a subprocess that prints its argv, sys.path and loaded modules
    write(tmp_path / "ident.py", """\
        import subprocess, sys
        code = "import sys, json; print(json.dumps([sys.argv, sys.path, sorted(sys.modules)]))"
        r = subprocess.run([sys.executable, "-c", code, "a1", "-m"], capture_output=True, text=True)
        print(r.stdout, end="")
    """)
    plain = json.loads(run_python("ident.py", cwd=tmp_path).stdout)
    traced = json.loads(run_memlens("run", "-q", "-o", "c.mlcap", "ident.py", cwd=tmp_path).stdout)
    # THEN argv and sys.path are python's, and the bootstrap added only
    # memlens' two modules (and atexit, and itself as sitecustomize)
    assert traced[:2] == plain[:2]
    assert set(traced[2]) - set(plain[2]) <= {"atexit", "memlens._core", "memlens._follow", "sitecustomize"}
    assert set(plain[2]) <= set(traced[2])
    assert any("a1" in p.command for p in _load(tmp_path).processes)
