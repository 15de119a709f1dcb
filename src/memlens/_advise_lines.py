"""Advice from a traced run and the program's source: materialized lists
that a generator would replace (private; ``memlens.advise(capture=...)``
and ``memlens run --advise`` use it).

The tracer says what each line held at the run's peak; the source, parsed
with :mod:`ast` (read as text, never imported or run), says which lines
build a list that is consumed exactly once by something that only needs
one item at a time.  The saving is what that line held at the peak: the
list and the items only it kept alive, since the candidates are chosen so
that nothing else keeps an item (see :func:`_transient`).

Which consumers qualify, checked against CPython's implementation:

* ``sum``, ``min``, ``max``, ``any``, ``all`` take one item at a time from
  any iterator and keep none of them (min/max keep the best so far, an
  item the list also held): a generator holds one item, the list all.
* ``sorted`` copies its argument into a new list first, ``set``/``tuple``
  /``frozenset``/``dict`` keep every item, and ``str.join`` turns a
  generator into a list (``PySequence_Fast``) before joining: there the
  saving is at most the list's pointer array, which per-line figures do
  not separate from the items, so no advice is given.
"""

import ast
import os
import sysconfig

__all__ = ["line_advice"]

# Builtins that consume an iterable one item at a time and keep no item.
_STREAMING = frozenset({"sum", "min", "max", "any", "all"})
# Of those, the ones whose result does not depend on duplicates, so that a
# set comprehension may become a generator too.
_DEDUP_SAFE = frozenset({"min", "max", "any", "all"})
# Builtins whose result never is (or holds) their argument: an item passed
# to them stays transient.
_SAFE_CALLS = frozenset({"print", "len", "bool", "hash", "isinstance", "repr", "id", "callable"})


