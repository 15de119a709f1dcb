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


# ---- generator advice: a traced run's peak and the source --------------------

import textwrap  # noqa: E402

import pytest  # noqa: E402

import memlens  # noqa: E402

# Runs a program under tracemalloc and prints its peak: the independent
# ground truth the predicted savings are checked against.
PEAK = """\
import runpy, sys, tracemalloc
tracemalloc.start()
runpy.run_path(sys.argv[1], run_name="__main__")
print(tracemalloc.get_traced_memory()[1])
"""

GENERATOR_CASES = {
    "sum of a list comprehension": """\
        def main():
            total = sum([x * x for x in range(300_000)])
            print(total)

        main()
    """,
    "a name read once by max": """\
        def main():
            tripled = [x * 3 for x in range(300_000)]
            print(max(tripled))

        main()
    """,
    "a for loop over a comprehension": """\
        def main():
            total = 0
            for y in [x + 7 for x in range(300_000)]:
                total += y * 2
            print(total)

        main()
    """,
    "list() of a generator at module level": """\
        print(any(list(x * 2 < 0 for x in range(1_000))))
        doubled = list(x * 2 for x in range(300_000))
        print(min(doubled))
    """,
}


def _peak(run_python, path):
    r = run_python("-c", PEAK, path, cwd=path.parent)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[-1])


def _generator_advice(tmp_path, run_memlens, write, source, min_saving=64 * 1024):
    write(tmp_path / "prog.py", source)
    r = run_memlens("run", "-q", "--advise", "-o", "c.mlcap", "prog.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    advice = [a for a in memlens.advise(min_saving=min_saving, capture=tmp_path / "c.mlcap")
              if a.kind == "generator"]
    return advice, r.stderr


@pytest.mark.parametrize("case", sorted(GENERATOR_CASES))
def test_generator_advice_saves_what_it_predicts(tmp_path, run_memlens, run_python, write, case):
    # GIVEN a program whose peak is a list that is consumed once
    # WHEN memlens run --advise traces it
    advice, stderr = _generator_advice(tmp_path, run_memlens, write, GENERATOR_CASES[case])
    # THEN one generator advice names the line, in the report too
    assert len(advice) == 1, advice
    a = advice[0]
    path, lineno, old, new = a.edit
    assert path == str(tmp_path / "prog.py")
    assert a.location == f"{path}:{lineno}" and f"[generator] prog.py:{lineno}" in stderr
    assert a.patch == new.strip() and a.patch in stderr
    # AND applying the rewrite lowers the tracemalloc peak by the predicted
    # bytes (within 10%), with the program's output unchanged
    before = _peak(run_python, tmp_path / "prog.py")
    lines = (tmp_path / "prog.py").read_text().splitlines(True)
    assert lines[lineno - 1].rstrip("\n") == old
    lines[lineno - 1] = new + "\n"
    (tmp_path / "lazy.py").write_text("".join(lines))
    after = _peak(run_python, tmp_path / "lazy.py")
    measured = before - after
    assert abs(a.saving - measured) <= 0.10 * measured, (a.saving, measured)
    out_before = run_python("prog.py", cwd=tmp_path).stdout
    assert run_python("lazy.py", cwd=tmp_path).stdout == out_before


GENERATOR_NEGATIVE = {
    "indexed later": """\
        def main():
            squares = [x * x for x in range(300_000)]
            print(sum(squares), squares[0])

        main()
    """,
    "returned": """\
        def build():
            return [x * x for x in range(300_000)]

        print(sum(build()))
    """,
    "iterated twice": """\
        def main():
            squares = [x * x for x in range(300_000)]
            print(sum(squares))
            print(max(squares))

        main()
    """,
    "measured with len": """\
        def main():
            squares = [x * x for x in range(300_000)]
            print(sum(squares) / len(squares))

        main()
    """,
    "iterated in a loop": """\
        def main():
            squares = [x * x for x in range(300_000)]
            for k in range(2):
                print(sum(squares) * k)

        main()
    """,
    "a loop body that keeps the items": """\
        def main():
            keep = []
            for y in [x * x for x in range(300_000)]:
                keep.append(y)
            print(len(keep))

        main()
    """,
    "a loop body that changes what the comprehension reads": """\
        def main():
            k = 1
            total = 0
            for y in [x * k for x in range(300_000)]:
                k = 2
                total += y
            print(total)

        main()
    """,
    "str.join makes a list of a generator anyway": """\
        print(len("".join([str(x) for x in range(300_000)])))
    """,
    "sorted copies the list": """\
        print(sorted([x * x for x in range(300_000)])[0])
    """,
    "a set comprehension into sum (duplicates matter)": """\
        print(sum({x * x for x in range(300_000)}))
    """,
    "a shadowed sum": """\
        def sum(xs):
            return len(xs)

        print(sum([x * x for x in range(300_000)]))
    """,
}


