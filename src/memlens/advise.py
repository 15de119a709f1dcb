"""The advisor: what wastes memory, the change that fixes it, and the exact
bytes it saves.

One C walk over the whole heap (``memlens._core.advise_scan``) gathers, per
class, its instances' footprint and what their attributes hold, and per
place a value sits (a class attribute, dict keys, list items, elsewhere)
duplicate strings and tuples, lists of numbers, empty containers and spare
list capacity.  This module turns those figures into advice whose
``saving`` is computed from the same exact sizes ``memlens.sizeof`` uses:
what the objects cost now minus what the suggested layout costs.

The advisor never creates an instance ``__dict__``, never runs the garbage
collector, and reads class sources as plain text (no ``linecache``), so
the heap is left as it was apart from the returned advice.
"""
import array
import dataclasses
import gc
from typing import Optional, Tuple
import os
import re
import sys
import textwrap

from memlens import _core
from memlens._util import check_int, format_bytes, qualname, result, type_module

__all__ = ["Advice", "advise", "format_advice", "format_diff"]

_KIND_ORDER = ("generator", "copy", "weakref", "bounded-cache", "slots", "record", "intern", "array",
               "duplicate-tuples", "empty", "overallocated")
# Kinds whose saving lowers the run's peak (from a capture), not the heap
# left at the end: the report totals them apart.
_PEAK_KINDS = ("generator", "copy")


@result
class Advice:
    """One piece of advice.

    ``kind`` is one of ``slots``, ``record``, ``intern``, ``array``,
    ``empty``, ``overallocated``, ``duplicate-tuples``, ``weakref``,
    ``bounded-cache`` (from the heap) or
    ``generator`` and ``copy`` (from a capture's peak and the source);
    ``target`` the class
    or a description of the objects; ``saving`` the bytes the change saves;
    ``count`` how many objects it concerns; ``text`` one paragraph;
    ``patch`` the code to write (or ``None``); ``location`` ``file:line`` of
    the class definition when known; ``blockers`` what must change first
    (a tuple, empty when the advice applies as is).  ``slots`` advice also
    has ``.slots`` (the exact ``__slots__`` tuple); ``record`` advice has
    ``.fields`` (``(name, type)`` pairs).  ``str()`` is :meth:`format`.
    """

    kind: str
    target: object  # a class, or a str describing the objects
    saving: int
    count: int
    text: str
    patch: Optional[str] = None
    location: Optional[str] = None
    blockers: Tuple[str, ...] = ()
    slots: Optional[Tuple[str, ...]] = None
    fields: Optional[Tuple[Tuple[str, type], ...]] = None
    edit: Optional[Tuple[str, int, str, str]] = None

    def __post_init__(self):
        object.__setattr__(self, "blockers", tuple(self.blockers))

    @property
    def target_name(self):
        t = self.target
        if isinstance(t, type):
            return qualname(t)
        return str(t)

    def __repr__(self):
        return (f"Advice(kind={self.kind!r}, target={self.target_name!r}, "
                f"saving={self.saving}, count={self.count})")

    def __str__(self):
        return self.format()

    def to_dict(self, start=None):
        """The advice as plain JSON values, as the capture and the json and
        HTML reports keep it: kind, target (its name), saving, count, text,
        patch, location, blockers, and diff (:func:`format_diff` of this
        advice alone from `start`, or None)."""
        return {"kind": self.kind, "target": self.target_name, "saving": int(self.saving),
                "count": int(self.count), "text": self.text, "patch": self.patch,
                "location": self.location, "blockers": list(self.blockers),
                "diff": format_diff([self], start) or None}

    def format(self):
        """The advice as the report prints it: a head line, the text,
        blockers and the patch, indented."""
        head = f"[{self.kind}] {self.target_name}: save {format_bytes(self.saving)}"
        if self.location:
            head += f"  ({self.location})"
        lines = [head, _wrap(self.text, "    ")]
        for b in self.blockers:
            lines.append(_wrap("blocker: " + b, "    "))
        if self.patch:
            lines.append("    patch:")
            lines.extend("        " + line for line in self.patch.splitlines())
        return "\n".join(lines)


