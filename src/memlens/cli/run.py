"""``memlens run``: run a program under the tracer, record a timeline,
write a capture and print where the memory went.

The program runs as python would run it (memlens._runner): the same
``sys.argv``, ``sys.path[0]`` and ``__main__`` as under ``python script.py``
/ ``python -m module`` / ``python -c code``; its stdout, stderr and exit code are preserved (an
uncaught exception prints its traceback and exits 1; Ctrl-C writes the
capture and exits 130).

:func:`main` is a list of steps over one :class:`_Run` work object:
validate the options, prepare the output, prepare the program, start
tracing, run, write the capture, print the summary.
"""

import os
import re
import signal
import sys
import time

from memlens import _runner
from memlens.cli.common import UsageError, check_output_path

__all__ = ["add_parser", "main", "split_argv"]

# Where memlens was started: the diff's paths are relative to it (the
# program may chdir).
try:
    _START_DIR = os.getcwd()
except OSError:  # started in a directory that no longer exists
    _START_DIR = None
# Bound now: the program may replace os.getpid (a test double, a sandbox),
# and the fork check below must still see the real process.
_getpid = os.getpid
# Signals whose default action ends the process without Python code
# running: memlens writes the capture first, then dies by the same signal.
_FATAL_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))

# --min-saving's default: advice saving less than 64 KiB is left out.
DEFAULT_MIN_SAVING = 64 * 1024
# --interval's range, in milliseconds.
_INTERVAL_MS = (0.1, 3600000)
# Classes by instance bytes recorded in the capture (the census at exit).
_CENSUS_ROWS = 50

# Options of `memlens run` that take a value; everything from the first
# non-option (the script) or from -m's or -c's argument on belongs to the
# program.
_VALUE_OPTS = {"-o", "--output", "--frames", "--sample-bytes", "--interval", "--min-saving"}
_FLAG_OPTS = {"-q", "--quiet", "-h", "--help", "--lines", "--rss", "--advise", "--diff", "--no-native",
              "--no-children", "--keep-import-frames"}
# The files of a child's capture in the bundle directory (_follow.py).
_BUNDLE_FILE = re.compile(r"\d+-\d+\.(mlcap|untraced)(\.\d+\.tmp)?")


def split_argv(argv):
    """(memlens options, module or None, script or None, code or None,
    program args): at most one of module, script and code is set."""
    opts = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if a == "-m" or (a.startswith("-m") and not a.startswith("--")):
            mod = argv[i + 1] if a == "-m" and i + 1 < len(argv) else a[2:] or None
            rest = argv[i + 2:] if a == "-m" else argv[i + 1:]
            if mod is None:
                raise UsageError("argument -m: expected a module name")
            return opts, mod, None, None, rest
        if a == "-c" or (a.startswith("-c") and not a.startswith("--")):
            # As python: -c CODE or -cCODE; what follows is the program's
            # (sys.argv[1:]), even a script name or -m.
            if a == "-c" and i + 1 >= len(argv):
                raise UsageError("argument -c: expected the code to run")
            code = argv[i + 1] if a == "-c" else a[2:]
            return opts, None, None, code, argv[i + 2:] if a == "-c" else argv[i + 1:]
        if a in _VALUE_OPTS:
            opts += argv[i:i + 2]
            i += 2
            continue
        if a in _FLAG_OPTS or (a.startswith("--") and "=" in a) or (a.startswith("-o") and len(a) > 2):
            opts.append(a)
            i += 1
            continue
        if a.startswith("-") and a != "-":
            opts.append(a)  # unknown option: argparse reports it
            i += 1
            continue
        break
    if i >= len(argv):
        return opts, None, None, None, []
    return opts, None, argv[i], None, argv[i + 1:]


