"""Import-system frames folded into "import X" (report/fold.py), and rows
that would print alike merged, in the text and HTML reports."""

import pytest

from memlens.report import fold, html, text
from memlens.report.model import Capture, Frame, StackStat

SITE = "/venv/lib/python3.11/site-packages"
BOOT = "<frozen importlib._bootstrap>"
EXT = "<frozen importlib._bootstrap_external>"


def _machinery():
    # What an import puts between the importer and the module's code, as
    # 3.11 records it (innermost first).
    return (Frame(BOOT, 241, "_call_with_frames_removed"), Frame(EXT, 940, "exec_module"),
            Frame(BOOT, 690, "_load_unlocked"), Frame(BOOT, 1147, "_find_and_load_unlocked"),
            Frame(BOOT, 1176, "_find_and_load"))


MAIN = Frame("/app/main.py", 3, "<module>")


@pytest.mark.parametrize("filename, module", [
    (f"{SITE}/numpy/core/multiarray.py", "numpy.core.multiarray"),
    (f"{SITE}/numpy/__init__.py", "numpy"),
    ("/usr/lib/python3/dist-packages/yaml/reader.py", "yaml.reader"),
    ("/usr/lib/python3.12/json/decoder.py", "json.decoder"),
    ("/usr/lib/python3.13t/email/__init__.py", "email"),
    ("<frozen os>", "os"),
    ("/nowhere/on/this/machine/tool.py", "tool"),
])
def test_module_names_from_file_names(filename, module):
    assert fold.Folder().module_name(filename) == module


def test_module_name_of_a_package_on_disk(tmp_path):
    # GIVEN a package outside site-packages, on this machine
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    # THEN its modules are named by the directories holding an __init__.py
    f = fold.Folder()
    assert f.module_name(str(tmp_path / "pkg" / "sub" / "mod.py")) == "pkg.sub.mod"
    assert f.module_name(str(tmp_path / "pkg" / "__init__.py")) == "pkg"


@pytest.mark.parametrize("filename, machinery", [
    (BOOT, True), (EXT, True), ("<frozen zipimport>", True),
    ("/usr/lib/python3.11/importlib/__init__.py", True),
    ("/usr/lib/python3.9/importlib/_bootstrap_external.py", True),
    ("/usr/lib/python3.11/zipimport.py", True),
    # importlib.metadata reads distributions: the program's own work
    ("/usr/lib/python3.11/importlib/metadata/__init__.py", False),
    ("/app/importlib/__init__.py", False),  # not the standard library's
    ("<frozen os>", False), ("/app/main.py", False),
])
def test_which_files_are_the_import_system(filename, machinery):
    assert fold.is_import_system(filename) is machinery


def test_an_import_becomes_one_frame_named_after_the_module():
    # GIVEN numpy importing numpy.core.multiarray, which allocates, both
    # below the import system's frames
    mod = Frame(f"{SITE}/numpy/core/multiarray.py", 12, "<module>")
    init = Frame(f"{SITE}/numpy/__init__.py", 5, "<module>")
    frames = (mod,) + _machinery() + (init,) + _machinery() + (MAIN,)
    # WHEN folded, THEN each import is one frame
    out = fold.Folder()(frames)
    assert [f.label() for f in out] == [
        "multiarray.py:12 <module>", "import numpy.core.multiarray", "__init__.py:5 <module>",
        "import numpy", "main.py:3 <module>"]
    assert isinstance(out[1], fold.ImportFrame)


def test_allocations_of_the_import_system_itself_name_its_function():
    # GIVEN a module compiled before its code runs: no module frame inside
    frames = (Frame(EXT, 729, "_compile_bytecode"), Frame(EXT, 1069, "get_code")) + _machinery()[1:] + (MAIN,)
    assert [f.label() for f in fold.Folder()(frames)] == ["import ? (_compile_bytecode)", "main.py:3 <module>"]


def test_a_folded_frame_never_equals_a_recorded_one():
    # A capture may hold any names: one spelled like a folded frame stays apart.
    assert fold.ImportFrame(fold.IMPORT_FILE, 0, "import x") != Frame(fold.IMPORT_FILE, 0, "import x")