def _program_file(path):
    """Is `path` a source file of the program itself (not the standard
    library, site-packages or memlens)?  Advice edits only those."""
    if not path.endswith(".py") or not os.path.isfile(path):
        return False
    here = os.path.dirname(os.path.abspath(__file__))
    real = os.path.realpath(path)
    roots = {os.path.realpath(p) for k, p in sysconfig.get_paths().items()
             if k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.add(os.path.realpath(here))
    return not any(real == r or real.startswith(r + os.sep) for r in roots)


def _parents(tree):
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    return parents


def _shadowed(tree):
    """Names the module binds itself (a def, an import, an assignment):
    a call to such a name is not the builtin."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.alias):
            out.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            out.add(node.arg)
    return out


def _materialized(node, consumer):
    """Is `node` a list (or, for a dedup-safe consumer, set) comprehension
    or a ``list(x)`` call, which a generator (or `x` itself) replaces?"""
    if isinstance(node, ast.ListComp) or (isinstance(node, ast.SetComp) and consumer in _DEDUP_SAFE):
        return True
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "list"
            and len(node.args) == 1 and not node.keywords and not isinstance(node.args[0], ast.Starred))


def _segment_cols(line, node):
    """(start, end) character columns of `node` on `line` (ast gives UTF-8
    byte offsets)."""
    raw = line.encode("utf-8")
    return len(raw[:node.col_offset].decode("utf-8")), len(raw[:node.end_col_offset].decode("utf-8"))


def _rewrite(lines, node, sole_argument):
    """The one source line holding the list-building `node`, rewritten as
    the user wrote it but lazy: ``[x for ...]`` becomes ``(x for ...)`` (no
    brackets at all as a call's sole argument), ``list(it)`` becomes
    ``it``.  None for a node that spans lines (left alone: the rewrite
    would not be certain)."""
    if node.lineno != node.end_lineno:
        return None
    line = lines[node.lineno - 1]
    start, end = _segment_cols(line, node)
    seg = line[start:end]
    if isinstance(node, ast.Call):
        inner = node.args[0]
        body = seg[seg.index("(") + 1:seg.rindex(")")].strip()
        lazy = body if sole_argument or not isinstance(inner, ast.GeneratorExp) else f"({body})"
    else:
        body = seg[1:-1]
        lazy = body if sole_argument else f"({body})"
    return line[:start] + lazy + line[end:]


def _names_loaded(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _transient(name_node, parents):
    """Does the value `name_node` reads stay transient, so that nothing
    keeps it after the expression is evaluated?  Arithmetic, comparisons,
    tests, formatting and a few builtins whose result is not their
    argument; anything else (a call, a container, an assignment, a
    return) might keep it."""
    node = name_node
    while True:
        p = parents.get(node)
        if isinstance(p, (ast.BinOp, ast.Compare, ast.FormattedValue)):
            return True
        if isinstance(p, ast.UnaryOp):
            if isinstance(p.op, ast.Not):
                return True
            node = p  # +x and -x may return x itself
            continue
        if isinstance(p, (ast.Attribute, ast.Subscript)) and p.value is node:
            node = p  # the attribute or item read may be kept instead
            continue
        if isinstance(p, ast.AugAssign) and p.value is node:
            return True
        if isinstance(p, (ast.If, ast.While, ast.Assert, ast.IfExp)) and p.test is node:
            return True
        if isinstance(p, ast.Expr):
            return True
        if (isinstance(p, ast.Call) and isinstance(p.func, ast.Name) and p.func.id in _SAFE_CALLS
                and node in p.args):
            return True
        return False


def _for_body_ok(loop, comp_names, parents):
    """A ``for`` loop may iterate a generator instead of the list when its
    body keeps no item (every use of the loop target is transient) and
    cannot change what the comprehension reads (it mentions none of the
    comprehension's names and calls nothing but safe builtins)."""
    targets = _names_loaded(loop.target)
    if not all(isinstance(n, (ast.Name, ast.Tuple, ast.List, ast.Store)) for n in ast.walk(loop.target)):
        return False
    for stmt in loop.body + loop.orelse:
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name):
                if n.id in comp_names:
                    return False
                if n.id in targets and (not isinstance(n.ctx, ast.Load) or not _transient(n, parents)):
                    return False
            elif isinstance(n, ast.Call):
                if not (isinstance(n.func, ast.Name) and n.func.id in _SAFE_CALLS):
                    return False
            elif isinstance(n, (ast.Yield, ast.YieldFrom, ast.Await, ast.Global, ast.Nonlocal,
                                ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                return False
    return True


class _Candidate:
    """One materialized list and its rewrite."""

    def __init__(self, node, how, new_line, lineno):
        self.node = node          # the list-building expression
        self.how = how            # what consumes it, for the text
        self.new_line = new_line  # the source line rewritten
        self.lineno = lineno      # the line edited (where the list is built)


def _streaming_call(node, shadowed):
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in _STREAMING and node.func.id not in shadowed
            and len(node.args) >= 1 and not isinstance(node.args[0], ast.Starred))


def _direct_candidates(tree, lines, parents, shadowed):
    """``sum([...])`` and ``for y in [...]:`` -- the list is built and
    consumed in one place."""
    out = []
    for node in ast.walk(tree):
        if _streaming_call(node, shadowed):
            arg = node.args[0]
            if not _materialized(arg, node.func.id) or (isinstance(arg, ast.Call) and "list" in shadowed):
                continue
            new_line = _rewrite(lines, arg, len(node.args) == 1 and not node.keywords)
            if new_line is not None:
                out.append(_Candidate(arg, f"consumed once, by {node.func.id}()", new_line, arg.lineno))
        elif isinstance(node, ast.For):
            if not isinstance(node.iter, ast.ListComp):
                continue
            comp_names = _names_loaded(node.iter) - _names_loaded(
                ast.Tuple(elts=[g.target for g in node.iter.generators], ctx=ast.Load()))
            if not _for_body_ok(node, comp_names, parents):
                continue
            new_line = _rewrite(lines, node.iter, False)
            if new_line is not None:
                out.append(_Candidate(node.iter, "consumed once, by a for loop", new_line, node.iter.lineno))
    return out


def _named_candidates(tree, lines, parents, shadowed):
    """``squares = [...]`` followed by ``sum(squares)`` or ``for y in
    squares:`` in the same block: the name is stored once, read once (that
    read being the consumer), never indexed, measured, returned or kept,
    and nothing between the two statements can change what the
    comprehension reads (a generator evaluates it later)."""
    out = []
    scopes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for scope in scopes:
        body = scope.body
        for i, stmt in enumerate(body):
            if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name)):
                continue
            name = stmt.targets[0].id
            if not _materialized(stmt.value, None):
                continue
            if isinstance(stmt.value, ast.Call) and "list" in shadowed:
                continue
            # every mention of the name in the whole module (a module-level
            # name is a global other functions may read)
            where = tree if isinstance(scope, ast.Module) else scope
            uses = [n for n in ast.walk(where) if isinstance(n, ast.Name) and n.id == name]
            other = [n for n in ast.walk(where)
                     if isinstance(n, (ast.Global, ast.Nonlocal)) and name in n.names]
            loads = [n for n in uses if isinstance(n.ctx, ast.Load)]
            if other or len(uses) != 2 or len(loads) != 1:
                continue
            load = loads[0]
            # the statement of this block that holds the load
            stmt_of = load
            while parents.get(stmt_of) is not scope and stmt_of in parents:
                stmt_of = parents[stmt_of]
            if stmt_of not in body or body.index(stmt_of) <= i:
                continue
            # the read must be the consumer: sum(name) / for y in name
            p = parents[load]
            comp_names = _names_loaded(stmt.value) - {name}
            if isinstance(stmt.value, ast.ListComp):
                comp_names -= _names_loaded(ast.Tuple(
                    elts=[g.target for g in stmt.value.generators], ctx=ast.Load()))
            if _streaming_call(p, shadowed) and p.args[0] is load:
                how = f"{p.func.id}()"
                consumer_stmt_ok = _no_loop_between(load, stmt_of, parents)
            elif isinstance(p, ast.For) and p.iter is load and p is stmt_of:
                how = "a for loop"
                consumer_stmt_ok = _for_body_ok(p, comp_names, parents)
            else:
                continue
            if not consumer_stmt_ok:
                continue
            between = body[i + 1:body.index(stmt_of)]
            if any(_touches(s, comp_names) for s in between):
                continue
            new_line = _rewrite(lines, stmt.value, False)
            if new_line is not None:
                out.append(_Candidate(stmt.value, f"assigned to {name!r} and read once, by {how}", new_line,
                                      stmt.value.lineno))
    return out


def _no_loop_between(node, top, parents):
    """No loop or comprehension between `node` and its statement `top`:
    the read happens once."""
    while node is not top:
        node = parents[node]
        if isinstance(node, (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp,
                             ast.DictComp, ast.GeneratorExp, ast.Lambda)):
            return False
    return True


def _touches(stmt, names):
    """Could `stmt` change what a comprehension over `names` reads: it
    mentions one of them, or calls anything."""
    for n in ast.walk(stmt):
        if isinstance(n, ast.Name) and n.id in names:
            return True
        if isinstance(n, (ast.Call, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                          ast.Import, ast.ImportFrom)):
            return True
    return False


# ---- copies: a bytes slice that replaces its original, in a loop ----------------

# Calls whose result is certainly a new bytes or bytearray object.
_BYTES_MAKERS = frozenset({"bytes", "bytearray"})


class _Copy:
    """``data = data[k:]`` in a loop over a buffer made at `bind`: each
    pass copies the rest of the buffer, which a memoryview would not."""

    def __init__(self, slice_stmt, bind, new_line, name):
        self.slice_stmt = slice_stmt  # the copying assignment
        self.bind = bind              # the assignment that makes the buffer
        self.new_line = new_line      # the binding line, wrapped in memoryview()
        self.name = name


def _makes_buffer(value, shadowed):
    """Is `value` certainly a new bytes/bytearray: ``bytes(...)``,
    ``bytearray(...)``, ``os.urandom(...)``, a bytes literal, or one
    repeated (``b"x" * n``)?"""
    if isinstance(value, ast.Constant) and isinstance(value.value, bytes):
        return True
    if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Mult):
        return any(isinstance(v, ast.Constant) and isinstance(v.value, bytes)
                   for v in (value.left, value.right))
    if isinstance(value, ast.Call) and not value.keywords:
        f = value.func
        if isinstance(f, ast.Name) and f.id in _BYTES_MAKERS and f.id not in shadowed:
            return True
        if (isinstance(f, ast.Attribute) and f.attr == "urandom" and isinstance(f.value, ast.Name)
                and f.value.id == "os"):
            return True
    return False


