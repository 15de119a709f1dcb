"""Build of the memlens C engine (``memlens._core``) and of its test-only
companion ``memlens._testcore``.

Environment switches, read at build time:

* ``MEMLENS_DEBUG=1``    -- ``-O0 -g -UNDEBUG``: assertions on, no optimisation.
* ``MEMLENS_SANITIZE=1`` -- ASan + UBSan.  Run the tests with
  ``PYTHONMALLOC=malloc`` and the sanitizer runtime preloaded
  (``make sanitize`` does both).
* ``MEMLENS_WERROR=1``   -- ``-Werror``.

The engine's sources live outside the Python package, in ``csrc/`` (one
folder per subsystem), so neither a source checkout nor a wheel carries
them inside ``memlens/``.  Includes are written from ``csrc/``
(``#include "heap/walk.h"``).
"""
import glob
import os

from setuptools import Extension, setup

CSRC = "csrc"

extra_compile_args = ["-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers",
                      "-fvisibility=hidden"]
extra_link_args = []
undef_macros = []

if os.environ.get("MEMLENS_DEBUG") == "1" or os.environ.get("MEMLENS_SANITIZE") == "1":
    extra_compile_args += ["-O0", "-g3"]
    undef_macros.append("NDEBUG")
else:
    extra_compile_args += ["-O2"]

if os.environ.get("MEMLENS_SANITIZE") == "1":
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
             "-fno-sanitize-recover=undefined"]
    extra_compile_args += flags
    extra_link_args += flags

if os.environ.get("MEMLENS_WERROR") == "1":
    extra_compile_args.append("-Werror")

# csrc/testcore/ is the test-only extension memlens._testcore; every other
# source is the engine's.
TESTCORE = os.path.join(CSRC, "testcore")
all_sources = sorted(glob.glob(os.path.join(CSRC, "**", "*.c"), recursive=True))
headers = sorted(glob.glob(os.path.join(CSRC, "**", "*.h"), recursive=True))


def extension(name, sources):
    return Extension(
        name,
        sources=sources,
        depends=headers,
        include_dirs=[CSRC],
        extra_compile_args=extra_compile_args,
        extra_link_args=extra_link_args,
        undef_macros=undef_macros,
    )


setup(
    ext_modules=[
        extension("memlens._core",
                  [s for s in all_sources if not s.startswith(TESTCORE + os.sep)]),
        # Test and benchmark entry points (raw allocator calls, the chain-only
        # hooks, the null line handler, layout probes).  It reaches the engine's
        # process-wide state through the _core._testapi capsule (csrc/testapi.h),
        # so no engine source is compiled into it.
        extension("memlens._testcore",
                  [s for s in all_sources if s.startswith(TESTCORE + os.sep)]),
    ]
)