def format_advice(advice):
    """The report for a list of advice: one block each, and a total."""
    if not advice:
        return "memlens advise: nothing to suggest above the threshold."
    # slots and record advice for one class are alternatives: count the
    # larger; site advice (intern, array, ...) adds to either
    best = {}
    total = peak = 0
    for a in advice:
        if a.blockers:
            continue
        if a.kind in _PEAK_KINDS:
            peak += a.saving
        elif a.kind in ("slots", "record"):
            best[a.target] = max(best.get(a.target, 0), a.saving)
        else:
            total += a.saving
    total += sum(best.values())
    head = f"memlens advise: {len(advice)} suggestion(s)"
    if total or not peak:
        head += (f"; applying those without blockers saves {format_bytes(total)} (slots and "
                 f"record advice for one class are alternatives: the larger is counted)")
    if peak:
        head += (f"; the lines advised at the run's peak held {format_bytes(peak)} there "
                 f"(generator and copy advice)")
    out = [head, ""]
    for a in advice:
        out.append(str(a))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def format_diff(advice, start=None):
    """Every advice that edits a line of the program (``.edit``) and has
    no blockers, as one unified diff per file, to apply with ``patch -p0``
    or ``git apply -p0`` from the directory `start` (default: the current
    one; paths outside it stay absolute).  An edit whose line no longer
    reads as it did is left out.  "" when there is nothing to apply."""
    import difflib

    start = os.path.abspath(start or os.curdir)
    by_file = {}
    for a in advice:
        if a.edit is None or a.blockers:
            continue
        path, lineno, old, new = a.edit
        by_file.setdefault(path, {}).setdefault(lineno, (old, new))  # one edit per line
    out = []
    for path in sorted(by_file):
        try:
            lines = _read_text(path).splitlines(True)
        except (OSError, UnicodeDecodeError):
            continue
        if lines and not lines[-1].endswith("\n"):
            continue  # a unified diff of a last line without a newline needs a marker; left out
        edited = list(lines)
        for lineno in sorted(by_file[path], reverse=True):
            old, new = by_file[path][lineno]
            if lineno > len(lines) or lines[lineno - 1].rstrip("\r\n") != old:
                continue
            eol = lines[lineno - 1][len(old):]
            edited[lineno - 1:lineno] = [part + eol for part in new.split("\n")]
        if edited == lines:
            continue
        real = os.path.abspath(path)
        name = os.path.relpath(real, start) if real.startswith(start + os.sep) else real
        out.extend(difflib.unified_diff(lines, edited, name, name))
    return "".join(out)


def _wrap(text, indent, width=78):
    words = text.split()
    lines, cur = [], indent
    for w in words:
        if len(cur) + len(w) + 1 > width and cur.strip():
            lines.append(cur.rstrip())
            cur = indent
        cur += w + " "
    if cur.strip():
        lines.append(cur.rstrip())
    return "\n".join(lines)


# ---- class sources, read as text ------------------------------------------

_source_cache = {}
# Bytes per os.read() of a source file.
_READ_CHUNK = 1 << 20


def _read_text(path):
    """A file's text through os.read: the io stack's text layer leaves a
    few small blocks behind per file opened, which would change the heap
    being advised."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            b = os.read(fd, _READ_CHUNK)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8")


def _module_source(modname):
    """The text of a module's source file, or None.  Plain file reading:
    linecache would keep every line in the heap afterwards."""
    if modname in _source_cache:
        return _source_cache[modname]
    text = None
    mod = sys.modules.get(modname)
    path = getattr(mod, "__file__", None)
    if path and path.endswith(".py"):
        try:
            text = _read_text(path)
        except (OSError, UnicodeDecodeError):
            text = None
    lines = text.splitlines() if text is not None else None
    _source_cache[modname] = (text, path, lines)
    return text, path, lines


def _class_block(cls):
    """(source lines of the class body, file, first line) or (None, None, None)."""
    module = type_module(cls)
    got = _module_source(module) if module is not None else None
    if not got or got[0] is None:
        return None, None, None
    text, path, lines = got
    head = "class " + cls.__name__
    for i, line in enumerate(lines):
        # plain string tests: a compiled pattern per class name would fill
        # the re module's cache, changing the heap being advised
        stripped = line.lstrip()
        if not stripped.startswith(head):
            continue
        rest = stripped[len(head):len(head) + 1]
        if rest and (rest.isalnum() or rest == "_"):
            continue
        indent = len(line) - len(stripped)
        body = [line]
        for nxt in lines[i + 1:]:
            stripped = nxt.strip()
            if stripped and (len(nxt) - len(nxt.lstrip())) <= indent and not stripped.startswith("#"):
                break
            body.append(nxt)
        return body, path, i + 1
    return None, None, None


def _location(cls):
    _, path, line = _class_block(cls)
    return f"{path}:{line}" if path else None


def _assigned_names(cls):
    """Attribute names the class (and its Python bases) set through
    ``self.name = ...`` or declare as annotations; None if a source is
    missing."""
    names = set()
    for klass in cls.__mro__:
        if klass is object or type_module(klass) == "builtins":
            continue
        body, _, _ = _class_block(klass)
        if body is None:
            return None
        src = "\n".join(body)
        names.update(re.findall(r"\bself\.([A-Za-z_]\w*)\s*(?::[^=\n]+)?=(?!=)", src))
        names.update(re.findall(r"^\s+([A-Za-z_]\w*)\s*:\s*[^=\n]+", src, re.M))
        names.update(re.findall(r"\bsetattr\(\s*self\s*,\s*['\"](\w+)['\"]", src))
    return names


def _dynamic_access(cls):
    """Source patterns that rely on a per-instance __dict__."""
    found = []
    for klass in cls.__mro__:
        if klass is object or type_module(klass) == "builtins":
            continue
        body, _, _ = _class_block(klass)
        if body is None:
            continue
        src = "\n".join(body)
        if re.search(r"\.__dict__\b", src):
            found.append(f"{klass.__name__} uses __dict__")
        if re.search(r"\bvars\(", src):
            found.append(f"{klass.__name__} uses vars()")
        if re.search(r"\bsetattr\(\s*self\s*,\s*[^'\"]", src):
            found.append(f"{klass.__name__} sets attributes with computed names (setattr)")
    return found


def _mentions_weakref(cls):
    """Does the class's own source make weak references to itself?"""
    body, _, _ = _class_block(cls)
    return bool(body) and "weakref" in "\n".join(body)


