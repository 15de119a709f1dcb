"""The capture fuzzer (tests/fuzz/fuzz_captures.py) for a bounded time: on a
fixed seed, so a regression shows on every run, and on a random seed that
the output names, so CI keeps exploring.  In a subprocess: a crash fails
this test, not the suite."""
import os

import pytest

FUZZER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz", "fuzz_captures.py")


@pytest.mark.slow
@pytest.mark.parametrize("seed, seconds", [(20261203, 12), (None, 8)])
def test_fuzzed_captures_load_or_are_refused_in_one_line(run_python, seed, seconds):
    args = [FUZZER, "--seconds", str(seconds), "--cli", "10"]
    if seed is not None:
        args += ["--seed", str(seed)]
    r = run_python(*args, timeout=seconds + 120)
    print(r.stdout)  # the seed and the case counts, kept in pytest's report
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.splitlines()[-1].startswith("ok seed ")


@pytest.mark.slow
def test_coverage_guided_captures_load_or_are_refused_in_one_line(run_python):
    # libFuzzer (atheris, in the test extra) guided by the readers' coverage
    pytest.importorskip("atheris")
    r = run_python(FUZZER, "--atheris", "--seconds", "8", "--seed", "20261203", timeout=180)
    print(r.stdout, r.stderr[-1500:])  # the seed and libFuzzer's final stats
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Done " in r.stderr and "stat::number_of_executed_units" in r.stderr
