"""memtrace's pytest plugin: ``pytest --memtrace`` records each test's body
into its own capture (memtrace.Tracker), prints the tests with the highest
peak memory at the end, and enforces two markers::

    @pytest.mark.limit_memory("24 MB")   # fail when the peak is over 24 MB
    @pytest.mark.limit_leaks("1 MB")     # fail when > 1 MB is left allocated

pytest finds the plugin through the ``pytest11`` entry point of the
memtrace distribution (the build writes its ``.dist-info`` next to the
package); ``-p memtrace.pytest_plugin`` loads it by hand. Without
``--memtrace`` it does nothing but declare the markers, which are then not
enforced (as with pytest-memray). See docs/pytest.md.

What a test is measured on: tracing starts just before pytest calls the
test function and stops when it returns, after the fixtures' setup and
before their teardown (for other items, unittest.TestCase methods, async
tests, doctests: around their runtest(), which for a TestCase includes its
setUp and tearDown). The peak is the high-water mark of the memory
allocated in that window and not yet freed; memory that existed before
(fixtures, imports, caches) is not counted, and freeing it does not lower
the count. What is leaked is what the window allocated and did not free.
Each capture is read once, with ``memtrace report --json``.
"""
import functools
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

import memtrace

_HERE = __file__
# Sites named in a failure message, and frames shown of each one's stack.
_SITES = 5
_FRAMES = 12

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6,
          "g": 10**9, "gb": 10**9, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?\s*([A-Za-z]*)\s*\Z")


def parse_size(text):
    """Bytes in a size such as "24 MB", "512MB", "1.5GiB" or 1000000: a
    number and an optional unit, B, K/KB, M/MB, G/GB (powers of 1000) or
    KiB, MiB, GiB (powers of 1024), any case, as `memtrace report
    --fail-over` reads them (a space before the unit is allowed here).
    Raises ValueError naming what it could not read."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if not text >= 0 or text >= 2**64:  # negative, NaN, too large
            raise ValueError(f"not a size: {text!r}")
        return int(text)
    m = _SIZE_RE.match(text) if isinstance(text, str) else None
    factor = _UNITS.get(m.group(3).lower()) if m else None
    if factor is None:
        raise ValueError(f"not a size such as '24 MB', '512MB' or '1.5GiB': {text!r}")
    value = float(m.group(1) + ("e" + m.group(2) if m.group(2) else "")) * factor
    if value >= 2**64:
        raise ValueError(f"size too large: {text!r}")
    return int(value)


def format_size(n):
    """n bytes as memtrace's reports write it: "977.7 KiB", "512 B"."""
    if n < 1024:
        return f"{n} B"
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    v, u = float(n), 0
    while v >= 1024.0 and u < 6:
        v /= 1024.0
        u += 1
    if v >= 1023.95 and u < 6:  # "1024.0 KiB" is "1.0 MiB"
        v /= 1024.0
        u += 1
    return f"{v:.1f} {units[u]}"


# ---- Options and markers ------------------------------------------------------

def pytest_addoption(parser):
    group = parser.getgroup("memtrace", "memory profiling with memtrace")
    group.addoption("--memtrace", action="store_true", default=None,
                    help="record the memory each test allocates, enforce the "
                         "limit_memory and limit_leaks markers, and list the "
                         "tests with the highest peak at the end")
    group.addoption("--memtrace-bin-dir", metavar="DIR", default=None,
                    help="keep each test's capture in DIR (created if needed; "
                         "implies --memtrace). Default: a temporary directory, "
                         "removed at the end")
    group.addoption("--memtrace-most-allocations", metavar="N", type=int, default=None,
                    help="how many tests the summary lists, highest peak first "
                         "(0: all; default 5)")
    group.addoption("--hide-memtrace-summary", action="store_true", default=None,
                    help="no summary at the end")
    group.addoption("--memtrace-native", action="store_true", default=False,
                    help="record native (C/C++) frames too")
    group.addoption("--memtrace-trace-python-allocators", action="store_true",
                    default=False,
                    help="record every PyMem/PyObject allocation (pymalloc) too")
    parser.addini("memtrace", "profile each test with memtrace (as --memtrace)",
                  type="bool", default=False)
    parser.addini("memtrace_most_allocations",
                  "how many tests memtrace's summary lists (0: all)", default="5")
    parser.addini("hide_memtrace_summary", "no memtrace summary at the end",
                  type="bool", default=False)


