"""``memlens report``: render a capture as text, JSON, HTML, folded stacks
or pprof."""

import os
import sys

from memlens.cli.common import Progress, UsageError, check_capture_path, check_output_path, read_capture
from memlens.report import FORMATS, OutputTooLarge, render

__all__ = ["add_parser", "main", "FORMATS", "render"]


def add_parser(sub):
    p = sub.add_parser(
        "report",
        help="render a capture (text, json, html, collapsed, pprof)",
        description="Render a capture written by `memlens run` (or Snapshot.dump). "
                    "Views: peak = blocks live at the traced-memory peak; leaks = blocks still "
                    "allocated at exit; allocated = what each stack allocated during the run "
                    "(exact; a lower bound for captures from memlens versions that did not "
                    "record cumulative totals).",
    )
    p.add_argument("capture", help="capture file")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument("--view", choices=("peak", "leaks", "allocated"), default="peak",
                   help="which picture (default peak); html shows all three")
    p.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout "
                   "(required for pprof on a terminal)")
    p.add_argument("--limit", type=int, default=15, metavar="N", help="rows per text table (default 15)")
    p.add_argument("--keep-import-frames", action="store_true",
                   help="text and html: show the import system's frames as recorded (default: "
                        "each import's frames folded into one frame, 'import X'; json, collapsed "
                        "and pprof always keep them)")
    p.add_argument("--pid", type=int, metavar="PID",
                   help="a run with child processes (CAPTURE.d/): report this process only "
                        "(default: all of them; collapsed and pprof merge them with a pid label)")
    p.set_defaults(func=main)
    return p


def main(args):
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    from memlens.report import processes

    multi = processes.has_children(args.capture) or (
        not os.path.exists(args.capture) and os.path.isdir(processes.bundle_of(args.capture)))
    if not multi:
        check_capture_path(args.capture)
    elif os.path.exists(args.capture):
        check_capture_path(args.capture)
    if args.output:
        check_output_path(args.output)
    elif args.format == "pprof" and sys.stdout.isatty():
        raise UsageError("pprof output is binary: give -o FILE")
    run = None
    with Progress("reading capture"):
        if multi or args.pid is not None:
            from memlens.report import processes

            run = read_capture("memlens report", args.capture, processes.load_run)
            if run is None:
                return 1
            cap = run.root.capture if run.root is not None else None
            if args.pid is not None:
                cap = _select(run, args.pid)
                run = None
            elif len(run.processes) == 1 and cap is not None:
                run = None
        else:
            cap = read_capture("memlens report", args.capture)
            if cap is None:
                return 1
    error = None
    with Progress(f"rendering {args.format}"):
        try:
            out = render(cap, args.format, args.view, args.limit, args.keep_import_frames) if run is None \
                else _render_run(run, args.format, args.view, args.limit, args.keep_import_frames)
        except OutputTooLarge as e:
            error = str(e)
        except MemoryError:
            error = f"out of memory rendering {args.format}"
    if error is not None:
        sys.stderr.write(f"memlens report: error: {error}\n")
        return 1
    if args.format == "collapsed" and args.view == "allocated" and cap is not None and not cap.allocated_exact:
        # Folded stacks have no room for a note (the other formats carry one).
        sys.stderr.write("memlens report: note: the allocated view is a lower bound for this capture "
                         "(from an older memlens, without cumulative totals): per stack, the larger "
                         "of what was live at the peak and at exit\n")
    data = out if isinstance(out, bytes) else out.encode("utf-8")
    if args.output:
        try:
            with open(args.output, "wb") as f:
                f.write(data)
        except OSError as e:
            sys.stderr.write(f"memlens report: error: cannot write {args.output!r}: {e.strerror or e}\n")
            return 2
        sys.stderr.write(f"memlens: wrote {os.path.abspath(args.output)}\n")
    else:
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, as cat or grep
            # would.  stdout is pointed at /dev/null so that Python's own
            # flush at exit does not report the broken pipe again; exit 1
            # is Python's documented status for EPIPE.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return 1
    return 0


def _select(run, pid):
    """The capture of process `pid` (UsageError when there is none)."""
    found = run.find(pid)
    if not found:
        pids = ", ".join(str(p.pid) for p in run.processes[:20])
        raise UsageError(f"--pid {pid}: no such process in this capture (processes: {pids})")
    traced = [p for p in found if p.capture is not None]
    if not traced:
        raise UsageError(f"--pid {pid}: that process was not traced ({found[0].status})")
    if len(found) > 1:
        sys.stderr.write(f"memlens report: note: pid {pid} was used by {len(found)} processes of "
                         f"this run; showing the first\n")
    return traced[0].capture


def _render_run(run, fmt, view, limit, keep_import_frames=False):
    """The report of every process of a run."""
    from memlens.report import collapsed, html, jsonfmt, pprof, text

    root = run.root.capture if run.root is not None else None
    if fmt == "text":
        out = text.processes(run, view, keep_import_frames=keep_import_frames)
        if root is not None:
            out += "\nFirst process (--pid N for another):\n" + text.render(root, view, limit,
                                                                          keep_import_frames)
        return out
    if fmt == "json":
        return jsonfmt.render_run(run)
    if fmt == "html":
        return html.render_run(run, view, keep_import_frames)
    if fmt == "collapsed":
        return collapsed.render_run(run, view)
    from memlens.report.model import Capture

    parts = [(p.pid, p.capture) for p in run.processes if p.capture is not None]
    return pprof.render(root if root is not None else Capture(stacks=[]), parts)
