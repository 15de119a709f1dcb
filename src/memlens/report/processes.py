"""The processes of a run: a capture file and its bundle directory.

``memlens run -o c.mlcap`` writes the first process's capture to
``c.mlcap`` and, when it starts Python children, one capture per child
process into ``c.mlcap.d/`` (``<pid>-<start ns>.mlcap``, the same format;
``<pid>-<start ns>.untraced`` for a Python that could not load memlens).
:func:`load_run` reads them all into a :class:`Run`: the processes as a
tree (a child's parent is the process with its parent pid that was alive
when it started, so a reused pid is not mistaken for another), and the
combined timeline, the sum across processes at each moment.
"""

import os
import re
from dataclasses import dataclass, field
from typing import List, Optional

from memlens.report import model

__all__ = ["Process", "Run", "load_run", "BUNDLE_SUFFIX"]

BUNDLE_SUFFIX = ".d"  # memlens._follow.BUNDLE_SUFFIX
_FILE = re.compile(r"(\d+)-(\d+)\.(mlcap|untraced)")
# Child captures read per bundle at most (a run of more processes is
# refused in one line rather than read without bound).
MAX_PROCESSES = 10_000


@dataclass(eq=False)  # one object per process: compared (and hashed) by identity
class Process:
    """One process of a run.  ``capture`` is None for a process that was
    not traced (``status`` "not traced") or whose capture cannot be read
    (``status`` says why)."""

    pid: int
    ppid: int
    command: str
    start_ns: int
    capture: Optional[model.Capture]
    status: str                       # ended, killed, exec, running (did not end), not traced
    exit_code: Optional[int] = None
    end_ns: Optional[int] = None
    path: str = ""
    incomplete: bool = False          # its last write was a periodic one: it did not end traced
    children: List["Process"] = field(default_factory=list)
    parent: Optional["Process"] = field(default=None, repr=False)

    @property
    def peak_bytes(self):
        return self.capture.peak if self.capture is not None else 0

    @property
    def exit_bytes(self):
        return self.capture.total if self.capture is not None else 0

    @property
    def duration_s(self):
        if self.end_ns is None:
            return None
        return max(self.end_ns - self.start_ns, 0) / 1e9

    @property
    def complete(self):
        """False for a process that did not end while traced (killed by
        SIGKILL, or still running): its capture is its last flush."""
        return self.capture is not None and not self.incomplete


@dataclass
class Run:
    processes: List[Process]          # tree order: each parent before its children
    root: Optional[Process]

    def find(self, pid):
        """The processes with this pid (more than one when it was reused)."""
        return [p for p in self.processes if p.pid == pid]

    def tree(self):
        """[(depth, Process)], each parent before its children."""
        out = []
        stack = [(0, p) for p in reversed([p for p in self.processes if p.parent is None])]
        while stack:
            depth, p = stack.pop()
            out.append((depth, p))
            stack.extend((depth + 1, c) for c in reversed(p.children))
        return out

    def combined(self):
        """The combined timeline: ([(seconds since the first start, total
        traced bytes across processes)], peak bytes, peak seconds).  A
        process counts from its first sample to its last with the value of
        its latest sample."""
        events = []
        starts = [p.start_ns for p in self.processes]
        t0 = min(starts) if starts else 0
        for i, p in enumerate(self.processes):
            if p.capture is None:
                continue
            tl = p.capture.timeline
            if not tl:
                # An incomplete process (killed by SIGKILL) has no timeline:
                # it counts with what was live at its last write, from its
                # start to its end (when it was reaped) or that write.
                end = p.end_ns if p.end_ns is not None else _int(p.capture.meta.get("written_ns"))
                if end is not None and p.exit_bytes:
                    events.append((p.start_ns, 0, i, p.exit_bytes))
                    events.append((max(end, p.start_ns) + 1, 0, i, 0))
                continue
            for s in tl:
                events.append((p.start_ns + int(s.t * 1e9), 0, i, s.traced))
            # After its last sample the process holds nothing (it ended).
            events.append((p.start_ns + int(tl[-1].t * 1e9) + 1, 0, i, 0))
        events.sort()
        current = {}
        total = 0
        points = []
        peak, peak_t = 0, None
        for t, _, i, value in events:
            total += value - current.get(i, 0)
            current[i] = value
            sec = (t - t0) / 1e9
            if points and points[-1][0] == sec:
                points[-1] = (sec, total)
            else:
                points.append((sec, total))
            if total > peak:
                peak, peak_t = total, sec
        return points, peak, peak_t


