"""Following child processes (private): each traced process of a run keeps
one recorder that writes its own capture into the run's bundle directory.

How a process comes to be traced (docs/cli.md, "Child processes"):

* ``os.fork()`` (and multiprocessing's fork and forkserver workers, which
  the server forks): an ``os.register_at_fork`` handler in the child starts
  the tracer afresh (the child's figures are its own, not the parent's
  copy-on-write heap) and a new recorder.
* anything that starts a new interpreter (``subprocess``, ``os.exec*``,
  ``os.posix_spawn``, multiprocessing's spawn and the forkserver itself):
  the environment carries :data:`ENV` and puts :data:`BOOT_DIR` first on
  ``PYTHONPATH``; its ``sitecustomize`` calls :func:`boot` before the
  program runs.

A recorder writes its capture (``<pid>-<start ns>.mlcap``, the format of
``memlens run``) when the process starts (a marker: pid, parent, command,
status "running") and again, complete, when it ends: at exit, in
``os._exit``, before ``os.exec*`` replaces it, and on SIGTERM/SIGHUP.  Each
write goes to a temporary file renamed over the last one, so a reader sees
the previous write or the new one, never half of one; a process killed by
SIGKILL leaves its last write, whose status says it did not end.

This module is loaded by the bootstrap without the memlens package (which
would import much more into the child before its program runs): it imports
only modules the interpreter has loaded at startup or builtins, and gets
``memlens._core`` from its caller.
"""

import atexit
import os
import sys
import time

# "1\n<bundle dir>\n<frames>\n<sample bytes>\n<interval ms>\n<native 0/1>"
ENV = "MEMLENS_CHILDREN"
BOOT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_boot")
# The suffix of the bundle directory next to a run's capture file.
BUNDLE_SUFFIX = ".d"
# Statuses a process's capture records (meta "status").
RUNNING, ENDED, EXECED, KILLED = "running", "ended", "exec", "killed"
# Reaped children kept per process (pid, status, time): bounded.
_MAX_REAPED = 100_000
# Seconds between a child's periodic writes (what a SIGKILL leaves), at
# least: the wait is also at least _FLUSH_COST_RATIO times what the last
# write took, so that writing costs the process at most 1% of its time (a
# spawn worker's import-heavy tables take about 25 ms to write).
FLUSH_S = 1.0
_FLUSH_COST_RATIO = 100
# Seconds a write waits for another one (the flusher's) to end.
_LOCK_WAIT_S = 10.0

_real_exit = os._exit
_real_execv = os.execv
_real_execve = os.execve
_real_waitpid = os.waitpid

_core = None      # memlens._core, given by the caller
_opts = None      # (bundle dir, frames, sample bytes, interval ms, native) while following
_rec = None       # this process's recorder (None in the first process of `memlens run`)
_reaped = []      # "pid wait-status time_ns\tcommand" of children this process reaped
_runner = ()      # file names of the frames that are memlens', not the program's
_lock = None      # one write at a time (the flusher thread and the main thread)
_installed = False


def env_value(directory, frames, sample_bytes, interval_ms, native=True):
    """The value of :data:`ENV` for children of a run writing into
    `directory`."""
    return f"1\n{directory}\n{int(frames)}\n{int(sample_bytes)}\n{float(interval_ms)!r}\n{int(bool(native))}"


def parse_env(value):
    """(directory, frames, sample_bytes, interval_ms, native) of an
    :data:`ENV` value, or None when it is not one (absent, another version,
    garbled)."""
    if not value:
        return None
    parts = value.split("\n")
    if len(parts) != 6 or parts[0] != "1" or not os.path.isabs(parts[1]) or parts[5] not in ("0", "1"):
        return None
    try:
        return parts[1], int(parts[2]), int(parts[3]), float(parts[4]), parts[5] == "1"
    except ValueError:
        return None


def child_environ(environ, directory, frames, sample_bytes, interval_ms, native=True):
    """Put :data:`ENV` and :data:`BOOT_DIR` (first on PYTHONPATH) into the
    mapping `environ`, which children inherit."""
    environ[ENV] = env_value(directory, frames, sample_bytes, interval_ms, native)
    path = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != BOOT_DIR]
    environ["PYTHONPATH"] = os.pathsep.join([BOOT_DIR] + path)


def unset_environ(environ):
    """Undo :func:`child_environ` (children started afterwards are not
    followed)."""
    environ.pop(ENV, None)
    path = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != BOOT_DIR]
    if path:
        environ["PYTHONPATH"] = os.pathsep.join(path)
    else:
        environ.pop("PYTHONPATH", None)


def _command_line():
    # The real command line (`python -c CODE ...` keeps its CODE, which
    # sys.argv replaces by "-c"); sys.argv where /proc is not there.
    try:
        with open("/proc/self/cmdline", "rb") as f:
            raw = f.read()
        args = [os.fsdecode(a) for a in raw.split(b"\0")[:-1]]
        if args:
            return args
    except OSError:
        pass
    return list(getattr(sys, "orig_argv", sys.argv))


