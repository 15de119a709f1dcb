"""Run captures and the memory timeline: the Python face of the engine's
capture format (``csrc/capture/``) and timeline sampler
(``csrc/tracer/trace_timeline.c``).

The CLI and the report model go through here, never to ``memlens._core``
itself, so that one module knows how the engine is called::

    capture.start_timeline(10.0)               # sample every 10 ms
    ...                                         # the program runs, traced
    table = capture.take_table()                # None if the tracer was stopped
    interval_ms, samples, native = capture.stop_timeline()
    capture.write(path, table, meta, interval_ms, samples, classes, native)
    raw = capture.read(path)                    # a CaptureFile

:func:`read` turns every failure into one of two exceptions with a one-line
message: :class:`CaptureReadError` (the file could not be read at all, or is
not a regular file: a FIFO, a device, a directory) or :class:`CaptureError`
(it was read but is not a valid capture).  The engine reads only what the
file's size and its sections declare, so neither takes long or much memory.

Names (file and function names, metadata, class names) may be any str Python
gives for a path or an argument: bytes that were not UTF-8
(surrogate-escaped) are stored as those bytes and read back exactly
(``csrc/capture/cap_format.h`` says how).
"""

import os
from typing import Dict, List, Optional, Tuple

from memlens import _core
from memlens._util import result

__all__ = ["CaptureError", "CaptureReadError", "CaptureFile", "read", "write", "take_table",
           "start_timeline", "stop_timeline"]


class CaptureError(ValueError):
    """A capture file that cannot be read (one-line message)."""


class CaptureReadError(CaptureError):
    """The file could not be read at all (an OSError), as opposed to one
    that was read but is not a valid capture."""


@result
class CaptureFile:
    """What a capture file holds, as the engine reads it: the per-stack
    ``table`` (a ``_core.TraceTable``), the run ``meta`` (str -> str), the
    timeline's ``interval_ms`` and raw ``timeline`` (32-byte little-endian
    records: t_ns, traced, peak, rss), ``classes`` ((name, instances,
    bytes) rows, or None) and ``native`` (one little-endian u64 per timeline
    sample, the native share of traced; b'' when not recorded)."""

    table: object
    meta: Dict[str, str]
    interval_ms: float
    timeline: bytes
    classes: Optional[List[Tuple[str, int, int]]]
    native: bytes = b""


def read(path):
    """The :class:`CaptureFile` in `path` (a capture of ``memlens run`` or a
    ``Snapshot.dump``)."""
    try:
        return CaptureFile(*_core.cap_run_read(os.fspath(path), True))
    except ValueError as e:
        raise CaptureError(str(e)) from None
    except OSError as e:
        raise CaptureReadError(f"{path}: cannot read: {e.strerror or e}") from None


def write(path, table, meta, interval_ms, timeline, classes=None, native=b""):
    """Write a capture: `table` from :func:`take_table`, `meta` a str -> str
    dict, the timeline and its `native` column from :func:`stop_timeline`,
    `classes` None or (name, instances, bytes) rows.  OSError if the file
    cannot be written."""
    _core.cap_run_write(os.fspath(path), table, meta, interval_ms, timeline, classes, native)


def take_table():
    """The tracer's per-stack table now, or None when it is not tracing (a
    program that called ``memlens.stop()`` itself)."""
    try:
        return _core.trace_take_snapshot()
    except RuntimeError:
        return None


def start_timeline(interval_ms):
    """Start sampling traced memory, its peak and RSS every `interval_ms`
    milliseconds on a thread of the engine."""
    _core.timeline_start(interval_ms)


def stop_timeline():
    """Stop the sampler: ``(interval_ms, samples, native)``, the interval it
    ended with, the raw samples and their native column (``(0.0, b'',
    b'')`` when none was running)."""
    return _core.timeline_stop(True)
