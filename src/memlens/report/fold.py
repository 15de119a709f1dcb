"""Import-system frames folded into one frame per import, for the human
views (text, the ``memlens run`` summary, HTML).

Every allocation made while a module is imported sits below five to ten
frames of the import system (``_find_and_load``, ``_load_unlocked``,
``exec_module``, ``_call_with_frames_removed``...), and every allocation
made while a module's code is found, read or compiled sits inside them.  Shown
as recorded, the top stacks of a program that imports numpy read
``_compile_bytecode <- get_code <- exec_module <- ...`` five times over.

The rule (docs/cli.md, "Import frames"):

* A frame is the import system's when its file is
  ``<frozen importlib._bootstrap>``, ``<frozen importlib._bootstrap_external>``,
  ``<frozen zipimport>``, or a file directly in the standard library's
  ``importlib`` package or its ``zipimport.py`` (a ``pythonX.Y`` directory
  above them).  ``importlib.metadata`` and ``importlib.resources`` are not:
  what they allocate is the program's own work, not an import.
* Each run of consecutive such frames becomes one :class:`ImportFrame`.
* Its name is the module whose code the frame just inside the run runs
  (a ``<module>`` frame): its file's import path below ``site-packages``,
  ``dist-packages`` or the standard library's ``pythonX.Y`` directory
  (``.../site-packages/numpy/core/multiarray.py`` is ``numpy.core.multiarray``,
  an ``__init__.py`` its package, ``<frozen os>`` is ``os``); elsewhere, the
  directories above the file that hold an ``__init__.py`` where the report
  runs; a file that is not there gives its own name alone.  When no module
  code runs inside the run (the allocation is the import system's own:
  finding, reading or compiling the module, or a C extension's init), the
  name is unknown from the capture and the frame reads
  ``import ? (<innermost import-system function>)``.

Folding works on distinct frames and distinct stacks, each once: a capture
of 100,000 stacks costs one pass over their frames.  The per-frame caches
are keyed by the frame object's id (a loaded capture has one object per
distinct frame; the folder keeps every frame it saw, so that no id is
reused while it lives): hashing a Frame (a dataclass) costs a Python call,
and the pass over every frame of every stack makes none, only C-level
look-ups.
"""

import dataclasses
import os
import re

from memlens.report.model import Frame, StackStat

__all__ = ["IMPORT_FILE", "ImportFrame", "Folder", "fold_capture", "is_import_system"]

_FROZEN = frozenset({"<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>",
                     "<frozen zipimport>"})
_STDLIB_DIR = re.compile(r"python\d+\.\d+[a-z]*\Z")
_ROOT_DIRS = frozenset({"site-packages", "dist-packages"})
_FROZEN_NAME = re.compile(r"<frozen ([A-Za-z_][\w.]*)>\Z")

#: The file name of every ImportFrame (its ``function`` is its label).
IMPORT_FILE = "<import>"


class ImportFrame(Frame):
    """The frames of one import folded into one: ``function`` is its label,
    ``import numpy.core.multiarray``.  A distinct type: Frame's ``==``
    compares the class too, so it never equals a recorded frame, whatever
    names a capture holds."""

    __slots__ = ()

    def label(self):
        return self.function


def is_import_system(filename):
    """Is `filename` a file of the import system (the rule above)?"""
    if filename in _FROZEN:
        return True
    if not filename.endswith(".py"):
        return False
    parts = filename.split(os.sep)
    if len(parts) >= 2 and parts[-1] == "zipimport.py" and _STDLIB_DIR.match(parts[-2]):
        return True
    return len(parts) >= 3 and parts[-2] == "importlib" and bool(_STDLIB_DIR.match(parts[-3]))


