"""memlens.cli.COMMANDS: the one table the parser is built from."""

import contextlib
import io

import pytest

from memlens import cli
from memlens.__main__ import _parser, main


def test_every_registered_command_is_in_the_parser():
    parser, program_parsers = _parser()
    assert [c.name for c in cli.COMMANDS] == ["run", "advise", "report", "plot", "diff"]
    assert sorted(program_parsers) == ["advise", "run"]
    help_text = parser.format_help()
    for c in cli.COMMANDS:
        assert c.name in help_text


@pytest.mark.parametrize("name", [c.name for c in cli.COMMANDS])
def test_every_command_has_help(name):
    # WHEN `memlens NAME --help` runs
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        main([name, "--help"])
    # THEN it prints that command's usage and exits 0
    assert e.value.code == 0
    assert out.getvalue().startswith(f"usage: memlens {name} ")
    module = cli.load(next(c for c in cli.COMMANDS if c.name == name))
    assert callable(module.add_parser) and callable(module.main)


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("usage: memlens ")