def _enabled(config):
    return bool(config.getoption("memtrace") or config.getoption("memtrace_bin_dir")
                or config.getini("memtrace"))


def pytest_configure(config):
    # Declared even without --memtrace, so that --strict-markers accepts them.
    config.addinivalue_line(
        "markers", "limit_memory(size): with --memtrace, fail the test when the "
        "peak memory of its body is over size ('24 MB', '1.5GiB')")
    config.addinivalue_line(
        "markers", "limit_leaks(size): with --memtrace, fail the test when its "
        "body leaves more than size allocated ('1 MB')")
    if not _enabled(config):
        return
    config.pluginmanager.register(_Profiler(config), "memtrace-profiler")


class _Profiler:
    """Records and checks each test of this process; in an xdist controller
    (which runs no test) gathers the workers' results for the summary."""

    def __init__(self, config):
        self.config = config
        self.native = config.getoption("memtrace_native")
        self.pyalloc = config.getoption("memtrace_trace_python_allocators")
        self.bin_dir = config.getoption("memtrace_bin_dir")
        if self.bin_dir:
            self.bin_dir = os.path.abspath(self.bin_dir)
        # An xdist worker takes the directory as the controller resolved it
        # (a worker may run elsewhere).
        self.bin_dir = getattr(config, "workerinput", {}).get("memtrace_bin_dir",
                                                              self.bin_dir)
        self.tmp_dir = None       # made at the first test when not kept
        self.results = []         # one dict per test profiled (see result())
        self.problems = []        # lines for the summary: captures not read
        try:
            from . import _memtrace
            memtrace._find("MEMTRACE")
            memtrace._find("PRELOAD")
        except (ImportError, memtrace.Error) as e:
            raise pytest.UsageError(f"--memtrace: memtrace cannot run in this "
                                    f"interpreter: {e}") from None
        if _memtrace.active():
            raise pytest.UsageError(
                "--memtrace: this pytest is already traced as a whole (memtrace "
                "run); profile each test or the whole run, not both")
        if self.bin_dir:
            try:
                os.makedirs(self.bin_dir, exist_ok=True)
            except OSError as e:
                raise pytest.UsageError(
                    f"--memtrace-bin-dir {self.bin_dir}: {e.strerror}") from None

    # ---- Where captures go -------------------------------------------------

    def capture_path(self, nodeid):
        """DIR/<readable test id>-<hash>.bin: the hash keeps two ids that read
        the same apart (and workers never collide: each test runs once)."""
        if self.bin_dir:
            where = self.bin_dir
        else:
            if self.tmp_dir is None:
                self.tmp_dir = tempfile.mkdtemp(prefix="memtrace-pytest-")
            where = self.tmp_dir
        name = re.sub(r"[^A-Za-z0-9_.\-\[\]]+", "_", nodeid.replace("::", "-"))[:120]
        digest = hashlib.sha1(nodeid.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        return os.path.join(where, f"{name}-{digest}.bin")

    def pytest_unconfigure(self, config):
        if self.tmp_dir:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)

    # ---- One test ------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        # A limit that cannot be read is the test's error, said in one line.
        try:
            _limits(item)
        except ValueError as e:
            pytest.fail(f"memtrace: {e}", pytrace=False)

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_call(self, item):
        # Items other than plain test functions (unittest.TestCase methods,
        # async tests, doctests...): their whole runtest() is traced.
        if _plain_function(item):
            yield  # pytest_pyfunc_call wraps the test function itself
            return
        runtest = item.runtest
        profiler = self

        def memtrace_runtest():
            return profiler.run(item, runtest, (), {})

        item.runtest = memtrace_runtest
        try:
            yield
        finally:
            del item.runtest  # the class's method again

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_pyfunc_call(self, pyfuncitem):
        # pytest calls pyfuncitem.obj with the fixtures' values: for this
        # call, obj is the test function wrapped in run() below.
        if not _plain_function(pyfuncitem):
            yield
            return
        func = pyfuncitem.obj
        profiler = self

        @functools.wraps(func)
        def memtrace_profiled(*args, **kwargs):
            return profiler.run(pyfuncitem, func, args, kwargs)

        pyfuncitem.obj = memtrace_profiled
        try:
            yield
        finally:
            pyfuncitem.obj = func

    def run(self, item, func, args, kwargs):
        """Runs func (the test function, or the item's own runtest) traced
        into its own capture, then reads the capture and fails the test
        when a limit is passed. This frame is the root of the recorded
        stacks: they start at func."""
        path = self.capture_path(item.nodeid)
        tracker = memtrace.Tracker(path, native=self.native,
                                   trace_python_allocators=self.pyalloc, force=True,
                                   _stack_root=None if self.native else _ROOT)
        try:
            tracker.start()
        except (memtrace.Error, OSError) as e:
            self.problems.append(f"{item.nodeid}: not profiled: {e}")
            return func(*args, **kwargs)
        passed = False
        try:
            result = func(*args, **kwargs)
            passed = True
        finally:
            tracker.stop()
            try:
                message = self.check(item, path, enforce=passed)
            finally:
                if not self.bin_dir:
                    _unlink(path)  # the temporary directory stays small
        if message:
            pytest.fail(message, pytrace=False)
        return result

    def check(self, item, path, enforce):
        """Reads the capture for the summary and, when enforce, checks the
        limits. Returns the failure message, or None."""
        limits = _limits(item) if enforce else {}
        # One read: the view the limits need (the leaks view when only
        # limit_leaks is set); the other one only to explain a failure.
        view = "leaks" if "limit_leaks" in limits and "limit_memory" not in limits else "peak"
        try:
            data = _read(path, view)
        except memtrace.Error as e:
            self.problems.append(f"{item.nodeid}: {e}")
            if limits:
                return f"memtrace: cannot check {', '.join(sorted(limits))}: {e}"
            return None
        self.results.append(self.result(item.nodeid, data, path))
        if data.get("warning"):
            self.problems.append(f"{item.nodeid}: warning: {data['warning']}")
        failures = []
        for name, (text, limit) in sorted(limits.items()):
            if name == "limit_memory":
                got, what, want = data["peak_bytes"], "peak memory", "peak"
            else:
                got, what, want = (data["current_bytes"],
                                   "memory left allocated at the end", "leaks")
            if got <= limit:
                continue
            if want != view:
                try:
                    data_view = _read(path, want)
                except memtrace.Error as e:
                    data_view = {"top": [], "error": str(e)}
            else:
                data_view = data
            failures.append(self.message(name, text, limit, got, what, want,
                                         data_view, path))
        return "\n\n".join(failures) or None

    def result(self, nodeid, data, path):
        top = data.get("top") or []
        site = None
        if top:
            s = top[0]["site"]
            site = [self.where(s), s.get("function", "?"), top[0]["bytes"],
                    "left allocated" if data.get("view") == "leaks" else "at the peak"]
        return {"nodeid": nodeid, "peak": data["peak_bytes"],
                "leaked": data["current_bytes"], "allocations": data["total_allocations"],
                "allocated": data["total_bytes_allocated"], "site": site,
                "capture": path if self.bin_dir else None}

    def where(self, frame):
        """file:line, the file relative to pytest's rootdir when under it."""
        file = frame.get("file") or "?"
        root = str(getattr(self.config, "rootpath", None) or self.config.rootdir)
        if os.path.isabs(file) and file.startswith(root.rstrip(os.sep) + os.sep):
            file = os.path.relpath(file, root)
        return f"{file}:{frame.get('line', 0)}"

    def message(self, name, text, limit, got, what, view, data, path):
        lines = [f"memtrace: {what} {format_size(got)} ({got} bytes) is over "
                 f"{name}({text!r}), {format_size(limit)} ({limit} bytes)"]
        top = data.get("top") or []
        if data.get("error"):
            lines.append(f"(the sites could not be read: {data['error']})")
        elif top:
            when = "at the peak" if view == "peak" else "left allocated at the end"
            shown = len(top)
            of = data.get("sites", shown)
            lines.append(f"Top allocation sites {when}"
                         + (f" ({shown} of {of}):" if of > shown else ":"))
            for i, e in enumerate(top, 1):
                n = e["count"]
                s = e["site"]
                lines.append(f"  #{i} {format_size(e['bytes'])} in {n} allocation"
                             f"{'' if n == 1 else 's'} at {self.where(s)}, in "
                             f"{s.get('function', '?')}")
                stack = e.get("stack") or []
                # With native frames the recorded stacks are whole: shown
                # up to the plugin's own frame, like the Python-only ones.
                ours = [i for i, fr in enumerate(stack) if fr.get("file") == _HERE]
                if ours:
                    stack = stack[:ours[0]]
                for fr in stack[:_FRAMES]:
                    lines.append(f"       {self.where(fr)}, in {fr.get('function', '?')}")
                if len(stack) > _FRAMES or e.get("stack_truncated"):
                    lines.append("       ...")
        if self.bin_dir:
            lines.append(f"Capture: {path}")
        return "\n".join(lines)

    # ---- Results across xdist workers ---------------------------------------

    def pytest_sessionfinish(self, session):
        out = getattr(self.config, "workeroutput", None)
        if out is not None:  # an xdist worker: hand the results over
            out["memtrace"] = json.dumps({"results": self.results,
                                          "problems": self.problems})

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        node.workerinput["memtrace_bin_dir"] = self.bin_dir

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        data = getattr(node, "workeroutput", {}).get("memtrace")
        if data:
            data = json.loads(data)
            self.results.extend(data["results"])
            self.problems.extend(data["problems"])

    # ---- The summary -----------------------------------------------------------

    def pytest_report_header(self, config):
        where = self.bin_dir or "a temporary directory"
        return [f"memtrace: profiling each test's body; captures in {where}"]

    def pytest_terminal_summary(self, terminalreporter):
        if hasattr(self.config, "workerinput"):
            return
        hide = self.config.getoption("hide_memtrace_summary")
        if hide is None:
            hide = self.config.getini("hide_memtrace_summary")
        if hide or (not self.results and not self.problems):
            return
        most = self.config.getoption("memtrace_most_allocations")
        if most is None:
            try:
                most = int(self.config.getini("memtrace_most_allocations"))
            except ValueError:
                most = 5
        tr = terminalreporter
        tr.write_sep("=", "memtrace: memory by test")
        ranked = sorted(self.results, key=lambda r: (-r["peak"], r["nodeid"]))
        shown = ranked if most <= 0 else ranked[:most]
        if shown:
            which = (f"All {len(ranked)} tests profiled, highest peak first"
                     if len(shown) == len(ranked) else
                     f"The {len(shown)} of {len(ranked)} tests profiled with the highest peak")
            tr.write_line(f"{which} (memory allocated by the test body):")
            tr.write_line(f"{'peak':>10} {'leaked':>10} {'allocations':>12}  test")
            for r in shown:
                tr.write_line(f"{format_size(r['peak']):>10} {format_size(r['leaked']):>10} "
                              f"{r['allocations']:>12}  {r['nodeid']}")
                if r.get("site"):
                    where, func, size, when = r["site"]
                    tr.write_line(f"{'':>36}biggest {when}: {format_size(size)} "
                                  f"at {where}, in {func}")
        for line in self.problems:
            tr.write_line(f"memtrace: {line}")
        if self.bin_dir and shown:
            tr.write_line(f"Captures in {self.bin_dir}: read one with `memtrace report "
                          "FILE` or `memtrace flamegraph FILE`")


