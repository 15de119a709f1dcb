"""The type stub of the C engine (src/memlens/_core.pyi) against the built
memlens._core: every name the module has is declared, and what the C side
says about signatures and types agrees with the stub.

The stub is read from the source tree next to this file, not from the
imported package: the per-version builds (build/py3.X/lib) hold only what
setup.py copied there.
"""

import ast
import functools
import inspect
import operator
import os
import shutil
import subprocess
import sys

import pytest

from memlens import _core

STUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "src", "memlens", "_core.pyi")

# Py_TPFLAGS_BASETYPE (Include/object.h): the type can be subclassed.
_TPFLAGS_BASETYPE = 1 << 10

_COMPARE = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


def _is_version_info(node):
    return (isinstance(node, ast.Attribute) and node.attr == "version_info"
            and isinstance(node.value, ast.Name) and node.value.id == "sys")


def _condition(test):
    """Evaluate a stub's `if sys.version_info <op> (X, Y):` for this
    interpreter, as a type checker does for the version it targets."""
    if (isinstance(test, ast.Compare) and len(test.ops) == 1 and _is_version_info(test.left)
            and type(test.ops[0]) in _COMPARE and isinstance(test.comparators[0], ast.Tuple)):
        bound = tuple(ast.literal_eval(test.comparators[0]))
        return _COMPARE[type(test.ops[0])](sys.version_info[:len(bound)], bound)
    raise AssertionError(f"_core.pyi line {test.lineno}: unsupported condition "
                         f"{ast.dump(test)}; only sys.version_info comparisons are understood")


def _active(body):
    """The statements of `body` that apply to this interpreter, with the
    version branches flattened."""
    for node in body:
        if isinstance(node, ast.If):
            yield from _active(node.body if _condition(node.test) else node.orelse)
        else:
            yield node


class _Stub:
    def __init__(self, tree):
        self.tree = tree
        self.functions = {}  # name -> FunctionDef
        self.classes = {}    # name -> ClassDef
        self.variables = {}  # name -> AnnAssign (module attributes that are not functions)
        self.aliases = {}    # name -> Assign (type aliases and TypeVars: the stub's own)
        for node in _active(tree.body):
            if isinstance(node, ast.FunctionDef):
                self.functions[node.name] = node
            elif isinstance(node, ast.ClassDef):
                self.classes[node.name] = node
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                self.variables[node.target.id] = node
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.aliases[target.id] = node

    def names(self):
        return set(self.functions) | set(self.classes) | set(self.variables)


@functools.lru_cache(maxsize=None)
def _stub():
    with open(STUB, encoding="utf-8") as f:
        return _Stub(ast.parse(f.read(), filename=STUB))


def _runtime_names():
    return {n for n in dir(_core) if not (n.startswith("__") and n.endswith("__"))}


