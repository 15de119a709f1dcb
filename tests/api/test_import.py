import memlens


def test_core_is_the_c_extension():
    assert memlens._core.__file__.endswith(".so")
    assert memlens.__version__
