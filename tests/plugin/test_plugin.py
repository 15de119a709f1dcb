"""The pytest plugin end to end: pytest runs in a subprocess (pytester),
with the plugin loaded by ``-p`` (the entry point needs an install), and
the tests check outcomes, failure text and the JSON summary against
allocations of known sizes.

(No conftest.py in this folder: a second module named ``conftest`` would
replace tests/conftest.py in sys.modules, and inspect.getsource of its
helpers would read the wrong file.)"""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]


# As pluggy looks for plugins: every distribution on the path, duplicates
# included (an old install's metadata does not hide a checkout's egg-info).
_DETECT = """
import importlib.metadata as md
print(any(ep.group == "pytest11" and ep.name == "memlens" and ep.value == "memlens.pytest.plugin"
          for dist in md.distributions() for ep in dist.entry_points))
"""


def _plugin_installed():
    """True when the child pytest will see memlens' pytest11 entry point
    (memlens installed with it, or its metadata on the child's path): pytest
    loads the plugin itself then, and a `-p` of the same module under another
    name would be refused as registered twice.  Asked of a child with the
    children's environment, since which metadata wins depends on the path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(os.path.abspath(p) for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", _DETECT], capture_output=True, text=True, env=env)
    return out.stdout.strip() == "True"


# pytest-memray claims the same marker names; it must not act on them here.
BASE_ARGS = ("-p", "no:memray", "-p", "no:cacheprovider") + (() if _plugin_installed() else ("-p", "memlens.pytest.plugin"))


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

GROUND_TRUTH = """
    import pytest

    KEEP = []
    _CACHE = {}

    @pytest.mark.limit_memory("24 MB")
    def test_30mb_over_24mb():
        data = bytearray(30_000_000)

    @pytest.mark.limit_memory("40 MB")
    def test_30mb_under_40mb():
        data = bytearray(30_000_000)

    @pytest.mark.limit_leaks("1 MB")
    def test_appends_2mb_to_a_module_list():
        KEEP.append(bytearray(2_000_000))

    @pytest.mark.limit_leaks("1 MB")
    def test_drops_a_reference_cycle():
        a = [bytearray(2_000_000)]
        a.append(a)

    @pytest.mark.limit_leaks("1 MB", runs=3)
    def test_one_time_cache_with_runs():
        if "with" not in _CACHE:
            _CACHE["with"] = bytearray(2_000_000)

    @pytest.mark.limit_leaks("1 MB")
    def test_one_time_cache_without_runs():
        if "without" not in _CACHE:
            _CACHE["without"] = bytearray(2_000_000)

    @pytest.mark.limit_leaks("1 MB", runs=3)
    def test_leaks_every_run():
        KEEP.append(bytearray(2_000_000))

    @pytest.mark.limit_memory("40 MB")
    @pytest.mark.limit_leaks("1 MB")
    def test_both_markers():
        KEEP.append(bytearray(3_000_000))

    def test_prints_2mb():
        print("x" * 2_000_000)

    @pytest.mark.parametrize("n", [
        pytest.param(1_000_000, marks=pytest.mark.limit_memory("2 MB"), id="1MB-under-2MB"),
        pytest.param(3_000_000, marks=pytest.mark.limit_memory("2 MB"), id="3MB-over-2MB"),
        pytest.param(3_000_000, marks=pytest.mark.limit_memory("4 MiB"), id="3MB-under-4MiB"),
    ])
    def test_per_param(n):
        data = bytearray(n)
