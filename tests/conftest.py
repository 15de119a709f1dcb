"""Shared fixtures: subprocess runners, script writing, capture bytes and a
hand-built report model.  Tests take these as fixtures; no test module
imports another.

Folders mirror the code: engine/ (the C engine's own entry points and
CPython layouts), api/ (the public Python API), cli/ (the memlens command),
reports/ (renderers, tested on hand-built models)."""

import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap

import pytest

SANITIZED = os.environ.get("MEMLENS_SANITIZED") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test that takes seconds; skipped under the sanitizer build")
    config.addinivalue_line("markers", "not_sanitized(reason): skipped under the ASan+UBSan build, for the "
                                       "reason given")


def pytest_collection_modifyitems(config, items):
    if not SANITIZED:
        return
    slow = pytest.mark.skip(reason="too slow under ASan")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(slow)
        mark = item.get_closest_marker("not_sanitized")
        if mark is not None:
            item.add_marker(pytest.mark.skip(reason=mark.args[0] if mark.args else "not under ASan"))


@pytest.fixture(scope="session")
def sanitized():
    """True under the ASan+UBSan build (`make sanitize`)."""
    return SANITIZED


def _child_env(extra=None):
    # A child imports memlens (and the test helpers' folders) the way this
    # process does.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    if extra:
        env.update(extra)
    return env


@pytest.fixture(scope="session")
def child_env():
    """env(**extra) -> the environment for a child that must import memlens
    as this test process does."""
    return lambda **extra: _child_env(extra)


@pytest.fixture(scope="session")
def run_python():
    """run_python(*args, cwd=None, timeout=120, env=None, input=None) ->
    CompletedProcess of `python *args` (text mode, output captured)."""
    def run(*args, cwd=None, timeout=120, env=None, input=None):
        return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, env=_child_env(env), input=input)

    return run


@pytest.fixture(scope="session")
def run_code(run_python):
    """run_code(code, **kw) -> CompletedProcess of `python -c dedent(code)`:
    crash-prone cases run there, so one crash fails one test."""
    return lambda code, **kw: run_python("-c", textwrap.dedent(code), **kw)


@pytest.fixture(scope="session")
def run_ok(run_code):
    """run_ok(code) -> stdout of `python -c code`, which must exit 0."""
    def run(code, **kw):
        proc = run_code(code, **kw)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    return run


@pytest.fixture(scope="session")
def run_memlens(run_python):
    """run_memlens(*args, cwd=None, timeout=60, ...) -> CompletedProcess of
    the `memlens` command (`python -m memlens *args`)."""
    return lambda *args, timeout=60, **kw: run_python("-m", "memlens", *args, timeout=timeout, **kw)


@pytest.fixture(scope="session")
def write():
    """write(path, text) -> path, with `text` dedented."""
    def write(path, text):
        path.write_text(textwrap.dedent(text))
        return path

    return write


class CaptureBytes:
    """The byte-level layout of a capture file: sections and the END
    checksum (see csrc/capture/), for tests that corrupt captures on
    purpose.  Self-contained so that a fuzzing child can take its source."""

    @staticmethod
    def fnv1a(data):
        h = 0xcbf29ce484222325
        for b in data:
            h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        return h

    @staticmethod
    def sections(data):
        """[(tag, offset of payload, length)] of a capture."""
        out, i = [], 12
        while i < len(data):
            tag, _res, n = struct.unpack_from("<4sIQ", data, i)
            out.append((tag, i + 16, n))
            i += 16 + n
        return out

    @staticmethod
    def reseal(data):
        """Recompute the END checksum after editing a capture."""
        end = CaptureBytes.sections(data)[-1]
        assert end[0] == b"END "
        body = data[:end[1] - 16]
        return body + struct.pack("<4sIQQ", b"END ", 0, 8, CaptureBytes.fnv1a(body))

    DEFLATED = 1  # a section header's flags (2.0+): u64 length, then zlib

    @staticmethod
    def flags(data):
        """{tag: flags} of a capture's section headers."""
        return {tag: struct.unpack_from("<I", data, off - 12)[0]
                for tag, off, _n in CaptureBytes.sections(data)}

    @staticmethod
    def inflate(data, version=None):
        """The capture with every deflated section stored plain (flags 0),
        resealed, for tests that edit a section's bytes; with version=(major,
        minor), that header too: (1, 1) gives the file memlens 1.1 wrote for
        the same table (1.x had no deflated sections)."""
        import zlib
        head = data[:8] + (struct.pack("<HH", *version) if version else data[8:12])
        out = bytearray(head)
        for tag, off, n in CaptureBytes.sections(data):
            flags = struct.unpack_from("<I", data, off - 12)[0]
            payload = data[off:off + n]
            if flags & CaptureBytes.DEFLATED:
                (size,) = struct.unpack_from("<Q", payload)
                payload = zlib.decompress(payload[8:])
                assert len(payload) == size
            out += struct.pack("<4sIQ", tag, 0, len(payload)) + payload
        return CaptureBytes.reseal(bytes(out))

    @staticmethod
    def deflated(tag, payload, declared=None, level=6):
        """One deflated section (2.0): header, u64 declared length (the
        payload's unless told), zlib stream."""
        import zlib
        body = struct.pack("<Q", len(payload) if declared is None else declared) + \
            zlib.compress(payload, level)
        return struct.pack("<4sIQ", tag, CaptureBytes.DEFLATED, len(body)) + body


