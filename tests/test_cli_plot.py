"""`memlens plot`: the timeline as a picture (matplotlib optional)."""

import os
import subprocess
import sys

import pytest

from memlens.report.model import Capture, Sample

from test_cli_report import make_capture


def _run(tmp_path, *args):
    import memlens as m

    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(m.__file__)))
    return subprocess.run([sys.executable, "-m", "memlens", "plot", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)


def test_plot_png_and_svg(tmp_path):
    pytest.importorskip("matplotlib")
    from memlens.cli.plot import plot

    plot(make_capture(), str(tmp_path / "m.png"))
    plot(make_capture(), str(tmp_path / "m.svg"))
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (tmp_path / "m.svg").read_text()
    assert "<svg" in svg and "peak" in svg


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path):
    # GIVEN an interpreter where importing matplotlib fails
    (tmp_path / "matplotlib.py").write_text("raise ImportError('no matplotlib here')\n")
    (tmp_path / "c.mlcap").write_bytes(b"")
    r = subprocess.run([sys.executable, "-c",
                        "import sys; sys.path.insert(0, sys.argv[1]); from memlens.__main__ import main; "
                        "sys.exit(main(['plot', 'c.mlcap', '-o', 'm.png']))", str(tmp_path)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "pip install 'memlens[plot]'" in r.stderr


def test_plot_write_failure_is_one_line(tmp_path):
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
    r = _run(tmp_path, "c.mlcap", "-o", "m.png")
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "cannot write" in r.stderr and "Traceback" not in r.stderr
