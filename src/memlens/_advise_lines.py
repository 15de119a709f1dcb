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


# ---- copies the source shows are not needed: list(a), bytes(buf), a = a + b ----

# List methods that change the list in place and return None (or an item):
# a call of one as a statement keeps no reference to the list.
_LIST_MUTATORS = frozenset({"append", "extend", "insert", "sort", "reverse", "remove", "clear", "pop"})
# Methods bytes and bytearray share with the same result type (not bytes):
# a call of one reads the buffer and keeps no reference to it.
_BUFFER_READS = frozenset({"decode", "count", "find", "rfind", "index", "startswith", "endswith", "hex"})


class _LineCopy:
    """A copy made on line `lineno` that the edit of that line removes.
    `ratio` is the share of what the line held at the peak the edit saves
    (1 for a copy dropped outright; see _concat_candidates)."""

    def __init__(self, lineno, new_line, text, ratio=1.0, blocks=1):
        self.lineno = lineno
        self.new_line = new_line
        self.text = text
        self.ratio = ratio
        self.blocks = blocks  # blocks the line must hold at the peak for the saving to hold


def _functions(tree):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _name_uses(fn, name):
    """Every Name node of `name` in `fn`, or None when the name is a
    parameter, declared global/nonlocal, deleted or used by a nested
    function or lambda (a closure may keep it)."""
    if name in {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}:
        return None
    uses = []
    for n in ast.walk(fn):
        if isinstance(n, (ast.Global, ast.Nonlocal)) and name in n.names:
            return None
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)) and n is not fn:
            if any(isinstance(m, ast.Name) and m.id == name for m in ast.walk(n)):
                return None
        if isinstance(n, ast.Name) and n.id == name:
            if isinstance(n.ctx, ast.Del):
                return None
            uses.append(n)
    return uses


def _makes_list(value, shadowed):
    """Is `value` certainly a new list: a display, a comprehension,
    ``list(...)``, ``sorted(...)`` or a list display repeated?"""
    if isinstance(value, (ast.List, ast.ListComp)):
        return True
    if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Mult):
        return isinstance(value.left, ast.List) or isinstance(value.right, ast.List)
    return (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
            and value.func.id in ("list", "sorted") and value.func.id not in shadowed)


def _owner(node, parents):
    """The innermost function or lambda holding `node` (None at module level)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return node
    return None


def _in_loop(node, fn, parents):
    while node is not fn:
        node = parents[node]
        if isinstance(node, (ast.For, ast.AsyncFor, ast.While, ast.comprehension)):
            return node
    return None


def _keeps_nothing(n, parents):
    """A read of a list or buffer that keeps no reference to it: transient
    (see _transient), or a mutating list method called as a statement."""
    if _transient(n, parents):
        return True
    p = parents.get(n)
    return (isinstance(p, ast.Attribute) and p.value is n and p.attr in _LIST_MUTATORS
            and isinstance(parents.get(p), ast.Call) and parents[p].func is p
            and isinstance(parents.get(parents[p]), ast.Expr))


def _top_stmt(node, fn, parents):
    """The statement of `fn`'s own body that holds `node`, or None."""
    while node in parents and parents[node] is not fn:
        node = parents[node]
    return node if node in fn.body else None


def _call_of(node, fname, shadowed):
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == fname
            and fname not in shadowed and len(node.args) == 1 and not node.keywords
            and isinstance(node.args[0], ast.Name))


def _bound_once_to(fn, name, uses, parents, maker):
    """The one statement of `fn`'s own body that binds `name` (a plain
    ``name = value`` where maker(value)), or None when the name is stored
    anywhere else (``name += ...`` aside: on a list or bytearray it changes
    the object in place)."""
    stores = [n for n in uses if isinstance(n.ctx, ast.Store)
              and not (isinstance(parents.get(n), ast.AugAssign) and parents[n].target is n)]
    if len(stores) != 1:
        return None
    stmt = parents.get(stores[0])
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and stmt.targets[0] is stores[0]
            and stmt in fn.body and maker(stmt.value)):
        return None
    return stmt


