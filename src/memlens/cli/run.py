"""``memlens run``: run a program under the tracer, record a timeline,
write a capture and print where the memory went.

The program sees the same ``sys.argv``, ``sys.path[0]`` and ``__main__`` as
under ``python script.py`` / ``python -m module``; its stdout, stderr and
exit code are preserved (an uncaught exception prints its traceback and
exits 1; Ctrl-C writes the capture and exits 130).
"""

import builtins
import importlib.machinery
import importlib.util
import io
import os
import pkgutil
import runpy
import signal
import sys
import time
import zipfile

from memlens.cli.common import UsageError, check_output_path

__all__ = ["add_parser", "main", "split_argv"]

# Options of `memlens run` that take a value; everything from the first
# non-option (the script) or from -m's argument on belongs to the program.
_VALUE_OPTS = {"-o", "--output", "--frames", "--sample-bytes", "--interval", "--min-saving"}
_FLAG_OPTS = {"-q", "--quiet", "-h", "--help", "--lines", "--rss", "--advise"}


def split_argv(argv):
    """(memlens options, module or None, script or None, program args)."""
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
            return opts, mod, None, rest
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
        return opts, None, None, []
    return opts, None, argv[i], argv[i + 1:]


def add_parser(sub):
    p = sub.add_parser(
        "run",
        help="run a Python program under the tracer and write a capture",
        description="Run `script.py [args...]` or `-m module [args...]` with every allocation traced, "
                    "record a memory timeline, write a capture file and print a summary to stderr: "
                    "the peak and when, the top stacks at the peak, what was still allocated at exit, "
                    "and the top classes by instance bytes at exit.",
        usage="memlens run [-o CAPTURE] [--frames N] [--sample-bytes N] [--interval MS] [-q] "
              "[--lines [--rss]] [--advise [--min-saving BYTES]] (script.py | -m module) [args...]",
    )
    p.add_argument("-o", "--output", metavar="CAPTURE",
                   help="capture file to write (default: memlens-<program>.<pid>.mlcap)")
    p.add_argument("--frames", type=int, default=16, metavar="N",
                   help="frames recorded per stack, 1-512 (default 16)")
    p.add_argument("--sample-bytes", type=int, default=0, metavar="N",
                   help="sample allocations every N bytes on average (default 0: trace every block)")
    p.add_argument("--interval", type=float, default=10.0, metavar="MS",
                   help="timeline sampling interval in milliseconds (default 10)")
    p.add_argument("-q", "--quiet", action="store_true", help="print no summary")
    # --lines (memlens.lineprof): see _run_lines().
    p.add_argument("--lines", action="store_true",
                   help="line-by-line memory profile of the functions decorated with @profile "
                        "(a builtin, as under memory_profiler), printed to stdout at exit; no capture")
    p.add_argument("--rss", action="store_true", help="with --lines: Mem usage column from RSS")
    add_advise_options(p)
    p.add_argument("-m", dest="module", metavar="module", help="run a library module as a script")
    p.add_argument("script", nargs="?", help="the program to run")
    p.add_argument("args", nargs="*", help="arguments of the program")
    p.set_defaults(func=main)
    return p


def add_advise_options(p, always=False):
    """--advise / --min-saving (memlens.advise): advice printed at the end."""
    if not always:
        p.add_argument("--advise", action="store_true",
                       help="when the program ends, print memlens.advise()'s suggestions "
                            "for the heap it leaves (to stderr)")
    p.add_argument("--min-saving", type=int, default=64 * 1024, metavar="BYTES",
                   help="with advice: leave out suggestions saving less (default 65536)")


def _print_advice(args):
    """The advisor's report on the heap the program left, on stderr."""
    import memlens

    try:
        advice = memlens.advise(min_saving=args.min_saving)
    except Exception as e:  # the program's own exit code must survive
        print(f"memlens: advise failed: {e}", file=sys.stderr)
        return
    sys.stderr.write("\n" + memlens.format_advice(advice))


def _execute(target):
    """Run the program; (exit code, exception to print or None, SystemExit
    message to print or None), as python would end."""
    code, failure, exit_message = 0, None, None
    try:
        target()
    except SystemExit as e:
        code = _exit_code(e)
        if not (e.code is None or isinstance(e.code, int)):
            exit_message = e.code
    except KeyboardInterrupt as e:
        failure = e
        code = 130
    except BaseException as e:
        failure = e
        code = 1
    return code, failure, exit_message


def _report_end(failure, exit_message):
    """Print how the program ended, as python would (a SystemExit message,
    or the traceback), then flush its streams before memlens writes."""
    if exit_message is not None:
        print(exit_message, file=sys.stderr)
    if failure is not None:
        _print_exception(failure)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def _exit_code(e):
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF  # what the OS keeps, as for python
    # Like Python: a non-int code is printed (by the caller, once tracing
    # is off), the exit code is 1.
    return 1


