"""The ``memlens`` command: one module per subcommand, registered in
:data:`COMMANDS`, from which ``memlens.__main__`` builds the parser.

Each module has ``add_parser(subparsers)`` and a ``main(args) -> int`` it
sets as the parser's ``func`` default; it parses and checks arguments and
calls the renderers of :mod:`memlens.report`.  Usage errors exit with code
2 and one line on stderr, never a traceback.
"""

import importlib

from memlens._util import result

__all__ = ["Command", "COMMANDS", "load"]


@result
class Command:
    """One subcommand: its ``name``, the ``module`` implementing it, and
    whether it runs a program (``script.py [args...]`` / ``-m module``),
    whose own options must not reach argparse."""

    name: str
    module: str
    runs_program: bool = False


#: The subcommands, in the order ``memlens --help`` lists them.
COMMANDS = (
    Command("run", "memlens.cli.run", runs_program=True),
    Command("advise", "memlens.cli.advise", runs_program=True),
    Command("report", "memlens.cli.report"),
    Command("plot", "memlens.cli.plot"),
    Command("diff", "memlens.cli.diff"),
)


def load(command):
    """The module of a :class:`Command`."""
    return importlib.import_module(command.module)