# ---- layouts --------------------------------------------------------------

# How the engine lays out objects (csrc/records/rec_type.c): the advisor
# prices the layouts it suggests with the same figures.
_LAYOUT = _core._record_layout()
_GC_HEAD = _LAYOUT["gc_head"]
_POINTER = _LAYOUT["pointer"]
# The field types record advice suggests, by the storage kind of
# memlens.Record they get; a str field is an object field.
_FIELD_TYPES = {"int": int, "float": float, "bool": bool, "str": str}
_KIND_SIZE = dict(zip(_LAYOUT["kinds"], _LAYOUT["sizes"]))
_STORAGE = {"int": "int", "float": "float", "bool": "bool", "str": "object"}


def _has_instance_dict(cls):
    return cls.__dictoffset__ != 0


def _slotted_size(cls, nslots):
    """Bytes of one instance of `cls` rewritten with `nslots` new slots:
    its base's basic size, a pointer per slot, and the GC header."""
    base = cls.__base__
    return base.__basicsize__ + _POINTER * nslots + _GC_HEAD


def _record_size(kinds, weakref):
    """Bytes of one memlens.Record instance with fields of `kinds` ('int',
    'float', 'bool', 'str'), laid out as RecordMeta does: the header, each
    field's storage, rounded up to the alignment; a weakref slot; the GC
    header when any field is an object."""
    storage = [_STORAGE[k] for k in kinds]
    align = _LAYOUT["align"]
    size = _LAYOUT["header"] + sum(_KIND_SIZE[k] for k in storage)
    size = (size + align - 1) // align * align
    if weakref:
        size += _POINTER
    if "object" in storage:
        size += _GC_HEAD
    return size


# ---- advice builders -------------------------------------------------------

def _slots_advice(cls, count, nbytes, weakrefd, attrs, min_saving):
    names = [a[0] for a in attrs if not a[1]]  # dict/values attributes
    if not names and not _has_instance_dict(cls):
        return None
    # Cheap bound first (an extra __weakref__ slot only lowers the saving):
    # most classes in a process fall below the threshold, and their sources
    # need not be read at all.
    if nbytes - count * _slotted_size(cls, len(names) + (1 if weakrefd else 0)) < max(min_saving, 1):
        return None
    blockers = []
    var_base = next((b for b in cls.__mro__[1:] if b.__itemsize__), None)
    for base in cls.__mro__[1:]:
        if base is object or type_module(base) == "builtins":
            continue
        if "__slots__" not in base.__dict__:
            blockers.append(f"base class {qualname(base)} has no __slots__: it gives every "
                            f"instance a __dict__ anyway, so add __slots__ to it too")
    if var_base is not None and var_base is not object:
        blockers.append(f"{qualname(cls)} subclasses {var_base.__name__}, which does not "
                        f"support non-empty __slots__")
    blockers.extend(_dynamic_access(cls))
    assigned = _assigned_names(cls)
    if assigned is None:
        blockers.append("the class source is not available to check which attributes it sets")
    else:
        outside = [n for n in names if n not in assigned]
        if outside:
            blockers.append("attributes set from outside the class (" + ", ".join(outside)
                            + "): with __slots__ any attribute not listed raises AttributeError")
    slots = tuple(names)
    if weakrefd or _mentions_weakref(cls):
        slots += ("__weakref__",)
    per = _slotted_size(cls, len(slots))
    saving = nbytes - count * per
    if saving <= 0:
        return None
    name = cls.__name__
    patch = f"class {name}:\n    __slots__ = {slots!r}\n"
    edit = None
    if _is_dataclass(cls):
        patch, edit = _dataclass_slots(cls, names, "__weakref__" in slots, blockers, patch)
    text = (f"{count:,} {name} instances each carry a per-instance attribute dict "
            f"(or values array): {nbytes / count:.0f} bytes each now, {per} bytes with "
            f"__slots__ listing the {len(names)} attributes seen on them"
            + (" (plus __weakref__: instances are weakly referenced)" if "__weakref__" in slots else "")
            + ".")
    return Advice("slots", cls, saving, count, text, patch, _location(cls), blockers, slots=slots,
                  edit=edit)


