"""The ``memlens`` command: one module per subcommand (run, report, plot).

Each module has ``add_parser(subparsers)`` and ``main(args) -> int``.
Usage errors exit with code 2 and one line on stderr, never a traceback.
"""