@pytest.fixture(scope="session")
def capture_bytes():
    return CaptureBytes


@pytest.fixture(scope="session")
def make_capture():
    """make_capture(classes=True) -> a small report model built by hand (no
    tracer): main -> put leaks 3000 B in 3 blocks (5000 B at peak), main ->
    load leaves nothing (8000 B at peak), main itself 100 B."""
    from memlens.report.model import Capture, ClassRow, Frame, Sample, StackStat

    a = Frame("/app/main.py", 10, "<module>")
    b = Frame("/app/cache.py", 20, "put")
    c = Frame("/app/cache.py", 30, "load")

    def make(classes=True):
        stacks = [
            StackStat((b, a), 3000, 3, 5000, 5),
            StackStat((c, a), 0, 0, 8000, 2),
            StackStat((a,), 100, 1, 100, 1),
        ]
        return Capture(
            stacks=stacks, total=3100, peak=13100, max_frames=16,
            meta={"command": "memlens run main.py", "exit_code": "0", "duration_s": "1.5",
                  "python": "3.11.7"},
            interval_ms=10.0,
            timeline=[Sample(0.0, 0, 0, 1 << 20), Sample(0.5, 13100, 13100, 2 << 20),
                      Sample(1.0, 3100, 13100, 2 << 20)],
            classes=[ClassRow("app.Entry", 3, 3000), ClassRow("dict", 10, 2000)] if classes else None,
        )

    make.frames = (a, b, c)
    return make


@pytest.fixture
def no_tracer_left():
    """Stops memlens' tracer and tracemalloc after the test, whatever it
    left running (a failed assertion between start and stop)."""
    yield
    import tracemalloc

    import memlens

    memlens.stop()
    if tracemalloc.is_tracing():
        tracemalloc.stop()