def _is_dataclass(cls):
    # the class's own dict: a subclass of a dataclass that is not one
    # itself gets no generated __init__ or slots
    return "__dataclass_fields__" in cls.__dict__ and "__dataclass_params__" in cls.__dict__


def _dataclass_fields(cls):
    """{name: Field} of the dataclass's own fields (not ClassVars or
    InitVars), read from the class, never from an instance."""
    return {f.name: f for f in dataclasses.fields(cls)}


def _dataclass_slots(cls, names, weakref, blockers, patch):
    """(patch, edit) of slots advice for a dataclass: ``@dataclass(...,
    slots=True)`` on 3.10+ (``weakref_slot=True`` on 3.11+ when instances
    are weakly referenced), an edit of the decorator line when the source
    shows it; before 3.10 the hand-written ``__slots__`` with the blockers
    it has there.  Adds to `blockers`."""
    fields = _dataclass_fields(cls)
    extra = [n for n in names if n not in fields]
    if sys.version_info < (3, 10):
        defaulted = [n for n, f in fields.items()
                     if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
        if defaulted:
            blockers.append(f"Python {sys.version_info[0]}.{sys.version_info[1]}'s dataclass has no "
                            f"slots=True (3.10+), and a hand-written __slots__ conflicts with the "
                            f"fields' defaults ({', '.join(defaulted)})")
        return patch, None
    if extra:
        blockers.append(f"attributes that are not fields ({', '.join(extra)}): dataclass(slots=True) "
                        f"makes slots for the fields only; declare them as fields "
                        f"(field(init=False))")
    if weakref and sys.version_info < (3, 11):
        blockers.append("instances are weakly referenced, and 3.10's dataclass(slots=True) has no "
                        "weakref_slot=True (3.11+)")
    body, path, first = _class_block(cls)
    decorator = _dataclass_decorator(cls, path, first)
    add = "slots=True" + (", weakref_slot=True" if weakref and sys.version_info >= (3, 11) else "")
    if decorator is None:
        return f"@dataclass({add})\nclass {cls.__name__}:\n", None
    lineno, old = decorator
    stripped = old.strip()
    indent = old[:len(old) - len(old.lstrip())]
    if stripped.endswith(")"):
        inner = stripped[stripped.index("(") + 1:-1].strip()
        new = indent + stripped[:stripped.index("(")] + "(" + (inner + ", " if inner else "") + add + ")"
    else:
        new = indent + stripped + f"({add})"
    return new.strip() + f"\nclass {cls.__name__}:\n", (path, lineno, old, new)


def _dataclass_decorator(cls, path, first):
    """(line number, text) of the ``@dataclass`` / ``@dataclasses.dataclass``
    line right above the class statement at line `first`, or None."""
    if not path:
        return None
    lines = _module_source(type_module(cls))[2]
    i = first - 2
    while i >= 0 and lines[i].strip().startswith("@"):
        text = lines[i].strip()
        head = text[1:].split("(", 1)[0].strip()
        if head in ("dataclass", "dataclasses.dataclass") and (text.endswith(")") or "(" not in text):
            return i + 1, lines[i]
        i -= 1
    return None


def _record_advice(cls, count, nbytes, weakrefd, attrs, overflow, min_saving):
    if overflow or not attrs or cls.__bases__ != (object,):
        return None
    fields, owned = [], 0
    for name, _is_slot, present, n_int, n_float, n_bool, n_str, n_none, n_other, owned_boxed, _c in attrs:
        if present != count or n_none or n_other:
            return None
        kinds = [k for k, n in zip(_FIELD_TYPES, (n_int, n_float, n_bool, n_str)) if n]
        if len(kinds) != 1:
            return None
        fields.append((name, kinds[0]))
        owned += owned_boxed
    if not any(k in ("int", "float") for _, k in fields):
        return None
    kinds = [k for _, k in fields]
    if nbytes + owned - count * _record_size(kinds, bool(weakrefd)) < max(min_saving, 1):
        return None  # below the threshold: no need to read the source
    weakref = bool(weakrefd) or _mentions_weakref(cls)
    per = _record_size([k for _, k in fields], weakref)
    saving = nbytes + owned - count * per
    if saving <= 0:
        return None
    head = f"class {cls.__name__}(memlens.Record" + (", weakref=True" if weakref else "") + "):"
    patch = "\n".join([head] + [f"    {n}: {k}" for n, k in fields]) + "\n"
    numeric = [n for n, k in fields if k != "str"]
    text = (f"{count:,} {cls.__name__} instances hold only numbers"
            + (" and strings" if any(k == "str" for _, k in fields) else "")
            + f": as a memlens.Record the numeric fields ({', '.join(numeric)}) are stored "
            f"unboxed inside the instance, {per} bytes each instead of "
            f"{(nbytes + owned) / count:.0f} with their boxed values.  Construct it with the "
            f"same field names (positional order as listed).")
    blockers = list(_dynamic_access(cls))
    return Advice("record", cls, saving, count, text, patch, _location(cls), blockers,
                  fields=tuple((n, _FIELD_TYPES[k])
                               for n, k in fields))


def _site_target(kind, owner, name):
    if kind == "attribute":
        return f"{qualname(owner)}.{name}"
    return {"dict key": "dict keys", "list item": "list items", "elsewhere": "other objects"}[kind]


def _site_advice(row, array_base, min_saving):
    (kind, owner, name, dup_strs, dup_str_bytes, dup_tuples, dup_tuple_bytes,
     flists, fitems, fbytes, ilists, iitems, ibytes, empty, empty_bytes,
     over_lists, over_bytes) = row
    target = _site_target(kind, owner, name)
    # the class's source is read only for advice above the threshold
    loc = _location(owner) if isinstance(owner, type) and max(
        dup_str_bytes, dup_tuple_bytes, fbytes, ibytes, empty_bytes, over_bytes) >= min_saving else None
    out = []
    if dup_strs:
        patch = None
        origin = ""
        if kind == "attribute" and isinstance(owner, type) and _is_dataclass(owner) \
                and name in _dataclass_fields(owner) and _dataclass_fields(owner)[name].init:
            # the generated __init__ has no source line to show: intern
            # the argument it stores, in __post_init__
            frozen = owner.__dict__["__dataclass_params__"].frozen
            set_it = (f'object.__setattr__(self, "{name}", sys.intern(self.{name}))' if frozen
                      else f"self.{name} = sys.intern(self.{name})")
            patch = f"def __post_init__(self):\n    {set_it}\n"
            origin = (f"  {name} is set by the dataclass's generated __init__ from its {name!r} "
                      f"argument: intern it there (where {owner.__name__}(...) is called) or in "
                      f"__post_init__" + (", adding the line to the one the class has" if
                                          "__post_init__" in owner.__dict__ else "") + ".")
        elif kind == "attribute":
            patch = f"self.{name} = sys.intern({name})   # where {qualname(owner)} sets it"
        out.append(Advice(
            "intern", target, dup_str_bytes, dup_strs,
            f"{dup_strs:,} strings in {target} are equal to another string but are separate "
            f"objects.  Interning them (sys.intern, or a dict of canonical values) keeps one "
            f"copy of each value." + origin, patch, loc))
    for typecode, n_lists, n_items, cur, what in (("d", flists, fitems, fbytes, "floats"),
                                                  ("q", ilists, iitems, ibytes, "ints")):
        if not n_lists:
            continue
        after = n_lists * array_base[typecode] + 8 * n_items
        if cur - after > 0:
            out.append(Advice(
                "array", target, cur - after, n_lists,
                f"{n_lists:,} list(s) in {target} hold only {what} ({n_items:,} in all): "
                f"array.array('{typecode}') stores them unboxed at 8 bytes each instead of a "
                f"pointer plus a {what[:-1]} object.",
                f"array.array('{typecode}', values)", loc))
    if dup_tuples:
        out.append(Advice(
            "duplicate-tuples", target, dup_tuple_bytes, dup_tuples,
            f"{dup_tuples:,} tuples in {target} are equal to another tuple of the same "
            f"values: share one tuple per value (e.g. through a dict cache).", None, loc))
    if empty and kind == "attribute":
        out.append(Advice(
            "empty", target, empty_bytes, empty,
            f"{empty:,} empty containers in {target}: leave the attribute None (or share "
            f"one immutable empty value) until the first item arrives.", None, loc))
    if over_lists:
        out.append(Advice(
            "overallocated", target, over_bytes, over_lists,
            f"{over_lists:,} list(s) in {target} keep spare capacity from growing by "
            f"append: once built, copy to an exact-size list (list(x)) or a tuple.",
            None, loc))
    return out


# ---- caches: weak references -------------------------------------------------

def _cache_name(name):
    """Does the name say the dict is a cache?  A dict that is the only
    holder of its values is the normal case for data (an index, a
    registry); only a cache may let them go."""
    low = name.lower()
    return "cache" in low or "memo" in low


def _program_modules():
    """(name, module) of the program's own modules: ``__main__`` and those
    whose file is not in the standard library, site-packages or memlens."""
    from memlens._advise_lines import _program_file

    for name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None)
        if name == "__main__" or (isinstance(path, str) and _program_file(path)):
            yield name, mod


