"""The pytest plugin: ``pytest --memlens`` (entry point ``pytest11``:
``memlens = memlens.pytest.plugin``).

Without ``--memlens`` only :func:`pytest_addoption` and
:func:`pytest_configure` run (the markers are registered, so that
``--strict-markers`` accepts them); everything else lives in
:class:`MemlensPlugin`, registered only with ``--memlens``.  Under
pytest-xdist each worker measures its own tests and hands its rows to the
controller in ``workeroutput``; the controller prints the summary and
writes the JSON and the baseline.
"""

import importlib.util
import inspect
import json
import os
import resource
import sys

import pytest

from memlens.pytest import limits as limits_mod
from memlens.pytest import measure, summary

__all__ = ["pytest_addoption", "pytest_configure", "MemlensPlugin"]

_MARKERS = (
    "limit_memory(size, ignore=None): fail the test (with --memlens) if its peak traced memory "
    "exceeds size ('24 MB', '1 GiB', bytes as an int)",
    "limit_leaks(size, runs=1, ignore=None): fail the test (with --memlens) if it leaves more than "
    "size allocated after gc.collect(); runs=N: smallest growth of N runs after a warm-up",
)
# Code whose allocations never count when it is the innermost frame: pytest
# itself (its capture, reports, fixtures machinery), pluggy, xdist and
# execnet (the worker's messages), and memlens (this plugin).
_OWN_PACKAGES = ("_pytest", "pytest", "pluggy", "xdist", "execnet", "memlens")


def pytest_addoption(parser):
    group = parser.getgroup("memlens", "memory limits and leak checks (memlens)")
    group.addoption("--memlens", action="store_true", default=False,
                    help="measure every test's peak and leaks with memlens's tracer; enforce the "
                         "limit_memory / limit_leaks markers")
    group.addoption("--memlens-scope", choices=tuple(summary.SCOPES), default="call",
                    help="what a test's figures cover: call = the test body (default), fixtures = "
                         "the body plus its fixtures' setup and teardown")
    group.addoption("--memlens-limit-memory", metavar="SIZE", default=None,
                    help="limit_memory for every test without the marker (overrides the ini "
                         "memlens_limit_memory)")
    group.addoption("--memlens-limit-leaks", metavar="SIZE", default=None,
                    help="limit_leaks for every test without the marker (overrides the ini "
                         "memlens_limit_leaks)")
    group.addoption("--memlens-ignore", metavar="PATTERN", action="append", default=None,
                    help="leave out stacks with a frame whose file matches this fnmatch pattern "
                         "(repeatable; adds to the ini memlens_ignore)")
    group.addoption("--memlens-top", metavar="N", type=int, default=5,
                    help="tests per table of the summary (default 5)")
    group.addoption("--memlens-json", metavar="PATH", default=None,
                    help="write the per-test figures and the suite peak as JSON")
    group.addoption("--memlens-baseline", metavar="PATH", default=None,
                    help="write per-test peaks and top lines here (meant to be committed); with "
                         "--memlens-fail-on-increase, read it and compare instead")
    group.addoption("--memlens-fail-on-increase", metavar="TOLERANCE", default=None,
                    help="fail tests whose peak grew beyond the baseline by more than TOLERANCE "
                         "('10%%' or a size like '1 MB')")
    parser.addini("memlens_limit_memory", "limit_memory for every test without the marker", default="")
    parser.addini("memlens_limit_leaks", "limit_leaks for every test without the marker", default="")
    parser.addini("memlens_ignore", "fnmatch patterns of files whose frames leave a stack out",
                  type="linelist", default=[])


def pytest_configure(config):
    for line in _MARKERS:
        config.addinivalue_line("markers", line)
    if config.getoption("memlens"):
        config.pluginmanager.register(MemlensPlugin(config), "memlens-session")


def _package_dirs(names):
    dirs = []
    for name in names:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None)
        if origin is None:
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                spec = None
            origin = spec.origin if spec is not None else None
        if origin:
            dirs.append(os.path.dirname(os.path.abspath(origin)))
    return tuple(dirs)


def _classify(report):
    """The outcome a report gives its test, or None (a passing setup or
    teardown says nothing)."""
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if report.failed:
            return "failed"
        if report.skipped:
            return "xfailed" if xfail else "skipped"
        return "xpassed" if xfail else "passed"
    if report.failed:
        return "error"
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return None


_RANK = {"passed": 0, "skipped": 1, "xfailed": 1, "xpassed": 1, "failed": 2, "error": 3}


def _usage(message):
    return pytest.UsageError(f"memlens: {message}")