class Folder:
    """``folder(frames)``: the stack with its import-system frames folded.
    Caches per distinct frame (is it the import system's, which module it
    runs) and per package directory, so that folding many stacks costs
    dictionary look-ups."""

    def __init__(self):
        self._machinery = {}   # id(frame) -> is it the import system's?
        self._modules = {}     # id(frame) -> module name or None, for frames just inside a run
        self._seen = []        # every frame of those keys: their ids stay theirs
        self._canon = {}       # id(frame) -> the first frame seen equal to it
        self._by_value = {}    # Frame -> (that first frame, is it the import system's)
        self._packages = {}    # directory -> its dotted package prefix ("" if none)
        self._frames = {}      # label -> ImportFrame

    def _is_machinery(self, f):
        m = self._machinery.get(id(f))
        if m is None:
            # A hash per frame object: once per distinct frame in a loaded
            # capture, whose equal frames are one object.
            first, m = self._by_value.get(f) or (f, None)
            if m is None:
                m = type(f) is not ImportFrame and is_import_system(f.filename)
                self._by_value[f] = (f, m)
            self._machinery[id(f)] = m
            self._canon[id(f)] = first
            self._seen.append(f)
        return m

    def _package(self, d):
        # "a.b." for a directory d = .../a/b holding __init__.py files, on
        # this machine; "" otherwise.
        p = self._packages.get(d)
        if p is None:
            p = ""
            name = os.path.basename(d)
            if name.isidentifier() and os.path.isfile(os.path.join(d, "__init__.py")):
                p = self._package(os.path.dirname(d)) + name + "."
            self._packages[d] = p
        return p

    def module_name(self, filename):
        """The dotted name of the module in `filename` (the rule above)."""
        m = _FROZEN_NAME.match(filename)
        if m:
            return m.group(1)
        stem = filename[:-3] if filename.endswith(".py") else filename
        parts = stem.split(os.sep)
        for i in range(len(parts) - 2, -1, -1):
            if parts[i] in _ROOT_DIRS or _STDLIB_DIR.match(parts[i]):
                rel = parts[i + 1:]
                break
        else:
            d = os.path.dirname(filename)
            prefix = self._package(d) if os.path.isabs(filename) else ""
            rel = prefix.split(".")[:-1] + [parts[-1]]
        if len(rel) > 1 and rel[-1] == "__init__":
            rel = rel[:-1]
        return ".".join(rel)

    def _module(self, f):
        if id(f) in self._modules:
            return self._modules[id(f)]
        name = None
        if f.function == "<module>" and type(f) is not ImportFrame:
            name = self.module_name(f.filename) or None
        self._modules[id(f)] = name
        self._seen.append(f)
        return name

    def _import_frame(self, label):
        fr = self._frames.get(label)
        if fr is None:
            fr = self._frames[label] = ImportFrame(IMPORT_FILE, 0, label)
        return fr

    def __call__(self, frames):
        flags = list(map(self._machinery.get, map(id, frames)))  # None: not seen yet
        if None in flags:
            for k, m in enumerate(flags):
                if m is None:
                    flags[k] = self._is_machinery(frames[k])
        if True not in flags:
            return frames
        # The folded stack holds the first of equal frames: stacks that fold
        # alike hold the same objects (fold_capture merges them by id).  The
        # frames between runs are copied by C-level maps, a run is found
        # with list.index: no Python step per frame.
        out = []
        canon = self._canon.__getitem__
        i, n = 0, len(frames)
        while i < n:
            j = _index(flags, True, i, n)
            out.extend(map(canon, map(id, frames[i:j])))
            if j == n:
                break
            k = _index(flags, False, j, n)
            name = self._module(frames[j - 1]) if j else None
            out.append(self._import_frame(f"import {name}" if name else f"import ? ({frames[j].function})"))
            i = k
        return tuple(out)


def _index(flags, value, start, end):
    # The first index from `start` where `flags` holds `value`, else `end`.
    try:
        return flags.index(value, start)
    except ValueError:
        return end


def fold_capture(cap, folder=None):
    """`cap` with every stack folded, stacks that fold alike merged (their
    numbers summed); `cap` itself if no stack has import-system frames."""
    folder = folder or Folder()
    stacks = []
    # Only folded stacks can become equal to another (the others are the
    # capture's own, already distinct, and hold no ImportFrame).  They are
    # keyed by their frames' ids: a folded stack holds one object per
    # distinct frame (Folder.__call__), and one ImportFrame per label.
    merged = {}
    for s in cap.stacks:
        fr = folder(s.frames)
        if fr is s.frames:
            stacks.append(s)
            continue
        key = tuple(map(id, fr))
        st = merged.get(key)
        if st is None:
            merged[key] = st = StackStat(fr, s.size, s.count, s.peak_size, s.peak_count, s.alloc_size,
                                         s.alloc_count)
            stacks.append(st)
            continue
        st.size += s.size
        st.count += s.count
        st.peak_size += s.peak_size
        st.peak_count += s.peak_count
        if st.alloc_size is not None and s.alloc_size is not None:
            st.alloc_size += s.alloc_size
            st.alloc_count = (st.alloc_count or 0) + (s.alloc_count or 0)
        else:
            st.alloc_size = st.alloc_count = None
    if not merged:
        return cap
    return dataclasses.replace(cap, stacks=stacks)