def _lru_wrapper_type():
    import functools

    return getattr(functools, "_lru_cache_wrapper", None)


def _cache_candidates():
    """([(target, dict, module name, global name or None)], [(target,
    wrapper)]): module globals and class attributes that are dicts named
    like caches, and those that are functools.lru_cache/cache wrappers."""
    out, wrappers = [], []
    lru = _lru_wrapper_type()
    for modname, mod in _program_modules():
        space = getattr(mod, "__dict__", None)
        if type(space) is not dict:
            continue
        for gname, value in list(space.items()):
            if type(value) is dict and _cache_name(gname) and not gname.startswith("__"):
                out.append((f"{modname}.{gname}", value, modname, gname))
            elif lru is not None and type(value) is lru:
                wrappers.append((f"{modname}.{gname}", value))
            elif isinstance(value, type) and getattr(value, "__module__", None) == modname:
                for aname, avalue in list(value.__dict__.items()):
                    if type(avalue) is dict and _cache_name(aname):
                        out.append((f"{qualname(value)}.{aname}", avalue, modname, None))
                    elif lru is not None and type(avalue) is lru:
                        wrappers.append((f"{qualname(value)}.{aname}", avalue))
    return out, wrappers


def _global_edit(modname, gname):
    """(path, line, old, new) replacing ``NAME = {}`` (or ``dict()``) at
    the top level of the module's source with a WeakValueDictionary, or
    None when the line is not that plain."""
    text, path, lines = _module_source(modname)
    if text is None:
        return None
    for i, line in enumerate(lines):
        head = line.split("=", 1)
        if len(head) != 2 or line[:1].isspace():
            continue
        target = head[0].split(":", 1)[0].strip()
        if target == gname and head[1].strip() in ("{}", "dict()"):
            return (path, i + 1, line, f"import weakref\n{gname} = weakref.WeakValueDictionary()")
    return None


