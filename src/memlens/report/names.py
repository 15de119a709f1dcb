"""Names as the reports print them: the one place that makes a recorded
string (a file name, a function name, a metadata value, a class name) safe
to show, and the per-frame label cache the renderers share.

A capture is read from a file someone handed us, and a hand-built model
may hold any str, so a name may contain anything:

* :func:`escape` turns every character that a terminal or a text parser
  would act on into a visible escape: C0 controls (tab and newline too),
  DEL and C1 controls, U+2028/U+2029 (line breaks to JavaScript and some
  editors), and lone surrogates (what ``surrogateescape`` makes of bytes
  that are not UTF-8).  ``\\xNN`` stands for the byte NN of the name (C0,
  DEL, and a surrogate-escaped byte U+DC80-U+DCFF), ``\\uNNNN`` for any
  other code point (C1, U+2028/9, other lone surrogates).  The result is
  always encodable as UTF-8.  Backslashes are left alone.
* :func:`shown` also bounds a name's length for the human formats (text,
  HTML) by cutting out its middle and saying how much was cut.
* :class:`Labels` computes a label once per distinct frame, however many
  stacks repeat that frame.
"""

import os
import re
import sys

__all__ = ["MAX_NAME", "escape", "shown", "utf8", "Labels", "path_shortener"]

#: Longest name the human formats print (in characters, before escaping);
#: longer ones keep their first and last _KEEP characters.
MAX_NAME = 160
_KEEP = 70

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape_char(m):
    c = ord(m.group())
    if c < 0x80:
        return f"\\x{c:02x}"
    if 0xDC80 <= c <= 0xDCFF:  # surrogateescape: the original byte
        return f"\\x{c - 0xDC00:02x}"
    return f"\\u{c:04x}"


def escape(s, extra=None):
    """`s` with control characters, U+2028/U+2029 and lone surrogates
    escaped; `extra`, a compiled pattern of further characters to escape
    (collapsed stacks add ``;``)."""
    s = _UNSAFE.sub(_escape_char, s)
    if extra is not None:
        s = extra.sub(_escape_char, s)
    return s


_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8(s):
    """`s` as UTF-8, its lone surrogates escaped as :func:`escape` does
    (and nothing else: for formats that keep names as recorded)."""
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub(_escape_char, s).encode("utf-8")


def shown(s, limit=MAX_NAME):
    """`s` as the human formats print it: elided to `limit`, then escaped
    (each part, so that no escape is cut in two)."""
    if len(s) <= limit:
        return escape(s)
    keep = min(_KEEP, limit // 2)
    return f"{escape(s[:keep])}[...{len(s) - 2 * keep} chars...]{escape(s[-keep:])}"


class Labels:
    """``labels(frame)``: ``make(frame)``, computed once per distinct frame
    (a stack repeating one frame 25,000 times costs one label, not 25,000).
    ``labels.id(frame)`` numbers the distinct labels (equal labels, equal
    numbers; ``labels.texts[i]`` is label ``i``), for keys and sort orders
    that must not hold a string per frame of every stack."""

    def __init__(self, make):
        self._make = make
        self._labels = {}    # frame -> label
        self._ids = {}       # frame -> label number
        self._numbers = {}   # label -> label number
        self.texts = []      # label number -> label

    def __call__(self, frame):
        label = self._labels.get(frame)
        if label is None:
            label = self._labels[frame] = self._make(frame)
        return label

    def id(self, frame):
        i = self._ids.get(frame)
        if i is None:
            label = self(frame)
            i = self._numbers.get(label)
            if i is None:
                i = self._numbers[label] = len(self.texts)
                self.texts.append(label)
            self._ids[frame] = i
        return i


def path_shortener():
    """A function giving a recorded file name as the "Top lines" table
    shows it: relative to the current directory when under it
    (examples/app.py), else ".../" and the part below the deepest sys.path
    entry holding it, i.e. its import path (.../json/encoder.py), else as
    recorded (the full path stays in the JSON, HTML and pprof reports)."""
    cwd = os.getcwd()
    roots = sorted({os.path.abspath(p) for p in sys.path if p and os.path.isabs(p)},
                   key=len, reverse=True)

    def below(path, root):
        prefix = root.rstrip(os.sep) + os.sep
        return path[len(prefix):] if path.startswith(prefix) else None

    def short(filename):
        if not os.path.isabs(filename):
            return filename  # "<frozen ...>", "<string>", a relative name
        rel = below(filename, cwd)
        if rel:
            return rel
        for root in roots:
            rel = below(filename, root)
            if rel:
                return f"...{os.sep}{rel}"
        return filename

    return short