"""


def _failure(res, name):
    """The FAILURES section text of test `name`."""
    out = res.stdout.str()
    m = re.search(rf"_{{3,}} {re.escape(name)} _{{3,}}\n(.*?)(?=\n_{{3,}} |\n={{3,}} )", out, re.S)
    assert m, f"no failure section for {name} in:\n{out}"
    return m.group(1)


def test_limits_against_known_allocations(pytester, run_suite, by_id):
    # GIVEN tests that allocate and keep known numbers of bytes
    pytester.makepyfile(test_truth=textwrap.dedent(GROUND_TRUTH))
    # WHEN pytest runs them with --memlens (and sys capture, so that output
    # sits in pytest's buffers while the figures are taken)
    res, doc = run_suite("--memlens", "--capture=sys", "-p", "no:randomly")
    rows = by_id(doc)
    # THEN exactly the tests over a limit fail
    outcomes = {name: row["outcome"] for name, row in rows.items()}
    assert outcomes == {
        "test_30mb_over_24mb": "failed", "test_30mb_under_40mb": "passed",
        "test_appends_2mb_to_a_module_list": "failed", "test_drops_a_reference_cycle": "passed",
        "test_one_time_cache_with_runs": "passed", "test_one_time_cache_without_runs": "failed",
        "test_leaks_every_run": "failed", "test_both_markers": "failed", "test_prints_2mb": "passed",
        "test_per_param[1MB-under-2MB]": "passed", "test_per_param[3MB-over-2MB]": "failed",
        "test_per_param[3MB-under-4MiB]": "passed",
    } or outcomes
    res.assert_outcomes(passed=6, failed=6)
    # the figures are the bytes allocated (the object headers on top: < 200 B)
    assert 30_000_000 <= rows["test_30mb_over_24mb"]["peak_bytes"] < 30_000_200
    assert 2_000_000 <= rows["test_appends_2mb_to_a_module_list"]["leaked_bytes"] < 2_000_200
    assert rows["test_drops_a_reference_cycle"]["leaked_bytes"] < 1000
    assert rows["test_prints_2mb"]["leaked_bytes"] < 1000     # pytest's capture holds it: not counted
    assert rows["test_one_time_cache_with_runs"]["runs"] == 3
    assert rows["test_one_time_cache_with_runs"]["leaked_bytes"] == 0
    assert rows["test_30mb_over_24mb"]["limits"] == {"limit_memory": 24_000_000, "limit_leaks": None,
                                                      "runs": 1}
    assert rows["test_30mb_over_24mb"]["top_lines"][0] == {"line": "test_truth.py:8",
                                                           "bytes": rows["test_30mb_over_24mb"]["top_lines"][0]["bytes"]}
    # AND the failure says the limit, the figure and the line that made it
    text = _failure(res, "test_30mb_over_24mb")
    assert re.search(r"memlens: peak memory 28\.6 MiB \(30,000,\d{3} B\) exceeds "
                     r"limit_memory\('24 MB'\) = 24,000,000 B  \[scope: test body\]", text), text
    assert re.search(r"28\.6 MiB +2 blocks  test_truth\.py:8 in test_30mb_over_24mb", text), text
    text = _failure(res, "test_appends_2mb_to_a_module_list")
    assert "left allocated 1.9 MiB (2,000," in text and "limit_leaks('1 MB')" in text
    assert "test_truth.py:16 in test_appends_2mb_to_a_module_list" in text
    text = _failure(res, "test_leaks_every_run")
    assert "per run (smallest growth of 3 runs after a warm-up)" in text
    assert "retained after the warm-up and each run" in text
    text = _failure(res, "test_both_markers")
    assert "limit_leaks('1 MB')" in text and "limit_memory" not in text
    assert "exceeds limit_memory('2 MB')" in _failure(res, "test_per_param[3MB-over-2MB]")
    # AND the suite summary lists the highest peaks
    out = res.stdout.str()
    assert "= memlens =" in out and "12 tests measured, scope: test body" in out
    assert re.search(r"highest peaks:\n +28\.6 MiB  test_truth\.py::test_30mb_", out)
    assert doc["suite"]["peak_rss_bytes"] > 30_000_000
    assert doc["suite"]["max_test_peak_bytes"] == max(r["peak_bytes"] for r in rows.values())


INERT = """
    import pytest
    import memlens

    @pytest.mark.limit_memory("1 KB")
    def test_big(request):
        data = bytearray(30_000_000)
        assert not memlens.is_tracing()
        assert request.config.pluginmanager.get_plugin("memlens-session") is None
