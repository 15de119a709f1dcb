"""The memlens pytest plugin (``pytest --memlens``), in four parts:

* :mod:`~memlens.pytest.plugin` -- the hooks, options and ini settings
  (the module the ``pytest11`` entry point names);
* :mod:`~memlens.pytest.limits` -- sizes, tolerances and the limits that
  apply to one test (markers over command line over ini);
* :mod:`~memlens.pytest.measure` -- the tracer around one test, frame
  filters, and the figures it gives;
* :mod:`~memlens.pytest.summary` -- failure text, the suite summary, the
  JSON summary and the baseline of the regression gate.

Nothing here imports pytest except ``plugin``; the other three are plain
functions and result types, tested without running pytest.
"""
