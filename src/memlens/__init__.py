"""memlens: find where a Python program's memory goes, see why it stays
alive, and cut it -- with exact numbers from a C engine."""

import sys as _sys

try:
    from memlens import _core
except ImportError as _exc:
    if _exc.name != __name__:  # built, but fails to load: that error says why
        raise
    _core = None
if getattr(_core, "__file__", None) is None:  # not built (None), or a stray _core/ folder
    raise ImportError("the C engine memlens._core is not built; run `make build` or `pip install .`") from None
# Everything these four modules export is public here too; their __all__
# lists are the one place the names are written (as asyncio does).
from memlens.sizing import *  # noqa: F401,F403  exact sizes
from memlens.census import *  # noqa: F401,F403  census, retained size, why_alive
from memlens.tracer import *  # noqa: F401,F403  allocation tracer
from memlens.advise import *  # noqa: F401,F403  the advisor
# Of these two, only the everyday part (the rest stays in its module).
from memlens.records import Record, asdict, astuple, fields, replace
from memlens.lineprof import LineStat, line_stats, profile, reset_profile, show_profile, stop_profile

__version__ = "0.1.0"


def load_ipython_extension(ipython):
    """``%load_ext memlens``: the %memit, %%memit and %mlprun magics
    (memlens.ipython); IPython is imported only here."""
    from memlens.ipython import load_ipython_extension as load

    load(ipython)


# (sys.modules: `memlens.census` is the function once it is imported here.)
__all__ = [
    name
    for module in ("sizing", "census", "tracer", "advise")
    for name in _sys.modules["memlens." + module].__all__
] + [
    "Record", "asdict", "astuple", "fields", "replace",
    "profile", "show_profile", "line_stats", "reset_profile", "stop_profile", "LineStat",
]