"""


def test_inert_without_the_flag(pytester, run_suite):
    # GIVEN a test over its limit
    pytester.makepyfile(test_inert=textwrap.dedent(INERT))
    # WHEN pytest runs without --memlens, with strict markers
    res, doc = run_suite("--strict-markers")
    # THEN the markers are known, nothing is traced and nothing fails
    res.assert_outcomes(passed=1)
    # (pytest's header names the plugin when it is installed: "plugins: ...")
    body = [line for line in res.stdout.lines if not line.startswith("plugins:")]
    assert not any("memlens" in line for line in body) and doc is None


@pytest.mark.parametrize("code, ini, args, message", [
    ('@pytest.mark.limit_memory("24 XB")', "", (),
     r"ERROR: memlens: test_bad\.py::test_x: bad size '24 XB': expected bytes as an int"),
    ('@pytest.mark.limit_leaks("1 MB", runs=0)', "", (),
     r"ERROR: memlens: test_bad\.py::test_x: limit_leaks\(runs=\.\.\.\) must be an int >= 1, got 0"),
    ("", "memlens_limit_memory = lots", (),
     r"ERROR: memlens: memlens_limit_memory \(ini\): bad size 'lots'"),
    ("", "", ("--memlens-limit-leaks=1 XB",), r"ERROR: memlens: --memlens-limit-leaks: bad size"),
    ("", "", ("--memlens-fail-on-increase=10%",),
     r"ERROR: memlens: --memlens-fail-on-increase needs --memlens-baseline=PATH"),
    ("", "", ("--memlens-fail-on-increase=10%", "--memlens-baseline=nope.json"),
     r"ERROR: memlens: cannot read baseline '.*nope\.json': No such file"),
    ("", "", ("--memlens-top=0",), r"ERROR: memlens: --memlens-top must be at least 1, got 0"),
])
def test_usage_errors_are_one_line(pytester, run_suite, code, ini, args, message):
    # GIVEN a bad marker, ini setting or option
    pytester.makepyfile(test_bad=f"import pytest\n\n{code}\ndef test_x():\n    pass\n")
    pytester.makeini(f"[pytest]\n{ini}\n")
    # WHEN pytest runs with --memlens
    res, _ = run_suite("--memlens", *args)
    # THEN it stops with pytest's usage error (exit 4) and one line naming it
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in res.stderr.lines if line.strip()]
    assert len(lines) == 1 and re.match(message, lines[0]), res.stderr.lines


def test_bad_marker_under_xdist_is_an_error_of_that_test(pytester, run_suite):
    pytest.importorskip("xdist")
    # GIVEN a bad marker, on an xdist worker (which cannot stop the session)
    pytester.makepyfile(test_bad='import pytest\n\n@pytest.mark.limit_memory("24 XB")\n'
                                 'def test_x():\n    pass\n\ndef test_ok():\n    pass\n')
    res, _ = run_suite("--memlens", "-n", "2")
    # THEN that test errors with the same line, the others run
    res.assert_outcomes(passed=1, errors=1)
    assert "ERROR at setup of test_x" in res.stdout.str()
    assert "memlens: test_bad.py::test_x: bad size '24 XB'" in res.stdout.str()


CONFIGURED = """
    import re
    import pytest

    def test_no_marker():
        data = bytearray(2_000_000)

    @pytest.mark.limit_memory("3 MB")
    def test_marker_overrides():
        data = bytearray(2_000_000)

    @pytest.mark.limit_memory(None)
    def test_marker_lifts_the_limit():
        data = bytearray(2_000_000)

    def test_regex_cache_is_ignored():
        re.purge()
        re.compile("|".join(f"word{i}" for i in range(20000)))

    @pytest.mark.limit_memory("1 MB", ignore=["*/test_conf.py"])
    def test_marker_ignore():
        data = bytearray(2_000_000)
"""


def test_ini_and_command_line_settings(pytester, run_suite, by_id):
    # GIVEN global limits in the ini and a frame filter for the re package
    pytester.makepyfile(test_conf=textwrap.dedent(CONFIGURED))
    pytester.makeini("[pytest]\nmemlens_limit_memory = 1 MB\nmemlens_limit_leaks = 1 GB\n"
                     "memlens_ignore =\n    re/*\n    sre_*\n")
    # WHEN the suite runs
    res, doc = run_suite("--memlens")
    rows = by_id(doc)
    # THEN tests without a marker get the ini limit; markers override it
    assert rows["test_no_marker"]["outcome"] == "failed"
    assert rows["test_no_marker"]["limits"]["limit_memory"] == 1_000_000
    assert rows["test_no_marker"]["limits"]["limit_leaks"] == 1_000_000_000
    assert rows["test_marker_overrides"]["outcome"] == "passed"
    assert rows["test_marker_lifts_the_limit"]["outcome"] == "passed"
    # AND ignored frames do not count (the compiled pattern is megabytes)
    assert rows["test_regex_cache_is_ignored"]["outcome"] == "passed"
    assert rows["test_regex_cache_is_ignored"]["peak_bytes"] < 400_000  # the pattern's text
    assert rows["test_marker_ignore"]["outcome"] == "passed"
    # WHEN the command line sets a limit too, it overrides the ini
    res, doc = run_suite("--memlens", "--memlens-limit-memory=3 MB", "-k", "no_marker")
    assert by_id(doc)["test_no_marker"]["outcome"] == "passed"
    # AND without the ignore patterns the regex test is over 1 MB
    pytester.makeini("[pytest]\nmemlens_limit_memory = 1 MB\n")
    res, doc = run_suite("--memlens", "-k", "regex")
    assert by_id(doc)["test_regex_cache_is_ignored"]["outcome"] == "failed"


FIXTURES = """
    import pytest

    @pytest.fixture
    def big():
        data = bytearray(30_000_000)
        yield len(data)

    @pytest.mark.limit_memory("24 MB")
    def test_uses_big(big):
        assert big == 30_000_000
