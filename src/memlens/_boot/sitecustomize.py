"""memlens' bootstrap for the child processes of a run (docs/cli.md,
"Child processes").

``memlens run`` (and ``memlens.start(children=True)``) puts this folder
first on the ``PYTHONPATH`` its children inherit, with ``MEMLENS_CHILDREN``
set; python's ``site`` imports this ``sitecustomize`` before the program
runs, for ``python script.py``, ``-m``, ``-c`` and multiprocessing's spawn
and forkserver commands alike.  It:

* takes this folder off ``sys.path`` again (the program sees the path
  python would give it);
* loads ``memlens._core`` and ``memlens._follow`` from the memlens next to
  it, by file, not the ``memlens`` package, which would import much more
  into the child before its program runs; and starts tracing;
* runs the ``sitecustomize`` this one hides, if there is one.

A Python that cannot load this memlens (another version or ABI) is left
untraced and leaves a one-line ``.untraced`` note in the bundle; nothing
fails and nothing is printed.
"""


def _memlens_boot():
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    while here in sys.path:
        sys.path.remove(here)
    value = os.environ.get("MEMLENS_CHILDREN")
    if not value:
        return
    package = os.path.dirname(here)
    bootstrap = sys.modules["_frozen_importlib"]
    external = sys.modules["_frozen_importlib_external"]

    def load(name, path):
        spec = external.spec_from_file_location(name, path)
        module = bootstrap.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    import _imp

    core = next((os.path.join(package, "_core" + s) for s in _imp.extension_suffixes()
                 if os.path.isfile(os.path.join(package, "_core" + s))), None)
    try:
        if core is None:
            raise ImportError("no memlens._core for this Python")
        follow = load("memlens._follow", os.path.join(package, "_follow.py"))
        follow.boot(load("memlens._core", core), os.path.abspath(__file__))
    except Exception:
        sys.modules.pop("memlens._core", None)
        sys.modules.pop("memlens._follow", None)
        _untraced(value)


def _untraced(value):
    # A Python that cannot be traced: the report lists it as "not traced".
    import os
    import sys
    import time

    parts = value.split("\n")
    if len(parts) < 2 or not os.path.isabs(parts[1]):
        return
    try:
        os.makedirs(parts[1], exist_ok=True)
        name = os.path.join(parts[1], f"{os.getpid()}-{time.time_ns()}.untraced")
        with open(name, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(f"{os.getppid()}\n{sys.version.split()[0]}\n" + " ".join(sys.argv) + "\n")
    except OSError:
        pass


_memlens_boot()
del _memlens_boot

# The sitecustomize this one hides (this folder is off sys.path now).
import sys as _sys  # noqa: E402

_me = _sys.modules.pop("sitecustomize")
try:
    import sitecustomize  # noqa: F401,E402
except ImportError as _e:
    _sys.modules["sitecustomize"] = _me
    if _e.name != "sitecustomize":
        raise
