"""Line-by-line memory profile: memory_profiler's workflow with exact,
allocation-based numbers.

::

    @memlens.profile
    def work():
        a = [0] * 5_000_000
        del a

    work()
    memlens.show_profile()         # or: printed at exit

    python -m memlens.lineprof script.py [args]   # builtin `profile`, like
                                                   # python -m memory_profiler

Each line's figures are what the running thread allocated and freed while
the line ran in the innermost profiled frame, calls made from that line to
functions that are not profiled included (a profiled callee has its own
table, and its lines are not counted again in the caller's).  They come
from the allocation tracer in exact mode, read in C at every line boundary
(``memlens._core``, csrc/lineprof/).
"""

import atexit
import dataclasses
import inspect
import linecache
import os
import sys
import threading

from memlens import _core
from memlens import tracer as _tracer
from memlens._util import format_bytes, result

__all__ = [
    "profile",
    "show_profile",
    "line_stats",
    "reset_profile",
    "stop_profile",
    "start_profile",
    "finish_profile",
    "format_profile",
    "LineStat",
    "main",
]

# Guarded by the GIL; all module-level state of the profiler.
_state = {
    "enabled": False,      # line events are being charged
    "own_tracer": False,   # we started the allocation tracer
    "rss": False,          # Mem usage from RSS
    "at_exit": False,      # print the tables at exit
    "atexit_registered": False,
    "tool": None,          # 3.12+: our sys.monitoring tool id
    "codes": [],           # registered code objects, in registration order
}

_HAS_MONITORING = sys.version_info >= (3, 12)
if _HAS_MONITORING:
    _EV = sys.monitoring.events
    _LOCAL_EVENTS = _EV.PY_START | _EV.PY_RESUME | _EV.PY_RETURN | _EV.PY_YIELD | _EV.LINE
    # Not local events in PEP 669: set globally; the C callbacks return at
    # once for code that is not profiled (these fire only on exceptions).
    _GLOBAL_EVENTS = _EV.PY_UNWIND | _EV.PY_THROW


@result
class LineStat:
    """Figures of one source line of a profiled function (bytes).

    ``increment`` = ``allocated`` - ``freed``; ``peak`` is the highest net
    growth during one occurrence of the line; ``mem_usage`` the highest
    traced memory (or RSS with ``rss=True``) seen right after the line.
    """

    filename: str
    function: str
    lineno: int
    occurrences: int
    increment: int
    allocated: int
    freed: int
    peak: int
    mem_usage: int

    def __repr__(self):
        return ("<LineStat {}:{} ({}) occurrences={} increment={} allocated={} freed={} "
                "peak={} mem_usage={}>").format(*dataclasses.astuple(self))


# ---- enabling ------------------------------------------------------------------


def _callbacks():
    """3.12+: (event, C callback) pairs the profiler registers."""
    return ((_EV.PY_START, _core.lineprof_mon_start),
            (_EV.PY_RESUME, _core.lineprof_mon_resume),
            (_EV.PY_THROW, _core.lineprof_mon_resume),   # a throw() into a suspended generator
            (_EV.PY_RETURN, _core.lineprof_mon_leave),
            (_EV.PY_YIELD, _core.lineprof_mon_leave),
            (_EV.PY_UNWIND, _core.lineprof_mon_leave),
            (_EV.LINE, _core.lineprof_mon_line))


def _ensure_started(rss=None):
    if rss is not None:
        _state["rss"] = bool(rss)
    if _state["enabled"]:
        return
    if _tracer.ensure_exact("line profiles"):
        _state["own_tracer"] = True
    if _HAS_MONITORING:
        mon = sys.monitoring
        tool = None
        # Not PROFILER_ID first: cProfile takes it (3.12+) and fails if it
        # is in use; 3 and 4 have no conventional owner.
        for candidate in (4, 3, mon.PROFILER_ID, 5):
            if mon.get_tool(candidate) is None:
                tool = candidate
                break
        if tool is None:
            raise RuntimeError("memlens: no free sys.monitoring tool id for the line profiler")
        mon.use_tool_id(tool, "memlens")
        _state["tool"] = tool
        for ev, callback in _callbacks():
            mon.register_callback(tool, ev, callback)
        mon.set_events(tool, _GLOBAL_EVENTS)
        for code in _state["codes"]:
            mon.set_local_events(tool, code, _LOCAL_EVENTS)
        _core.lineprof_enable(_state["rss"])
    else:
        # 3.9-3.11: the C trace function on this thread, and on every
        # thread started from now on.  Threads already running are not
        # profiled (CPython offers no way to set their trace function).
        _core.lineprof_enable(_state["rss"])
        threading.settrace(_core.lineprof_thread_hook)
    _state["enabled"] = True
    _state["at_exit"] = True
    if not _state["atexit_registered"]:
        atexit.register(_at_exit)
        _state["atexit_registered"] = True