def add_parser(sub):
    p = sub.add_parser(
        "run",
        help="run a Python program under the tracer and write a capture",
        description="Run `script.py [args...]`, `-m module [args...]` or `-c code [args...]` with every "
                    "allocation traced, "
                    "record a memory timeline, write a capture file and print a summary to stderr: "
                    "the peak and when, the top stacks at the peak, what was still allocated at exit, "
                    "and the top classes by instance bytes at exit.",
        usage="memlens run [-o CAPTURE] [--frames N] [--sample-bytes N] [--no-native] [--interval MS] [-q] "
              "[--no-children] [--keep-import-frames] "
              "[--lines [--rss]] [--advise [--min-saving BYTES] [--diff]] (script.py | -m module | -c code) "
              "[args...]",
    )
    p.add_argument("-o", "--output", metavar="CAPTURE",
                   help="capture file to write (default: memlens-<program>.<pid>.mlcap)")
    p.add_argument("--frames", type=int, default=16, metavar="N",
                   help="frames recorded per stack, 1-512 (default 16)")
    p.add_argument("--sample-bytes", type=int, default=0, metavar="N",
                   help="sample allocations every N bytes on average (default 0: trace every block)")
    p.add_argument("--no-native", dest="native", action="store_false",
                   help="trace only Python's allocator, not the malloc/mmap calls of C extensions "
                        "and the libraries they load")
    p.add_argument("--interval", type=float, default=10.0, metavar="MS",
                   help="timeline sampling interval in milliseconds (default 10)")
    p.add_argument("-q", "--quiet", action="store_true", help="print no summary")
    p.add_argument("--keep-import-frames", action="store_true",
                   help="the summary shows the import system's frames as recorded (default: each "
                        "import's frames folded into one frame, 'import X'; the capture keeps them)")
    p.add_argument("--no-children", dest="children", action="store_false",
                   help="trace this process only (default: every Python process it starts too, "
                        "each written into CAPTURE.d/)")
    # --lines (memlens.lineprof): see _run_lines().
    p.add_argument("--lines", action="store_true",
                   help="line-by-line memory profile of the functions decorated with @profile "
                        "(a builtin, as under memory_profiler), printed to stdout at exit; no capture")
    p.add_argument("--rss", action="store_true", help="with --lines: Mem usage column from RSS")
    add_advise_options(p)
    p.add_argument("-m", dest="module", metavar="module", help="run a library module as a script")
    add_code_option(p)
    p.add_argument("script", nargs="?", help="the program to run")
    p.add_argument("args", nargs="*", help="arguments of the program")
    p.set_defaults(func=main)
    return p


def add_code_option(p):
    """-c code: the program is a string, run as ``python -c`` runs it."""
    p.add_argument("-c", dest="code", metavar="code",
                   help="run the program passed in as a string (sys.argv is ['-c', args...]; "
                        "its frames are in the file <string>)")


def add_advise_options(p, always=False):
    """--advise / --min-saving (memlens.advise): advice printed at the end."""
    if not always:
        p.add_argument("--advise", action="store_true",
                       help="when the program ends, print memlens.advise()'s suggestions "
                            "for the heap it leaves and for the lines that made the peak (to "
                            "stderr), and keep them in the capture for the json and HTML reports")
    p.add_argument("--min-saving", type=int, default=DEFAULT_MIN_SAVING, metavar="BYTES",
                   help=f"with advice: leave out suggestions saving less (default {DEFAULT_MIN_SAVING})")
    p.add_argument("--diff", action="store_true",
                   help="with advice: also print the edits of the program's own source as a unified "
                        "diff (apply it with `patch -p0` or `git apply -p0`)")


