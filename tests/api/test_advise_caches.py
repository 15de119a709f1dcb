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
    if a.kind == "weakref":
        print(repr((a.target_name, a.saving, a.count, a.edit, a.blockers, a.patch)))
"""


def _weakref_advice(run_python, path):
    r = run_python("-c", ADVISE, path, cwd=path.parent)
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
