"""Capture fuzzer: mutations over real captures and snapshot dumps.

    python tests/fuzz/fuzz_captures.py [--seconds 20] [--seed N] [--cli 20] [--mem-mib 1024]
    python tests/fuzz/fuzz_captures.py --atheris [--seconds 20] [--seed N]

Builds a corpus of real files (a `memlens run`-style capture with a
timeline and a class table, and a plain `Snapshot.dump`), then for the given
time feeds mutated copies to every reader -- `Snapshot.load`, the report
model's `load` and, for files that load, every report renderer -- and, for a
sample of them, to the `memlens report` command.  A file must either load or
be refused with one line (a ValueError / OSError subclass); anything else
fails the run:

* a crash (the driver runs in its own process: the caller sees the signal),
* any other exception (printed with the case's seed and index),
* a case that takes more than 10 s (a hang),
* a MemoryError: the address space is capped at --mem-mib above the start,
  so a reader that builds far more than the file justifies fails loudly,
* from the CLI: a traceback, a multi-line error, or an exit status other
  than 0 (rendered) or 1 (not a valid capture).

With `--atheris` (where the atheris wheel installs: every supported
version today), libFuzzer drives the same in-process readers instead,
guided by the coverage of the Python readers (instrumented at import), from
the same corpus, each of its mutations resealed with the right checksum; a finding is a crash, an uncaught exception, a case over
10 s (`-timeout`) or over 2 GiB of RSS (`-rss_limit_mb`), and libFuzzer
keeps the input in the temporary directory.

Each run prints its seed; `--seed` replays one.  Mutations know the
section framing (tag, flags, u64 length, payload; END = FNV-1a of all
before it) so that most cases get past the checksum and reach the section
parsers, which is where the bugs live.  Most of a 2.0 capture is deflated
(flags 1: u64 declared length, zlib stream), so some mutations inflate a
section, change its plain bytes or its declared length, and deflate it
again: the parsers and the inflater's bounds both get hostile input.
"""
import argparse
import os
import random
import resource
import struct
import subprocess
import sys
import tempfile
import time

HANG_SECONDS = 10.0
HEADER = 12  # magic (8) + version (2 x u16)


# -- the framing --------------------------------------------------------------

def fnv1a(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def sections(data):
    """[(tag, payload offset, payload length)], as far as the framing reads."""
    out, i = [], HEADER
    while i + 16 <= len(data):
        tag, _res, n = struct.unpack_from("<4sIQ", data, i)
        out.append((tag, i + 16, n))
        if n > len(data):
            break
        i += 16 + n
    return out


def reseal(data):
    """Recompute the END checksum (END must be last and 8 bytes long)."""
    secs = sections(data)
    if not secs or secs[-1][0] != b"END ":
        return data
    body = data[:secs[-1][1] - 16]
    return body + struct.pack("<4sIQQ", b"END ", 0, 8, fnv1a(body))


DEFLATED = 1  # section flags (format 2.0): u64 declared length, zlib stream


def inflated(data, off, n):
    """(flags, plain payload) of the section at `off`, or (flags, None) when
    it is deflated and its stream does not inflate."""
    import zlib
    flags = struct.unpack_from("<I", data, off - 12)[0]
    payload = data[off:off + n]
    if not flags & DEFLATED:
        return flags, payload
    try:
        return flags, zlib.decompress(payload[8:])
    except (zlib.error, struct.error):
        return flags, None


def with_payload(data, off, n, payload, declared=None):
    """The capture with the section at `off` holding `payload`, deflated again
    when it was (declared length: the payload's unless told)."""
    import zlib
    tag, flags = struct.unpack_from("<4sI", data, off - 16)
    if flags & DEFLATED:
        payload = struct.pack("<Q", len(payload) if declared is None else declared) + zlib.compress(payload)
    return data[:off - 16] + struct.pack("<4sIQ", tag, flags, len(payload)) + payload + data[off + n:]


# -- mutations ----------------------------------------------------------------

INTERESTING32 = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE,
                 0xFFFFFFFF]


