"""Sizes, tolerances and marker resolution (no pytest run)."""

import pytest

from memlens.pytest.limits import Limits, parse_size, parse_tolerance, resolve


class Mark:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


@pytest.mark.parametrize("text, expected", [
    (0, 0), (123, 123), ("123", 123), ("512 B", 512), ("24 MB", 24_000_000), ("24MB", 24_000_000),
    ("1.5 KB", 1500), ("1 KiB", 1024), ("24 MiB", 24 << 20), ("2 GiB", 2 << 30), ("1 GB", 10 ** 9),
    ("3 mb", 3_000_000), (" 7 kib ", 7 * 1024),
])
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "MB", "24 XB", "-1 MB", -1, 1.5, True, None, "1e3", "1,000"])
def test_bad_sizes_are_one_line_value_errors(bad):
    with pytest.raises(ValueError) as e:
        parse_size(bad)
    assert "\n" not in str(e.value) and "bad size" in str(e.value)


def test_tolerances():
    assert parse_tolerance("10%").allowed(1000) == 1100
    assert parse_tolerance("0%").allowed(1000) == 1000
    assert parse_tolerance("1 KB").allowed(1000) == 2000
    assert parse_tolerance(5).allowed(1000) == 1005
    for bad in ("x%", "-5%", "ten", "nan%"):
        with pytest.raises(ValueError, match="bad tolerance"):
            parse_tolerance(bad)


def test_markers_override_defaults_and_add_ignores():
    defaults = Limits(memory=100, leaks=10, memory_ignore=("a/*",), leaks_ignore=("a/*",),
                      memory_text="100", leaks_text="10")
    assert resolve(None, None, defaults) == defaults
    lim = resolve(Mark("1 MB", ignore=["re/*"]), Mark("2 KiB", runs=3), defaults)
    assert (lim.memory, lim.leaks, lim.runs) == (1_000_000, 2048, 3)
    assert lim.memory_ignore == ("a/*", "re/*") and lim.leaks_ignore == ("a/*",)
    assert resolve(Mark(None), None, defaults).memory is None  # limit_memory(None): no limit


@pytest.mark.parametrize("memory, leaks, message", [
    (Mark(), None, "takes one size"),
    (Mark("1 MB", runs=2), None, "unexpected keyword argument 'runs'"),
    (None, Mark("1 MB", runs=0), "runs=...) must be an int >= 1"),
    (None, Mark("1 MB", ignore=[1]), "fnmatch patterns"),
    (None, Mark("lots"), "bad size 'lots'"),
])
def test_bad_markers(memory, leaks, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(memory, leaks, Limits())


def test_pytest11_entry_point_names_the_plugin():
    # pyproject.toml registers the plugin for every pytest run once installed
    import pathlib
    import re

    text = (pathlib.Path(__file__).parents[2] / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.entry-points\.pytest11\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert section, "no [project.entry-points.pytest11] table"
    assert re.search(r'^memlens = "memlens\.pytest\.plugin"$', section.group(1), re.M)
    import memlens.pytest.plugin as plugin

    assert callable(plugin.pytest_addoption) and callable(plugin.pytest_configure)