def test_each_distinct_frame_is_classified_once(monkeypatch):
    # GIVEN 2,000 stacks sharing a few dozen distinct frames
    calls = []
    real = fold.is_import_system
    monkeypatch.setattr(fold, "is_import_system", lambda name: calls.append(name) or real(name))
    stacks = [StackStat((Frame(f"/app/m{i % 20}.py", 1, "<module>"),) + _machinery() + (MAIN,), 1, 1, 1, 1)
              for i in range(2000)]
    # WHEN folded
    folded = fold.fold_capture(Capture(stacks=stacks))
    # THEN each distinct frame was looked at once, and stacks that fold
    # alike merged with their numbers summed
    assert len(calls) == 20 + len(_machinery()) + 1
    assert len(folded.stacks) == 20
    assert sum(s.size for s in folded.stacks) == 2000 and folded.stacks[0].count == 100


def _capture(stacks):
    return Capture(stacks=stacks, total=sum(s.size for s in stacks), peak=sum(s.peak_size for s in stacks))


def test_text_folds_by_default_and_keeps_frames_when_asked():
    mod = Frame(f"{SITE}/pkg/mod.py", 1, "<module>")
    cap = _capture([StackStat((mod,) + _machinery() + (MAIN,), 5 << 20, 2, 5 << 20, 2)])
    assert "mod.py:1 <module>  <- import pkg.mod  <- main.py:3 <module>" in text.render(cap)
    raw = text.render(cap, keep_import_frames=True)
    assert "import pkg.mod" not in raw and f"{BOOT}:241 _call_with_frames_removed" in raw
    assert "import pkg.mod" in text.summary(cap)
    assert "import pkg.mod" not in text.summary(cap, keep_import_frames=True)


def test_rows_that_would_print_alike_are_one_row_with_the_sums():
    # GIVEN three stacks whose shown frames (the innermost and two callers)
    # are the same and that differ only further out, and one that is cut
    # at a different depth
    a, b, c = Frame("/app/a.py", 1, "f"), Frame("/app/b.py", 2, "g"), Frame("/app/c.py", 3, "h")
    stacks = [StackStat((a, b, c, Frame(f"/app/x{i}.py", i, "main")), 1000 + i, 1 + i, 2000 + i, 2 + i)
              for i in range(3)]
    stacks.append(StackStat((a, b, c), 7, 1, 7, 1))
    cap = _capture(stacks)
    # WHEN the text report shows them
    out = text.render(cap, "leaks")
    rows = [line for line in out.splitlines() if "a.py:1 f" in line and "<-" in line]
    # THEN the three are one row of their summed bytes and blocks, and the
    # one without callers beyond stays a row of its own
    assert len(rows) == 2, out
    assert rows[0].split()[:3] == ["2.9", "KiB", "6"]  # 1000+1001+1002 bytes, 1+2+3 blocks
    assert rows[0].endswith("<- ...") and not rows[1].endswith("<- ...")
    assert rows[1].split()[:3] == ["7", "B", "1"]


def test_merged_rows_sum_exactly_in_bytes():
    a = Frame("/app/a.py", 1, "f")
    stacks = [StackStat((a, Frame("/app/b.py", 2, "g"), Frame("/app/c.py", 3, "h"), Frame("/app/x.py", i, "m")),
                        100 * i + 1, i, 0, 0) for i in range(1, 5)]
    labels = text.Labels(text._frame_label)
    merged = text._merge_alike([(s.frames, s.size, s.count) for s in stacks], labels)
    assert [(m[1], m[2]) for m in merged] == [(101 + 201 + 301 + 401, 1 + 2 + 3 + 4)]


def test_html_data_has_the_folded_frames():
    mod = Frame(f"{SITE}/pkg/mod.py", 1, "<module>")
    cap = _capture([StackStat((mod,) + _machinery() + (MAIN,), 5 << 20, 2, 5 << 20, 2)])
    page = html.render(cap)
    assert '"import pkg.mod"' in page and "_find_and_load" not in page
    raw = html.render(cap, keep_import_frames=True)
    assert "_find_and_load" in raw and '"import pkg.mod"' not in raw


def test_json_and_collapsed_keep_the_frames_as_recorded():
    from memlens.report import render

    mod = Frame(f"{SITE}/pkg/mod.py", 1, "<module>")
    cap = _capture([StackStat((mod,) + _machinery() + (MAIN,), 5 << 20, 2, 5 << 20, 2)])
    for fmt in ("json", "collapsed"):
        out = render(cap, fmt, "peak")
        assert "_find_and_load" in out and "import pkg.mod" not in out