def _stop_events():
    if not _state["enabled"]:
        return
    _core.lineprof_disable()
    if _HAS_MONITORING:
        mon = sys.monitoring
        tool = _state["tool"]
        mon.set_events(tool, 0)
        for code in _state["codes"]:
            mon.set_local_events(tool, code, 0)
        for ev, _ in _callbacks():
            mon.register_callback(tool, ev, None)
        mon.free_tool_id(tool)
        _state["tool"] = None
    else:
        threading.settrace(None)
    _state["enabled"] = False


def _code_of(func):
    f = inspect.unwrap(func) if callable(func) else func
    code = getattr(f, "__code__", None)
    if code is None:
        code = getattr(getattr(f, "__func__", None), "__code__", None)
    if code is None:
        raise TypeError(f"memlens.profile expects a Python function, not {type(func).__name__}")
    return code


def profile(func=None, *, rss=None, precision=None, stream=None):
    """Decorator: profile `func` line by line.  The function itself is
    returned unchanged (its code object is registered), so generators,
    coroutines, methods and recursion behave exactly as without it.

    The allocation tracer starts (exact mode) at the first use and runs
    until :func:`stop_profile` or exit; the tables print at exit or on
    :func:`show_profile`.  ``precision`` and ``stream`` are accepted for
    memory_profiler compatibility and ignored.
    """
    if func is None:
        return lambda f: profile(f, rss=rss)
    code = _code_of(func)
    # By identity, as the C table: equal code objects compiled from another
    # file (or an IPython cell run again) are other functions.
    if not any(c is code for c in _state["codes"]):
        _state["codes"].append(code)
        _core.lineprof_register(code)
        if _HAS_MONITORING and _state["enabled"]:
            sys.monitoring.set_local_events(_state["tool"], code, _LOCAL_EVENTS)
    _ensure_started(rss)
    return func


def start_profile(rss=False):
    """Start the tracer and line events now (``memlens run --lines`` does,
    before the program runs, so that frees of anything the program made are
    seen).  ``rss``: Mem usage from RSS instead of traced memory."""
    _ensure_started(rss)


def finish_profile(stream=None):
    """Stop charging line events and print the tables (stdout)."""
    _stop_events()
    show_profile(stream)


def reset_profile():
    """Zero every line's figures (profiled functions stay profiled)."""
    _core.lineprof_reset()


def stop_profile():
    """Stop profiling, forget every profiled function and its figures, and
    stop the allocation tracer if the profiler started it."""
    _stop_events()
    _core.lineprof_clear()
    _state["codes"] = []
    _state["at_exit"] = False
    if _state["own_tracer"]:
        _tracer.stop()
        _state["own_tracer"] = False


def _records():
    if _core.lineprof_failed():
        raise MemoryError("memlens line profiler ran out of memory for its records; "
                          "some figures are missing")
    return _core.lineprof_stats()


def line_stats(func=None):
    """Per-line records (:class:`LineStat`) of every profiled function (or
    only `func`), by function in profiling order, then by line."""
    want = None if func is None else _code_of(func)
    out = []
    for code, _calls, lines in _records():
        if want is not None and code is not want:
            continue
        for lineno, occ, inc, alloc, freed, peak, mem in lines:
            out.append(LineStat(code.co_filename, code.co_qualname if hasattr(code, "co_qualname")
                                else code.co_name, lineno, occ, inc, alloc, freed, peak, mem))
    return out


# ---- report ----------------------------------------------------------------------


def _mib(n):
    return format_bytes(n, unit="MiB")


def _source_block(code):
    """(first line number, [source lines]) of the function of `code`."""
    lines = linecache.getlines(code.co_filename)
    first = code.co_firstlineno
    if not lines or first > len(lines):
        return first, []
    try:
        block = inspect.getblock(lines[first - 1:])
    except Exception:  # tokenize errors on odd sources: show what we can
        block = lines[first - 1:first]
    return first, [line.rstrip("\n") for line in block]


