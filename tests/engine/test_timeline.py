"""The timeline sampler thread of `memlens run` (timeline.c)."""

import os
import struct
import subprocess
import sys
import time

import pytest

import memlens
from memlens import _core


def test_start_stop_and_samples():
    memlens.start(frames=1)
    try:
        _core.timeline_start(2.0)
        with pytest.raises(RuntimeError):
            _core.timeline_start(2.0)
        keep = bytearray(5_000_000)
        time.sleep(0.05)
        interval, tl = _core.timeline_stop()
    finally:
        memlens.stop()
    samples = list(struct.iter_unpack("<4Q", tl))
    assert interval == 2.0
    assert 5 <= len(samples) <= 0.05 / 0.002 + 10
    t = [s[0] for s in samples]
    assert t == sorted(t)
    # the last sample (taken by stop) sees the 5 MB block
    assert samples[-1][1] >= 5_000_000 and samples[-1][2] >= samples[-1][1]
    assert all(s[3] > 0 for s in samples)
    del keep


def test_stop_without_start_is_a_no_op():
    assert _core.timeline_stop() == (0.0, b"")


@pytest.mark.parametrize("bad", [0, -1, 0.01, 1e10, float("nan")])
def test_bad_interval(bad):
    with pytest.raises(ValueError):
        _core.timeline_start(bad)


def test_runs_without_the_tracer():
    _core.timeline_start(1.0)
    interval, tl = _core.timeline_stop()
    assert len(tl) >= 64 and struct.unpack_from("<Q", tl, 8)[0] == 0


def test_long_runs_are_halved_not_grown():
    # GIVEN room for 16 samples at 1 ms
    _core.timeline_start(1.0, 16)
    time.sleep(0.2)
    interval, tl = _core.timeline_stop()
    # THEN the array was halved (never grown) and the interval doubled
    # each time: a run of any length keeps a bounded timeline
    n = len(tl) // 32
    assert 8 <= n <= 16
    assert interval >= 4.0
    t = [s[0] for s in struct.iter_unpack("<4Q", tl)]
    assert t == sorted(t) and t[-1] >= 0.2e9
    with pytest.raises(ValueError):
        _core.timeline_start(1.0, 2)


def _prints_ok(code, timeout, hang):
    """Run `code` in a fresh interpreter, which must print "ok"; a hang
    fails the test as `hang`, not the whole suite."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(hang)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


def test_concurrent_stops_both_return():
    # Two threads stopping the sampler at once: only one may join it (a
    # second pthread_join of the same thread hung).  Run in a subprocess so
    # a hang fails this test instead of the whole suite.
    code = """if True:
        import threading
        from memlens import _core
        for _ in range(50):
            _core.timeline_start(1000.0)
            barrier = threading.Barrier(2)
            results = []
            def stop():
                barrier.wait()
                results.append(_core.timeline_stop())
            threads = [threading.Thread(target=stop) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            # one call got the samples, the other was a no-op
            results.sort()
            assert results[0] == (0.0, b""), results[0]
            assert results[1][0] == 1000.0 and len(results[1][1]) >= 64, results[1]
        # and the sampler starts again afterwards
        _core.timeline_start(1.0)
        assert _core.timeline_stop()[1]
        print("ok")
    """
    _prints_ok(code, 30, "concurrent timeline_stop() calls hung")


def test_fork_right_after_start_then_sampling_in_the_child():
    # A program that forks as soon as `memlens run` started the sampler,
    # the child starting and stopping its own: the child inherited the
    # sampler's condition variable with the parent's thread registered as
    # its waiter, and its first stop waited forever for it (glibc); and a
    # fork while the new thread was still starting left the child an
    # allocator lock held (GCC 12's ASan).  In a subprocess: a hang fails
    # this test, not the suite.
    code = """if True:
        import os
        from memlens import _core
        for _ in range(20):
            _core.timeline_start(1.0)
            pid = os.fork()
            if pid == 0:
                _core.timeline_start(1.0)
                keep = bytearray(100_000)
                ok = len(_core.timeline_stop()[1]) >= 64
                os._exit(0 if ok else 3)
            _, status = os.waitpid(pid, 0)
            assert status == 0, status
            assert _core.timeline_stop()[1]
        print("ok")
    """
    _prints_ok(code, 60, "a child forked just after timeline_start() hung")
