"""Fixtures of the pytest plugin's tests: a pytest run in a subprocess with
the plugin loaded by ``-p`` (the entry point needs an install)."""

import json
import os
import sys

import pytest

# pytest-memray claims the same marker names; it must not act on them here.
BASE_ARGS = ("-p", "no:memray", "-p", "no:cacheprovider", "-p", "memlens.pytest.plugin")


@pytest.fixture
def run_suite(pytester, monkeypatch):
    """run_suite(*args, plugins=("no:asyncio",)) -> (RunResult, JSON summary
    or None) of ``pytest -p memlens.pytest.plugin *args`` in a subprocess,
    in pytester's folder; --memlens-json is added when --memlens is given."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(os.path.abspath(p) for p in sys.path if p))

    def run(*args, plugins=("no:asyncio",), timeout=120):
        extra = []
        for p in plugins:
            extra += ["-p", p]
        path = pytester.path / "memlens-summary.json"
        if path.exists():
            path.unlink()
        if "--memlens" in args:
            extra.append(f"--memlens-json={path}")
        res = pytester.runpytest_subprocess(*BASE_ARGS, *extra, *args, timeout=timeout)
        doc = json.loads(path.read_text()) if path.exists() else None
        return res, doc

    return run


@pytest.fixture
def by_id():
    """by_id(doc) -> {test name (nodeid after '::'): row} of a JSON summary."""
    return lambda doc: {t["nodeid"].split("::", 1)[1]: t for t in doc["tests"]}