def format_profile(records=None):
    """The tables as text, memory_profiler's columns first (``Line #``,
    ``Mem usage``, ``Increment``, ``Occurrences``, ``Line Contents``), then
    ``Allocated``, ``Freed``, ``Peak``."""
    if records is None:
        records = _records()
    out = []
    for code, calls, lines in records:
        if not calls and not lines:
            continue
        first, source = _source_block(code)
        by_line = {rec[0]: rec for rec in lines}
        last = max([first + len(source) - 1] + list(by_line))
        width = max([len("Line Contents")] + [len(s) for s in source])
        head = (f"{'Line #':>6} {'Mem usage':>12} {'Increment':>12}  {'Occurrences':>10}   "
                f"{'Line Contents':<{width}}  {'Allocated':>12} {'Freed':>12} {'Peak':>12}")
        out.append(f"Filename: {code.co_filename}")
        out.append("")
        out.append(head)
        out.append("=" * len(head))
        for lineno in range(first, last + 1):
            text = source[lineno - first] if lineno - first < len(source) else ""
            rec = by_line.get(lineno)
            if rec is None:
                out.append(f"{lineno:>6} {'':>12} {'':>12}  {'':>10}   {text}".rstrip())
                continue
            _, occ, inc, alloc, freed, peak, mem = rec
            out.append(f"{lineno:>6} {_mib(mem):>12} {_mib(inc):>12}  {occ:>10}   "
                       f"{text:<{width}}  {_mib(alloc):>12} {_mib(freed):>12} {_mib(peak):>12}")
        out.append("")
        out.append("")
    return "\n".join(out)


def show_functions(funcs, stream=None):
    """Print the line tables of `funcs` only (``%mlprun``); they are not
    printed again at exit."""
    codes = [_code_of(f) for f in funcs]
    records = [r for r in _records() if any(r[0] is c for c in codes)]
    print(format_profile(records), end="", file=stream if stream is not None else sys.stdout)
    _state["at_exit"] = False


def show_profile(stream=None):
    """Print the line tables of every profiled function (to stdout)."""
    text = format_profile()
    _state["at_exit"] = False
    if text:
        print(text, file=stream if stream is not None else sys.stdout, end="")


def _at_exit():
    if _state["at_exit"]:
        try:
            show_profile()
        except (OSError, ValueError):  # stdout closed or a broken pipe
            pass
        finally:
            _state["at_exit"] = False


# ---- python -m memlens.lineprof script.py --------------------------------------


def run_program(program, rss=False, runner=()):
    """Run `program` (a ``memlens._runner.Program``) as python would, with a
    builtin ``profile`` (this module's), then print the tables.  Returns
    its exit status.  ``memlens run --lines`` and ``python -m
    memlens.lineprof`` both come here."""
    import builtins

    from memlens import _runner

    builtins.profile = profile
    start_profile(rss)
    try:
        ended = program.run()
    finally:
        finish_profile()
    _runner.report_end(ended, runner)
    return ended.code


def run_script(argv, rss=False, module=False):
    """Run a script (or ``-m`` module) ``argv[0]`` with arguments
    ``argv[1:]`` through :func:`run_program`.  Returns the exit status."""
    from memlens import _runner

    if module:
        program = _runner.Program(module=argv[0], args=argv[1:])
    else:
        program = _runner.Program(script=argv[0], args=argv[1:])
    program.enter()
    if not program.compile():
        return 1
    return run_program(program, rss)


def main(argv=None):
    """``python -m memlens.lineprof [--rss] [-m module | script.py] [args]``"""
    import argparse

    p = argparse.ArgumentParser(prog="python -m memlens.lineprof",
                                description="Line-by-line memory profile of the functions "
                                            "decorated with @profile (exact, allocation-based).")
    p.add_argument("--rss", action="store_true", help="Mem usage column from RSS, not traced memory")
    p.add_argument("-m", dest="module", action="store_true", help="run a library module as a script")
    p.add_argument("target", help="script path (or module name with -m)")
    p.add_argument("args", nargs=argparse.REMAINDER)
    ns = p.parse_args(argv)
    if not ns.module and not os.path.isfile(ns.target):
        p.error(f"no such script: {ns.target}")
    from memlens import _runner

    try:
        if ns.module:
            _runner.Program(module=ns.target).check()
        return run_script([ns.target] + ns.args, rss=ns.rss, module=ns.module)
    except _runner.ProgramError as e:
        p.error(str(e))


if __name__ == "__main__":
    # Run the package's copy of this module, so that `memlens.profile` and
    # the builtin `profile` share one state.
    from memlens.lineprof import main as _main

    sys.exit(_main())