def _runner_files():
    # 3.11+: runpy is frozen, its frames are named "<frozen runpy>".
    return {os.path.abspath(__file__), os.path.abspath(runpy.__file__),
            __file__, runpy.__file__, "<frozen runpy>"}


def _print_exception(e):
    # Drop the frames of memlens and runpy, as python itself shows none.
    tb = e.__traceback__
    runner = _runner_files()
    while tb is not None and tb.tb_frame.f_code.co_filename in runner:
        tb = tb.tb_next
    if tb is None and isinstance(e, ImportError):
        # runpy could not find the -m module: one line, as python -m says it.
        print(f"memlens run: error: {e}", file=sys.stderr)
        return
    e.__traceback__ = tb
    sys.excepthook(type(e), e, tb)


def _prepare_script(path):
    """A function running the script as python would; the reading and
    compiling happen here, before tracing starts, so the runner's own work
    is not in the capture."""
    abspath = os.path.abspath(path)
    main_mod = type(sys)("__main__")
    main_mod.__builtins__ = builtins
    if not os.path.isfile(path) or zipfile.is_zipfile(path):
        # A directory or zip file with a __main__.py: python puts it first
        # on sys.path (the caller does) and runs its __main__ module.
        importer = pkgutil.get_importer(abspath)
        try:
            spec = importer.find_spec("__main__") if importer is not None else None
        except AttributeError:
            # 3.9: zipimporter has no find_spec; runpy does the same job
            # (with sys.argv[0] and sys.path[0] as given, not absolute).
            return lambda: runpy.run_path(path, run_name="__main__")
        if spec is None or spec.loader is None:
            raise UsageError(f"can't find '__main__' module in {path!r}")
        code = spec.loader.get_code("__main__")
        main_mod.__file__ = spec.origin
        main_mod.__cached__ = getattr(spec, "cached", None)
        main_mod.__loader__ = spec.loader
        main_mod.__spec__ = spec
        main_mod.__package__ = ""
    else:
        # What python does for `python script.py` (3.9+): __main__ is a
        # fresh module whose __file__ is absolute, with a SourceFileLoader
        # and no spec.
        main_mod.__file__ = abspath
        main_mod.__cached__ = None
        main_mod.__loader__ = importlib.machinery.SourceFileLoader("__main__", abspath)
        main_mod.__spec__ = None
        main_mod.__package__ = None
        with io.open_code(abspath) as f:
            source = f.read()
        code = compile(source, abspath, "exec", dont_inherit=True)

    def run():
        sys.modules["__main__"] = main_mod
        exec(code, main_mod.__dict__)

    return run


def _default_output(args):
    name = args.module or os.path.splitext(os.path.basename(os.path.normpath(args.script)))[0] or "program"
    return f"memlens-{name}.{os.getpid()}.mlcap"


def _census_rows():
    import memlens

    try:
        rows = memlens.census().top(50)
        return [(str(r.name), int(r.count), int(r.bytes)) for r in rows]
    except Exception as e:  # the run must still write its capture
        print(f"memlens: census failed: {e}", file=sys.stderr)
        return None