def _params(fn, skip_first=False):
    """(name, kind, has_default) of a stub function's parameters, in order,
    with inspect.Parameter kinds."""
    a = fn.args
    P = inspect.Parameter
    positional = [(x.arg, P.POSITIONAL_ONLY) for x in a.posonlyargs]
    positional += [(x.arg, P.POSITIONAL_OR_KEYWORD) for x in a.args]
    npos_defaults = len(a.defaults)
    out = [(name, kind, i >= len(positional) - npos_defaults) for i, (name, kind) in enumerate(positional)]
    if skip_first:
        out = out[1:]
    if a.vararg is not None:
        out.append((a.vararg.arg, P.VAR_POSITIONAL, False))
    out += [(x.arg, P.KEYWORD_ONLY, d is not None) for x, d in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg is not None:
        out.append((a.kwarg.arg, P.VAR_KEYWORD, False))
    return out


def _decorators(node):
    return {d.id if isinstance(d, ast.Name) else getattr(d, "attr", None) for d in node.decorator_list}


def _class_lookup(cls, name):
    """What `name` is bound to in the class's own MRO dicts (not on its
    metaclass: `_RecordField.__name__` is the descriptor, not 'RecordField')."""
    for c in cls.__mro__:
        if name in c.__dict__:
            return True, c.__dict__[name]
    return False, None


def _check_signature(where, stub_params, runtime_sig):
    """The stub's parameters against a C text signature.  Names, order,
    defaults and the kinds the text signature states must agree; a
    POSITIONAL_OR_KEYWORD in the text signature may be positional-only in
    the stub (a C docstring without "/" for a function that takes no
    keywords; test_functions_reject_keywords_as_the_stub_says checks which
    it is)."""
    P = inspect.Parameter
    runtime = [(p.name, p.kind, p.default is not P.empty) for p in runtime_sig.parameters.values()]
    if [(k, d) for _, k, d in runtime] == [(P.POSITIONAL_ONLY, False)] and runtime[0][0] == "object":
        # 3.13+ makes up "(object, /)" for METH_O functions that have no
        # signature of their own: only the shape is the C function's.
        assert [(k, d) for _, k, d in stub_params] == [(P.POSITIONAL_ONLY, False)], \
            f"{where}: METH_O takes exactly one positional-only argument; stub has {stub_params}"
        return
    assert [n for n, _, _ in stub_params] == [n for n, _, _ in runtime], \
        f"{where}: stub parameters {stub_params} != text signature {runtime_sig}"
    for (name, skind, sdef), (_, rkind, rdef) in zip(stub_params, runtime):
        if rkind != P.POSITIONAL_OR_KEYWORD or skind != P.POSITIONAL_ONLY:
            assert skind == rkind, f"{where}: parameter {name!r} is {skind} in the stub, {rkind} at runtime"
        assert sdef == rdef, f"{where}: parameter {name!r} default in stub {sdef}, at runtime {rdef}"


def test_stub_declares_exactly_the_module_names():
    # GIVEN the names the built module exposes (dunders aside)
    runtime = _runtime_names()
    # WHEN the stub's declarations that apply to this Python are collected
    declared = _stub().names()
    # THEN they are the same set: a C function added without a stub, or a
    # stub entry for something the module no longer has, fails here
    assert sorted(runtime - declared) == [], "in memlens._core but not declared in _core.pyi"
    assert sorted(declared - runtime) == [], "declared in _core.pyi but not in memlens._core"


def test_stub_helpers_are_private_and_not_module_names():
    # Type aliases and TypeVars are the stub's own: they must not look like
    # (or hide) something the module exports.
    for name in _stub().aliases:
        assert name.startswith("_"), f"stub alias {name} should be private (_{name})"
        assert not hasattr(_core, name), f"stub alias {name} shadows memlens._core.{name}"


def test_kinds_match():
    stub = _stub()
    runtime = _runtime_names()
    for name in set(stub.functions) & runtime:
        obj = getattr(_core, name)
        assert callable(obj) and not isinstance(obj, type), f"{name} is declared a function: {obj!r}"
    for name in set(stub.classes) & runtime:
        assert isinstance(getattr(_core, name), type), f"{name} is declared a class: {getattr(_core, name)!r}"


def test_function_signatures_match_text_signatures():
    # GIVEN the functions whose C docstring starts "name(args)\n--\n\n" and
    # so carry a __text_signature__ (3.13+ also makes one up for METH_O and
    # METH_NOARGS functions without)
    # THEN the stub's parameters are the ones the C docstring names
    checked = 0
    for name, fn in sorted(_stub().functions.items()):
        obj = getattr(_core, name, None)
        if not getattr(obj, "__text_signature__", None):
            continue
        try:
            sig = inspect.signature(obj)
        except ValueError as e:
            pytest.fail(f"memlens._core.{name}: __text_signature__ {obj.__text_signature__!r} "
                        f"does not parse: {e}")
        _check_signature(f"memlens._core.{name}", _params(fn), sig)
        checked += 1
    # deep_size, census, retained_size, why_alive, advise_scan, _record_* at least
    assert checked >= 8


def test_class_signatures_match_text_signatures():
    # RecordMeta's tp_doc has a text signature (read on 3.10+).  Its __new__
    # may add **kwargs: keywords other than the options go on to
    # __init_subclass__, which the text signature does not say.
    P = inspect.Parameter
    for name, node in sorted(_stub().classes.items()):
        cls = getattr(_core, name, None)
        if not isinstance(cls, type) or not getattr(cls, "__text_signature__", None):
            continue
        new = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__new__"), None)
        assert new is not None, f"{name} has a text signature; declare its __new__ in the stub"
        params = [p for p in _params(new, skip_first=True) if p[1] != P.VAR_KEYWORD]
        _check_signature(f"memlens._core.{name}", params, inspect.signature(cls))


def test_functions_reject_keywords_as_the_stub_says():
    # No module function is METH_KEYWORDS: a call with a keyword is refused
    # before the C function runs.  A stub parameter that can be passed by
    # keyword must therefore be a real one.
    P = inspect.Parameter
    for name, fn in sorted(_stub().functions.items()):
        if not callable(getattr(_core, name, None)):
            continue
        keywordable = [n for n, k, _ in _params(fn) if k not in (P.POSITIONAL_ONLY, P.VAR_POSITIONAL)]
        try:
            getattr(_core, name)(**{"memlens_stub_probe": None})
        except TypeError as e:
            refuses = "takes no keyword arguments" in str(e)
        else:
            pytest.fail(f"memlens._core.{name} accepted an unknown keyword")
        if refuses:
            assert keywordable == [], \
                f"memlens._core.{name} takes no keyword arguments: make {keywordable} positional-only (/)"


def test_class_members_exist():
    for name, node in sorted(_stub().classes.items()):
        cls = getattr(_core, name, None)
        if not isinstance(cls, type):
            continue
        # the bases and the metaclass are the C type's
        bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
        assert bases == [b.__name__ for b in cls.__bases__ if b is not object], f"{name} bases"
        meta = [k.value.id for k in node.keywords if k.arg == "metaclass"]
        assert meta == ([] if type(cls) is type else [type(cls).__name__]), f"{name} metaclass"
        # @final exactly when C did not set Py_TPFLAGS_BASETYPE
        assert ("final" in _decorators(node)) == (not cls.__flags__ & _TPFLAGS_BASETYPE), \
            f"{name}: mark it @final in the stub iff it cannot be subclassed"
        for member in _active(node.body):
            if isinstance(member, ast.FunctionDef):
                found, value = _class_lookup(cls, member.name)
                assert found, f"_core.pyi declares {name}.{member.name}; the type has no such attribute"
                if "property" in _decorators(member):
                    assert inspect.isdatadescriptor(value), f"{name}.{member.name} is not a descriptor"
                else:
                    assert callable(value), f"{name}.{member.name} is declared a method: {value!r}"
            elif isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
                found, _ = _class_lookup(cls, member.target.id)
                assert found, f"_core.pyi declares {name}.{member.target.id}; the type has no such attribute"


def test_trace_table_members_are_all_declared():
    # GIVEN the attributes and methods C defines on TraceTable (getset and
    # method tables of trace_snapshot.c)
    runtime = {n for n in _core.TraceTable.__dict__ if not (n.startswith("__") and n.endswith("__"))}
    # WHEN the stub's class body is read
    node = _stub().classes["TraceTable"]
    members = {m.name: m for m in _active(node.body) if isinstance(m, ast.FunctionDef)}
    # THEN each is declared: getset entries as properties, methods as methods
    assert set(members) == runtime
    for name, m in members.items():
        is_getset = inspect.isgetsetdescriptor(_core.TraceTable.__dict__[name])
        assert ("property" in _decorators(m)) == is_getset, f"TraceTable.{name}"


def test_stub_uses_python39_typing():
    # requires-python is >=3.9: typing.List/Optional/Union, not list[...] or X | Y
    builtin_generics = {"list", "dict", "tuple", "set", "frozenset", "type"}
    for node in ast.walk(_stub().tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            pytest.fail(f"_core.pyi line {node.lineno}: use Union/Optional, not X | Y")
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                and node.value.id in builtin_generics):
            pytest.fail(f"_core.pyi line {node.lineno}: use typing.{node.value.id.capitalize()}[...]")


@pytest.mark.slow
def test_stub_passes_mypy(tmp_path):
    # mypy comes with the test extra (and .ci/run's per-version venvs).
    # The stub alone, so that the package's untyped modules are not checked
    shutil.copy(STUB, tmp_path / "_core.pyi")
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
                        "_core.pyi"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