@pytest.fixture(scope="session")
def go_pprof(tmp_path_factory):
    """go_pprof(path) -> (sample types, [(values, [(function, file, line),
    ...innermost first])]) as Go's own pprof reads the profile at `path`
    (`go tool pprof -raw`; skips when go is not installed: .ci/run installs
    Debian's golang-go)."""
    go = shutil.which("go")
    home = tmp_path_factory.mktemp("go-home")

    def read(path):
        if go is None:
            pytest.skip("go is not installed (CI installs golang-go: .ci/run)")
        env = dict(os.environ, HOME=str(home), GOCACHE=str(home / "cache"), PPROF_TMPDIR=str(home))
        r = subprocess.run([go, "tool", "pprof", "-raw", str(path)], capture_output=True, text=True,
                           timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        i = lines.index("Samples:")
        types = [t.replace("[dflt]", "") for t in lines[i + 1].split()]
        j = lines.index("Locations")
        locations = {}
        for line in lines[j + 1:]:
            if line.startswith("Mappings"):
                break
            # "  12: 0x0 M=1 function file:line s=0" (a file may hold spaces:
            # "<frozen importlib._bootstrap>"); a name pprof shortens (it
            # drops "<...>" as C++ template arguments: "<module>") is shown
            # shortened, then whole in parentheses
            m = re.match(r"\s*(\d+): 0x0 M=1 (\S*) (.*):(\d+) s=0(?:\((.*)\))?$", line)
            assert m is not None, line
            locations[int(m[1])] = (m[5] if m[5] is not None else m[2], m[3], int(m[4]))
        samples = []
        for line in lines[i + 2:j]:
            m = re.match(r"\s*(-?\d+(?:\s+-?\d+)*):((?:\s+\d+)*)\s*$", line)
            if m is None:  # a label line of the sample above ("pid:[123]")
                continue
            samples.append(([int(v) for v in m[1].split()], [locations[int(x)] for x in m[2].split()]))
        return types, samples

    return read


@pytest.fixture(scope="session")
def dump_dom(tmp_path_factory):
    """dump_dom(url, budget_ms=10000) -> the DOM headless chromium ends with
    after loading `url` (skips when chromium is not installed; .ci/run
    installs it)."""
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)

    def dump(url, budget_ms=10000):
        if browser is None:
            pytest.skip("chromium is not installed (CI installs it: .ci/run)")
        profile = tmp_path_factory.mktemp("chromium-profile")
        r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            f"--user-data-dir={profile}", "--window-size=1200,900",
                            f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                           capture_output=True, text=True, timeout=120)
        return r.stdout

    return dump


# The child of load_probe: refuse `path` with `loader` and say how (one JSON
# line): the exception's class and message, the seconds it took and how much
# the resident set grew.  Under an address-space limit of 1 GiB above what it
# has mapped, so an unbounded reader fails with MemoryError (not by taking
# the machine's memory).
_LOAD_PROBE = textwrap.dedent("""\
    import json, os, resource, sys, time
    loader, path = sys.argv[1], sys.argv[2]
    import memlens
    from memlens.report import model
    if os.environ.get("MEMLENS_SANITIZED") != "1":
        vm = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))
    load = {"snapshot": memlens.Snapshot.load, "model": model.load}[loader]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    try:
        load(path)
        what = ["loaded", ""]
    except BaseException as e:
        what = [type(e).__name__, str(e)]
    took = time.monotonic() - t0
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps(what + [took, grew * 1024]))
""")


@pytest.fixture(scope="session")
def load_probe(run_python):
    """load_probe(loader, path) -> (exception name or "loaded", message,
    seconds, bytes the resident set grew): `loader` ("snapshot":
    memlens.Snapshot.load, "model": the report model) given `path` in a
    child process."""
    import json

    def probe(loader, path):
        r = run_python("-c", _LOAD_PROBE, loader, path, timeout=30)
        assert r.returncode == 0, r.stderr
        return tuple(json.loads(r.stdout))

    return probe


CAPTURE_HEADER = b"\x89MLNSCAP" + struct.pack("<HH", 1, 1)


@pytest.fixture(scope="session")
def hostile_file():
    """hostile_file(kind, folder) -> (path, what the one-line refusal
    says): /dev/zero, a FIFO, a directory, a 2 GiB sparse file of garbage,
    a 2 GiB sparse file with a valid header and a section claiming 1 TB, and
    a small file with such a section."""
    def make(kind, tmp_path):
        if kind == "devzero":
            return "/dev/zero", "not a regular file"
        if kind == "fifo":
            path = tmp_path / "fifo.mlcap"
            os.mkfifo(path)
            return str(path), "not a regular file"
        if kind == "directory":
            path = tmp_path / "dir.mlcap"
            path.mkdir()
            return str(path), "not a regular file"
        path = tmp_path / f"{kind}.mlcap"
        with open(path, "wb") as f:
            if kind == "sparse-garbage":
                f.write(b"GIF89a" + bytes(100))
                why = "bad magic header"
            else:  # a valid header, then a META section that claims 1 TB
                f.write(CAPTURE_HEADER + struct.pack("<4sIQ", b"META", 0, 1 << 40))
                why = "past the end of the file"
            if kind != "huge-section-small-file":
                f.truncate(2 << 30)  # 2 GiB, sparse: no disk used
        return str(path), why

    return make
