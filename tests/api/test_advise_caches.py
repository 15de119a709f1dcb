"""Weak-reference advice for caches: a module-level (or class-level) dict
named like a cache that is the only thing keeping its values alive.  Each
prediction is checked by applying the edit and measuring the program's
memory at its end under tracemalloc."""

import pytest

import memlens

# Runs a program under tracemalloc and prints what is still traced at its
# end (its globals alive): the independent ground truth.
AT_END = """\
import runpy, sys, tracemalloc
tracemalloc.start()
g = runpy.run_path(sys.argv[1], run_name="__main__")
print(tracemalloc.get_traced_memory()[0])
"""

IMAGES = """\
    class Image:
        def __init__(self, i):
            self.name = f"img{i}"
            self.pixels = bytes(100_000)


    CACHE = {}


    def load(i):
        img = CACHE.get(i)
        if img is None:
            img = CACHE[i] = Image(i)
        return img


    in_use = [load(i) for i in range(0, 300, 30)]
    for i in range(300):
        load(i)
    print(len(in_use), sum(len(load(i).pixels) for i in range(0, 300, 30)))
"""

# Runs a program as this process's __main__ (as `memlens advise` does), then
# prints the weakref advice for the heap it leaves.
ADVISE = """\
import __main__, sys
import memlens
__main__.__file__ = sys.argv[1]
with open(sys.argv[1]) as f:
    exec(compile(f.read(), sys.argv[1], "exec"), __main__.__dict__)
for a in memlens.advise():
    if a.kind == sys.argv[2]:
        print(repr((a.target_name, a.saving, a.count, a.edit, a.blockers, a.patch)))
"""


def _weakref_advice(run_python, path, kind="weakref"):
    r = run_python("-c", ADVISE, path, kind, cwd=path.parent)
    assert r.returncode == 0, r.stderr
    import ast

    return [ast.literal_eval(line) for line in r.stdout.splitlines() if line.startswith("(")]


def _at_end(run_python, path):
    r = run_python("-c", AT_END, path, cwd=path.parent)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[-1]), r.stdout.split("\n")[0]


def test_weak_cache_saves_what_it_predicts(tmp_path, run_python, write):
    # GIVEN a program whose module-level CACHE alone keeps 290 of its 300
    # 100 kB images alive (10 are in use elsewhere)
    prog = write(tmp_path / "prog.py", IMAGES)
    # WHEN the advisor looks at the heap it leaves
    (advice,) = _weakref_advice(run_python, prog)
    target, saving, count, edit, blockers, patch = advice
    # THEN it names the cache, the 290 values, and an edit of its line
    assert target == "__main__.CACHE" and count == 290 and blockers == ()
    path, lineno, old, new = edit
    assert path == str(prog) and old == "CACHE = {}" and lineno == 7
    assert new == patch == "import weakref\nCACHE = weakref.WeakValueDictionary()"
    # AND applying the edit frees the predicted bytes (within 10%) with the
    # program's output unchanged
    lines = prog.read_text().splitlines()
    lines[lineno - 1] = new
    weak = tmp_path / "weak.py"
    weak.write_text("\n".join(lines) + "\n")
    (before, out_before), (after, out_after) = _at_end(run_python, prog), _at_end(run_python, weak)
    measured = before - after
    assert abs(saving - measured) <= 0.10 * measured, (saving, measured)
    assert out_after == out_before


NEGATIVE = {
    "values also in use elsewhere": IMAGES.replace("range(0, 300, 30)", "range(300)"),
    "a dict that is not named like a cache": IMAGES.replace("CACHE", "IMAGES"),
}


@pytest.mark.parametrize("case", sorted(NEGATIVE))
def test_no_weak_cache_advice(tmp_path, run_python, write, case):
    # GIVEN a cache whose values are all in use elsewhere, or a plain data dict
    prog = write(tmp_path / "prog.py", NEGATIVE[case])
    # WHEN the advisor looks at the heap
    # THEN it does not suggest weak references
    assert _weakref_advice(run_python, prog) == []


