"""Run a script, a ``-m`` module or ``-c`` code as python would (private).

One runner for ``memlens run``, ``memlens run --lines``, ``memlens advise``
and ``python -m memlens.lineprof``: the program sees the same
``sys.argv``, ``sys.path[0]``, ``__main__`` and ``__name__`` as under
``python script.py`` / ``python -m module`` / ``python -c code``, and ends as python would end it
(exit code of ``sys.exit``, a ``SystemExit`` message printed, an uncaught
exception's traceback without the runner's frames and exit code 1, Ctrl-C
130)::

    program = Program(script="app.py", args=["-v"])
    program.check()          # ProgramError: no such file / module
    program.enter()          # sys.argv, sys.path[0]
    if program.compile():    # False: a SyntaxError, printed as python does
        ended = program.run()
        report_end(ended)    # the traceback or SystemExit message, flushed
        sys.exit(ended.code)
"""

import builtins
import importlib.machinery
import importlib.util
import io
import os
import pkgutil
import runpy
import sys
import zipfile

from memlens._util import result

__all__ = ["ProgramError", "Program", "Ended", "report_end", "runner_files"]

# The exit code python reports for SIGINT's KeyboardInterrupt (128 + 2).
EXIT_INTERRUPTED = 130
# What the OS keeps of an exit status.
_EXIT_STATUS_MASK = 0xFF
# Python exits with this when sys.exit() is given an int that does not fit
# in a C long (it prints nothing else: -1, as the OS keeps it).
_EXIT_INT_OVERFLOW = 255
_C_LONG_BITS = 64 if sys.maxsize > 2 ** 32 else 32


class ProgramError(Exception):
    """The program cannot be run: no such script or module, no
    ``__main__`` in a directory or zip file (a one-line message)."""


@result
class Ended:
    """How a program ended: its exit ``code``, the uncaught exception to
    print (``failure``, or None) and a ``SystemExit`` message to print
    (``exit_message``, or None)."""

    code: int
    failure: object = None
    exit_message: object = None


def runner_files(*extra):
    """File names of the runner's frames (and of `extra` callers'): a
    traceback or a recorded stack starts below them."""
    # 3.11+: runpy is frozen, its frames are named "<frozen runpy>".
    names = {__file__, runpy.__file__, "<frozen runpy>", *extra}
    return names | {os.path.abspath(n) for n in names if not n.startswith("<")}


class Program:
    """A script (``script``), a module (``module``) or a string of code
    (``code``, as ``python -c``), and its arguments."""

    def __init__(self, script=None, module=None, args=(), code=None):
        self.script = script
        self.module = module
        self.code = code
        self.args = list(args)
        self._target = None

    def check(self):
        """ProgramError unless the script or the module's top-level package
        exists (checked before anything else happens)."""
        if self.code is not None:
            return
        if self.module is None:
            if not os.path.exists(self.script):
                raise ProgramError(f"can't open file {self.script!r}: No such file or directory")
            return
        # Look up the top-level package only, from where python -m would
        # (the current directory first): finding a submodule would import
        # its parents before the caller is ready (tracing, profiling).
        top = self.module.partition(".")[0]
        saved = sys.path[0]
        sys.path[0] = os.getcwd()
        try:
            spec = importlib.util.find_spec(top) if top else None
        except (ImportError, ValueError):
            spec = None
        finally:
            sys.path[0] = saved
        if spec is None:
            raise ProgramError(f"No module named {top or self.module!r}")

    def enter(self):
        """Set ``sys.argv`` and ``sys.path[0]`` as python does."""
        if self.code is not None:
            # python -c: argv[0] is '-c', and '' (the current directory,
            # wherever the program chdirs to) comes first on the path.
            sys.argv = ["-c"] + self.args
            sys.path[0] = ""
        elif self.module is None:
            sys.argv = [self.script] + self.args
            if os.path.isfile(self.script) and not zipfile.is_zipfile(self.script):
                sys.path[0] = os.path.dirname(os.path.realpath(self.script))
            else:
                sys.path[0] = os.path.abspath(self.script)
        else:
            sys.argv = ["-m"] + self.args  # runpy puts the module's file in argv[0]
            sys.path[0] = os.getcwd()

    def compile(self):
        """Read and compile the script now, so that a caller can start
        tracing afterwards and the runner's own work is not in it.  False
        (the error printed as python prints it) for a SyntaxError;
        ProgramError if the script cannot be read."""
        if self.code is not None:
            try:
                self._target = _prepare_code(self.code)
            except (SyntaxError, ValueError) as e:
                # SyntaxError as python prints it; ValueError: a NUL byte.
                e.__traceback__ = None
                sys.excepthook(type(e), e, None)
                return False
            return True
        if self.module is not None:
            module = self.module
            self._target = lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)
            return True
        try:
            self._target = _prepare_script(self.script)
        except SyntaxError as e:
            # Python prints these without a traceback and exits 1.
            e.__traceback__ = None
            sys.excepthook(type(e), e, None)
            return False
        except OSError as e:
            raise ProgramError(f"can't open file {self.script!r}: {e.strerror or e}") from None
        return True

    def run(self):
        """Run the compiled program: an :class:`Ended`.  Every exception
        (SystemExit and KeyboardInterrupt too) is caught."""
        if self._target is None and not self.compile():
            return Ended(1)
        try:
            self._target()
        except SystemExit as e:
            message = None if e.code is None or isinstance(e.code, int) else e.code
            return Ended(_exit_code(e), None, message)
        except KeyboardInterrupt as e:
            return Ended(EXIT_INTERRUPTED, e)
        except BaseException as e:
            return Ended(1, e)
        return Ended(0)