@pytest.mark.parametrize("case", sorted(GENERATOR_NEGATIVE))
def test_no_generator_advice_where_the_list_is_needed(tmp_path, run_memlens, write, case):
    # GIVEN a program whose big list is indexed, returned, iterated twice,
    # measured, kept, or consumed by something that materializes it anyway
    # WHEN memlens run --advise traces it
    advice, stderr = _generator_advice(tmp_path, run_memlens, write, GENERATOR_NEGATIVE[case])
    # THEN there is no generator advice
    assert advice == [] and "[generator]" not in stderr


def test_str_join_gains_nothing_from_a_generator(tmp_path, run_python, write):
    # GIVEN "".join over a list comprehension and over a generator
    write(tmp_path / "a.py", 'print(len("".join([str(x) for x in range(300_000)])))\n')
    write(tmp_path / "b.py", 'print(len("".join(str(x) for x in range(300_000))))\n')
    # WHEN both run under tracemalloc
    a, b = _peak(run_python, tmp_path / "a.py"), _peak(run_python, tmp_path / "b.py")
    # THEN the peaks are the same within 5% (join builds the list itself),
    # which is why the advisor is silent about join
    assert abs(a - b) <= 0.05 * a, (a, b)


# ---- --diff: the edits as a unified diff that patch and git apply take ------

import shutil  # noqa: E402
import subprocess  # noqa: E402

CACHE_PROGRAM = """\
    class Image:
        def __init__(self, i):
            self.pixels = bytes(100_000)


    CACHE = {}


    def load(i):
        img = CACHE.get(i)
        if img is None:
            img = CACHE[i] = Image(i)
        return img


    in_use = [load(i) for i in range(0, 200, 20)]
    for i in range(200):
        load(i)
    print(len(in_use))
"""

AT_END = """\
import runpy, sys, tracemalloc
tracemalloc.start()
g = runpy.run_path(sys.argv[1], run_name="__main__")
print(tracemalloc.get_traced_memory()[0])
"""


def _diff_of(stderr):
    head = "memlens advise: the edits as a unified diff"
    assert head in stderr, stderr
    return stderr.split(head, 1)[1].split("\n", 1)[1]


def _saving(stderr, kind):
    # "[kind] target: save 1.2 MiB  (...)": the report's own rounding
    line = next(x for x in stderr.splitlines() if x.startswith(f"[{kind}]"))
    value, unit = line.split(": save ", 1)[1].split()[:2]
    return float(value) * {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}[unit]


@pytest.mark.skipif(shutil.which("patch") is None or shutil.which("git") is None,
                    reason="needs patch and git")