def _self_slice(stmt, name):
    """Is `stmt` ``name = name[a:b]`` (a plain slice, no step)?"""
    return (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id == name
            and isinstance(stmt.value, ast.Subscript) and isinstance(stmt.value.value, ast.Name)
            and stmt.value.value.id == name and isinstance(stmt.value.slice, ast.Slice)
            and stmt.value.slice.step is None)


def _view_safe_use(n, parents, name):
    """A use of the buffer that a memoryview serves the same: ``len(x)``,
    ``x[i]`` (an int either way), or a test (``while x:``)."""
    p = parents.get(n)
    if isinstance(p, ast.Call) and isinstance(p.func, ast.Name) and p.func.id == "len" and p.args == [n]:
        return True
    if isinstance(p, ast.Subscript) and p.value is n and not isinstance(p.slice, ast.Slice):
        return isinstance(p.ctx, ast.Load)
    if isinstance(p, (ast.If, ast.While)) and p.test is n:
        return True
    if isinstance(p, ast.UnaryOp) and isinstance(p.op, ast.Not):
        return True
    return False


def _copy_candidates(tree, lines, parents, shadowed):
    """In each function: a name bound once to a new bytes/bytearray, then
    only re-bound by ``name = name[a:]`` inside a loop, and otherwise only
    measured with len(), indexed with an int or tested -- so a memoryview
    of the buffer behaves the same, and its slices copy nothing."""
    out = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        names = {}
        for n in ast.walk(fn):
            if isinstance(n, ast.Name):
                names.setdefault(n.id, []).append(n)
        for name, uses in names.items():
            if any(isinstance(n, (ast.Global, ast.Nonlocal)) and name in n.names for n in ast.walk(fn)):
                continue
            if name in {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}:
                continue
            stores = [n for n in uses if isinstance(n.ctx, ast.Store)]
            if any(isinstance(n.ctx, ast.Del) for n in uses):
                continue
            binds, slices = [], []
            for st in stores:
                stmt = parents.get(st)
                if _self_slice(stmt, name):
                    slices.append(stmt)
                elif (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                      and stmt.targets[0] is st and _makes_buffer(stmt.value, shadowed)):
                    binds.append(stmt)
                else:
                    binds = None
                    break
            if not binds or len(binds) != 1 or not slices:
                continue
            bind = binds[0]
            slice_loads = {s.value.value for s in slices}
            ok = all(n in slice_loads or _view_safe_use(n, parents, name)
                     for n in uses if isinstance(n.ctx, ast.Load))
            # every copy in a loop, after the binding, in this function's own body
            for sl in slices:
                node, in_loop = sl, False
                while node is not fn:
                    node = parents[node]
                    if isinstance(node, (ast.For, ast.While, ast.AsyncFor)):
                        in_loop = True
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and node is not fn:
                        ok = False
                ok = ok and in_loop and sl.lineno > bind.lineno
            if not ok or bind.value.lineno != bind.value.end_lineno:
                continue
            line = lines[bind.value.lineno - 1]
            start, end = _segment_cols(line, bind.value)
            new_line = line[:start] + "memoryview(" + line[start:end] + ")" + line[end:]
            for sl in slices:
                if sl.lineno == sl.end_lineno:
                    out.append(_Copy(sl, bind, new_line, name))
    return out