def write_stderr(text):
    """Write to the program's ``sys.stderr`` as python's own messages go
    there: nothing when the program set it to None or closed it (python
    exits as usual then), never an exception."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(text)
        stream.flush()
    except Exception:  # closed, broken pipe, a replacement that raises
        pass


def report_end(ended, runner=()):
    """Print how the program ended, as python would (a SystemExit message,
    or the traceback without the frames of the runner and of `runner`
    files), then flush its streams before the caller writes.  Never
    raises: the program's streams and hooks may be in any state."""
    if ended.exit_message is not None:
        write_stderr(f"{ended.exit_message}\n")
    if ended.failure is not None:
        print_exception(ended.failure, runner)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # closed, None, or a replacement without flush
            pass


def print_exception(e, runner=()):
    """The traceback of `e` without the runner's frames, as python itself
    shows none of its own.  A ``sys.excepthook`` that raises is reported as
    python reports it ("Error in sys.excepthook:", then the original)."""
    tb = e.__traceback__
    skip = runner_files(*runner)
    while tb is not None and tb.tb_frame.f_code.co_filename in skip:
        tb = tb.tb_next
    if tb is None and isinstance(e, ImportError):
        # runpy could not find the -m module: one line, as python -m says it.
        write_stderr(f"memlens run: error: {e}\n")
        return
    e.__traceback__ = tb
    hook = sys.excepthook
    try:
        hook(type(e), e, tb)
    except BaseException as hook_error:  # noqa: B036 -- python reports any
        import traceback

        write_stderr("Error in sys.excepthook:\n")
        write_stderr("".join(traceback.format_exception(type(hook_error), hook_error,
                                                        hook_error.__traceback__.tb_next)))
        write_stderr("\nOriginal exception was:\n")
        try:
            sys.__excepthook__(type(e), e, tb)
        except Exception:
            pass


def _exit_code(e):
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        if not -(1 << (_C_LONG_BITS - 1)) <= code < (1 << (_C_LONG_BITS - 1)):
            return _EXIT_INT_OVERFLOW
        return code & _EXIT_STATUS_MASK  # as for python
    # Like Python: a non-int code is printed (by report_end), the exit code is 1.
    return 1


def _prepare_script(path):
    """A function running the script as python would."""
    abspath = os.path.abspath(path)
    main_mod = type(sys)("__main__")
    main_mod.__builtins__ = builtins
    if not os.path.isfile(path) or zipfile.is_zipfile(path):
        # A directory or zip file with a __main__.py: python puts it first
        # on sys.path (enter() does) and runs its __main__ module.
        importer = pkgutil.get_importer(abspath)
        try:
            spec = importer.find_spec("__main__") if importer is not None else None
        except AttributeError:
            # 3.9: zipimporter has no find_spec; runpy does the same job
            # (with sys.argv[0] and sys.path[0] as given, not absolute).
            return lambda: runpy.run_path(path, run_name="__main__")
        if spec is None or spec.loader is None:
            raise ProgramError(f"can't find '__main__' module in {path!r}")
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


def _prepare_code(source):
    """A function running `source` as ``python -c`` does: compiled as
    ``<string>``, in a fresh ``__main__`` with no ``__file__`` and the
    loader python gives it (BuiltinImporter)."""
    code = compile(source, "<string>", "exec", dont_inherit=True)
    source_entry = None
    if sys.version_info >= (3, 13):
        # 3.13's python -c keeps the source in linecache, with no mtime
        # (checkcache() leaves such an entry alone), so that tracebacks show
        # its lines; 3.9-3.12 show none.  linecache is imported and the
        # entry made now, untraced; run() puts them back in place, after
        # memlens's command line has forgotten its own imports (python -c
        # has linecache loaded when the code starts).
        import linecache

        source_entry = (linecache, (len(source), None, [line + "\n" for line in source.splitlines()], "<string>"))
    main_mod = type(sys)("__main__")
    main_mod.__builtins__ = builtins
    main_mod.__loader__ = importlib.machinery.BuiltinImporter
    main_mod.__spec__ = None
    main_mod.__package__ = None

    def run():
        sys.modules["__main__"] = main_mod
        if source_entry is not None:
            module, entry = source_entry
            sys.modules.setdefault("linecache", module).cache["<string>"] = entry
        exec(code, main_mod.__dict__)

    return run