def test_values_that_cannot_be_weakly_referenced_are_blockers(tmp_path, run_python, write):
    # GIVEN caches of __slots__ instances without __weakref__ and of bytes
    prog = write(tmp_path / "prog.py", """\
        class Tile:
            __slots__ = ("pixels",)

            def __init__(self):
                self.pixels = bytes(100_000)


        class Store:
            blob_cache = {}


        TILE_CACHE = {i: Tile() for i in range(20)}
        for i in range(20):
            Store.blob_cache[i] = bytes(100_000)
    """)
    # WHEN the advisor looks at the heap
    advice = {a[0]: a for a in _weakref_advice(run_python, prog)}
    # THEN the slotted class's advice says what to add, with the bytes it
    # would let go once it is added; the bytes cache says bytes cannot be
    # weakly referenced; neither is applicable as is
    tile = advice["__main__.TILE_CACHE"]
    assert tile[2] == 20 and any("add '__weakref__' to __main__.Tile.__slots__" in b for b in tile[4])
    blob = advice["__main__.Store.blob_cache"]
    assert any("bytes cannot be weakly referenced" in b for b in blob[4])
    assert blob[3] is None  # a class attribute: the patch only, no edit


def test_advise_caches_checks_its_argument_and_keeps_refcounts():
    import sys

    from memlens import _core

    # GIVEN a dict whose values only it holds, and one shared value
    class Blob:
        pass

    shared = Blob()
    d = {i: Blob() for i in range(5)}
    d["s"] = shared
    counts = [sys.getrefcount(v) for v in d.values()]
    # WHEN the engine checks it
    ((values, held_only, shared_n, unweak, types, nbytes, nobj),) = _core.advise_caches([d])
    # THEN it counts each kind of value, retains the five blobs' bytes (each
    # retained_size) and leaves every refcount as it was
    assert (values, held_only, shared_n, unweak, types) == (6, 5, 1, 0, ())
    assert nbytes == sum(memlens.retained_size(d[i]) for i in range(5)) and nobj >= 5
    assert [sys.getrefcount(v) for v in d.values()] == counts
    # AND bad arguments are a TypeError, not a crash
    for bad in ("x", [1], [d, "y"]):
        with pytest.raises(TypeError):
            _core.advise_caches(bad)


# ---- functools caches: an unbounded lru_cache / cache wrapper -----------------

LRU = """\
    import functools


    class Image:
        def __init__(self, i):
            self.name = f"img{i}"
            self.pixels = bytes(100_000)


    @functools.cache
    def load(i):
        return Image(i)


    in_use = [load(i) for i in range(0, 300, 30)]
    for i in range(300):
        load(i)
    print(len(in_use), sum(len(load(i).pixels) for i in range(0, 300, 30)))
"""

# The same cache as a method of a class, with the bare names imported.
LRU_METHOD = """\
    from functools import lru_cache


    class Image:
        def __init__(self, i):
            self.pixels = bytes(80_000)


    class Store:
        @lru_cache(maxsize=None)
        def load(self, i):
            return Image(i)


    store = Store()
    for i in range(400):
        store.load(i)
    print(len(store.load(399).pixels))
"""