# Recorded stacks stop at _Profiler.run, which calls the test function:
# pytest's own frames around each test are left out.
_ROOT = _Profiler.run.__code__


def _plain_function(item):
    """True for a test function that pytest itself calls (through
    pytest_pyfunc_call), synchronous: the plugin wraps the function."""
    if not isinstance(item, pytest.Function) or \
            type(item).runtest is not pytest.Function.runtest:
        return False
    func = getattr(item, "obj", None)
    return not (inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func))


def _limits(item):
    """{marker name: (its argument, bytes)} for the test's limit markers.
    Raises ValueError for a marker used wrongly."""
    out = {}
    for name in ("limit_memory", "limit_leaks"):
        mark = item.get_closest_marker(name)
        if mark is None:
            continue
        args = list(mark.args)
        if "size" in mark.kwargs:
            args.append(mark.kwargs["size"])
        extra = set(mark.kwargs) - {"size"}
        if len(args) != 1 or extra:
            raise ValueError(f"{name} takes one size, such as {name}('24 MB')")
        try:
            out[name] = (args[0], parse_size(args[0]))
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    return out


def _read(path, view):
    """`memtrace report PATH --json` (the peak view, or the leaks view)."""
    cmd = [memtrace._find("MEMTRACE"), "report", path, "--json", "--top", str(_SITES)]
    if view == "leaks":
        cmd.append("--leaks")
    cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, universal_newlines=True)
    if cp.returncode != 0:
        raise memtrace.Error(cp.stderr.strip() or f"memtrace report exited "
                                                  f"{cp.returncode}")
    try:
        return json.loads(cp.stdout)
    except ValueError as e:
        raise memtrace.Error(f"memtrace report {path}: bad JSON: {e}") from None


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass
