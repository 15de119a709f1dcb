"""Build of the memlens C engine (``memlens._core``).

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

setup(
    ext_modules=[
        Extension(
            "memlens._core",
            sources=sorted(glob.glob(os.path.join(CSRC, "**", "*.c"), recursive=True)),
            depends=sorted(glob.glob(os.path.join(CSRC, "**", "*.h"), recursive=True)),
            include_dirs=[CSRC],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
            undef_macros=undef_macros,
        )
    ]
)