class _Recorder:
    """One traced process: where its capture goes and what it says."""

    __slots__ = ("pid", "ppid", "start_ns", "t0", "path", "command", "done", "runner", "opts")

    def __init__(self, directory, ppid, runner):
        self.pid = os.getpid()
        self.ppid = ppid
        self.start_ns = time.time_ns()
        self.t0 = time.monotonic()
        self.path = os.path.join(directory, f"{self.pid}-{self.start_ns}.mlcap")
        self.command = _command_line()
        self.done = False
        self.runner = runner
        self.opts = _opts

    def meta(self, status, code, duration):
        meta = {
            "command": " ".join(self.command),
            "argv": "\n".join(self.command),
            "python": sys.version.split()[0],
            "pid": str(self.pid),
            "ppid": str(self.ppid),
            "start_time_ns": str(self.start_ns),
            "status": status,
            "interval_ms": repr(self.opts[3]),
            "frames": str(self.opts[1]),
            "runner_files": "\n".join(self.runner),
        }
        if duration is not None:
            meta["duration_s"] = f"{duration:.6f}"
            meta["end_time_ns"] = str(self.start_ns + int(duration * 1e9))
        if code is not None:
            meta["exit_code"] = str(code)
        if _reaped:
            meta["reaped"] = "\n".join(_reaped)
        meta["written_ns"] = str(time.time_ns())
        return meta

    def write(self, status, code=None):
        """Write the capture: the marker (status running) while tracing, or
        the final one (stops the tracer and the sampler).  Never raises: a
        child must end as it would have; a failure is one line on fd 2."""
        lock = _lock
        # A timeout, not a plain wait: a signal handler may interrupt the
        # main thread's own write.
        if lock is not None and not lock.acquire(timeout=_LOCK_WAIT_S):
            return
        try:
            if not self.done:
                self._write_unlocked(status, code)
        finally:
            if lock is not None:
                lock.release()

    def _write_unlocked(self, status, code):
        final = status != RUNNING
        try:
            table = _core.trace_take_snapshot()
        except RuntimeError:  # the program stopped the tracer itself
            table = None
        interval, timeline, native = 0.0, b"", b""
        if final:
            self.done = True
            # With the native share of each sample (its own column).
            interval, timeline, native = _core.timeline_stop(True)
            _core.trace_stop()
        duration = time.monotonic() - self.t0 if final else None
        if table is None:
            return
        tmp = f"{self.path}.{self.pid}.tmp"
        try:
            _core.cap_run_write(tmp, table, self.meta(status, code, duration), interval, timeline, None,
                                native)
            os.replace(tmp, self.path)
        except (OSError, ValueError) as e:
            try:
                os.write(2, f"memlens: process {self.pid}: cannot write {self.path}: {e}\n".encode())
                os.unlink(tmp)
            except OSError:
                pass


def recording():
    """True when this process's recorder will write its capture (the
    tracer's atexit stop leaves the tracer to it)."""
    return _rec is not None and _rec.pid == os.getpid() and not _rec.done


def finish(code=None, status=ENDED):
    """Write this process's final capture (once); the tracer stops."""
    rec = _rec
    if rec is not None and rec.pid == os.getpid() and not rec.done:
        rec.write(status, code)


def _start_recorder(ppid, runner=()):
    global _rec
    directory, frames, sample_bytes, interval_ms, native = _opts
    if not _core.trace_is_tracing():
        _core.trace_start(frames, sample_bytes, native)
    _core.timeline_start(interval_ms)
    _rec = None
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        pass  # the write below says why, in one line
    rec = _Recorder(directory, ppid, runner)
    # The lock first, then the recorder, then its marker: a SIGTERM from
    # here on writes the final capture (the handler re-enters the lock of
    # an interrupted write and never returns to it: it ends the process).
    _new_lock()
    _rec = rec
    rec.write(RUNNING)
    # What the marker allocated is not the program's.
    _core.trace_reset_peak()
    _start_flusher(rec)


def _new_lock():
    global _lock
    import _thread

    _lock = _thread.RLock()


def _start_flusher(rec):
    # _thread, not threading: nothing more imported into the child, and no
    # thread that threading.enumerate() would show the program.
    # Returns once the thread runs: a fork while it is still starting could
    # leave the child an allocator lock the thread library holds then (GCC
    # 12's ASan does), as the timeline's sampler start waits too.
    import _thread

    running = _thread.allocate_lock()
    running.acquire()
    try:
        _thread.start_new_thread(_flusher, (rec, running))
    except RuntimeError:  # no more threads: only the final write then
        return
    running.acquire()


def _flusher(rec, running):
    # Every FLUSH_S, what the process recorded so far (its stacks; the
    # timeline is written at the end), until its final write.
    running.release()
    wait = FLUSH_S
    while True:
        time.sleep(wait)
        if _rec is not rec or rec.done or rec.pid != os.getpid():
            return
        t0 = time.monotonic()
        rec.write(RUNNING)
        wait = max(FLUSH_S, _FLUSH_COST_RATIO * (time.monotonic() - t0))