def _unweak_blocker(types, count):
    slotted = [t for t in types if "__slots__" in t.__dict__ and type_module(t) != "builtins"]
    builtin = [t.__name__ for t in types if t not in slotted]
    out = []
    for t in slotted:
        out.append(f"{qualname(t)} instances cannot be weakly referenced: add '__weakref__' to "
                   f"{qualname(t)}.__slots__")
    if builtin:
        out.append(f"values of type {', '.join(builtin)} cannot be weakly referenced (a weak "
                   f"dict raises TypeError on them): store them in a small class instance")
    if out:
        out[0] = f"{count:,} value(s) cannot be weakly referenced. " + out[0]
    return out


def _instance_caches(classes):
    """[(target, class, attribute, [dicts])]: per class of the program and
    attribute named like a cache, the dicts its instances hold there (the
    heap scan collects them; advice is one per class and attribute)."""
    mods = {name for name, _ in _program_modules()}
    out = []
    for cls, _count, _nbytes, _weakrefd, _with_dict, attrs, _overflow in classes:
        if type_module(cls) not in mods:
            continue
        for a in attrs:
            if a[10]:
                out.append((f"{qualname(cls)}.{a[0]}", cls, a[0], a[10]))
    return out


def _attribute_edit(cls, attr):
    """(path, line, old, new) replacing the one ``self.ATTR = {}`` (or
    ``dict()``) line of the class's source with a WeakValueDictionary
    (imported on the line before, at the same indent), or None when there
    is not exactly one such plain line."""
    body, path, first = _class_block(cls)
    if body is None:
        return None
    found = []
    for k, line in enumerate(body):
        head = line.split("=", 1)
        if len(head) == 2 and head[0].strip() == f"self.{attr}" and head[1].strip() in ("{}", "dict()"):
            found.append((first + k, line))
    if len(found) != 1:
        return None
    lineno, old = found[0]
    indent = old[:len(old) - len(old.lstrip())]
    return (path, lineno, old, f"{indent}import weakref\n{indent}self.{attr} = weakref.WeakValueDictionary()")


