"""Report renderers of memlens captures.

Each renderer is a plain function from a :class:`~memlens.report.model.Capture`
(the data model, buildable by hand in tests) to text, JSON, HTML, folded
stacks or pprof bytes.  :func:`~memlens.report.model.load` reads a capture
file into the model.
"""

from memlens.report.model import VIEWS, Capture, Frame, Sample, StackStat, load

__all__ = ["VIEWS", "Capture", "Frame", "Sample", "StackStat", "load"]
