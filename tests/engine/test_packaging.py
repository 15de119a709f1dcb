"""Packaging: the C engine lives in csrc/, outside the Python package.

An unbuilt checkout must fail to import with one clear message (not a
namespace package without `Record`), and a wheel must carry the Python
package, the extensions (the engine and the test-only memlens._testcore)
and the engine's stub, never the C sources.
"""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PACKAGE = os.path.join(ROOT, "src", "memlens")

NOT_BUILT = (
    "ImportError: the C engine memlens._core is not built; run `make build` or `pip install .`"
)


def _copy_python_only(dst):
    """src/memlens without the extension (and without caches)."""

    def ignore(directory, names):
        return [n for n in names if n.endswith((".so", ".pyd")) or n == "__pycache__"]

    shutil.copytree(PACKAGE, os.path.join(dst, "memlens"), ignore=ignore)


def test_import_without_the_extension_says_it_is_not_built(tmp_path):
    # GIVEN the Python files of the package, with no built extension
    _copy_python_only(str(tmp_path))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    # WHEN it is imported
    proc = subprocess.run(
        [sys.executable, "-c", "import memlens"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True,
    )
    # THEN one ImportError line says what to do, and the exit status is 1
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == NOT_BUILT
    assert "Record" not in proc.stderr
    assert "During handling" not in proc.stderr  # raised `from None`


def test_a_stray_core_folder_is_not_taken_for_the_engine(tmp_path):
    # GIVEN an old checkout's src/memlens/_core/ left behind (a namespace package)
    _copy_python_only(str(tmp_path))
    os.mkdir(os.path.join(str(tmp_path), "memlens", "_core"))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    # WHEN the package is imported
    proc = subprocess.run(
        [sys.executable, "-c", "import memlens"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True,
    )
    # THEN the same message, not "no attribute 'Record'"
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == NOT_BUILT


def _copy_tree(dst):
    """The files a wheel is built from: no build/, venvs, VCS data or built objects."""

    def ignore(directory, names):
        skip = {".git", "build", "dist", "__pycache__", ".pytest_cache"}
        return [
            n for n in names
            if n in skip or n.startswith(".venv") or n.endswith((".so", ".o", ".egg-info"))
            or n.startswith(".built-")
        ]

    shutil.copytree(ROOT, dst, ignore=ignore)


@pytest.mark.slow
def test_wheel_holds_the_package_and_the_extension_only(tmp_path):
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    # GIVEN a clean copy of the source tree
    src = tmp_path / "src-tree"
    out = tmp_path / "dist"
    _copy_tree(str(src))
    # WHEN a wheel is built from it (offline, with the installed setuptools)
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("MEMLENS_SANITIZE", None)
    env.pop("MEMLENS_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
         "-q", "-w", str(out), str(src)],
        env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(out.glob("memlens-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(str(wheels[0])) as zf:
        names = zf.namelist()
    # THEN it holds the Python package, the extension, stubs, py.typed and
    # the report assets -- and no C source or header
    payload = [n for n in names if ".dist-info/" not in n]
    assert not [n for n in names if n.endswith((".c", ".h"))]
    unexpected = [
        n for n in payload
        if not n.startswith("memlens/")
        or not (
            n.endswith((".py", ".pyi", ".so")) or n == "memlens/py.typed"
            or n in ("memlens/report/report.js", "memlens/report/report.css")
        )
    ]
    assert unexpected == []
    # two extensions: the engine and the test-only memlens._testcore
    extensions = sorted(n for n in payload if n.endswith(".so"))
    assert [n.split(".")[0] for n in extensions] == ["memlens/_core", "memlens/_testcore"]
    for needed in ("memlens/__init__.py", "memlens/_core.pyi", "memlens/py.typed",
                   "memlens/report/report.js", "memlens/report/report.css",
                   "memlens/cli/__init__.py"):
        assert needed in payload
    assert not [n for n in payload if n.startswith("memlens/_core/")]
