"""Stress: the tracer's start/stop path against everything else that runs in
the process at the same time -- threads that allocate without the GIL,
subinterpreters with a GIL of their own, start() and stop() from several
threads, fork.  Each case runs in its own interpreter (a crash fails one
test) and is bounded in time."""
import sys

import pytest

# The raw-allocator test entry points (the test-only extension).
TESTAPI = """
from memlens import _testcore as T
"""


def test_start_stop_while_gilless_threads_hammer_the_raw_domain(run_ok):
    # GIVEN six threads calling PyMem_RawMalloc/Realloc/Free without the GIL
    # (as native threads of a C library do), WHEN the main thread starts and
    # stops tracing in a loop, in both modes, THEN nothing crashes: a call
    # that races the switch of the allocator goes to the previous allocator
    # or to memlens' hook, and either works.
    out = run_ok(TESTAPI + """
import threading, time, memlens
done = threading.Event()
def churn():
    while not done.is_set():
        for a in T.raw_churn_nogil(2000, 48, 4):
            T.raw_free(a)
ts = [threading.Thread(target=churn) for _ in range(6)]
for t in ts: t.start()
end = time.monotonic() + 4
n = 0
while time.monotonic() < end:
    memlens.start(frames=4, sample_bytes=0 if n % 2 else 4096)
    memlens.stop()
    n += 1
done.set()
for t in ts: t.join()
print("ok", n)
""", timeout=120)
    assert out.startswith("ok ")
    assert int(out.split()[1]) > 50


@pytest.mark.skipif(sys.version_info < (3, 12), reason="interpreters with a GIL of their own: 3.12+")
def test_start_stop_while_a_subinterpreter_allocates(run_ok):
    # GIVEN a subinterpreter with a GIL of its own allocating in a thread,
    # WHEN the main interpreter starts and stops tracing in a loop, THEN
    # nothing crashes.
    out = run_ok("""
import threading, time
try:
    import _interpreters as interpreters      # 3.13
except ImportError:
    import _xxsubinterpreters as interpreters  # 3.12
import memlens
iid = interpreters.create()
def body():
    interpreters.run_string(iid, "import time\\nend = time.monotonic() + 4\\n"
                                 "while time.monotonic() < end:\\n    x = [bytes(i % 200) for i in range(2000)]\\n")
t = threading.Thread(target=body)
t.start()
n = 0
while t.is_alive():
    memlens.start(frames=4, sample_bytes=0 if n % 2 else 4096)
    y = [str(i) for i in range(100)]
    memlens.stop()
    n += 1
t.join()
interpreters.destroy(iid)
print("ok", n)
""", timeout=120)
    assert out.startswith("ok ")


def test_start_and_stop_from_four_threads(run_ok):
    # GIVEN four threads that each start, snapshot and stop tracing in a
    # loop while allocating, THEN each start() either starts or says that
    # tracing is on, each snapshot is either taken or refused as not
    # tracing, and the process ends with tracing off.
    out = run_ok("""
import threading, time, memlens
errors = []
def body(k):
    end = time.monotonic() + 3
    while time.monotonic() < end:
        try:
            memlens.start(frames=4, sample_bytes=0 if k % 2 else 4096)
        except RuntimeError as e:
            if "already tracing" not in str(e):
                errors.append(e)
        x = [bytearray(64) for _ in range(200)]
        try:
            memlens.take_snapshot()
        except RuntimeError as e:
            if "not tracing" not in str(e):
                errors.append(e)
        memlens.stop()
        del x
ts = [threading.Thread(target=body, args=(k,)) for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print("ok", memlens.is_tracing(), errors[:3])
""", timeout=120)
    assert out.split("\n")[0] == "ok False []"