def _int(text, default=None):
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def _from_capture(path, cap, default_pid, default_start):
    m = cap.meta
    status = m.get("status", "ended")
    end = _int(m.get("end_time_ns"))
    start = cap.start_time_ns if cap.start_time_ns is not None else default_start
    if end is None and cap.timeline:
        end = start + int(cap.timeline[-1].t * 1e9)
    return Process(pid=_int(m.get("pid"), default_pid), ppid=_int(m.get("ppid"), 0),
                   command=m.get("command", ""), start_ns=start, capture=cap, status=status,
                   exit_code=_int(m.get("exit_code")), end_ns=end, path=path,
                   incomplete=status == "running")


def _untraced(path, pid, start):
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read(64 * 1024).split("\n")
    except OSError:
        lines = []
    ppid = _int(lines[0] if lines else None, 0)
    python = lines[1] if len(lines) > 1 else "?"
    command = lines[2] if len(lines) > 2 else ""
    return Process(pid=pid, ppid=ppid, command=command, start_ns=start, capture=None,
                   status=f"not traced (Python {python} without this memlens)", path=path)


def bundle_of(path):
    return os.fspath(path) + BUNDLE_SUFFIX


def has_children(path):
    d = bundle_of(path)
    return os.path.isdir(d) and any(_FILE.fullmatch(n) for n in os.listdir(d))


def load_run(path):
    """The :class:`Run` of capture file `path` and its bundle directory.
    The file itself may be missing when the bundle is there (the first
    process was killed before it wrote its marker).  CaptureError (one
    line) when the file is not a valid capture; a child capture that
    cannot be read is listed with the reason as its status."""
    path = os.fspath(path)
    processes = []
    root = None
    if os.path.exists(path) or not os.path.isdir(bundle_of(path)):
        cap = model.load(path)
        root = _from_capture(path, cap, 0, cap.start_time_ns or 0)
        processes.append(root)
    d = bundle_of(path)
    if os.path.isdir(d):
        names = sorted((n for n in os.listdir(d) if _FILE.fullmatch(n)),
                       key=lambda n: tuple(map(int, _FILE.fullmatch(n).group(1, 2))))
        if len(names) > MAX_PROCESSES:
            raise model.CaptureError(f"{d}: {len(names)} process captures, more than the "
                                     f"{MAX_PROCESSES} a report reads")
        for name in names:
            pid, start, kind = _FILE.fullmatch(name).groups()
            pid, start = int(pid), int(start)
            full = os.path.join(d, name)
            if kind == "untraced":
                processes.append(_untraced(full, pid, start))
                continue
            try:
                cap = model.load(full)
            except model.CaptureError as e:
                processes.append(Process(pid, 0, "", start, None, f"unreadable: {e}", path=full))
                continue
            processes.append(_from_capture(full, cap, pid, start))
    _exit_codes(processes)
    _link(processes)
    ordered = Run(processes, root)
    return Run([p for _, p in ordered.tree()], root)


def _exit_codes(processes):
    """Exit codes from the reaps each traced process recorded, and the
    children that left no record of their own (not Python): a process
    claims the first reap of its pid after it started; a reap nobody
    claims is a child that was not traced."""
    # A child that ended by sys.exit() or was killed by a signal cannot
    # record its own exit code; the process that reaped it (os.waitpid)
    # records it.
    from memlens import _follow

    reaps = {}
    for p in processes:
        if p.capture is not None:
            for pid, code, t, command in _follow.reaped_of(p.capture.meta):
                reaps.setdefault(pid, []).append([t, code, command, p, False])
    for p in sorted(processes, key=lambda q: q.start_ns):
        if p.status == "exec":
            continue
        later = sorted((r for r in reaps.get(p.pid, ()) if r[0] >= p.start_ns and not r[4]),
                       key=lambda r: r[0])
        if later:
            r = later[0]
            r[4] = True
            t, code = r[0], r[1]
            if p.exit_code is None:
                p.exit_code = code
            if p.end_ns is None:
                p.end_ns = t
            if code < 0 and p.status == "running":
                p.status = "killed"
    for pid, rows in reaps.items():
        for t, code, command, reaper, claimed in rows:
            if not claimed and len(processes) < MAX_PROCESSES:
                # When it started is unknown: it is placed at its end.
                processes.append(Process(pid, reaper.pid, command or "?", t, None,
                                         "not traced (not Python, or not given memlens' environment)",
                                         code, None, path=reaper.path))


def _link(processes):
    # The parent: the process with the child's ppid that started before it
    # and had not ended when it started (the latest such one).
    by_pid = {}
    for p in processes:
        by_pid.setdefault(p.pid, []).append(p)
    for p in processes:
        candidates = [q for q in by_pid.get(p.ppid, ()) if q is not p and q.start_ns <= p.start_ns
                      and (q.end_ns is None or q.end_ns >= p.start_ns)]
        if not candidates:
            candidates = [q for q in by_pid.get(p.ppid, ()) if q is not p and q.start_ns <= p.start_ns]
        if candidates:
            parent = max(candidates, key=lambda q: q.start_ns)
            p.parent = parent
            parent.children.append(p)
