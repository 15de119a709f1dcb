"""IPython/Jupyter magics (``%load_ext memlens``), memory_profiler's names:

- ``%memit stmt`` / ``%%memit`` -- ``peak memory: X MiB, increment: Y MiB``
  for one statement (or cell), from exact traced allocations;
- ``%mlprun -f func [-f func2 ...] stmt`` -- the line table of each `func`
  while `stmt` runs.

Figures are this thread's traced allocations: ``increment`` is the highest
growth while the statement ran (memory_profiler's definition: peak minus
baseline), ``peak memory`` the traced memory before it plus that growth.
"""

import re

from memlens import _core
from memlens import lineprof as _lineprof
from memlens import tracer as _tracer
from memlens._util import format_bytes, result

__all__ = ["load_ipython_extension", "MemitResult", "memit"]


@result
class MemitResult:
    """What ``%memit`` measured (bytes): ``baseline`` (traced memory before),
    ``peak_growth`` (highest growth during the statement), ``net`` (what it
    left allocated), ``allocated`` and ``freed``.  ``str()`` is
    :meth:`format`, the line ``%memit`` prints."""

    baseline: int
    peak_growth: int
    net: int
    allocated: int
    freed: int

    @property
    def peak(self):
        return self.baseline + self.peak_growth

    def __str__(self):
        return self.format()

    def format(self):
        """``peak memory: X MiB, increment: Y MiB`` (memory_profiler's line)."""
        return (f"peak memory: {format_bytes(self.peak, unit='MiB', digits=2)}, "
                f"increment: {format_bytes(self.peak_growth, unit='MiB', digits=2)}")

    def __repr__(self):
        return (f"<MemitResult baseline={self.baseline} peak_growth={self.peak_growth} "
                f"net={self.net} allocated={self.allocated} freed={self.freed}>")


def memit(code, globals_, locals_=None):
    """Run compiled `code` and measure it (starts the tracer, exact mode, if
    it is not running; it keeps running for the next measurements)."""
    _tracer.ensure_exact("%memit figures")
    baseline = _tracer.traced_memory()[0]
    a0, f0, _ = _core.lineprof_thread_counters(True)
    exec(code, globals_, locals_)
    a1, f1, peak_net = _core.lineprof_thread_counters(False)
    net0 = a0 - f0
    return MemitResult(baseline, max(0, peak_net - net0), (a1 - f1) - net0, a1 - a0, f1 - f0)


_F_OPTION = re.compile(r"\s*-f\s+(\S+)")


def _parse_mlprun(line):
    """``-f func [-f func ...] stmt`` -> ([func expressions], stmt); the
    statement is kept verbatim."""
    funcs = []
    pos = 0
    while True:
        m = _F_OPTION.match(line, pos)
        if m is None:
            break
        funcs.append(m.group(1))
        pos = m.end()
    return funcs, line[pos:].strip()


def load_ipython_extension(ipython):
    from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class

    @magics_class
    class MemlensMagics(Magics):
        @line_cell_magic
        def memit(self, line="", cell=None):
            """%memit stmt, or %%memit [setup] + cell: peak memory and increment."""
            ns = self.shell.user_ns
            if cell is None:
                code = compile(line, "<memit>", "exec")
            else:
                if line.strip():
                    exec(compile(line, "<memit-setup>", "exec"), ns)
                code = compile(cell, "<memit>", "exec")
            result = memit(code, ns)
            print(result)
            return None

        @line_magic
        def mlprun(self, line=""):
            """%mlprun -f func [-f func ...] stmt: line-by-line memory of func."""
            funcs, stmt = _parse_mlprun(line)
            if not funcs or not stmt:
                print("usage: %mlprun -f func [-f func ...] statement")
                return None
            ns = self.shell.user_ns
            objs = [eval(f, ns) for f in funcs]
            for obj in objs:
                _lineprof.profile(obj)
            _lineprof.reset_profile()
            exec(compile(stmt, "<mlprun>", "exec"), ns)
            _lineprof.show_functions(objs)
            return None

    ipython.register_magics(MemlensMagics)
