"""`memlens plot`: the timeline as a picture (matplotlib optional)."""

import os

import pytest


def test_plot_png_and_svg(tmp_path, make_capture):
    pytest.importorskip("matplotlib")
    from memlens.cli.plot import plot

    plot(make_capture(), str(tmp_path / "m.png"))
    plot(make_capture(), str(tmp_path / "m.svg"))
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (tmp_path / "m.svg").read_text()
    assert "<svg" in svg and "peak" in svg


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path, run_python):
    # GIVEN an interpreter where importing matplotlib fails
    (tmp_path / "matplotlib.py").write_text("raise ImportError('no matplotlib here')\n")
    (tmp_path / "c.mlcap").write_bytes(b"")
    r = run_python("-c", "import sys; sys.path.insert(0, sys.argv[1]); from memlens.__main__ import main; "
                         "sys.exit(main(['plot', 'c.mlcap', '-o', 'm.png']))", tmp_path, cwd=tmp_path, timeout=60)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "pip install 'memlens[plot]'" in r.stderr


def test_plot_write_failure_is_one_line(tmp_path, run_memlens):
    pytest.importorskip("matplotlib")
    # GIVEN a capture with a timeline, and an output path that passes the
    # up-front checks but cannot be opened: a symlink into a missing directory
    import memlens
    from memlens import _core

    memlens.start(frames=1)
    table = _core.trace_take_snapshot()
    memlens.stop()
    _core.cap_run_write(str(tmp_path / "c.mlcap"), table, {}, 1.0, bytes(64), None)
    os.symlink(tmp_path / "missing" / "m.png", tmp_path / "m.png")
    # WHEN plotted there, THEN one line and exit 2, not a traceback
    r = run_memlens("plot", "c.mlcap", "-o", "m.png", cwd=tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "cannot write" in r.stderr and "Traceback" not in r.stderr