def _apply(tmp_path, prog, edit, name):
    path, lineno, old, new = edit
    lines = prog.read_text().splitlines()
    assert path == str(prog) and lines[lineno - 1] == old
    lines[lineno - 1] = new
    out = tmp_path / name
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.mark.parametrize("source, target, old, new", [
    (LRU, "__main__.load", "@functools.cache", "@functools.lru_cache(maxsize=128)"),
    (LRU_METHOD, "__main__.Store.load", "    @lru_cache(maxsize=None)", "    @lru_cache(maxsize=128)"),
    (LRU.replace("import functools", "from functools import cache").replace("@functools.cache", "@cache"),
     "__main__.load", "@cache", "import functools\n@functools.lru_cache(maxsize=128)"),
], ids=["functools.cache", "lru_cache(maxsize=None) method", "a bare @cache"])
def test_unbounded_lru_cache_gets_a_bound_that_saves_what_it_predicts(tmp_path, run_python, write,
                                                                      source, target, old, new):
    # GIVEN a program whose unbounded functools cache alone keeps most of
    # its results alive
    prog = write(tmp_path / "prog.py", source)
    # WHEN the advisor looks at the heap it leaves
    (advice,) = _weakref_advice(run_python, prog, "bounded-cache")
    name, saving, count, edit, blockers, patch = advice
    # THEN it advises functools' default bound on the decorator's line
    assert name == target and blockers == () and edit[2:] == (old, new)
    assert patch == new.strip()
    # AND applying the edit frees the predicted bytes at the end (within
    # 10%) with the program's output unchanged
    bounded = _apply(tmp_path, prog, edit, "bounded.py")
    (before, out_before), (after, out_after) = _at_end(run_python, prog), _at_end(run_python, bounded)
    measured = before - after
    assert abs(saving - measured) <= 0.10 * measured, (saving, measured)
    assert out_after == out_before


LRU_NEGATIVE = {
    "a bounded lru_cache": LRU.replace("@functools.cache", "@functools.lru_cache(maxsize=64)"),
    "results all in use elsewhere": LRU.replace("range(0, 300, 30)", "range(300)"),
    "fewer results than the bound": LRU.replace("range(300)", "range(100)"),
}


@pytest.mark.parametrize("case", sorted(LRU_NEGATIVE))
def test_no_bounded_cache_advice(tmp_path, run_python, write, case):
    # GIVEN a bounded cache, or one whose results are in use elsewhere or
    # fewer than the bound it would get
    prog = write(tmp_path / "prog.py", LRU_NEGATIVE[case])
    # WHEN the advisor looks at the heap
    # THEN it suggests no bound
    assert _weakref_advice(run_python, prog, "bounded-cache") == []


def test_advise_lru_parts_reaches_the_storage_without_calling_anything():
    import functools
    import sys

    from memlens import _core

    # GIVEN an unbounded cache with five results, and a bounded one
    @functools.cache
    def square(x):
        return [x * x]

    @functools.lru_cache(maxsize=2)
    def small(x):
        return [x]

    for i in range(5):
        square(i)
        small(i)
    counts = [sys.getrefcount(v) for v in [square(i) for i in range(5)]]
    # WHEN the engine looks inside the wrappers
    d, func = _core.advise_lru_parts(square)
    # THEN it finds the storage dict (its results, as the wrapper holds
    # them) and the wrapped function, without a cache hit or a miss
    assert sorted(d.values()) == sorted([[i * i] for i in range(5)]) and func is square.__wrapped__
    assert square.cache_info().hits == 5 and square.cache_info().misses == 5
    assert len(_core.advise_lru_parts(small)[0]) == 2
    assert [sys.getrefcount(v) for v in [square(i) for i in range(5)]] == counts
    # AND anything but a wrapper is a TypeError, not a crash
    for bad in (1, square.__wrapped__, {}):
        with pytest.raises(TypeError):
            _core.advise_lru_parts(bad)


# ---- caches in instance attributes: self._cache = {} --------------------------

INSTANCE = """\
    class Image:
        def __init__(self, i):
            self.pixels = bytes(50_000)


    class Loader:
        def __init__(self):
            self._cache = {}

        def load(self, i):
            img = self._cache.get(i)
            if img is None:
                img = self._cache[i] = Image(i)
            return img


    loaders = [Loader() for _ in range(4)]
    in_use = [ld.load(i) for ld in loaders for i in range(0, 100, 25)]
    for ld in loaders:
        for i in range(100):
            ld.load(i)
    print(len(in_use), sum(len(ld.load(i).pixels) for ld in loaders for i in range(0, 100, 25)))
"""


