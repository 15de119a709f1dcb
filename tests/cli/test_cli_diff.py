"""memlens diff: per line and per class, views, limits, the CI gate and
one-line errors."""

import re

import pytest

from memlens.report import diff

APP = """
import sys

class Entry:
    def __init__(self, n):
        self.data = bytearray(n)

KEEP = [Entry(5_000) for _ in range(int(sys.argv[1]))]
scratch = bytearray(int(sys.argv[2]))
del scratch
"""


@pytest.fixture(scope="module")
def captures(tmp_path_factory, run_memlens):
    """old.mlcap and new.mlcap of one program: new keeps 200 Entry of 5 kB
    instead of 100 (enough instances for the class to be among the 50
    classes a capture records on every version), and its scratch buffer is
    1 MB smaller."""
    d = tmp_path_factory.mktemp("diff")
    script = d / "app.py"
    script.write_text(APP)
    paths = {}
    for name, count, scratch in (("old", 100, 3_000_000), ("new", 200, 2_000_000)):
        out = d / f"{name}.mlcap"
        proc = run_memlens("run", "-q", "-o", out, script, count, scratch, cwd=d)
        assert proc.returncode == 0, proc.stderr
        paths[name] = out
    return paths["old"], paths["new"]


def test_lines_and_classes_that_grew_and_shrank(captures, run_memlens):
    # WHEN two captures are compared in the leaks view
    proc = run_memlens("diff", *captures, "--view", "leaks")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # THEN the line that keeps the entries grew by 100 x 5 kB
    assert "bytes still allocated at exit" in out
    grew = out.split("Lines that grew")[1].split("Lines that shrank")[0]
    # (5,000-byte buffers, and on 3.9/3.10 each instance's __dict__ on that line too)
    m = re.search(r"(\d+\.\d) KiB -> +(\d+\.\d) KiB +\+(\d+\.\d) KiB +\S*app\.py:6\n", grew)
    assert m, out
    assert 100 * 5000 <= float(m.group(3)) * 1024 < 100 * 5300, out
    assert "app.py:9" not in grew
    # AND the class table shows Entry instances 100 -> 200
    classes = out.split("Classes that grew (bytes at exit)")[1].split("Classes that shrank")[0]
    assert "__main__.Entry (100 -> 200)" in classes


def test_peak_view_and_limit(captures, run_memlens):
    # the peak view sees the scratch buffer (line 9): 1 MB smaller
    proc = run_memlens("diff", *captures, "--limit", "1")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "bytes at the peak" in out
    shrank = out.split("Lines that shrank")[1].split("Classes")[0]
    assert re.search(r"2\.9 MiB -> +1\.9 MiB +-976\.\d KiB +\S*app\.py:9\n", shrank), out


def test_renderer_on_hand_built_models(make_capture):
    # GIVEN the same capture twice, the second with one stack 1000 B bigger
    old, new = make_capture(), make_capture()
    new.stacks[0].peak_size += 1000
    new.classes[0] = type(new.classes[0])("app.Entry", 4, 4000)
    # THEN one line grew by exactly that, and the class by 1000 B, 3 -> 4
    (change,) = diff.line_changes(old, new, "peak")
    assert (change.key, change.old_bytes, change.new_bytes, change.delta) == ("/app/cache.py:20", 5000, 6000, 1000)
    (cls,) = diff.class_changes(old, new)
    assert (cls.key, cls.old_count, cls.new_count, cls.delta) == ("app.Entry", 3, 4, 1000)
    text = diff.render(old, new, "peak")
    assert "total: 12.8 KiB -> 13.8 KiB (+1000 B)" in text
    assert "app.Entry (3 -> 4)" in text
    assert diff.class_changes(old, make_capture(classes=False)) is None
    with pytest.raises(ValueError, match="unknown view"):
        diff.render(old, new, "allocated")


@pytest.mark.parametrize("tolerance, code", [("10%", 1), ("1000%", 0), ("100 B", 1), ("1 GB", 0)])
def test_fail_on_increase(captures, run_memlens, tolerance, code):
    # the leaks total grew by about 500 kB over about 600 kB
    proc = run_memlens("diff", *captures, "--view", "leaks", "--fail-on-increase", tolerance)
    assert proc.returncode == code, proc.stderr
    if code:
        assert proc.stderr.startswith(f"memlens diff: leaks total grew beyond {tolerance}: ")


def test_errors_are_one_line(captures, run_memlens, tmp_path):
    old, _ = captures
    junk = tmp_path / "junk.mlcap"
    junk.write_bytes(b"not a capture at all" * 10)
    cases = [
        ((old, tmp_path / "missing.mlcap"), 2, "cannot read capture"),
        ((old, tmp_path), 2, "is not a file"),
        ((old, junk), 1, "junk.mlcap"),
        ((old, old, "--fail-on-increase", "lots"), 2, "bad tolerance 'lots'"),
        ((old, old, "--limit", "0"), 2, "--limit must be at least 1"),
        ((old, old, "--view", "allocated"), 2, "invalid choice"),
    ]
    for args, code, message in cases:
        proc = run_memlens("diff", *args)
        assert proc.returncode == code, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("memlens diff: error: ") and message in lines[0], \
            (args, proc.stderr)
