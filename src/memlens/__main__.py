"""``memlens`` command line: ``memlens run|advise|report|plot ...`` and
``python -m memlens ...``."""

import sys

__all__ = ["main"]


def _parser():
    """The parser of every subcommand in memlens.cli.COMMANDS, and the
    parsers of those that run a program, by name."""
    from memlens import cli
    from memlens.cli.common import ArgumentParser

    parser = ArgumentParser(
        prog="memlens",
        description="Run a Python program and see where its memory went.",
        epilog="Run `memlens COMMAND --help` for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    program_parsers = {}
    for command in cli.COMMANDS:
        p = cli.load(command).add_parser(sub)
        if command.runs_program:
            program_parsers[command.name] = p
    return parser, program_parsers


def main(argv=None):
    """Entry point of the console script; returns the exit code."""
    from memlens._runner import EXIT_INTERRUPTED
    from memlens.cli import run
    from memlens.cli.common import UsageError

    if argv is None:
        argv = sys.argv[1:]
    prog = "memlens"
    try:
        parser, program_parsers = _parser()
        if argv and argv[0] in program_parsers:
            prog = f"memlens {argv[0]}"
            # The program's own options must not reach argparse.
            opts, module, script, rest = run.split_argv(argv[1:])
            args, unknown = parser.parse_known_args([argv[0]] + opts)
            if unknown:
                program_parsers[argv[0]].error(f"unrecognized arguments: {' '.join(unknown)}")
            args.module = module if module is not None else args.module
            args.script = script
            args.args = rest
        else:
            args = parser.parse_args(argv)
            if args.command is None:
                parser.print_help(sys.stderr)
                return 2
            prog = f"memlens {args.command}"
        return args.func(args)
    except UsageError as e:
        sys.stderr.write(f"{prog}: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