class MemlensPlugin:
    """The hooks that do the work, registered with ``--memlens``."""

    def __init__(self, config):
        self.config = config
        opt = config.getoption
        self.scope = opt("memlens_scope")
        self.top = opt("memlens_top")
        if self.top < 1:
            raise _usage(f"--memlens-top must be at least 1, got {self.top}")
        self.rootdir = str(config.rootpath)
        self.worker = getattr(config, "workerinput", {}).get("workerid")
        self.defaults = self._defaults(config)
        self.own_dirs = _package_dirs(_OWN_PACKAGES)
        self.json_path = self._path(opt("memlens_json"))
        self.baseline_path = self._path(opt("memlens_baseline"))
        self.tolerance = None
        self.baseline = None
        tolerance = opt("memlens_fail_on_increase")
        if tolerance is not None:
            try:
                self.tolerance = limits_mod.parse_tolerance(tolerance)
            except ValueError as e:
                raise _usage(f"--memlens-fail-on-increase: {e}") from None
            if self.baseline_path is None:
                raise _usage("--memlens-fail-on-increase needs --memlens-baseline=PATH to compare with")
            try:
                self.baseline = summary.read_baseline(self.baseline_path)
            except summary.BaselineError as e:
                raise _usage(f"{e} (write one first: --memlens-baseline=PATH without "
                             "--memlens-fail-on-increase)") from None
        for path, what in ((self.json_path, "--memlens-json"),
                           (None if self.tolerance else self.baseline_path, "--memlens-baseline")):
            if path is not None and self.worker is None:
                from memlens.cli.common import UsageError, check_output_path

                try:
                    check_output_path(path)
                except UsageError as e:
                    raise _usage(f"{what}: {e}") from None
        self._limits = {}      # nodeid -> Limits (from collection)
        self._bad = {}         # nodeid -> usage error met on an xdist worker
        self._running = {}     # nodeid -> Measurement in progress
        self._figures = {}     # nodeid -> Figures (None: not measured)
        self._rows = {}        # nodeid -> JSON row
        self._outcomes = {}    # nodeid -> outcome, from the reports this process saw
        self._rss = {}         # process -> peak RSS bytes

    def _path(self, path):
        if path is None:
            return None
        return os.path.join(str(self.config.invocation_params.dir), os.path.expanduser(path))

    @staticmethod
    def _defaults(config):
        values = {}
        for name in ("memory", "leaks"):
            text = config.getoption(f"memlens_limit_{name}")
            source = f"--memlens-limit-{name}"
            if text is None:
                text = config.getini(f"memlens_limit_{name}") or None
                source = f"memlens_limit_{name} (ini)"
            size = None
            if text is not None:
                try:
                    size = limits_mod.parse_size(text.strip())
                except ValueError as e:
                    raise _usage(f"{source}: {e}") from None
            values[name] = (size, text)
        ignore = tuple(config.getoption("memlens_ignore") or ()) + tuple(config.getini("memlens_ignore"))
        return limits_mod.Limits(memory=values["memory"][0], leaks=values["leaks"][0],
                                 memory_ignore=ignore, leaks_ignore=ignore,
                                 memory_text=values["memory"][1], leaks_text=values["leaks"][1])

    def _limits_of(self, item):
        limits = self._limits.get(item.nodeid)
        if limits is None:
            try:
                limits = limits_mod.resolve(item.get_closest_marker("limit_memory"),
                                            item.get_closest_marker("limit_leaks"), self.defaults)
            except ValueError as e:
                raise _usage(f"{item.nodeid}: {e}") from None
            self._limits[item.nodeid] = limits
        return limits

    def _own(self, filename):
        return filename.startswith(tuple(os.path.join(d, "") for d in self.own_dirs))

    # ---- collection: a bad marker is a usage error before anything runs ----

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        for item in items:
            try:
                self._limits_of(item)
            except pytest.UsageError as e:
                if self.worker is None:
                    raise
                # An xdist worker cannot stop the session (the controller
                # would see a crashed worker): the test errors at setup
                # with the same line instead.
                self._bad[item.nodeid] = str(e)

    # ---- measuring ------------------------------------------------------------

    def _begin(self, item):
        if item.nodeid in self._bad:
            return
        limits = self._limits_of(item)
        m = measure.Measurement(
            self.scope,
            measure.FrameFilter(self.own_dirs, limits.memory_ignore),
            measure.FrameFilter(self.own_dirs, limits.leaks_ignore),
            full_gc=limits.leaks is not None,
        )
        self._running[item.nodeid] = m
        m.start()

    def _end(self, item):
        m = self._running.pop(item.nodeid, None)
        if m is None:
            return
        figures = m.finish()
        self._figures[item.nodeid] = figures
        self._rows[item.nodeid] = summary.result_row(item.nodeid, figures, self._limits_of(item),
                                                     self.rootdir, self.worker)

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item):
        if self.scope == "fixtures":
            self._begin(item)
        outcome = yield
        if item.nodeid in self._bad:
            # after the other setup hooks, whose teardown expects them run
            error = pytest.fail.Exception(self._bad[item.nodeid], pytrace=False)
            if not hasattr(outcome, "force_exception"):  # pluggy < 1.1
                raise error
            outcome.force_exception(error)

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item):
        if self.scope == "call":
            self._begin(item)
        try:
            yield
        finally:
            if self.scope == "call":
                self._end(item)

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item):
        try:
            yield
        finally:
            if self.scope == "fixtures":
                self._end(item)

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem):
        """Slope mode: the warm-up and all measured runs but the last (which
        pytest's own pytest_pyfunc_call makes), each followed by a
        checkpoint of what stays allocated."""
        m = self._running.get(pyfuncitem.nodeid)
        if m is None or not m.active:
            return None
        runs = self._limits_of(pyfuncitem).runs
        if runs <= 1:
            return None
        func = pyfuncitem.obj
        if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
            return None  # not run by pytest itself: no repeated runs (see docs/pytest.md)
        kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        for _ in range(runs):
            func(**kwargs)
            m.checkpoint()
        return None

    # ---- verdicts -------------------------------------------------------------

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when != ("call" if self.scope == "call" else "teardown"):
            return
        figures = self._figures.get(item.nodeid)
        if figures is None or not report.passed or hasattr(report, "wasxfail"):
            return
        if self._outcomes.get(item.nodeid) not in (None, "passed"):
            return  # the body failed: what its traceback keeps alive is no leak
        limits = self._limits_of(item)
        broken = summary.check(limits, figures)
        grown = old_peak = None
        old = self.baseline.get(item.nodeid) if self.baseline is not None else None
        if old is not None and figures.peak > self.tolerance.allowed(old["peak_bytes"]):
            old_peak = old["peak_bytes"]
            new_lines = {f"{summary.short_path(f, self.rootdir)}:{n}": b for f, n, b in figures.peak_lines}
            grown = summary.grown_lines(old.get("top_lines", {}), new_lines)
        if broken or grown is not None:
            report.outcome = "failed"
            report.longrepr = summary.failure_text(broken, figures, self.rootdir, self._own, grown,
                                                   self.tolerance, old_peak)

    def pytest_runtest_logreport(self, report):
        outcome = _classify(report)
        if outcome is None:
            self._outcomes.setdefault(report.nodeid, "passed")
            return
        old = self._outcomes.get(report.nodeid)
        if old is None or old == "passed" or _RANK[outcome] > _RANK[old]:
            self._outcomes[report.nodeid] = outcome

    # ---- the suite's end --------------------------------------------------------

    def _own_rss(self):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        """xdist controller: take a finished worker's rows."""
        data = getattr(node, "workeroutput", {}).get("memlens")
        if data:
            self._rows.update(data["rows"])
            self._rss[data["worker"]] = data["rss"]

    def pytest_sessionfinish(self, session):
        if self.worker is not None:
            self.config.workeroutput["memlens"] = {"rows": self._rows, "worker": self.worker,
                                                   "rss": self._own_rss()}
            return
        if self._rows and not self._rss:
            self._rss["main"] = self._own_rss()
        for nodeid, row in self._rows.items():
            row["outcome"] = self._outcomes.get(nodeid, row.get("outcome"))
        self._written = []
        if self.json_path is not None:
            doc = summary.json_summary(list(self._rows.values()), self.scope, self._rss)
            with open(self.json_path, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1)
                f.write("\n")
            self._written.append(f"summary JSON: {self.json_path}")
        if self.baseline_path is not None and self.tolerance is None:
            summary.write_baseline(self.baseline_path, list(self._rows.values()))
            self._written.append(f"baseline: {self.baseline_path}")

    def pytest_terminal_summary(self, terminalreporter):
        if self.worker is not None:
            return
        terminalreporter.write_sep("=", "memlens")
        for line in summary.terminal_lines(list(self._rows.values()), self.top, self.scope, self._rss):
            terminalreporter.write_line(line)
        for line in getattr(self, "_written", ()):
            terminalreporter.write_line(f"memlens: wrote {line}")