"""


def test_scope_fixtures_counts_setup_and_teardown(pytester, run_suite, by_id):
    # GIVEN a test whose fixture allocates 30 MB
    pytester.makepyfile(test_fix=textwrap.dedent(FIXTURES))
    # WHEN measured in the default scope, the body alone: it passes
    res, doc = run_suite("--memlens")
    res.assert_outcomes(passed=1)
    assert by_id(doc)["test_uses_big"]["scope"] == "call"
    # WHEN fixtures count too, it breaks the limit (checked after teardown)
    res, doc = run_suite("--memlens", "--memlens-scope=fixtures")
    row = by_id(doc)["test_uses_big"]
    assert row["scope"] == "fixtures" and row["outcome"] == "error"
    assert 30_000_000 <= row["peak_bytes"] < 30_001_000
    out = res.stdout.str()
    assert "[scope: test body + fixture setup/teardown]" in out
    assert "test_fix.py:6 in big" in out
    assert "scope: test body + fixture setup/teardown" in out


KNOWN = """
    import pytest

    def build():
        return [bytearray(1000) for _ in range(1000)]

    def test_warm_every_arena():
        # a few hundred MB of small objects, freed: every pymalloc arena warm
        junk = [str(i) * 3 for i in range(2_000_000)]
        del junk

    def test_known_structure():
        data = build()
"""

# In a function: a module-level assignment would grow the globals dict.  The
# test function itself is called inside the measure, as under pytest: on
# 3.9/3.10 its frame is an object allocated by the call.
TRACEMALLOC = """
import tracemalloc
import test_known

def measure():
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    test_known.test_known_structure()
    return tracemalloc.get_traced_memory()[1] - base

tracemalloc.start(1)
print(measure())
"""


@pytest.mark.slow
def test_figures_do_not_depend_on_order_or_worker(pytester, run_suite, by_id):
    pytest.importorskip("xdist")
    # GIVEN a test that builds a known structure, and one that warms the heap
    pytester.makepyfile(test_known=textwrap.dedent(KNOWN))
    # WHEN it runs alone, after the warming test, and on an xdist worker
    _, alone = run_suite("--memlens", "-k", "known_structure")
    _, after = run_suite("--memlens", "-p", "no:randomly")
    _, xdist = run_suite("--memlens", "-n", "2", "-k", "known_structure")
    peaks = [by_id(doc)["test_known_structure"]["peak_bytes"] for doc in (alone, after, xdist)]
    # THEN the peak is the same to the byte
    assert peaks[0] == peaks[1] == peaks[2], peaks
    assert by_id(xdist)["test_known_structure"]["worker"] in ("gw0", "gw1")
    # AND it is tracemalloc's traced peak for the same body, to the byte
    traced = subprocess.run([sys.executable, "-c", TRACEMALLOC], cwd=pytester.path, capture_output=True,
                            text=True, check=True)
    if sys.version_info >= (3, 11):
        assert peaks[0] == int(traced.stdout), (peaks, traced.stdout)
    else:
        # 3.9/3.10: 840 B over tracemalloc's figure, the same in all three
        # runs (call-machinery frame objects of those versions are the
        # likely part; not yet pinned down, see the closing note)
        assert 0 <= peaks[0] - int(traced.stdout) <= 1024, (peaks, traced.stdout)
    assert 1_000_000 < peaks[0] < 1_100_000


XDIST = """
    import pytest

    @pytest.mark.parametrize("i", range(6))
    def test_sizes(i):
        data = bytearray((i + 1) * 1_000_000)

    @pytest.mark.limit_memory("1 MB")
    def test_over():
        data = bytearray(2_000_000)
