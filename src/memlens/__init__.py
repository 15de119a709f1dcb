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

__version__ = "0.1.0"

# The public names are those of these four modules' __all__ lists (the one
# place they are written, as asyncio does) and, of the last two, only the
# everyday part. They are imported on first use, not here: `import memlens`
# loads the C engine and nothing else, so `memlens run` starts a program in
# the interpreter state plain python gives it, and Ctrl-C at the command's
# start lands inside its main(), not in an import.
_MODULES = ("sizing", "census", "tracer", "advise")
_EVERYDAY = {
    "records": ("Record", "asdict", "astuple", "fields", "replace"),
    "lineprof": ("profile", "show_profile", "line_stats", "reset_profile", "stop_profile", "LineStat"),
}
# Functions named like the module that defines them: the import system binds
# each submodule on this package when it is first imported, and must not
# replace these.
_SHADOWED = ("census", "advise")

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing)
if TYPE_CHECKING:  # for type checkers and editors: what the lazy load provides
    from memlens.sizing import *  # noqa: F401,F403  exact sizes
    from memlens.census import *  # noqa: F401,F403  census, retained size, why_alive
    from memlens.tracer import *  # noqa: F401,F403  allocation tracer
    from memlens.advise import *  # noqa: F401,F403  the advisor
    from memlens.records import Record, asdict, astuple, fields, replace  # noqa: F401
    from memlens.lineprof import LineStat, line_stats, profile, reset_profile, show_profile, stop_profile  # noqa: F401


def _load():
    """Import the API modules and bind their public names here (once)."""
    import importlib

    names = {}
    for module in _MODULES:
        mod = importlib.import_module("memlens." + module)
        names.update((name, getattr(mod, name)) for name in mod.__all__)
    for module, everyday in _EVERYDAY.items():
        mod = importlib.import_module("memlens." + module)
        names.update((name, getattr(mod, name)) for name in everyday)
    # Into the module dict, not through _Package.__setattr__; a name the
    # program already assigned (a test's `memlens.census = fake`) stays.
    namespace = globals()
    for name, value in names.items():
        namespace.setdefault(name, value)
    namespace["__all__"] = list(names)


def __getattr__(name):
    if name.startswith("__") and name != "__all__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if "__all__" not in globals():
        _load()
        if name in globals():
            return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    if "__all__" not in globals():
        _load()
    return sorted(globals())


class _Package(type(_sys)):
    """This package's module type: keeps memlens.census and memlens.advise
    the functions when their submodules are imported (by the CLI, or by a
    user's `from memlens.census import ...`) before the first public name is
    used."""

    def __setattr__(self, name, value):
        if name in _SHADOWED and isinstance(value, type(_sys)):
            return
        super().__setattr__(name, value)


def load_ipython_extension(ipython):
    """``%load_ext memlens``: the %memit, %%memit and %mlprun magics
    (memlens.ipython); IPython is imported only here."""
    from memlens.ipython import load_ipython_extension as load

    load(ipython)


_sys.modules[__name__].__class__ = _Package
