import pytest

import memlens


def test_core_is_the_c_extension():
    assert memlens._core.__file__.endswith(".so")
    assert memlens.__version__


def test_import_loads_only_the_engine_and_names_arrive_on_first_use(run_ok):
    # GIVEN a fresh interpreter
    out = run_ok("""\
        import sys
        before = set(sys.modules)
        import memlens
        print(sorted(set(sys.modules) - before))
        # WHEN a submodule named like its function is imported first
        from memlens.census import census
        import memlens.advise
        print(memlens.census is census, callable(memlens.advise), memlens.advise.__module__)
        ns = {}
        exec("from memlens import *", ns)
        print(sorted(set(memlens.__all__) - set(ns)), "deep_size" in dir(memlens), memlens.Record.__name__)
    """)
    # THEN import memlens loads the C engine only; the functions stay the
    # functions; every public name is there
    assert out.splitlines() == ["['memlens', 'memlens._core']", "True True memlens.advise", "[] True Record"]


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        memlens.no_such_name