@pytest.mark.parametrize("tool", ["patch", "git"])
@pytest.mark.parametrize("kind", ["generator", "weakref"])
def test_diff_applies_and_saves_what_it_predicts(tmp_path, run_memlens, run_python, write, kind, tool):
    # GIVEN a program whose peak is a list consumed once, or whose cache
    # alone keeps most of its values alive
    source = GENERATOR_CASES["sum of a list comprehension"] if kind == "generator" else CACHE_PROGRAM
    prog = write(tmp_path / "prog.py", source)
    original = prog.read_text()
    # WHEN memlens prints its advice with --diff
    cmd = ("run", "-q", "--advise", "--diff", "-o", "c.mlcap") if kind == "generator" else ("advise", "--diff")
    r = run_memlens(*cmd, "prog.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    diff = _diff_of(r.stderr)
    assert diff.startswith("--- prog.py\n+++ prog.py\n@@ ")
    predicted = _saving(r.stderr, kind)
    # AND the diff is applied as the report says
    (tmp_path / "fix.patch").write_text(diff)
    args = ["patch", "-p0", "-i", "fix.patch"] if tool == "patch" else ["git", "apply", "-p0", "fix.patch"]
    applied = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True)
    # THEN it applies cleanly, and rerunning the program measures the saving
    # the advice predicted (within 10%) with the same output
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert prog.read_text() != original
    (tmp_path / "orig.py").write_text(original)
    probe = PEAK if kind == "generator" else AT_END

    def measure(name):
        out = run_python("-c", probe, tmp_path / name, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        return int(out.stdout.split()[-1]), out.stdout.splitlines()[:-1]

    (before, out_before), (after, out_after) = measure("orig.py"), measure("prog.py")
    assert out_before == out_after
    assert abs(predicted - (before - after)) <= 0.10 * (before - after), (predicted, before - after)
    # AND advising the patched program has no more such advice
    r = run_memlens(*cmd, "prog.py", cwd=tmp_path)
    assert f"[{kind}]" not in r.stderr and "no edit of the program's source" in r.stderr


def test_diff_goes_with_advise(tmp_path, run_memlens):
    r = run_memlens("run", "--diff", "x.py", cwd=tmp_path)
    assert r.returncode == 2 and "--diff goes with --advise" in r.stderr and r.stderr.count("\n") == 1


def test_run_advise_stores_the_advice_for_the_reports(tmp_path, run_memlens, write):
    # GIVEN a program with a list consumed once at its peak and a cache
    # (the list, 1,000,000 ints, outweighs the cache's 20 MB: it is the peak)
    (tmp_path / "prog.py").write_text(
        textwrap.dedent(GENERATOR_CASES["sum of a list comprehension"]).replace("300_000", "1_000_000")
        + "\n" + textwrap.dedent(CACHE_PROGRAM))
    # WHEN memlens run --advise traces it, and the json and HTML reports are made
    r = run_memlens("run", "-q", "--advise", "-o", "c.mlcap", "prog.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    j = run_memlens("report", "c.mlcap", "--format", "json", cwd=tmp_path)
    h = run_memlens("report", "c.mlcap", "--format", "html", "-o", "r.html", cwd=tmp_path)
    assert j.returncode == 0 and h.returncode == 0, j.stderr + h.stderr
    import json

    # THEN the json report has the same advice the run printed, with savings
    # and the diff of each edit
    advice = {a["kind"]: a for a in json.loads(j.stdout)["advice"]}
    assert set(advice) >= {"generator", "weakref"}
    for kind in ("generator", "weakref"):
        assert f"[{kind}] {advice[kind]['target']}" in r.stderr
        assert advice[kind]["diff"].startswith("--- prog.py\n+++ prog.py\n")
    gen = next(a for a in memlens.advise(capture=tmp_path / "c.mlcap") if a.kind == "generator")
    assert advice["generator"]["saving"] == gen.saving
    # AND the HTML report has an Advice section with the patch
    page = (tmp_path / "r.html").read_text()
    assert "<h2>Advice</h2>" in page and advice["generator"]["patch"] in page


# ---- copy advice: a bytes slice that replaces its original in a loop ----------

COPY_CASES = {
    "bytes sliced from the front": """\
        def parse(n):
            data = bytes(n)
            count = 0
            while data:
                count += data[0] + 1
                data = data[100_000:]
            return count

        print(parse(8_000_000))
    """,
    "a bytearray cut from the back, measured with len": """\
        def drain(n):
            buf = bytearray(n)
            steps = 0
            while len(buf) > 0:
                steps += 1
                buf = buf[:-250_000]
            return steps

        print(drain(6_000_000))
    """,
}

COPY_NEGATIVE = {
    "the original is still used": """\
        def parse(n):
            data = bytes(n)
            whole = data
            while data:
                data = data[100_000:]
            return len(whole)

        print(parse(8_000_000))
    """,
    "a slice that is kept under another name": """\
        def parse(n):
            data = bytes(n)
            parts = []
            while data:
                parts.append(data[:100_000].decode())
                data = data[100_000:]
            return len(parts)

        print(parse(8_000_000))
    """,
    "the buffer is passed to a function": """\
        def parse(n):
            data = bytes(n)
            while data:
                print(hash(data) == 0)
                data = data[2_000_000:]

        parse(8_000_000)
    """,
    "a buffer of unknown type (a parameter)": """\
        def parse(data):
            while data:
                data = data[100_000:]

        parse(bytes(8_000_000))
    """,
}


def _copy_advice(tmp_path, run_memlens, write, source):
    write(tmp_path / "prog.py", source)
    r = run_memlens("run", "-q", "--advise", "-o", "c.mlcap", "prog.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return [a for a in memlens.advise(capture=tmp_path / "c.mlcap") if a.kind == "copy"], r.stderr


@pytest.mark.parametrize("case", sorted(COPY_CASES))
def test_copy_advice_saves_what_it_predicts(tmp_path, run_memlens, run_python, write, case):
    # GIVEN a loop that re-binds a buffer to a slice of itself
    # WHEN memlens run --advise traces it
    advice, stderr = _copy_advice(tmp_path, run_memlens, write, COPY_CASES[case])
    # THEN one copy advice names the slicing line and edits the line that
    # makes the buffer: a memoryview of it
    assert len(advice) == 1, advice
    a = advice[0]
    path, lineno, old, new = a.edit
    assert "memoryview(" in new and new.replace("memoryview(", "", 1).replace(")", "", 1) == old
    assert "[copy] prog.py:" in stderr
    # AND applying it lowers the tracemalloc peak by the predicted bytes
    # (within 10%), with the same output
    before = _peak(run_python, tmp_path / "prog.py")
    lines = (tmp_path / "prog.py").read_text().splitlines(True)
    lines[lineno - 1] = new + "\n"
    (tmp_path / "view.py").write_text("".join(lines))
    measured = before - _peak(run_python, tmp_path / "view.py")
    assert abs(a.saving - measured) <= 0.10 * measured, (a.saving, measured)
    assert run_python("view.py", cwd=tmp_path).stdout == run_python("prog.py", cwd=tmp_path).stdout


@pytest.mark.parametrize("case", sorted(COPY_NEGATIVE))
def test_no_copy_advice_where_the_copy_is_needed(tmp_path, run_memlens, write, case):
    # GIVEN a slicing loop whose original or slices are used otherwise
    # WHEN memlens run --advise traces it
    advice, stderr = _copy_advice(tmp_path, run_memlens, write, COPY_NEGATIVE[case])
    # THEN there is no copy advice
    assert advice == [] and "[copy]" not in stderr


# ---- copy advice: copies the source shows are not needed ----------------------

# (program, the line the advice edits as it becomes)
DROPPED_COPY_CASES = {
    "list() of a list not read again": ("""\
        def main():
            rows = [str(i) for i in range(200_000)]
            rows.append("end")
            print(len(rows))
            copy = list(rows)
            more = [x * 2 for x in range(300_000)]
            print(len(copy), len(more))


        main()
    """, "    copy = rows"),
    "bytes() of a bytearray read like bytes": ("""\
        def build(n):
            buf = bytearray()
            for i in range(n):
                buf += b"x" * 1000
            data = bytes(buf)
            extra = bytearray(4_000_000)
            print(len(extra))
            return len(data), data[0], data.count(b"x")


        print(build(6_000))
    """, "    data = buf"),
    "a = a + b of a growing list in a loop": ("""\
        def collect(n):
            out = []
            for i in range(n):
                out = out + [i] * 20_000
            return len(out)


        print(collect(100))
    """, "        out += [i] * 20_000"),
}

DROPPED_COPY_NEGATIVE = {
    "the list is read after its copy": """\
        def main():
            rows = [str(i) for i in range(200_000)]
            copy = list(rows)
            copy.append("x")
            more = [x * 2 for x in range(300_000)]
            print(len(copy), len(rows), len(more))


        main()
    """,
    "a list passed in (the caller keeps it)": """\
        def main(rows):
            copy = list(rows)
            more = [x * 2 for x in range(300_000)]
            print(len(copy), len(more))


        main([str(i) for i in range(200_000)])
    """,
    "bytes() whose result is returned (a bytearray is not hashable)": """\
        def build():
            buf = bytearray(6_000_000)
            data = bytes(buf)
            extra = bytearray(4_000_000)
            print(len(extra))
            return data


        print(len({build(): 1}))
    """,
    "a = a + b where the old list is kept": """\
        def collect(n):
            out = []
            firsts = []
            for i in range(n):
                firsts.append(out)
                out = out + [i] * 1000
            return len(out), len(firsts)


        print(collect(300))
    """,
}


@pytest.mark.parametrize("case", sorted(DROPPED_COPY_CASES))
def test_dropped_copy_advice_saves_what_it_predicts(tmp_path, run_memlens, run_python, write, case):
    # GIVEN a program whose peak includes a copy that its source shows is
    # not needed
    source, expected = DROPPED_COPY_CASES[case]
    # WHEN memlens run --advise traces it
    advice, stderr = _copy_advice(tmp_path, run_memlens, write, source)
    # THEN one copy advice edits the copying line
    assert len(advice) == 1, advice
    a = advice[0]
    path, lineno, old, new = a.edit
    assert new == expected and a.location == f"{path}:{lineno}"
    assert "[copy] prog.py:" in stderr
    # AND applying it lowers the tracemalloc peak by the predicted bytes
    # (within 10%), with the same output
    before = _peak(run_python, tmp_path / "prog.py")
    lines = (tmp_path / "prog.py").read_text().splitlines(True)
    assert lines[lineno - 1] == old + "\n"
    lines[lineno - 1] = new + "\n"
    (tmp_path / "fixed.py").write_text("".join(lines))
    measured = before - _peak(run_python, tmp_path / "fixed.py")
    assert abs(a.saving - measured) <= 0.10 * measured, (a.saving, measured)
    assert run_python("fixed.py", cwd=tmp_path).stdout == run_python("prog.py", cwd=tmp_path).stdout


@pytest.mark.parametrize("case", sorted(DROPPED_COPY_NEGATIVE))
def test_no_dropped_copy_advice_where_the_copy_is_needed(tmp_path, run_memlens, write, case):
    # GIVEN a copy whose original is still used, comes from the caller, or
    # whose type matters
    # WHEN memlens run --advise traces it
    advice, stderr = _copy_advice(tmp_path, run_memlens, write, DROPPED_COPY_NEGATIVE[case])
    # THEN there is no copy advice
    assert advice == [] and "[copy]" not in stderr


CACHES_PROGRAM = """\
    import functools


    class Image:
        def __init__(self):
            self.pixels = bytes(60_000)


    @functools.cache
    def load(i):
        return Image()


    class Loader:
        def __init__(self):
            self._cache = {}

        def get(self, i):
            if i not in self._cache:
                self._cache[i] = Image()
            return self._cache[i]


    for i in range(300):
        load(i)
    loaders = [Loader() for _ in range(3)]
    for ld in loaders:
        for i in range(100):
            ld.get(i)


    def main():
        rows = [str(i) for i in range(200_000)]
        copy = list(rows)
        more = [x * 2 for x in range(300_000)]
        print(len(copy), len(more))


    main()
"""


def test_run_advise_reports_the_new_kinds(tmp_path, run_memlens, write):
    # GIVEN a program with an unbounded functools cache, a cache attribute
    # on instances and a list copy not needed
    write(tmp_path / "prog.py", CACHES_PROGRAM)
    # WHEN memlens run --advise traces it, and the json and HTML reports are made
    r = run_memlens("run", "-q", "--advise", "-o", "c.mlcap", "prog.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    j = run_memlens("report", "c.mlcap", "--format", "json", cwd=tmp_path)
    h = run_memlens("report", "c.mlcap", "--format", "html", "-o", "r.html", cwd=tmp_path)
    assert j.returncode == 0 and h.returncode == 0, j.stderr + h.stderr
    import json

    # THEN the run printed each, and the reports carry them with their diffs
    advice = {(a["kind"], a["target"]): a for a in json.loads(j.stdout)["advice"]}
    page = (tmp_path / "r.html").read_text()
    for key in (("bounded-cache", "__main__.load"), ("weakref", "__main__.Loader._cache"),
                ("copy", "prog.py:34")):
        assert key in advice, sorted(advice)
        a = advice[key]
        assert f"[{key[0]}] {key[1]}" in r.stderr
        assert a["diff"].startswith("--- prog.py\n+++ prog.py\n") and a["saving"] > 0
        assert f"[{key[0]}]" in page
    # AND `memlens advise` (no capture) gives the heap's two
    r = run_memlens("advise", "prog.py", cwd=tmp_path)
    assert "[bounded-cache] __main__.load" in r.stderr and "[weakref] __main__.Loader._cache" in r.stderr


# ---- examples/playbook.py: all five techniques, advice applied by make demo ---

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "examples"


def test_playbook_example_gets_all_five_techniques(tmp_path, run_memlens, run_python):
    # GIVEN the bundled playbook example
    shutil.copy(EXAMPLES / "playbook.py", tmp_path / "playbook.py")
    # WHEN memlens run --advise traces it
    r = run_memlens("run", "-q", "--advise", "-o", "c.mlcap", "playbook.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # THEN the first round advises slots (or a record), an array, a weak
    # cache and the generator at the peak
    for kind in ("[slots] __main__.Visit", "[record] __main__.Visit", "[array]",
                 "[weakref] __main__.THUMBNAIL_CACHE", "[generator] playbook.py:"):
        assert kind in r.stderr, kind
    # AND the demo applies the advice round by round until the copy is fixed
    # too, and measures less memory at the peak and at the end
    demo = run_python(EXAMPLES / "playbook_demo.py", tmp_path / "work", cwd=tmp_path, timeout=300)
    assert demo.returncode == 0, demo.stderr
    assert "[copy] playbook.py:" in demo.stdout and "memoryview(bytes(size))" in demo.stdout
    final = (tmp_path / "work" / "playbook.py").read_text()
    assert "weakref.WeakValueDictionary()" in final and "sum(v.duration * v.page for v in visits)" in final
    last = demo.stdout.strip().splitlines()[-1]
    assert last.startswith("all rounds: peak ") and "% less), at the end" in last
    assert run_python(tmp_path / "work" / "playbook.py").stdout == run_python(tmp_path / "playbook.py").stdout