def main(args):
    import memlens
    from memlens import capture
    from memlens.report import model, text

    if args.module is None and args.script is None:
        raise UsageError("no program given: expected script.py or -m module")
    if args.rss and not args.lines:
        raise UsageError("--rss goes with --lines")
    advise_only = getattr(args, "advise_only", False)
    if args.min_saving < 0:
        raise UsageError(f"--min-saving must be >= 0, not {args.min_saving}")
    if (args.min_saving != 64 * 1024 and not args.advise and not advise_only):
        raise UsageError("--min-saving goes with --advise")
    if args.frames < 1 or args.frames > 512:
        raise UsageError(f"--frames must be between 1 and 512, not {args.frames}")
    if args.sample_bytes < 0:
        raise UsageError(f"--sample-bytes must be >= 0, not {args.sample_bytes}")
    if not (0.1 <= args.interval <= 3600000):
        raise UsageError(f"--interval must be between 0.1 and 3600000 ms, not {args.interval:g}")
    if args.module is None:
        if not os.path.exists(args.script):
            raise UsageError(f"can't open file {args.script!r}: No such file or directory")
    else:
        # Look up the top-level package only, from where python -m would
        # (the current directory first): finding a submodule would import
        # its parents before tracing starts.
        top = args.module.partition(".")[0]
        saved = sys.path[0]
        sys.path[0] = os.getcwd()
        try:
            spec = importlib.util.find_spec(top) if top else None
        except (ImportError, ValueError):
            spec = None
        finally:
            sys.path[0] = saved
        if spec is None:
            raise UsageError(f"No module named {top or args.module!r}")
    if not advise_only:
        output = args.output or _default_output(args)
        check_output_path(output)
        output = os.path.abspath(output)

    if args.module is None:
        sys.argv = [args.script] + list(args.args)
        if os.path.isfile(args.script) and not zipfile.is_zipfile(args.script):
            sys.path[0] = os.path.dirname(os.path.realpath(args.script))
        else:
            sys.path[0] = os.path.abspath(args.script)
        command = " ".join(["memlens run", args.script] + list(args.args))
    else:
        sys.argv = ["-m"] + list(args.args)  # runpy puts the module's file in argv[0]
        sys.path[0] = os.getcwd()
        command = " ".join(["memlens run -m", args.module] + list(args.args))

    if args.module is None:
        try:
            target = _prepare_script(args.script)
        except SyntaxError as e:
            # Python prints these without a traceback and exits 1.
            e.__traceback__ = None
            sys.excepthook(type(e), e, None)
            return 1
        except OSError as e:
            raise UsageError(f"can't open file {args.script!r}: {e.strerror or e}") from None
    else:
        def target():
            runpy.run_module(args.module, run_name="__main__", alter_sys=True)

    if args.lines:
        return _run_lines(args, target)
    if advise_only:
        return _run_advise(args, target)

    pid = os.getpid()
    start_ns = time.time_ns()
    t0 = time.monotonic()
    memlens.start(frames=args.frames, sample_bytes=args.sample_bytes)
    capture.start_timeline(args.interval)
    code, failure, exit_message = _execute(target)
    # Every exception was caught by _execute, so this always runs.
    if os.getpid() != pid:
        # A child forked by the program that returned instead of calling
        # os._exit(): the capture is the parent's to write.
        capture.stop_timeline()
        memlens.stop()
        if exit_message is not None:
            print(exit_message, file=sys.stderr)
        if failure is not None:
            _print_exception(failure)
        return code
    # The snapshot comes first: anything the runner allocates from here
    # on (the timeline's bytes, signal handling) is not the program's.
    table = capture.take_table()  # None: the program called memlens.stop() itself
    duration = time.monotonic() - t0
    # A second Ctrl-C must not lose the capture being written: SIGINT stays
    # ignored until the file is complete (the README promises as much).
    old_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        interval, tl = capture.stop_timeline()
        memlens.stop()
        classes = _census_rows()
        # Printed once the tracer is off: python's printing of the traceback
        # is not the program's memory.
        _report_end(failure, exit_message)
        meta = {
            "command": command,
            "argv": "\n".join(sys.argv),
            "python": sys.version.split()[0],
            "exit_code": str(code),
            "duration_s": f"{duration:.6f}",
            "start_time_ns": str(start_ns),
            "interval_ms": f"{args.interval:g}",
            "frames": str(args.frames),
            "memlens": memlens.__version__,
            "runner_files": "\n".join(sorted(_runner_files())),
        }
        if table is None:
            print("memlens run: error: the program stopped the tracer (memlens.stop()): no capture written",
                  file=sys.stderr)
            return code or 1
        try:
            capture.write(output, table, meta, interval, tl, classes)
        except OSError as e:
            print(f"memlens run: error: cannot write capture {output!r}: {e.strerror or e}", file=sys.stderr)
            return code or 1
    finally:
        signal.signal(signal.SIGINT, old_sigint)
    if not args.quiet:
        try:
            cap = model.load(output)
        except model.CaptureError as e:
            # The capture was written; only reading it back failed (-o
            # /dev/null, or the file was replaced meanwhile).  As with the
            # census and advice, the program's own exit code must survive.
            print(f"memlens: no summary: {e}", file=sys.stderr)
        else:
            sys.stderr.write("\n" + text.summary(cap))
            sys.stderr.write(f"\nmemlens: capture written to {output}\n"
                             f"memlens: see it with: memlens report {output} --format html -o report.html\n")
    if args.advise:
        _print_advice(args)
    return code


# ---- memlens advise: run untraced, then advise ------------------------------


def _run_advise(args, target):
    """Run the program as python would (no tracer), then print the advice
    for the heap it leaves behind: its module globals are still alive."""
    code, failure, exit_message = _execute(target)
    _report_end(failure, exit_message)
    _print_advice(args)
    return code


# ---- --lines: memory_profiler's workflow (memlens.lineprof) ------------------


def _run_lines(args, target):
    """Run the program with a builtin ``profile`` (memlens.profile), then
    print the line tables of the profiled functions to stdout."""
    from memlens import lineprof

    builtins.profile = lineprof.profile
    lineprof.start_profile(rss=args.rss)
    try:
        code, failure, exit_message = _execute(target)
    finally:
        lineprof.finish_profile()
    _report_end(failure, exit_message)
    return code