def _weak_text(target, values, held_only, shared, nbytes, where=""):
    return (f"{target} is the only thing keeping {held_only:,} of its {values:,} values alive{where} "
            f"({format_bytes(nbytes)} with what only they hold): as a "
            f"weakref.WeakValueDictionary it would let them go as soon as the program drops "
            f"them, and still return the {shared:,} that are in use elsewhere.")


def _lru_bound(shared):
    """The maxsize advised for an unbounded cache: a heap snapshot does not
    show which entries will be asked for again, so functools' own default
    (128), raised to the next power of two above the entries in use
    elsewhere now (likely to be asked for again)."""
    n = 128
    while n < shared:
        n *= 2
    return n


# Decorator lines of an unbounded cache, and their bounded form ({n}: the bound).
_LRU_DECORATORS = {
    "@functools.cache": "@functools.lru_cache(maxsize={n})",
    "@functools.lru_cache(maxsize=None)": "@functools.lru_cache(maxsize={n})",
    "@functools.lru_cache(None)": "@functools.lru_cache(maxsize={n})",
    "@lru_cache(maxsize=None)": "@lru_cache(maxsize={n})",
    "@lru_cache(None)": "@lru_cache(maxsize={n})",
}


def _lru_edit(func, n):
    """(path, line, old, new) bounding the cache decorator of `func` (its
    code's first line is its first decorator's), or None when the source
    does not show one of the plain forms."""
    code = getattr(func, "__code__", None)
    path = getattr(code, "co_filename", None)
    if code is None or not path or not os.path.isfile(path):
        return None
    try:
        lines = _read_text(path).splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    module = sys.modules.get(getattr(func, "__module__", None) or "")
    space = getattr(module, "__dict__", None)
    space = space if type(space) is dict else {}
    i = code.co_firstlineno - 1
    while 0 <= i < len(lines) and lines[i].lstrip().startswith("@"):
        old = lines[i]
        text = old.strip()
        indent = old[:len(old) - len(old.lstrip())]
        new = _LRU_DECORATORS.get(text)
        if text == "@cache":
            import functools

            if space.get("lru_cache") is functools.lru_cache:
                new = "@lru_cache(maxsize={n})"
            elif space.get("functools") is functools:
                new = "@functools.lru_cache(maxsize={n})"
            elif i == code.co_firstlineno - 1:  # the first decorator: an import may go before it
                new = "import functools\n" + indent + "@functools.lru_cache(maxsize={n})"
        if new is not None:
            return (path, i + 1, old, indent + new.format(n=n))
        i += 1
    return None


def _lru_advice(target, wrapper, func, row, min_saving):
    """Bounded-cache advice for an unbounded lru_cache/cache wrapper.  The
    saving assumes the entries evicted by the bound are held-only ones of
    average size (the bound keeps the most recently used, which include
    the ones in use now when the program asked for them last)."""
    values, held_only, shared, _unweak, _types, nbytes, _count = row
    n = _lru_bound(shared)
    evicted = min(held_only, values - n)
    if evicted <= 0 or held_only <= 0:
        return None
    saving = nbytes * evicted // held_only
    if saving < max(min_saving, 1):
        return None
    why = ("functools' default" if n == 128 else
           "functools' default (128) doubled until it exceeds them")
    text = (f"{target} is an unbounded functools cache: it keeps all {values:,} results it ever "
            f"computed, {held_only:,} of them alive only through it ({format_bytes(nbytes)} with "
            f"what only they hold).  Bound it with lru_cache(maxsize={n}): the heap does not "
            f"show which arguments will come again, so the bound is {why}, above the "
            f"{shared:,} results in use elsewhere now.  The cache then keeps the {n} most "
            f"recently used and lets about {evicted:,} go, {format_bytes(saving)} at their "
            f"average size.  Raise it if cache_info() then shows many more misses.")
    edit = _lru_edit(func, n)
    patch = textwrap.dedent(edit[3]) if edit else f"@functools.lru_cache(maxsize={n})"
    loc = f"{edit[0]}:{edit[1]}" if edit else None
    return Advice("bounded-cache", target, saving, evicted, text, patch, loc, edit=edit)