def _replace_node(lines, node, text):
    if node.lineno != node.end_lineno:
        return None
    line = lines[node.lineno - 1]
    start, end = _segment_cols(line, node)
    return line[:start] + text + line[end:]


def _dropped_copy_candidates(tree, lines, parents, shadowed):
    """``list(a)`` of a list `a` this function made, and ``bytes(buf)`` of
    a bytearray it made, where the original is not read again after the
    copy (and nothing else holds it): the original itself serves, and the
    copy is saved.  A bytearray replaces bytes only where every use of the
    result reads it the same way (len, an int index, decode() ... or a
    write())."""
    out = []
    for fn in _functions(tree):
        for node in ast.walk(fn):
            for fname in ("list", "bytes"):
                if not _call_of(node, fname, shadowed) or _owner(node, parents) is not fn:
                    continue
                name = node.args[0].id
                uses = _name_uses(fn, name)
                stmt = _top_stmt(node, fn, parents)
                if uses is None or stmt is None or _in_loop(node, fn, parents) is not None:
                    continue
                if fname == "list":
                    maker = lambda v: _makes_list(v, shadowed)  # noqa: E731
                else:
                    maker = lambda v: (isinstance(v, ast.Call) and isinstance(v.func, ast.Name)  # noqa: E731
                                       and v.func.id == "bytearray" and "bytearray" not in shadowed)
                bind = _bound_once_to(fn, name, uses, parents, maker)
                if bind is None or fn.body.index(bind) >= fn.body.index(stmt):
                    continue
                order = fn.body.index(stmt)
                others = [n for n in uses if isinstance(n.ctx, ast.Load) and n is not node.args[0]]
                if not all(fn.body.index(_top_stmt(n, fn, parents) or stmt) < order
                           and _keeps_nothing(n, parents) for n in others):
                    continue
                if fname == "bytes" and not _reads_like_bytes(node, fn, parents):
                    continue
                new_line = _replace_node(lines, node, name)
                if new_line is None:
                    continue
                what = "list" if fname == "list" else "bytearray"
                text = (f"line {node.lineno} copies the {what} {name!r} ({fname}({name})), which is not "
                        f"read again: use it as it is.  At the run's peak the copy held these bytes.")
                out.append(_LineCopy(node.lineno, new_line, text))
    return out


def _buffer_read(n, parents):
    """A use of bytes that a bytearray serves the same: len(x), x[i],
    x.decode(...) and the other _BUFFER_READS, a comparison, or passing
    it to a .write() call."""
    p = parents.get(n)
    if isinstance(p, ast.Call) and isinstance(p.func, ast.Name) and p.func.id == "len" and p.args == [n]:
        return True
    if isinstance(p, ast.Subscript) and p.value is n and not isinstance(p.slice, ast.Slice):
        return True
    if isinstance(p, ast.Attribute) and p.value is n and p.attr in _BUFFER_READS:
        return isinstance(parents.get(p), ast.Call) and parents[p].func is p
    if isinstance(p, ast.Compare):
        return True
    return (isinstance(p, ast.Call) and isinstance(p.func, ast.Attribute) and p.func.attr == "write"
            and p.args == [n] and isinstance(parents.get(p), ast.Expr))


def _reads_like_bytes(call, fn, parents):
    """Is the result of `call` (bytes(buf)) used only in ways a bytearray
    serves the same: directly, or through a name bound once to it?"""
    if _buffer_read(call, parents):
        return True
    stmt = parents.get(call)
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
        return False
    uses = _name_uses(fn, stmt.targets[0].id)
    if uses is None or sum(isinstance(n.ctx, ast.Store) for n in uses) != 1:
        return False
    return all(_buffer_read(n, parents) for n in uses if isinstance(n.ctx, ast.Load))


# At the peak, ``a = a + b`` holds the old list and the new one, about half
# each; ``a += b`` holds one list, with up to an eighth spare (list_resize
# over-allocates by newsize >> 3): on average a sixteenth.
_CONCAT_KEPT = 0.5 * (1 + 1 / 16)


