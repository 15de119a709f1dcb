"""memlens: find where a Python program's memory goes, see why it stays
alive, and cut it -- with exact numbers from a C engine."""

from memlens import _core
from memlens.advise import Advice, advise, format_advice
from memlens.records import Record, asdict, astuple, fields, replace
from memlens.census import (AlivePaths, Census, CensusDiff, CensusRow, DiffRow, census,
                             retained_size, why_alive)
from memlens.lineprof import LineStat, line_stats, profile, reset_profile, show_profile, stop_profile
from memlens.sizing import Node, SizeStats, TypeRow, breakdown, deep_size, size_by_type, sizeof
from memlens.tracer import (
    Frame,
    Snapshot,
    Statistic,
    StatisticDiff,
    Traceback,
    is_tracing,
    reset_peak,
    start,
    stop,
    take_snapshot,
    trace,
    traced_memory,
    tracer_memory,
)

__version__ = "0.1.0"


def load_ipython_extension(ipython):
    """``%load_ext memlens``: the %memit, %%memit and %mlprun magics
    (memlens.ipython); IPython is imported only here."""
    from memlens.ipython import load_ipython_extension as load

    load(ipython)

__all__ = [
    # exact sizes (memlens.sizing)
    "sizeof",
    "deep_size",
    "breakdown",
    "size_by_type",
    "Node",
    "TypeRow",
    "SizeStats",
    # compact records (memlens.records)
    "Record",
    "asdict",
    "astuple",
    "fields",
    "replace",
    # the advisor (memlens.advise)
    "advise",
    "Advice",
    "format_advice",
    # heap census, retained size, why_alive (memlens.census)
    "census",
    "retained_size",
    "why_alive",
    "Census",
    "CensusRow",
    "CensusDiff",
    "DiffRow",
    "AlivePaths",
    # allocation tracer (memlens.tracer)
    "start",
    "stop",
    "is_tracing",
    "traced_memory",
    "reset_peak",
    "tracer_memory",
    "take_snapshot",
    "trace",
    "Snapshot",
    "Statistic",
    "StatisticDiff",
    "Frame",
    "Traceback",
    # line-by-line profile (memlens.lineprof)
    "profile",
    "show_profile",
    "line_stats",
    "reset_profile",
    "stop_profile",
    "LineStat",
]