def _emit(text):
    """memlens' own messages, on stderr.  The program may have closed
    ``sys.stderr`` or set it to None; memlens still reports on fd 2 and
    never fails because of that (python would exit normally)."""
    stream = sys.stderr
    try:
        stream.write(text)
        stream.flush()
        return
    except Exception:  # None, closed, or a replacement that raises
        pass
    try:
        os.write(2, text.encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def _compute_advice(args, capture=None):
    """memlens.advise() on the heap the program left (and, from a traced
    run's capture, on the lines that made its peak); None if it failed
    (said on stderr: the program's own exit code must survive)."""
    import memlens

    try:
        return memlens.advise(min_saving=args.min_saving, capture=capture)
    except Exception as e:
        _emit(f"memlens: advise failed: {e}\n")
        return None


def _print_advice(args, advice):
    """The advisor's report, and with --diff its edits, on stderr."""
    import memlens

    if advice is None:
        return
    _emit("\n" + memlens.format_advice(advice))
    if args.diff:
        try:
            diff = memlens.format_diff(advice, start=_START_DIR)
        except Exception as e:  # as above: never the program's exit code
            _emit(f"memlens: diff failed: {e}\n")
            return
        _emit("\nmemlens advise: no edit of the program's source to show\n" if not diff else
              "\nmemlens advise: the edits as a unified diff (patch -p0 / git apply -p0 from "
              f"{_START_DIR or 'here'}):\n" + diff)


def _census_rows():
    import memlens

    try:
        rows = memlens.census().top(_CENSUS_ROWS)
        return [(str(r.name), int(r.count), int(r.bytes)) for r in rows]
    except Exception as e:  # the run must still write its capture
        _emit(f"memlens: census failed: {e}\n")
        return None


class _Run:
    """The work of one ``memlens run``, filled in step by step by main()."""

    def __init__(self, args):
        # configuration: the command line
        self.args = args
        self.advise_only = getattr(args, "advise_only", False)  # `memlens advise`
        self.program = _runner.Program(args.script, args.module, args.args, getattr(args, "code", None))
        # output values
        self.output = None       # absolute path of the capture to write
        self.bundle = None       # the children's directory (None: --no-children)
        self.marker = False      # a start marker was written at `output`
        self.killed = False      # ended by a fatal signal
        self.command = None      # the command line, for the capture's metadata
        self.ended = None        # how the program ended (_runner.Ended)
        self.table = None        # the tracer's table at the end (None: stopped by the program)
        self.native = (0, 0)     # native blocks' bytes at exit and at the peak (with the table)
        self.duration = None     # seconds the program ran
        self.timeline = None     # (interval, samples, native): the sampler, stopped as the program ended
        self.maxrss_end = 0      # the process's max RSS then (bytes)
        self.written = None      # (meta, interval, timeline, classes, native) of the capture written
        # temporary state
        self.pid = None          # the process that started tracing
        self.start_ns = None
        self.t0 = None


def _validate(run):
    """Step 1: UsageError for options that do not go together, values out
    of range, and a program that does not exist."""
    from memlens.tracer import MAX_FRAMES

    args = run.args
    given = [what for what, value in (("a script", args.script), ("-m", args.module),
                                      ("-c", getattr(args, "code", None))) if value is not None]
    if not given:
        raise UsageError("no program given: expected script.py, -m module or -c code")
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} cannot go together: give one program")
    if args.rss and not args.lines:
        raise UsageError("--rss goes with --lines")
    if args.min_saving < 0:
        raise UsageError(f"--min-saving must be >= 0, not {args.min_saving}")
    if args.min_saving != DEFAULT_MIN_SAVING and not args.advise and not run.advise_only:
        raise UsageError("--min-saving goes with --advise")
    if args.diff and not args.advise and not run.advise_only:
        raise UsageError("--diff goes with --advise")
    if args.frames < 1 or args.frames > MAX_FRAMES:
        raise UsageError(f"--frames must be between 1 and {MAX_FRAMES}, not {args.frames}")
    if args.sample_bytes < 0:
        raise UsageError(f"--sample-bytes must be >= 0, not {args.sample_bytes}")
    low, high = _INTERVAL_MS
    if not (low <= args.interval <= high):
        raise UsageError(f"--interval must be between {low:g} and {high} ms, not {args.interval:g}")
    try:
        run.program.check()
    except _runner.ProgramError as e:
        raise UsageError(str(e)) from None


def _default_output(args):
    if getattr(args, "code", None) is not None:
        return f"memlens-c.{os.getpid()}.mlcap"
    name = args.module or os.path.splitext(os.path.basename(os.path.normpath(args.script)))[0] or "program"
    return f"memlens-{name}.{os.getpid()}.mlcap"


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _prepare_output(run):
    """Step 2: the capture path, checked before the program runs (a long
    run must not end in an unwritable file)."""
    args = run.args
    if not run.advise_only:
        output = args.output or _default_output(args)
        check_output_path(output)
        if args.script is not None and _same_file(output, args.script):
            raise UsageError(f"refusing to write the capture over the program itself: {output!r}")
        run.output = os.path.abspath(output)
        if args.children and not args.lines:
            run.bundle = _prepare_bundle(run.output)
    if getattr(args, "code", None) is not None:
        run.command = " ".join(["memlens run -c", repr(args.code)] + list(args.args))
    elif args.module is None:
        run.command = " ".join(["memlens run", args.script] + list(args.args))
    else:
        run.command = " ".join(["memlens run -m", args.module] + list(args.args))


