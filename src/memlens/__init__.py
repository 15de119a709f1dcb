"""memlens: find where a Python program's memory goes, see why it stays
alive, and cut it -- with exact numbers from a C engine."""

from memlens import _core

__version__ = "0.1.0"

__all__ = []