def _file_candidates(path):
    from memlens.advise import _read_text  # plain reading: no linecache in the heap

    try:
        text = _read_text(path)
        tree = ast.parse(text, filename=path)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None
    lines = text.splitlines()
    parents = _parents(tree)
    shadowed = _shadowed(tree)
    found = _direct_candidates(tree, lines, parents, shadowed)
    found += _named_candidates(tree, lines, parents, shadowed)
    return found, _copy_candidates(tree, lines, parents, shadowed), lines


def line_advice(cap, min_saving, make_advice):
    """Advice for the lines of a capture (a
    :class:`memlens.report.model.Capture`): one `make_advice(**fields)`
    per materialized list (``generator``) or copying slice (``copy``)
    that saves at least `min_saving` bytes of the run's peak."""
    held, allocated = {}, {}
    for frame, size, _count in cap.lines("peak"):
        held[(frame.filename, frame.lineno)] = held.get((frame.filename, frame.lineno), 0) + size
    if cap.allocated_exact:
        for frame, size, _count in cap.lines("allocated"):
            key = (frame.filename, frame.lineno)
            allocated[key] = allocated.get(key, 0) + size
    files = sorted({f for f, _ in held if _program_file(f)})
    out = []
    for path in files:
        got = _file_candidates(path)
        if not got:
            continue
        found, copies, lines = got
        for c in found:
            node = c.node
            saving = sum(held.get((path, ln), 0) for ln in range(node.lineno, node.end_lineno + 1))
            if saving < max(min_saving, 1):
                continue
            old = lines[c.lineno - 1]
            share = f" ({saving / cap.peak:.0%} of it)" if cap.peak else ""
            text = (f"line {c.lineno} builds a list that is {c.how}: at the run's "
                    f"peak{share} the list and the items only it keeps alive held these bytes. "
                    f"A generator holds one item at a time, so the peak drops by as much.")
            out.append(make_advice(
                kind="generator", target=f"{os.path.basename(path)}:{c.lineno}", saving=saving,
                count=1, text=text, patch=c.new_line.strip(), location=f"{path}:{c.lineno}",
                edit=(path, c.lineno, old, c.new_line)))
        if allocated:
            out.extend(_copy_advice(path, copies, lines, held, allocated, min_saving, make_advice))
    return out


def _copy_advice(path, copies, lines, held, allocated, min_saving, make_advice):
    """The saving of wrapping the buffer in a memoryview where it is made:
    the copies the slice line held at the peak, less the original buffer
    where the peak came after the original was freed (a view keeps it
    alive).  Needs the cumulative per-line totals (what the binding line
    allocated) to know that size; for a buffer made many times that total
    overstates it, and the saving is then underestimated."""
    out = []
    seen = set()
    for c in copies:
        ln, bl = c.slice_stmt.lineno, c.bind.value.lineno
        if (ln, bl) in seen:
            continue
        seen.add((ln, bl))
        # the original buffer still held at the peak (its line holds it):
        # the view costs nothing more; freed by then: the view would keep
        # it, so it counts against the saving (its size: what its line
        # allocated, exact for a buffer made once)
        gone = 0 if held.get((path, bl), 0) else allocated.get((path, bl), 0)
        saving = held.get((path, ln), 0) - gone
        if saving < max(min_saving, 1):
            continue
        old = lines[bl - 1]
        text = (f"line {ln} ({lines[ln - 1].strip()}) copies the rest of the buffer {c.name!r} on "
                f"each pass: a slice of bytes is a new bytes object.  A slice of a memoryview is "
                f"a view of the same memory: wrap the buffer once where it is made (line {bl}) "
                f"and the slices copy nothing.  At the run's peak the copies held these bytes "
                f"more than the view would.")
        out.append(make_advice(
            kind="copy", target=f"{os.path.basename(path)}:{ln}", saving=saving, count=1,
            text=text, patch=c.new_line.strip(), location=f"{path}:{ln}",
            edit=(path, bl, old, c.new_line)))
    return out