def _prepare_bundle(output):
    """The directory the children's captures go to (created by the first
    child), checked now; what an earlier run left in it is removed."""
    from memlens import _follow

    bundle = output + _follow.BUNDLE_SUFFIX
    if os.path.lexists(bundle):
        if not os.path.isdir(bundle):
            raise UsageError(f"cannot write the children's captures to {bundle!r}: it is not a directory")
        if not os.access(bundle, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write the children's captures to {bundle!r}: permission denied")
        for name in os.listdir(bundle):
            if _BUNDLE_FILE.fullmatch(name):
                try:
                    os.unlink(os.path.join(bundle, name))
                except OSError as e:
                    raise UsageError(f"cannot clear {bundle!r}: {e.strerror or e}") from None
    return bundle


def _prepare_program(run):
    """Step 3: sys.argv and sys.path[0] as python sets them; the script
    read and compiled before tracing starts.  False after a SyntaxError
    (printed as python prints it)."""
    run.program.enter()
    try:
        return run.program.compile()
    except _runner.ProgramError as e:
        raise UsageError(str(e)) from None


def _start_tracing(run):
    """Step 4: the tracer and the timeline sampler."""
    import memlens
    from memlens import capture

    run.pid = _getpid()
    if run.bundle is not None:
        from memlens import _core, _follow

        _follow.install(_core, (run.bundle, run.args.frames, run.args.sample_bytes, run.args.interval,
                                run.args.native),
                        runner=_runner.runner_files(*_RUNNER))
    run.start_ns = time.time_ns()
    run.t0 = time.monotonic()
    memlens.start(frames=run.args.frames, sample_bytes=run.args.sample_bytes, native=run.args.native)
    if run.bundle is not None:
        _write_marker(run)
    capture.start_timeline(run.args.interval)
    _catch_fatal_signals(run)


def _write_marker(run):
    """With children followed: the capture file says "running" from the
    start, so that a run whose first process is killed (SIGKILL) still
    names it next to its children's captures.  Only over a regular file:
    never replace /dev/null or a FIFO."""
    import memlens
    from memlens import capture

    if os.path.lexists(run.output) and not os.path.isfile(run.output):
        return
    meta = _metadata(run, None)
    meta["status"] = "running"
    # Through a symlink to its target, as the final write goes.
    target = os.path.realpath(run.output)
    tmp = f"{target}.{run.pid}.tmp"
    try:
        capture.write(tmp, capture.take_table(), meta, 0.0, b"")
        os.replace(tmp, target)
        run.marker = True
    except (OSError, ValueError):
        pass  # the final write reports a capture that cannot be written
    # What the marker allocated is memlens', not the program's.
    memlens.reset_peak()


def _catch_fatal_signals(run):
    """SIGTERM and SIGHUP end python without running Python code; under
    memlens run they first write the capture (what was recorded so far),
    then end the process by the same signal, so the parent sees what it
    would have seen.  A handler the program installs replaces this one, as
    it would replace the default."""

    def on_signal(signum, frame):
        if _getpid() != run.pid and run.bundle is not None:
            from memlens import _follow

            _follow.on_fatal_signal(signum)  # a forked child: its own capture
            return
        signal.signal(signum, signal.SIG_DFL)
        if _getpid() == run.pid and run.ended is None:
            run.ended = _runner.Ended(128 + signum)
            run.killed = True
            run.table = _take_table_quietly()
            run.native = _native_memory()
            run.duration = time.monotonic() - run.t0
            if run.table is not None and _write_capture(run, census=False):
                _emit(f"memlens run: {signal.Signals(signum).name}: capture written to {run.output}\n")
        os.kill(_getpid(), signum)

    for signum in _FATAL_SIGNALS:
        try:
            if signal.getsignal(signum) == signal.SIG_DFL:
                signal.signal(signum, on_signal)
        except (OSError, ValueError):  # not the main thread, or not settable
            pass


def _max_rss():
    """The process's max RSS so far, in bytes (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _native_memory():
    """(at exit, at the peak): the native blocks' share, read with the table."""
    import memlens

    current, at_peak = memlens.native_memory()
    return current, at_peak


def _take_table_quietly():
    from memlens import capture

    try:
        return capture.take_table()
    except RuntimeError:  # the program stopped the tracer
        return None


def _run_program(run):
    """Step 5: run it; every exception is caught (run.ended says how it
    ended).  False in a child the program forked that returned instead of
    calling os._exit(): the capture is the parent's to write."""
    import memlens
    from memlens import capture

    ended = run.program.run()
    if run.ended is not None:
        # A fatal signal's handler wrote the capture meanwhile (and the
        # process is ending by that signal).
        return False
    run.ended = ended
    if _getpid() != run.pid:
        if run.bundle is not None:
            # A forked child: its traceback, then its own capture.
            from memlens import _follow

            _runner.report_end(run.ended, _RUNNER)
            _follow.finish(ended.code)
            return False
        capture.stop_timeline()
        memlens.stop()
        _runner.report_end(run.ended, _RUNNER)
        return False
    # The timeline ends with the program: its last sample, and the max RSS
    # the summary shows, must not include memlens's own end-of-run work
    # (the table, the census, the capture, reading it back for the
    # summary), which is measured apart (see _summary).
    run.timeline = capture.stop_timeline()
    run.maxrss_end = _max_rss()
    # The table next: anything the runner allocates from here on (signal
    # handling, the capture) is not the program's.
    run.table = capture.take_table()
    run.native = _native_memory()
    run.duration = time.monotonic() - run.t0
    return True


def _metadata(run, code):
    import memlens

    meta = {
        "command": run.command,
        "argv": "\n".join(sys.argv),
        "python": sys.version.split()[0],
        "exit_code": str(code),
        "duration_s": "" if run.duration is None else f"{run.duration:.6f}",
        "start_time_ns": str(run.start_ns),
        "interval_ms": f"{run.args.interval:g}",
        "frames": str(run.args.frames),
        "native": "1" if memlens.native_status()["native"] else "0",
        "native_exit_bytes": str(run.native[0]),
        "native_peak_bytes": str(run.native[1]),
        "memlens": memlens.__version__,
        "runner_files": "\n".join(sorted(_runner.runner_files(*_RUNNER))),
    }
    if code is None:  # the start marker
        del meta["exit_code"], meta["duration_s"]
    if run.bundle is not None:
        from memlens import _follow

        meta.update(pid=str(run.pid), ppid=str(os.getppid()), status="killed" if run.killed else "ended",
                    children=os.path.basename(run.bundle))
        if run.duration is not None:
            meta["end_time_ns"] = str(run.start_ns + int(run.duration * 1e9))
        if _follow._reaped:
            meta["reaped"] = "\n".join(_follow._reaped)
    return meta


def _write_capture(run, census=True):
    """Step 6: stop tracing, print how the program ended, write the
    capture.  True once it is written.  `census`: the class table at exit
    (not when a fatal signal is ending the process)."""
    import memlens
    from memlens import capture

    code = run.ended.code
    # A second Ctrl-C must not lose the capture being written: SIGINT stays
    # ignored until the file is complete.
    old_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if run.timeline is None:  # ended by a fatal signal: the sampler still runs
            run.timeline = capture.stop_timeline()
        interval, timeline, native = run.timeline
        memlens.stop()
        classes = _census_rows() if census else None
        # Printed once the tracer is off: python's printing of the traceback
        # is not the program's memory.
        _runner.report_end(run.ended, _RUNNER)
        meta = _metadata(run, code)
        if run.table is None:
            _emit("memlens run: error: the program stopped the tracer (memlens.stop()): no capture written\n")
            if run.marker:
                try:
                    os.unlink(run.output)
                except OSError:
                    pass
            return False
        try:
            native = native if meta.get("native") == "1" else b""
            capture.write(run.output, run.table, meta, interval, timeline, classes, native)
            run.written = (meta, interval, timeline, classes, native)
        except OSError as e:
            _emit(f"memlens run: error: cannot write capture {run.output!r}: {e.strerror or e}\n")
            return False
    finally:
        signal.signal(signal.SIGINT, old_sigint)
    return True


def _summary(run):
    """Step 7: the summary of the capture just written, on stderr."""
    from memlens.report import model, text

    try:
        cap = model.load(run.output)
    except model.CaptureError as e:
        # The capture was written; only reading it back failed (-o
        # /dev/null, or the file was replaced meanwhile).  As with the
        # census and advice, the program's own exit code must survive.
        _emit(f"memlens: no summary: {e}\n")
        return
    summary = None
    if run.bundle is not None:
        from memlens.report import processes

        if processes.has_children(run.output):
            try:
                summary = text.run_summary(processes.load_run(run.output),
                                           keep_import_frames=run.args.keep_import_frames)
            except model.CaptureError as e:
                _emit(f"memlens: no summary of the child processes: {e}\n")
    _emit("\n" + (summary or text.summary(cap, keep_import_frames=run.args.keep_import_frames)))
    own = _max_rss() - max(run.maxrss_end, max((s.rss for s in cap.timeline), default=0))
    if own >= 1 << 20:
        # What memlens's end-of-run work (table, census, capture, this
        # summary) took above the program's own high-water mark: not the
        # program's, and not in the max RSS above.
        _emit(f"  memlens itself: {text.format_size(own)} more max RSS after the program ended\n")
    _emit(f"\nmemlens: capture written to {run.output}\n"
          f"memlens: see it with: memlens report {run.output} --format html -o report.html\n")


# This module's frames are the runner's too (the steps above call into the
# program and allocate while it is traced).
_RUNNER = (__file__,)


def main(args):
    run = _Run(args)
    _validate(run)
    _prepare_output(run)
    if not _prepare_program(run):
        return 1
    if args.lines:
        return _run_lines(run)
    if run.advise_only:
        return _run_advise(run)
    _start_tracing(run)
    if not _run_program(run):
        return run.ended.code
    if not _write_capture(run):
        return run.ended.code or 1
    advice = None
    if args.advise:
        advice = _compute_advice(args, _readable(run.output))
        _store_advice(run, advice)
    if not args.quiet:
        _summary(run)
    if args.advise:
        _print_advice(args, advice)
    return run.ended.code


def _store_advice(run, advice):
    """Write the capture again with the advice in its run metadata, for
    the json and HTML reports (`memlens report`)."""
    import json

    from memlens import capture

    if advice is None or run.written is None:
        return
    meta, interval, timeline, classes, native = run.written
    try:
        meta = dict(meta, advice=json.dumps([a.to_dict(_START_DIR) for a in advice]))
        capture.write(run.output, run.table, meta, interval, timeline, classes, native)
    except Exception as e:  # the capture without advice is still there
        _emit(f"memlens: advice not stored in the capture: {e}\n")


def _readable(path):
    """The capture just written, if it can be read back (not -o /dev/null):
    its path, which memlens.advise() loads and lets go of before it walks
    the heap (a loaded capture would be advised on as the program's)."""
    from memlens.report import model

    try:
        model.load(path)
    except model.CaptureError:
        return None
    return path


# ---- memlens advise: run untraced, then advise ------------------------------


def _run_advise(run):
    """Run the program as python would (no tracer), then print the advice
    for the heap it leaves behind: its module globals are still alive."""
    ended = run.program.run()
    _runner.report_end(ended, _RUNNER)
    _print_advice(run.args, _compute_advice(run.args))
    return ended.code


# ---- --lines: memory_profiler's workflow (memlens.lineprof) ------------------


def _run_lines(run):
    """Run the program with a builtin ``profile`` (memlens.profile), then
    print the line tables of the profiled functions to stdout."""
    from memlens import lineprof

    return lineprof.run_program(run.program, rss=run.args.rss, runner=_RUNNER)
