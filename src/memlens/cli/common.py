"""Shared helpers of the subcommands: one-line errors, output checks,
progress on a terminal."""

import argparse
import os
import sys
import time

__all__ = ["UsageError", "ArgumentParser", "check_output_path", "check_capture_path", "read_capture",
           "Progress"]


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (``memlens run: error: ...``), exit 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def check_output_path(path):
    """UsageError unless `path` can be written (checked before a long run)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UsageError(f"cannot write {path!r}: it is a directory")
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise UsageError(f"cannot write {path!r}: directory {d!r} does not exist")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"cannot write {path!r}: permission denied")
    elif not os.access(d, os.W_OK):
        raise UsageError(f"cannot write {path!r}: directory is not writable")


def check_capture_path(path):
    """UsageError unless `path` is a file (report and plot check it before
    anything else)."""
    if not os.path.isfile(path):
        what = "is not a file" if os.path.exists(path) else "No such file"
        raise UsageError(f"cannot read capture {path!r}: {what}")


def read_capture(prog, path, load=None):
    """The Capture in `path` (or what `load(path)` makes of it: a run with
    its children's bundle), or None once `prog`'s one-line error is on
    stderr (the caller exits 1) when it is not a valid capture.  A file that
    cannot be read at all is a UsageError (exit 2), like a missing one."""
    from memlens.report import model

    try:
        return (load or model.load)(path)
    except model.CaptureReadError as e:
        raise UsageError(str(e)) from None
    except model.CaptureError as e:
        sys.stderr.write(f"{prog}: error: {e}\n")
        return None


class Progress:
    """``with Progress("rendering"):`` prints a ticking status line on stderr,
    only when stderr is a terminal and the work takes more than a second."""

    def __init__(self, what, stream=None, delay=1.0):
        # Imported here, when a report shows progress: `memlens run`
        # imports this module before the program.
        import threading

        self.what = what
        self.stream = stream if stream is not None else sys.stderr
        self.delay = delay
        self._stop = threading.Event()
        self._thread = None
        self._shown = False

    def _run(self):
        start = time.monotonic()
        if self._stop.wait(self.delay):
            return
        while not self._stop.is_set():
            self._shown = True
            self.stream.write(f"\rmemlens: {self.what}... {time.monotonic() - start:.0f} s")
            self.stream.flush()
            self._stop.wait(0.5)

    def __enter__(self):
        try:
            tty = self.stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        if tty:
            import threading

            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            if self._shown:
                self.stream.write("\r\033[K")
                self.stream.flush()
        return False