# ---- hooks: where a traced process ends or becomes another ---------------


def _after_fork_in_child():
    # A forked child: its own tracer tables (the parent's live blocks are
    # the parent's), its own sampler (fork keeps no thread) and recorder.
    global _reaped, _lock
    if _opts is None:
        return
    _reaped = []
    _lock = None  # the parent's: its flusher may have held it at fork
    was_tracing = _core.trace_is_tracing()
    _core.timeline_stop()
    _core.trace_stop()
    if not was_tracing:  # the program stopped the tracer: it stays stopped
        return
    _start_recorder(os.getppid(), _runner)


def _exit(status, /):  # os._exit: a forked worker's usual end
    finish(status)
    _real_exit(status)


def _before_exec():
    finish(None, EXECED)


def _exec_failed():
    # The exec did not happen: this process goes on, traced again.
    if _opts is not None and (_rec is None or _rec.done):
        _start_recorder(_rec.ppid if _rec is not None else os.getppid(), _runner)


def execv(path, args, /):
    _before_exec()
    try:
        _real_execv(path, args)
    finally:
        _exec_failed()


def execve(path, args, env, /):
    _before_exec()
    try:
        _real_execve(path, args, env)
    finally:
        _exec_failed()


def _name_of(pid):
    # /proc/<pid>/comm of a child that has exited and is not reaped yet:
    # the name its last exec gave it (a zombie's cmdline is empty; a
    # running child may be between fork and exec, still named as us).
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return os.fsdecode(f.read(64).strip())
    except OSError:
        return ""


def waitpid(pid, options, /):
    # Reaped children's exit statuses: a child ending by sys.exit() cannot
    # know its own exit code (atexit runs before it is final), its parent
    # can; and a child that is not traced is known only from here.  Its
    # name is read once it has exited, before the real waitpid reaps it
    # (waitid WNOWAIT: the same wait, without reaping); only for the
    # options that waitid(WEXITED) waits for alike.
    name, peeked = "", 0
    if (pid > 0 or pid == -1) and not options & ~os.WNOHANG and hasattr(os, "waitid"):
        try:
            info = os.waitid(os.P_PID if pid > 0 else os.P_ALL, max(pid, 0),
                             os.WEXITED | os.WNOWAIT | (options & os.WNOHANG))
        except ChildProcessError:
            info = None  # the real waitpid raises it again
        if info is not None and info.si_pid > 0:
            peeked = info.si_pid
            name = _name_of(peeked)
    result = _real_waitpid(pid, options)
    if result[0] > 0 and len(_reaped) < _MAX_REAPED:
        name = name if result[0] == peeked else ""
        _reaped.append(f"{result[0]} {result[1]} {time.time_ns()}\t{name}")
    return result


def on_fatal_signal(signum, frame=None):
    """SIGTERM/SIGHUP in a traced child: write what it recorded, then end
    by the same signal, as the default action would."""
    import _signal

    _signal.signal(signum, _signal.SIG_DFL)
    finish(-signum, KILLED)
    os.kill(os.getpid(), signum)


def _at_exit():
    finish(None)


def install(core, opts, environ=True, runner=()):
    """Follow children of this process: `opts` as :func:`parse_env`
    returns them.  `environ`: also set the variables children inherit;
    `runner`: file names of memlens' own frames in its stacks."""
    global _core, _opts, _installed, _runner
    _core = core
    _opts = opts
    _runner = tuple(runner)
    if environ:
        child_environ(os.environ, *opts)
    if _installed:
        return
    _installed = True
    os.register_at_fork(after_in_child=_after_fork_in_child)
    os._exit = _exit
    os.execv = execv
    os.execve = execve
    os.waitpid = waitpid
    atexit.register(_at_exit)


def uninstall():
    """Stop following children started from now on."""
    global _opts
    _opts = None
    unset_environ(os.environ)


def _catch_fatal_signals():
    import _signal

    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(_signal, name, None)
        try:
            if signum is not None and _signal.getsignal(signum) == _signal.SIG_DFL:
                _signal.signal(signum, on_fatal_signal)
        except (OSError, ValueError):
            pass


def boot(core, boot_file):
    """In a new interpreter (the bootstrap's sitecustomize): start tracing
    and recording when the environment says this run follows children."""
    opts = parse_env(os.environ.get(ENV))
    if opts is None:
        return
    install(core, opts, environ=False, runner=(boot_file, os.path.abspath(__file__)))
    _start_recorder(os.getppid(), _runner)
    _catch_fatal_signals()


def reaped_of(meta):
    """[(pid, exit code, time_ns, command)] a capture's metadata says its
    process reaped (command "" when unknown)."""
    out = []
    for line in meta.get("reaped", "").split("\n"):
        head, _, command = line.partition("\t")
        parts = head.split()
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            pid, status, t = map(int, parts)
            try:
                code = os.waitstatus_to_exitcode(status)
            except ValueError:
                continue
            out.append((pid, code, t, command))
    return out
