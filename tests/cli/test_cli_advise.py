"""`memlens advise script.py` and `memlens run --advise`, and the real
census's class table in `memlens run`."""

from memlens.report import model

PROGRAM = """\
    import sys

    class Reading:
        def __init__(self, i):
            self.sensor = i % 100
            self.value = i * 0.5
            self.stamp = 1_700_000_000 + i

    readings = [Reading(i) for i in range(20_000)]
    print("stored", len(readings))
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def test_advise_runs_the_program_then_prints_advice(tmp_path, run_memlens, write):
    # GIVEN a program that keeps 20,000 plain instances
    write(tmp_path / "prog.py", PROGRAM)
    # WHEN memlens advise runs it (with an exit code of its own)
    r = run_memlens("advise", "prog.py", "3", cwd=tmp_path)
    # THEN the program's output and exit code are its own, and the advice
    # names the class with a record and a slots suggestion
    assert r.stdout == "stored 20000\n"
    assert r.returncode == 3
    assert "[record] __main__.Reading" in r.stderr
    assert "[slots] __main__.Reading" in r.stderr
    assert "prog.py:3" in r.stderr  # where the class is defined
    assert "class Reading(memlens.Record):" in r.stderr
    # no capture is written
    assert not list(tmp_path.glob("*.mlcap"))


def test_min_saving_filters(tmp_path, run_memlens, write):
    write(tmp_path / "prog.py", PROGRAM)
    r = run_memlens("advise", "--min-saving", str(10 * 2**20), "prog.py", cwd=tmp_path)
    assert r.returncode == 0
    assert "nothing to suggest" in r.stderr


def test_run_with_advise_writes_capture_and_advice(tmp_path, run_memlens, write):
    write(tmp_path / "prog.py", PROGRAM)
    r = run_memlens("run", "--advise", "-o", "c.mlcap", "prog.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "[record] __main__.Reading" in r.stderr
    assert (tmp_path / "c.mlcap").exists()


def test_census_class_table_counts_the_instances(tmp_path, run_memlens, write):
    write(tmp_path / "prog.py", PROGRAM)
    r = run_memlens("run", "-o", "c.mlcap", "prog.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cap = model.load(tmp_path / "c.mlcap")
    rows = {c.name: c for c in cap.classes}
    assert rows["__main__.Reading"].count == 20_000
    assert "__main__.Reading" in r.stderr.split("Top classes by instance bytes at exit:")[1]


def test_advise_usage_errors_are_one_line(tmp_path, run_memlens):
    r = run_memlens("advise", "missing.py", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "missing.py" in r.stderr
    r = run_memlens("run", "--min-saving", "10", "x.py", cwd=tmp_path)
    assert r.returncode == 2 and "--min-saving goes with --advise" in r.stderr
    r = run_memlens("advise", "--min-saving", "-5", "x.py", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_advise_help(tmp_path, run_memlens):
    r = run_memlens("advise", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "usage: memlens advise" in r.stdout