def _cache_advice(min_saving, classes):
    cands, wrappers = _cache_candidates()
    groups = _instance_caches(classes)
    lru = []
    for target, wrapper in wrappers:
        info = wrapper.cache_info()  # functools' C method: no user code
        if info.maxsize is not None:
            continue  # bounded already
        d, func = _core.advise_lru_parts(wrapper)
        if d is None or len(d) != info.currsize:
            continue  # not laid out as expected: no advice rather than a wrong one
        lru.append((target, wrapper, func, d))
    dicts = [c[1] for c in cands] + [x[3] for x in lru] + [d for g in groups for d in g[3]]
    if not dicts:
        return []
    rows = _core.advise_caches(dicts)
    out = []
    for (target, _d, modname, gname), row in zip(cands, rows):
        values, held_only, shared, unweak, types, nbytes, _count = row
        if nbytes < max(min_saving, 1):
            continue
        edit = _global_edit(modname, gname) if gname else None
        patch = edit[3] if edit else f"{target.rsplit('.', 1)[1]} = weakref.WeakValueDictionary()"
        loc = f"{edit[0]}:{edit[1]}" if edit else None
        out.append(Advice("weakref", target, nbytes, held_only,
                          _weak_text(target, values, held_only, shared, nbytes), patch, loc,
                          _unweak_blocker(types, unweak), edit=edit))
    k = len(cands)
    for target, wrapper, func, _d in lru:
        a = _lru_advice(target, wrapper, func, rows[k], min_saving)
        k += 1
        if a is not None:
            out.append(a)
    for target, cls, attr, group in groups:
        sub = rows[k:k + len(group)]
        k += len(group)
        values, held_only, shared, unweak, nbytes = (sum(r[i] for r in sub) for i in (0, 1, 2, 3, 5))
        types = tuple(dict.fromkeys(t for r in sub for t in r[4]))
        if nbytes < max(min_saving, 1):
            continue
        edit = _attribute_edit(cls, attr)
        patch = textwrap.dedent(edit[3]) if edit else f"self.{attr} = weakref.WeakValueDictionary()"
        where = f" in the {len(group):,} {cls.__name__} instances' {attr} dicts"
        out.append(Advice("weakref", target, nbytes, held_only,
                          _weak_text(target, values, held_only, shared, nbytes, where), patch,
                          f"{edit[0]}:{edit[1]}" if edit else _location(cls),
                          _unweak_blocker(types, unweak), edit=edit))
    return out


def advise(min_saving=64 * 1024, capture=None):
    """Walk the whole heap and return advice that saves at least
    ``min_saving`` bytes each, largest saving first.

    ``capture``: a capture file written by ``memlens run`` (a path) or a
    loaded :class:`memlens.report.model.Capture`; its peak and the
    program's source add ``generator`` advice for the lines that built a
    list consumed once."""
    check_int("advise() min_saving", min_saving, 0)
    line_advice = []
    if capture is not None:
        line_advice = _capture_advice(capture, min_saving)
    # The report allocates Python objects; keep the collector from running
    # while it does, so advising never collects the caller's garbage.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        out = _advise(min_saving) + line_advice
        out.sort(key=_order)
    finally:
        if was_enabled:
            gc.enable()
    return out


def _order(a):
    return (-a.saving, _KIND_ORDER.index(a.kind), a.target_name)


def _capture_advice(capture, min_saving):
    """Advice from a traced run: its peak, by line, and the source."""
    from memlens import _advise_lines
    from memlens.report import model

    cap = capture if isinstance(capture, model.Capture) else model.load(os.fspath(capture))
    return _advise_lines.line_advice(cap, min_saving, Advice)


def _advise(min_saving):
    roots = gc.get_objects()
    try:
        classes, sites = _core.advise_scan(roots)
    finally:
        del roots
    array_base = {c: _core.sizeof(array.array(c)) for c in ("d", "q")}
    out = []
    for cls, count, nbytes, weakrefd, with_dict, attrs, overflow in classes:
        if (type_module(cls) or "").startswith("memlens") or count == 0:
            continue
        if _has_instance_dict(cls) and not issubclass(cls, BaseException):
            a = _slots_advice(cls, count, nbytes, weakrefd, attrs, min_saving)
            if a is not None:
                out.append(a)
        r = _record_advice(cls, count, nbytes, weakrefd, attrs, overflow, min_saving)
        if r is not None:
            out.append(r)
    for row in sites:
        out.extend(_site_advice(row, array_base, min_saving))
    out.extend(_cache_advice(min_saving, classes))
    _source_cache.clear()
    out = [a for a in out if a.saving >= min_saving]
    return out