def _payloads(data):
    return [s for s in sections(data) if s[0] != b"END " and 0 < s[2] and s[1] + s[2] <= len(data)]


def m_flip(rng, data):
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def m_truncate(rng, data):
    return data[:rng.randrange(len(data))]


def m_section_bytes(rng, data):
    secs = _payloads(data)
    if not secs:
        return m_flip(rng, data)
    _tag, off, n = rng.choice(secs)
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        b[off + rng.randrange(n)] = rng.randrange(256)
    return reseal(bytes(b))


def m_section_u32(rng, data):
    """An interesting count or index at an aligned word of a section."""
    secs = [s for s in _payloads(data) if s[2] >= 4]
    if not secs:
        return m_flip(rng, data)
    _tag, off, n = rng.choice(secs)
    pos = off + 4 * rng.randrange(n // 4)
    b = bytearray(data)
    struct.pack_into("<I", b, pos, rng.choice(INTERESTING32))
    return reseal(bytes(b))


def m_section_length(rng, data):
    """A section header that claims another length (framing then lies)."""
    secs = [s for s in sections(data) if s[1] <= len(data)]
    if not secs:
        return m_flip(rng, data)
    _tag, off, n = rng.choice(secs)
    b = bytearray(data)
    new = rng.choice([0, 1, n - 1, n + 1, n * 2, 1 << 31, 1 << 40, (1 << 64) - 1])
    struct.pack_into("<Q", b, off - 8, max(0, min(new, (1 << 64) - 1)))
    return reseal(bytes(b))


def m_splice(rng, data, other):
    """A section of the other corpus file put in place of, or beside, one."""
    mine, theirs = _payloads(data), _payloads(other)
    if not mine or not theirs:
        return m_flip(rng, data)
    _t, off, n = rng.choice(mine)
    _t2, off2, n2 = rng.choice(theirs)
    piece = other[off2 - 16:off2 + n2]
    if rng.random() < 0.5:
        out = data[:off - 16] + piece + data[off + n:]
    else:
        out = data[:off - 16] + piece + data[off - 16:]
    return reseal(out)


def _deflated(data):
    return [s for s in _payloads(data) if struct.unpack_from("<I", data, s[1] - 12)[0] & DEFLATED]


def m_inside_deflated(rng, data):
    """Bytes or an interesting u32 inside a deflated section's plain bytes,
    deflated again: the section parsers see the damage (most of a 2.0
    capture is deflated, where a flipped byte only reaches zlib)."""
    secs = _deflated(data)
    if not secs:
        return m_section_bytes(rng, data)
    _tag, off, n = rng.choice(secs)
    _flags, plain = inflated(data, off, n)
    if not plain:
        return m_flip(rng, data)
    b = bytearray(plain)
    if len(b) >= 4 and rng.random() < 0.5:
        struct.pack_into("<I", b, 4 * rng.randrange(len(b) // 4), rng.choice(INTERESTING32))
    else:
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    return reseal(with_payload(data, off, n, bytes(b)))


def m_declared_length(rng, data):
    """A deflated section that declares another inflated length (a zip
    bomb's, one off, zero)."""
    secs = _deflated(data)
    if not secs:
        return m_section_length(rng, data)
    _tag, off, n = rng.choice(secs)
    _flags, plain = inflated(data, off, n)
    if plain is None:
        return m_flip(rng, data)
    new = rng.choice([0, 1, len(plain) - 1, len(plain) + 1, len(plain) * 2, n * 1032, n * 1033, 1 << 40,
                      (1 << 64) - 1])
    return reseal(with_payload(data, off, n, plain, declared=max(0, new)))


def m_duplicate(rng, data):
    secs = _payloads(data)
    if not secs:
        return m_flip(rng, data)
    _t, off, n = rng.choice(secs)
    return reseal(data[:off + n] + data[off - 16:off + n] + data[off + n:])


def m_drop(rng, data):
    secs = _payloads(data)
    if not secs:
        return m_flip(rng, data)
    _t, off, n = rng.choice(secs)
    return reseal(data[:off - 16] + data[off + n:])


MUTATORS = [m_flip, m_truncate, m_section_bytes, m_section_bytes, m_section_u32, m_section_u32,
            m_section_length, m_duplicate, m_drop, m_inside_deflated, m_inside_deflated,
            m_inside_deflated, m_declared_length]


def mutate(rng, data, other):
    out = data
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if rng.random() < 0.1:
            out = m_splice(rng, out, other)
        else:
            out = rng.choice(MUTATORS)(rng, out)
        if not out:
            break
    return out


# -- corpus -------------------------------------------------------------------

def build_corpus(workdir):
    import memlens
    from memlens import _core

    def alloc(n):
        return [bytearray(100 + i % 300) for i in range(n)]

    memlens.start(frames=8)
    _core.timeline_start(1.0)
    keep = alloc(300)
    keep += [str(i) * 3 for i in range(200)]
    interval, tl = _core.timeline_stop()
    table = _core.trace_take_snapshot()
    snap = memlens.take_snapshot()
    memlens.stop()
    del keep
    run = os.path.join(workdir, "run.mlcap")
    _core.cap_run_write(run, table, {"command": "memlens run app.py", "exit_code": "0", "duration_s": "0.5",
                                     "python": sys.version.split()[0]},
                        interval, tl, [("app.Thing", 5, 280), ("dict", 2, 368)])
    plain = os.path.join(workdir, "snap.mlcap")
    snap.dump(plain)
    return [open(run, "rb").read(), open(plain, "rb").read()]


# -- the readers --------------------------------------------------------------

class Failure(Exception):
    pass


def check_in_process(path):
    """1 if the file loaded (and rendered), 0 if refused in one line."""
    import memlens
    from memlens.report import collapsed, html, jsonfmt, model, pprof, text

    try:
        memlens.Snapshot.load(path).statistics("lineno")
    except (ValueError, OSError) as e:
        if "\n" in str(e):
            raise Failure(f"Snapshot.load: multi-line error: {e!r}")
    try:
        cap = model.load(path)
    except (ValueError, OSError) as e:
        if "\n" in str(e):
            raise Failure(f"model.load: multi-line error: {e!r}")
        return 0
    for view in ("peak", "leaks", "allocated"):
        text.render(cap, view)
        collapsed.render(cap, view)
    jsonfmt.render(cap)
    html.render(cap)
    pprof.render(cap)
    return 1


def check_cli(path, env):
    proc = subprocess.run([sys.executable, "-m", "memlens", "report", path, "--format", "text"],
                          capture_output=True, text=True, timeout=60, env=env)
    if proc.returncode < 0:
        raise Failure(f"memlens report died of signal {-proc.returncode}")
    if "Traceback" in proc.stderr:
        raise Failure("memlens report printed a traceback:\n" + proc.stderr[-2000:])
    if proc.returncode not in (0, 1):
        raise Failure(f"memlens report exited {proc.returncode}: {proc.stderr[-500:]}")
    if proc.returncode == 1 and proc.stderr.count("\n") != 1:
        raise Failure(f"memlens report: not one line: {proc.stderr[-500:]!r}")


def cap_address_space(mib):
    if mib <= 0:
        return
    with open("/proc/self/statm") as f:
        vsize = int(f.read().split()[0]) * resource.getpagesize()
    limit = vsize + mib * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_atheris(seconds, seed):
    """Coverage-guided: libFuzzer mutates the corpus; never returns."""
    import atheris

    with atheris.instrument_imports(include=["memlens"]):
        import memlens.report.model  # noqa: F401  (and what it imports)
        from memlens.report import collapsed, html, jsonfmt, pprof, text  # noqa: F401
    work = tempfile.mkdtemp(prefix="memlens-atheris-")
    corpus_dir = os.path.join(work, "corpus")
    os.mkdir(corpus_dir)
    for i, blob in enumerate(build_corpus(work)):
        with open(os.path.join(corpus_dir, f"seed{i}.mlcap"), "wb") as f:
            f.write(blob)
    path = os.path.join(work, "case.mlcap")

    def one_input(data):
        with open(path, "wb") as f:
            f.write(data)
        check_in_process(path)

    def resealed(data, max_size, mutation_seed):
        # libFuzzer's own mutation, then the END checksum recomputed: most
        # cases then reach the section parsers instead of the checksum.
        return reseal(atheris.Mutate(data, max_size))

    atheris.Setup([sys.argv[0], f"-max_total_time={max(1, int(seconds))}", f"-seed={seed % (1 << 31) or 1}",
                   "-timeout=10", "-rss_limit_mb=2048", f"-artifact_prefix={work}/", "-print_final_stats=1",
                   corpus_dir], one_input, custom_mutator=resealed)
    atheris.Fuzz()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=None, help="replay a run (default: a random seed, printed)")
    ap.add_argument("--cli", type=int, default=20, help="cases also fed to `memlens report`")
    ap.add_argument("--mem-mib", type=int, default=1024, help="address space allowed above the start (0: no cap)")
    ap.add_argument("--atheris", action="store_true", help="coverage-guided, by libFuzzer (atheris)")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"seed {seed}", flush=True)
    if args.atheris:
        run_atheris(args.seconds, seed)
    rng = random.Random(seed)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))

    with tempfile.TemporaryDirectory() as work:
        corpus = build_corpus(work)
        cap_address_space(args.mem_mib)
        path = os.path.join(work, "case.mlcap")
        deadline = time.monotonic() + args.seconds
        cases = accepted = cli_runs = 0
        cli_every = max(1, int(args.seconds * 200) // max(1, args.cli)) if args.cli else 0
        while time.monotonic() < deadline:
            i = rng.randrange(len(corpus))
            blob = mutate(rng, corpus[i], corpus[1 - i])
            with open(path, "wb") as f:
                f.write(blob)
            t0 = time.monotonic()
            try:
                accepted += check_in_process(path)
                if cli_every and cases % cli_every == 0 and cli_runs < args.cli:
                    check_cli(path, env)
                    cli_runs += 1
            except Failure as e:
                keep = os.path.join(tempfile.gettempdir(), f"memlens-fuzz-{seed}-{cases}.mlcap")
                with open(keep, "wb") as f:
                    f.write(blob)
                print(f"FAIL seed {seed} case {cases}: {e}\n  file kept: {keep}", flush=True)
                return 1
            except MemoryError:
                keep = os.path.join(tempfile.gettempdir(), f"memlens-fuzz-{seed}-{cases}.mlcap")
                with open(keep, "wb") as f:
                    f.write(blob)
                print(f"FAIL seed {seed} case {cases}: MemoryError on a {len(blob)}-byte file (file kept: {keep})",
                      flush=True)
                return 1
            except Exception as e:  # noqa: BLE001 -- any other exception is the finding
                import traceback

                keep = os.path.join(tempfile.gettempdir(), f"memlens-fuzz-{seed}-{cases}.mlcap")
                with open(keep, "wb") as f:
                    f.write(blob)
                print(f"FAIL seed {seed} case {cases}: {type(e).__name__}: {e}\n  file kept: {keep}", flush=True)
                traceback.print_exc()
                return 1
            took = time.monotonic() - t0
            if took > HANG_SECONDS:
                print(f"FAIL seed {seed} case {cases}: took {took:.1f} s (hang)", flush=True)
                return 1
            cases += 1
    print(f"ok seed {seed}: {cases} cases, {accepted} accepted, {cases - accepted} refused, {cli_runs} via the CLI",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
