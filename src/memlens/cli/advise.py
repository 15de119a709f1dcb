"""``memlens advise [--min-saving BYTES] script.py [args...]``: run a
program (untraced), then print what memlens.advise() suggests for the heap
it leaves behind."""

from memlens.cli import run

__all__ = ["add_parser", "main"]


def add_parser(sub):
    p = sub.add_parser(
        "advise",
        help="run a Python program, then print memory-saving advice with exact savings",
        description="Run `script.py [args...]`, `-m module [args...]` or `-c code [args...]` as python would (no tracing), "
                    "then walk the heap it leaves behind (its module globals are still alive) and "
                    "print memlens.advise()'s suggestions to stderr: __slots__, memlens.Record, "
                    "interning, arrays, ... each with the bytes it saves.",
        usage="memlens advise [--min-saving BYTES] [--diff] (script.py | -m module | -c code) [args...]",
    )
    run.add_advise_options(p, always=True)
    p.add_argument("-m", dest="module", metavar="module", help="run a library module as a script")
    run.add_code_option(p)
    p.add_argument("script", nargs="?", help="the program to run")
    p.add_argument("args", nargs="*", help="arguments of the program")
    p.set_defaults(func=main, advise_only=True, advise=False, lines=False, rss=False,
                   output=None, frames=16, sample_bytes=0, interval=10.0, quiet=False)
    return p


def main(args):
    """`memlens run`'s steps with advise_only set: validate, run untraced,
    advise."""
    return run.main(args)
