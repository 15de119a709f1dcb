"""The test-only extension memlens._testcore: what moved there from the
engine, and how it reaches the engine's state (the _core._testapi capsule,
csrc/testapi.h)."""
import sys

import pytest

from memlens import _core, _testcore

MOVED = {
    "_test_raw_malloc": "raw_malloc",
    "_test_raw_realloc": "raw_realloc",
    "_test_raw_free": "raw_free",
    "_test_raw_churn_nogil": "raw_churn_nogil",
    "trace_chain_only": "trace_chain_only",
}
if sys.version_info < (3, 12):
    MOVED["lineprof_null_trace"] = "lineprof_null_trace"


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_test_entry_points_are_in_testcore_not_in_the_engine(old, new):
    assert not hasattr(_core, old)
    assert callable(getattr(_testcore, new))


def test_the_engine_lends_its_test_api_as_a_capsule():
    # GIVEN the capsule _testcore imported at its own import
    # THEN it is a capsule of that name (its repr names it)
    assert type(_core._testapi).__name__ == "PyCapsule"
    assert '"memlens._core._testapi"' in repr(_core._testapi)


def test_raw_calls_round_trip():
    # GIVEN a block from the RAW domain
    p = _testcore.raw_malloc(100)
    # WHEN it grows and is freed
    q = _testcore.raw_realloc(p, 10_000)
    _testcore.raw_free(q)
    # THEN addresses are plain ints, and the churn hands back what it kept
    assert isinstance(q, int) and q != 0
    kept = _testcore.raw_churn_nogil(10, 64, 3)
    assert len(kept) == 3 and all(isinstance(a, int) and a for a in kept)
    for a in kept:
        _testcore.raw_free(a)
