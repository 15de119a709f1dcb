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


# The exit code python reports for SIGINT's KeyboardInterrupt (128 + 2), as
# memlens._runner.EXIT_INTERRUPTED: not imported from there, since Ctrl-C
# may come during that very import.
_EXIT_INTERRUPTED = 130


def main(argv=None):
    """Entry point of the console script; returns the exit code."""
    if argv is None:
        argv = sys.argv[1:]
    # Every import happens inside the try: `import memlens` loads only the
    # C engine, so a Ctrl-C from the first moment memlens's code runs ends
    # as one line and 130, never as a traceback of memlens's startup.
    command = [None]
    try:
        return _main(argv, command)
    except KeyboardInterrupt:
        prog = "memlens" if command[0] is None else f"memlens {command[0]}"
        sys.stderr.write(f"{prog}: interrupted\n")
        return _EXIT_INTERRUPTED


def _main(argv, command):
    from memlens.cli import run
    from memlens.cli.common import UsageError

    try:
        parser, program_parsers = _parser()
        if argv and argv[0] in program_parsers:
            command[0] = argv[0]
            # The program's own options must not reach argparse.
            opts, module, script, code, rest = run.split_argv(argv[1:])
            args, unknown = parser.parse_known_args([argv[0]] + opts)
            if unknown:
                program_parsers[argv[0]].error(f"unrecognized arguments: {' '.join(unknown)}")
            args.module = module if module is not None else args.module
            args.code = code
            args.script = script
            args.args = rest
        else:
            args = parser.parse_args(argv)
            if args.command is None:
                parser.print_help(sys.stderr)
                return 2
            command[0] = args.command
        return args.func(args)
    except UsageError as e:
        prog = "memlens" if command[0] is None else f"memlens {command[0]}"
        sys.stderr.write(f"{prog}: error: {e}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