def test_instance_cache_attribute_gets_one_weakref_advice_per_class(tmp_path, run_python, write):
    # GIVEN four Loader instances whose _cache dicts alone keep 384 of their
    # 400 images alive
    prog = write(tmp_path / "prog.py", INSTANCE)
    # WHEN the advisor looks at the heap
    (advice,) = _weakref_advice(run_python, prog)
    name, saving, count, edit, blockers, patch = advice
    # THEN one advice covers the class's attribute, with an edit of the
    # line that makes the dict
    assert name == "__main__.Loader._cache" and count == 384 and blockers == ()
    assert edit[1:] == (8, "        self._cache = {}",
                        "        import weakref\n        self._cache = weakref.WeakValueDictionary()")
    # AND applying it frees the predicted bytes (within 10%), same output
    weak = _apply(tmp_path, prog, edit, "weak.py")
    (before, out_before), (after, out_after) = _at_end(run_python, prog), _at_end(run_python, weak)
    measured = before - after
    assert abs(saving - measured) <= 0.10 * measured, (saving, measured)
    assert out_after == out_before


INSTANCE_NEGATIVE = {
    "values also in use elsewhere": INSTANCE.replace("range(0, 100, 25)", "range(100)"),
    "an attribute not named like a cache": INSTANCE.replace("_cache", "_images"),
}


@pytest.mark.parametrize("case", sorted(INSTANCE_NEGATIVE))
def test_no_instance_cache_advice(tmp_path, run_python, write, case):
    prog = write(tmp_path / "prog.py", INSTANCE_NEGATIVE[case])
    assert _weakref_advice(run_python, prog) == []


def test_instance_cache_values_that_cannot_be_weakly_referenced_are_blockers(tmp_path, run_python, write):
    # GIVEN instances whose memo dicts hold bytes (not weakly referenceable)
    prog = write(tmp_path / "prog.py", """\
        class Parser:
            def __init__(self):
                self.memo = {}

            def chunk(self, i):
                return self.memo.setdefault(i, bytes(40_000))


        parsers = [Parser() for _ in range(3)]
        for p in parsers:
            for i in range(50):
                p.chunk(i)
    """)
    # WHEN the advisor looks at the heap
    (advice,) = _weakref_advice(run_python, prog)
    # THEN the advice says bytes cannot be weakly referenced
    assert advice[0] == "__main__.Parser.memo" and advice[2] == 150
    assert any("bytes cannot be weakly referenced" in b for b in advice[4])


def test_cache_advice_leaves_the_caches_as_they_were(tmp_path, run_python, write):
    # GIVEN a program with an unbounded functools cache and instances with
    # a cache attribute (and no other __dict__ access)
    prog = write(tmp_path / "prog.py", INSTANCE + "\n" + LRU.replace("class Image", "class Picture")
                 .replace("Image(i)", "Picture(i)"))
    check = write(tmp_path / "check.py", """\
        import __main__, gc, sys, tracemalloc
        import memlens
        __main__.__file__ = sys.argv[1]
        with open(sys.argv[1]) as f:
            exec(compile(f.read(), sys.argv[1], "exec"), __main__.__dict__)
        info = load.cache_info()
        counts = [sys.getrefcount(ld._cache[i]) for ld in loaders for i in range(100)]
        sizes = [memlens.sizeof(ld) for ld in loaders]
        kinds = sorted(a.kind for a in memlens.advise())  # warm up
        tracemalloc.start()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            memlens.advise()
        gc.collect()
        grew = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        print(kinds, load.cache_info() == info, grew < 4096,
              counts == [sys.getrefcount(ld._cache[i]) for ld in loaders for i in range(100)],
              sizes == [memlens.sizeof(ld) for ld in loaders])
    """)
    # WHEN the advisor runs over it three times
    r = run_python(check, prog, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # THEN it advised both, and left no trace: the functools cache saw no
    # call, the values' refcounts and the instances' sizes (no __dict__
    # made) are as they were, and the heap did not grow
    assert r.stdout.splitlines()[-1] == "['bounded-cache', 'weakref'] True True True True"