"""


@pytest.mark.slow
def test_xdist_controller_merges_the_workers(pytester, run_suite, by_id):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_x=textwrap.dedent(XDIST))
    # WHEN the suite runs on two workers
    res, doc = run_suite("--memlens", "-n", "2", "--memlens-top=3")
    # THEN the failure is reported from the worker, the summary holds every test
    res.assert_outcomes(passed=6, failed=1)
    rows = by_id(doc)
    assert len(rows) == 7 and {r["worker"] for r in rows.values()} <= {"gw0", "gw1"}
    for i in range(6):
        assert (i + 1) * 1_000_000 <= rows[f"test_sizes[{i}]"]["peak_bytes"] < (i + 1) * 1_000_000 + 500
    assert rows["test_over"]["outcome"] == "failed"
    assert set(doc["suite"]["peak_rss_by_process"]) <= {"gw0", "gw1"}
    out = res.stdout.str()
    assert "exceeds limit_memory('1 MB')" in out
    m = re.search(r"highest peaks:\n((?: +\S+ \S+  \S+\n)+)", out)
    assert m and len(m.group(1).splitlines()) == 3 and "test_sizes[5]" in m.group(1).splitlines()[0]


ASYNC_AND_CLASS = """
    import asyncio
    import pytest

    KEEP = []

    @pytest.mark.asyncio
    @pytest.mark.limit_memory("24 MB")
    async def test_async_over():
        await asyncio.sleep(0)
        data = bytearray(30_000_000)

    @pytest.mark.asyncio
    @pytest.mark.limit_leaks("1 MB", runs=2)
    async def test_async_leaks_per_run():
        await asyncio.sleep(0)
        KEEP.append(bytearray(2_000_000))

    @pytest.mark.limit_memory("1 MB")
    class TestClass:
        def test_under(self):
            data = bytearray(500_000)

        def test_over(self):
            data = bytearray(2_000_000)

        @pytest.mark.limit_memory("3 MB")
        def test_method_marker_wins(self):
            data = bytearray(2_000_000)
"""


def test_asyncio_and_class_based_tests(pytester, run_suite, by_id):
    pytest.importorskip("pytest_asyncio")
    pytester.makepyfile(test_ac=textwrap.dedent(ASYNC_AND_CLASS))
    res, doc = run_suite("--memlens", "-o", "asyncio_default_fixture_loop_scope=function",
                         plugins=("asyncio",))
    rows = by_id(doc)
    assert {k: v["outcome"] for k, v in rows.items()} == {
        "test_async_over": "failed", "test_async_leaks_per_run": "failed",
        "TestClass::test_under": "passed", "TestClass::test_over": "failed",
        "TestClass::test_method_marker_wins": "passed",
    }
    # the 30 MB buffer, plus what the event loop allocates around the
    # coroutine while it runs (about 21 kB on 3.9/3.10, under 10 kB after)
    assert 30_000_000 <= rows["test_async_over"]["peak_bytes"] < 30_050_000
    assert rows["test_async_leaks_per_run"]["runs"] == 2
    # (the smallest growth: the event loop frees a little of its own per run)
    assert 1_990_000 <= rows["test_async_leaks_per_run"]["leaked_bytes"] < 2_001_000
    assert "test_ac.py:10 in test_async_over" in res.stdout.str()


BASELINE_V1 = """
    def helper(n):
        return bytearray(n)

    def test_grows():
        data = helper(1_000_000)

    def test_same():
        data = bytearray(1_000_000)
"""


def test_baseline_and_fail_on_increase(pytester, run_suite):
    # GIVEN a baseline written by one run
    pytester.makepyfile(test_b=textwrap.dedent(BASELINE_V1))
    res, _ = run_suite("--memlens", "--memlens-baseline=base.json")
    res.assert_outcomes(passed=2)
    base = json.loads((pytester.path / "base.json").read_text())
    assert base["memlens_baseline"] == 1
    entry = base["tests"]["test_b.py::test_grows"]
    assert 1_000_000 <= entry["peak_bytes"] < 1_001_000
    assert 1_000_000 <= entry["top_lines"]["test_b.py:2"] < 1_001_000
    # WHEN one test allocates 50% more, and the run compares with 10% tolerance
    pytester.makepyfile(test_b=textwrap.dedent(BASELINE_V1).replace("helper(1_000_000)", "helper(1_500_000)"))
    res, _ = run_suite("--memlens", "--memlens-baseline=base.json", "--memlens-fail-on-increase=10%")
    # THEN that test fails, naming the line that grew; the baseline is kept
    res.assert_outcomes(passed=1, failed=1)
    text = _failure(res, "test_grows")
    assert "grew beyond the baseline's" in text and "+ 10%" in text
    assert re.search(r"test_b\.py:2: 976\.\d KiB -> 1\.4 MiB \(\+488\.\d KiB\)", text), text
    assert json.loads((pytester.path / "base.json").read_text()) == base
    # AND a tolerance in bytes that covers the growth passes
    res, _ = run_suite("--memlens", "--memlens-baseline=base.json", "--memlens-fail-on-increase=1 MB")
    res.assert_outcomes(passed=2)