def _concat_candidates(tree, lines, parents, shadowed):
    """``a = a + b`` in a loop, `a` a list this function made and reads only
    in ways that keep no reference (so growing it in place, ``a += b``,
    changes nothing else): each pass copies all of `a`, and at the peak the
    old and the new list are both alive."""
    out = []
    for fn in _functions(tree):
        for stmt in ast.walk(fn):
            if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name) and isinstance(stmt.value, ast.BinOp)
                    and isinstance(stmt.value.op, ast.Add) and isinstance(stmt.value.left, ast.Name)
                    and stmt.value.left.id == stmt.targets[0].id):
                continue
            name = stmt.targets[0].id
            if _owner(stmt, parents) is not fn:
                continue
            loop = _in_loop(stmt, fn, parents)
            uses = _name_uses(fn, name)
            if loop is None or isinstance(loop, ast.comprehension) or uses is None:
                continue
            if name in _names_loaded(stmt.value.right):
                continue  # a = a + a: in place it would read itself as it grows
            stores = [n for n in uses if isinstance(n.ctx, ast.Store) and n is not stmt.targets[0]]
            if len(stores) != 1:
                continue
            bind = parents.get(stores[0])
            if not (isinstance(bind, ast.Assign) and bind.targets == [stores[0]] and _makes_list(bind.value, shadowed)):
                continue
            ok = True
            for n in uses:
                if not isinstance(n.ctx, ast.Load) or n is stmt.value.left:
                    continue
                p = parents.get(n)
                if isinstance(p, ast.Return) or _keeps_nothing(n, parents):
                    continue
                # iterating it is fine outside the loop that grows it
                if isinstance(p, ast.For) and p.iter is n and _in_loop(stmt, p, parents) is None \
                        and not any(m is stmt for m in ast.walk(p)):
                    continue
                ok = False
            if not ok or stmt.lineno != stmt.end_lineno:
                continue
            line = lines[stmt.lineno - 1]
            start, end = _segment_cols(line, stmt)
            rs, re_ = _segment_cols(line, stmt.value.right)
            new_line = line[:start] + f"{name} += " + line[rs:re_] + line[end:]
            text = (f"line {stmt.lineno} ({line.strip()}) builds a new list of all of {name!r} on each "
                    f"pass and drops the old one: at the run's peak both were alive.  "
                    f"{name} += ... (list.extend) grows the one list in place.")
            out.append(_LineCopy(stmt.lineno, new_line, text, ratio=1 - _CONCAT_KEPT, blocks=2))
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
    dropped = _dropped_copy_candidates(tree, lines, parents, shadowed)
    dropped += _concat_candidates(tree, lines, parents, shadowed)
    return found, _copy_candidates(tree, lines, parents, shadowed), dropped, lines


def line_advice(cap, min_saving, make_advice):
    """Advice for the lines of a capture (a
    :class:`memlens.report.model.Capture`): one `make_advice(**fields)`
    per materialized list (``generator``) or copying slice (``copy``)
    that saves at least `min_saving` bytes of the run's peak."""
    held, allocated, blocks = {}, {}, {}
    for frame, size, count in cap.lines("peak"):
        held[(frame.filename, frame.lineno)] = held.get((frame.filename, frame.lineno), 0) + size
        blocks[(frame.filename, frame.lineno)] = blocks.get((frame.filename, frame.lineno), 0) + count
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
        found, copies, dropped, lines = got
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
        for c in dropped:
            key = (path, c.lineno)
            if blocks.get(key, 0) < c.blocks:
                continue  # the line did not hold the copy (and its original) at the peak
            saving = int(held.get(key, 0) * c.ratio)
            if saving < max(min_saving, 1):
                continue
            old = lines[c.lineno - 1]
            out.append(make_advice(
                kind="copy", target=f"{os.path.basename(path)}:{c.lineno}", saving=saving, count=1,
                text=c.text, patch=c.new_line.strip(), location=f"{path}:{c.lineno}",
                edit=(path, c.lineno, old, c.new_line)))
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
