"""Brendan Gregg's folded stacks: ``outer;...;inner bytes`` per line, the
input of flamegraph.pl and speedscope."""

import os

__all__ = ["render"]


def _frame(f):
    # ';' separates frames and the last space separates the value.
    name = f"{f.function} ({os.path.basename(f.filename)}:{f.lineno})"
    return name.replace(";", ",").replace("\n", " ")


def render(cap, view="peak"):
    acc = {}
    for s, size, _count in cap.view(view):
        key = ";".join(_frame(f) for f in reversed(s.frames)) or "<no Python frame>"
        acc[key] = acc.get(key, 0) + size
    return "".join(f"{k} {v}\n" for k, v in sorted(acc.items()) if v > 0)
