"""Compact records: class instances at the physical minimum.

``memlens.Record`` is implemented in C (``memlens._core``): the instance
layout, construction, field access, repr/eq/order/hash and pickling.  This
module holds the parts that are plain Python: reading the annotations of a
class statement (called by the metaclass while it builds the class) and the
dataclasses-style helpers ``fields``, ``asdict``, ``astuple``, ``replace``.
"""

import copy
import sys
import typing

from memlens import _core

__all__ = ["Record", "Field", "MISSING", "fields", "asdict", "astuple", "replace"]

Record = _core.Record


class _MissingType:
    __slots__ = ()

    def __repr__(self):
        return "MISSING"

    def __reduce__(self):
        return "MISSING"


#: Default of a field that has none.
MISSING = _MissingType()

# Storage kind numbers (rec_kind in csrc/records/rec.h), from the engine.
_KIND = {name: number for number, name in enumerate(_core._record_layout()["kinds"])}
_OBJECT = _KIND["object"]
_KINDS = {int: _KIND["int"], float: _KIND["float"], bool: _KIND["bool"]}
# String annotations matched without evaluating anything.
_LITERAL = {
    "int": int, "float": float, "bool": bool,
    "builtins.int": int, "builtins.float": float, "builtins.bool": bool,
}
_CLASSVAR_PREFIXES = ("ClassVar", "typing.ClassVar", "t.ClassVar")


def _module_globals(cls):
    module = sys.modules.get(cls.__module__)
    return getattr(module, "__dict__", {})


def _resolve(annotation, cls):
    """The object an annotation stands for, or None if it cannot be told.

    Strings (``from __future__ import annotations``) are matched literally
    first (``'float'``, ``'builtins.int'``), then evaluated like
    ``typing.get_type_hints`` would, in the class's module globals with the
    class's namespace as locals.  Anything that fails to evaluate (a forward
    reference, ``X | None`` on 3.9) is an object field.
    """
    if not isinstance(annotation, str):
        return annotation
    text = annotation.strip()
    globalns = _module_globals(cls)
    if text in _LITERAL and text.partition(".")[0] not in globalns:
        return _LITERAL[text]
    localns = dict(vars(cls))
    localns.setdefault(cls.__name__, cls)
    try:
        return eval(text, dict(globalns), localns)  # noqa: S307 -- what get_type_hints does
    except Exception:
        return None


def _is_classvar(annotation, resolved):
    if isinstance(annotation, str) and annotation.strip().startswith(_CLASSVAR_PREFIXES):
        return True
    return resolved is typing.ClassVar or typing.get_origin(resolved) is typing.ClassVar


def _kind(resolved):
    # typing.Annotated[float, ...] is stored as a float.
    if getattr(resolved, "__metadata__", None) is not None and hasattr(resolved, "__origin__"):
        resolved = resolved.__origin__
    if isinstance(resolved, type):
        return _KINDS.get(resolved, _OBJECT)
    return _OBJECT


def _own_fields(cls, annotations):
    """Fields declared by one class statement: a list of
    ``(name, kind, annotation, has_default, default)`` for the metaclass."""
    namespace = cls.__dict__
    out = []
    for name, annotation in annotations.items():
        resolved = _resolve(annotation, cls)
        if _is_classvar(annotation, resolved):
            continue
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"{cls.__name__}: field name {name!r} is not an identifier")
        has_default = name in namespace
        default = namespace.get(name)
        if has_default and type(default).__hash__ is None:
            # As in dataclasses: one list shared by every instance is a bug.
            raise ValueError(
                f"{cls.__name__}.{name}: mutable default {type(default)!r} is not allowed "
                "(it would be shared by every instance)")
        out.append((name, _kind(resolved), annotation, has_default, default))
    return out


class Field:
    """Description of one record field, as returned by :func:`fields`."""

    __slots__ = ("name", "type", "default", "kw_only", "storage", "offset")

    def __init__(self, name, type, default, kw_only, storage, offset):
        self.name = name
        self.type = type
        self.default = default
        self.kw_only = kw_only
        self.storage = storage
        self.offset = offset

    def __repr__(self):
        return (f"Field(name={self.name!r}, type={self.type!r}, default={self.default!r}, "
                f"kw_only={self.kw_only!r}, storage={self.storage!r}, offset={self.offset!r})")


def fields(class_or_instance):
    """Tuple of :class:`Field` for a record class or instance, in declaration
    order (base classes' fields first).  ``storage`` is ``'int64'``,
    ``'double'``, ``'bool'`` (unboxed) or ``'object'``; ``offset`` is the
    byte offset inside the instance."""
    cls = class_or_instance if isinstance(class_or_instance, type) else type(class_or_instance)
    try:
        raw = _core._record_fields(cls)
    except TypeError:
        raise TypeError(f"must be called with a memlens.Record class or instance, "
                        f"not {class_or_instance!r}") from None
    return tuple(
        Field(name, annotation, default if has_default else MISSING, bool(kw_only), storage,
              offset)
        for name, storage, annotation, has_default, default, kw_only, offset in raw)


def _is_record(obj):
    return isinstance(obj, Record) and not isinstance(obj, type)


def _names(cls):
    return [f[0] for f in _core._record_fields(cls)]


def _copy_value(obj, record_factory, container_factory):
    # Mirrors dataclasses.asdict/astuple: recurse into records, lists,
    # tuples (namedtuples too) and dicts; deep-copy anything else.
    if _is_record(obj):
        return record_factory(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*[_copy_value(v, record_factory, container_factory) for v in obj])
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy_value(v, record_factory, container_factory) for v in obj)
    if isinstance(obj, dict):
        return type(obj)((_copy_value(k, record_factory, container_factory),
                          _copy_value(v, record_factory, container_factory))
                         for k, v in obj.items())
    return copy.deepcopy(obj)


def asdict(record, *, dict_factory=dict):
    """The record's fields as a dict, recursing into nested records, lists,
    tuples and dicts (the rules of ``dataclasses.asdict``)."""
    if not _is_record(record):
        raise TypeError("asdict() should be called on memlens.Record instances")

    def convert(r):
        values = _core._record_values(r)
        return dict_factory([(n, _copy_value(v, convert, dict_factory))
                             for n, v in zip(_names(type(r)), values)])

    return convert(record)


def astuple(record, *, tuple_factory=tuple):
    """The record's field values as a tuple, recursing like :func:`asdict`."""
    if not _is_record(record):
        raise TypeError("astuple() should be called on memlens.Record instances")

    def convert(r):
        return tuple_factory([_copy_value(v, convert, tuple_factory)
                              for v in _core._record_values(r)])

    return convert(record)


def replace(record, /, **changes):
    """A new record of the same class with some fields changed (validated
    as in construction)."""
    if not _is_record(record):
        raise TypeError("replace() should be called on memlens.Record instances")
    cls = type(record)
    kwargs = dict(zip(_names(cls), _core._record_values(record)))
    kwargs.update(changes)
    return cls(**kwargs)


def _replace_method(self, /, **changes):
    return replace(self, **changes)


# copy.replace() (3.13+) looks for __replace__.
Record.__replace__ = _replace_method
