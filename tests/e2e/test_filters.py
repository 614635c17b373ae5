"""End-to-end tests of what the reports show: --include/--exclude on a
Python program with allocations at known sites in two files of a project
and in a library under site-packages (py/filters/), the same numbers from
every reading command; memtrace's own frames (its launcher, runpy above the
program, its package, extension and preload library) in no report or
export of a script, -m, -c, --native or memtrace.Tracker capture; and the
flame graph page staying small on a capture of a million distinct stacks,
with its timeline cut to a fixed number of points."""
import csv
import io
import json
import os
import subprocess
import tempfile
import unittest

from harness import BUILD, SOURCE, memtrace
from test_cli import Capture
from make_fixtures import DEF_TICK, varint  # on sys.path through test_cli
from test_flamegraph import FG_OTHER, page_data
from test_python import PKG, base_env, load_interpreters, markers, script

FILTERS = os.path.join(os.path.abspath(SOURCE), "tests", "e2e", "py", "filters")
SITE = os.path.join(FILTERS, "site-packages")
APP = os.path.join(FILTERS, "myproj", "app.py")
STORE = os.path.join(FILTERS, "myproj", "store.py")
EXTLIB = os.path.join(SITE, "extlib", "__init__.py")
FIXTURES = os.path.join(os.path.abspath(SOURCE), "tests", "fixtures")

# The four known blocks: (function, file, bytes).
KNOWN = {
    "app": ("main", APP, 1_000_033),
    "save": ("save", STORE, 2_000_033),
    "make": ("make", EXTLIB, 4_000_033),
    "callback": ("callback", STORE, 8_000_033),
}


def interpreter():
    """A CPython the build made the extension for, or None."""
    for kind, path, _ in load_interpreters():
        if kind in ("build", "test"):
            return path
    return None


def line_of(path, marker):
    with open(path) as f:
        for n, text in enumerate(f, 1):
            if text.rstrip().endswith("# @" + marker):
                return n
    raise AssertionError(f"no @{marker} in {path}")


def known_entries(report):
    """{name: entry of report["top"]} for the known sites found."""
    out = {}
    for name, (function, file, _) in KNOWN.items():
        line = line_of(file, "app" if name == "app" else name)
        for e in report["top"]:
            s = e["site"]
            if (s["function"], s["file"], s["line"]) == (function, file, line):
                out[name] = e
    return out


def is_memtrace_frame(function, file, module=""):
    """memtrace's own frames, and runpy's (which the launcher adds above
    every program run with -m and, under --native, with any mode)."""
    base = os.path.basename(module or "")
    return (file.endswith(("/memtrace/_launch.py", "/memtrace/__init__.py"))
            or file == "<frozen runpy>" or file.endswith("/runpy.py")
            or base.startswith("libmemtrace_preload")
            or (base.startswith("_memtrace.") and "/memtrace/" in module))


def record(tmp, args, name, options=(), env=None, cwd=None):
    python = interpreter()
    out = os.path.join(tmp, name)
    cp = subprocess.run([os.path.join(BUILD, "memtrace"), "run", "-q", "-f",
                         "-o", out, *options, "--python", python, *args],
                        capture_output=True, text=True, timeout=120,
                        env=env or base_env(), cwd=cwd)
    if cp.returncode != 0:
        raise AssertionError(f"memtrace run {args}: {cp.returncode}\n{cp.stderr}")
    return out


def run_app(tmp, name="app.bin", options=()):
    return record(tmp, ["-m", "myproj.app"], name, options,
                  env=base_env(PYTHONPATH=SITE), cwd=FILTERS)


class NeedsPython:
    @classmethod
    def setUpClass(cls):
        if interpreter() is None:
            raise unittest.SkipTest("no Python extension was built")
        cls.tmp = tempfile.mkdtemp(prefix="mt-filters-")

    @classmethod
    def tearDownClass(cls):
        import shutil
        shutil.rmtree(cls.tmp, ignore_errors=True)


class Filters(NeedsPython, unittest.TestCase):
    """--include and --exclude on py/filters: the numbers of each site and
    which sites are left out are exact."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.capture = run_app(cls.tmp)

    def report(self, *filters):
        return json.loads(memtrace("report", self.capture, "--leaks", "--json",
                                   "--top", "100000", *filters).stdout)

    def assert_known(self, rep, names):
        found = known_entries(rep)
        self.assertEqual(sorted(found), sorted(names),
                         json.dumps(rep["top"][:6], indent=1))
        for name in names:
            e = found[name]
            self.assertEqual((e["bytes"], e["count"]), (KNOWN[name][2], 1), name)

    def test_no_filter(self):
        rep = self.report()
        self.assert_known(rep, ["app", "save", "make", "callback"])
        self.assertIsNone(rep["filter"])
        self.assertEqual((rep["filtered_bytes"], rep["filtered_allocations"]),
                         (0, 0))
        # The callback's stack: the library between two project frames.
        cb = known_entries(rep)["callback"]
        self.assertEqual([(f["function"], f["file"]) for f in cb["stack"]],
                         [("callback", STORE), ("run", EXTLIB), ("main", APP),
                          ("<module>", APP)])

    def test_include_keeps_stacks_through_the_project(self):
        everything = self.report()
        rep = self.report("--include", "myproj/*")
        # The library's block was asked for by the project: kept.
        self.assert_known(rep, ["app", "save", "make", "callback"])
        self.assertEqual(rep["filter"], {"include": ["myproj/*"], "exclude": []})
        for e in rep["top"]:
            self.assertTrue(any("/myproj/" in f["file"] for f in e["stack"]), e)
        # What is left out is what is not shown, to the byte.
        self.assertGreater(rep["filtered_allocations"], 0)
        self.assertEqual(rep["view_bytes"] + rep["filtered_bytes"],
                         everything["view_bytes"])
        self.assertEqual(rep["view_allocations"] + rep["filtered_allocations"],
                         everything["view_allocations"])

    def test_include_one_file(self):
        rep = self.report("--include", "store.py")
        self.assert_known(rep, ["save", "callback"])
        rep = self.report("--include", "store.py", "--include", "extlib/*")
        self.assert_known(rep, ["save", "make", "callback"])
        rep = self.report("--include", FILTERS + "/myproj/store.py")
        self.assert_known(rep, ["save", "callback"])
        # A directory stands for everything under it, wherever it is.
        rep = self.report("--include", "myproj")
        self.assert_known(rep, ["app", "save", "make", "callback"])
        rep = self.report("--include", FILTERS + "/myproj")
        self.assert_known(rep, ["app", "save", "make", "callback"])
        # A glob starting with '/' matches from the start only.
        rep = self.report("--include", "/myproj/*")
        self.assertEqual(rep["top"], [])
        rep = self.report("--include", "/myproj")
        self.assertEqual(rep["top"], [])

    def test_exclude_is_by_site(self):
        rep = self.report("--exclude", "site-packages/*")
        # The library's own block goes; the callback it made into the
        # project stays, although extlib is on its stack.
        self.assert_known(rep, ["app", "save", "callback"])
        self.assertGreaterEqual(rep["filtered_bytes"], 4_000_033)
        rep = self.report("--exclude", "*/site-packages/*", "--exclude", "app.py")
        self.assert_known(rep, ["save", "callback"])
        rep = self.report("--exclude", "extlib")
        self.assert_known(rep, ["app", "save", "callback"])

    def test_include_and_exclude(self):
        rep = self.report("--include", "myproj/*", "--exclude", "site-packages/*")
        self.assert_known(rep, ["app", "save", "callback"])
        self.assertEqual(rep["filter"], {"include": ["myproj/*"],
                                         "exclude": ["site-packages/*"]})
        text = memtrace("report", self.capture, "--leaks", "--include",
                        "myproj/*", "--exclude", "site-packages/*").stdout
        self.assertIn("Filter: --include 'myproj/*' --exclude "
                      "'site-packages/*': left out ", text)

    def test_every_command_agrees(self):
        f = ["--include", "myproj/*", "--exclude", "site-packages/*"]
        rep = self.report(*f)
        total = rep["view_bytes"]
        self.assertEqual(sum(e["bytes"] for e in rep["top"]), total)
        tree = json.loads(memtrace("tree", self.capture, "--leaks", "--json",
                                   "--top", "100000", *f).stdout)
        self.assertEqual(tree["bytes"], total)
        folded = memtrace("export", self.capture, "--format", "folded",
                          "--leaks", *f).stdout
        self.assertEqual(sum(int(line.rsplit(" ", 1)[1])
                             for line in folded.splitlines()), total)
        self.assertNotIn("make (", folded)
        html = os.path.join(self.tmp, "fg.html")
        memtrace("flamegraph", "-f", "-o", html, "--leaks", self.capture, *f)
        with open(html) as fh:
            data = page_data(fh.read())
        self.assertEqual(data["nodes"][0][4], total)
        self.assertEqual(data["filter"], rep["filter"])
        self.assertNotIn("make", data["strings"])
        table = json.loads(self._table_data(f))
        self.assertEqual(sum(s["bytes"] for s in table["sites"]) +
                         table["omitted_bytes"], total)
        self.assertEqual(table["filter"], rep["filter"])
        diff = json.loads(memtrace("diff", self.capture, self.capture,
                                   "--leaks", "--json", *f).stdout)
        self.assertEqual(diff["after_bytes"], total)
        self.assertEqual(diff["filter"], rep["filter"])
        summary = json.loads(memtrace("summary", self.capture, "--json",
                                      *f).stdout)
        self.assertEqual(summary["filter"], rep["filter"])
        self.assertNotIn("make", [e["site"]["function"] for e in summary["top"]])
        stats = json.loads(memtrace("stats", self.capture, "--json", *f).stdout)
        self.assertEqual(stats["filter"], rep["filter"])
        self.assertIn("callback", [e["site"]["function"]
                                   for e in stats["top_by_bytes"]])
        self.assertNotIn("make", [e["site"]["function"]
                                  for e in stats["top_by_bytes"]])
        rows = list(csv.DictReader(io.StringIO(memtrace(
            "export", self.capture, "--format", "csv", *f).stdout)))
        self.assertIn("callback", [r["function"] for r in rows])
        self.assertNotIn("make", [r["function"] for r in rows])

    def test_python_api(self):
        code = ("import memtrace, sys; sys.stdout.write(memtrace.report("
                "sys.argv[1], top=3, include=['myproj'], exclude='extlib'))")
        cp = subprocess.run([interpreter(), "-c", code, self.capture],
                            capture_output=True, text=True, timeout=60,
                            env=base_env(PYTHONPATH=PKG))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, memtrace(
            "report", self.capture, "--top", "3", "--include", "myproj",
            "--exclude", "extlib").stdout)
        self.assertIn("Filter: --include 'myproj' --exclude 'extlib'", cp.stdout)

    def _table_data(self, f):
        html = memtrace("table", self.capture, "-o", "-", "--leaks", *f).stdout
        start = html.index('id="memtrace-data">') + len('id="memtrace-data">')
        return html[start:html.index("</script>", start)]

    def test_option_errors(self):
        for cmd in ("summary", "stats", "report", "tree", "export", "flamegraph",
                    "table"):
            cp = memtrace(cmd, self.capture, "--include", "", check=False)
            self.assertEqual(cp.returncode, 2, cmd)
            self.assertIn("--include needs a glob", cp.stderr)
            cp = memtrace(cmd, self.capture, "--exclude", check=False)
            self.assertEqual(cp.returncode, 2, cmd)
            self.assertIn("'--exclude' needs a value", cp.stderr)
            self.assertIn("--include GLOB", memtrace("help", cmd).stdout)
        cp = memtrace("diff", self.capture, self.capture, "--exclude", "",
                      check=False)
        self.assertEqual(cp.returncode, 2)


def all_frames(capture, tmp):
    """Every frame any report or export shows of capture, as (function,
    file, module) tuples (module "" when the output has none)."""
    out = set()
    for view in ((), ("--leaks",), ("--all-allocations",)):
        rep = json.loads(memtrace("report", capture, "--json", "--top",
                                  "1000000", *view).stdout)
        for e in rep["top"]:
            for f in [e["site"]] + e["stack"]:
                out.add((f["function"], f["file"], f["module"]))
    for view in ((), ("--leaks",)):
        tree = json.loads(memtrace("tree", capture, "--json", "--top",
                                   "1000000", *view).stdout)
        todo = [tree["root"]]
        while todo:
            n = todo.pop()
            out.add((n["function"], n["file"], n["module"]))
            todo.extend(n["children"])
        folded = memtrace("export", capture, "--format", "folded", *view).stdout
        for line in folded.splitlines():
            for fr in line.rsplit(" ", 1)[0].split(";"):
                name, _, loc = fr.partition(" (")
                out.add((name, loc.rsplit(":", 1)[0], ""))
    html = os.path.join(tmp, "own.html")
    memtrace("flamegraph", "-f", "-o", html, capture)
    with open(html) as fh:
        data = page_data(fh.read())
    strings = data["strings"]
    for node in data["nodes"]:
        out.add((strings[node[1]], strings[node[2]], ""))
    return out


class OwnFrames(NeedsPython, unittest.TestCase):
    """No frame of memtrace's in any report, whatever the way the program
    was run; the program's own frames all there."""

    def assert_clean(self, capture):
        frames = all_frames(capture, self.tmp)
        own = sorted(f for f in frames if is_memtrace_frame(*f))
        self.assertEqual(own, [])
        return frames

    def outermost(self, capture, file, line):
        """The outermost frame of the stack of the site file:line."""
        rep = json.loads(memtrace("report", capture, "--json", "--leaks",
                                  "--top", "1000000").stdout)
        for e in rep["top"]:
            if (e["site"]["file"], e["site"]["line"]) == (file, line):
                return e["stack"][-1]
        raise AssertionError(f"no site {file}:{line}")

    def test_module(self):
        for options in ((), ("--native",)):
            with self.subTest(options=options):
                cap = run_app(self.tmp, "m.bin", options)
                self.assert_clean(cap)
                # Stacks start at the program's module, not at runpy's.
                top = self.outermost(cap, STORE, line_of(STORE, "callback"))
                self.assertEqual((top["function"], top["file"]), ("<module>", APP))

    def test_script_and_code(self):
        m = markers("known.py")
        for options in ((), ("--native",)):
            with self.subTest(options=options):
                cap = record(self.tmp, [script("known.py")], "s.bin", options)
                self.assert_clean(cap)
                top = self.outermost(cap, script("known.py"), m["leak"])
                self.assertEqual((top["function"], top["file"], top["line"]),
                                 ("<module>", script("known.py"),
                                  m["module-calls-main"]))
                code = "KEEP = [bytes(3_000_000)]"
                cap = record(self.tmp, ["-c", code], "c.bin", options)
                self.assert_clean(cap)
                top = self.outermost(cap, "<string>", 1)
                self.assertEqual((top["function"], top["file"]),
                                 ("<module>", "<string>"))

    def test_tracker(self):
        file = script("tracker.py")
        cp = subprocess.run([interpreter(), file, self.tmp], capture_output=True,
                            text=True, timeout=60, env=base_env(PYTHONPATH=PKG))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        for name in ("one.bin", "two.bin"):
            frames = self.assert_clean(os.path.join(self.tmp, name))
            self.assertIn(file, {f[1] for f in frames})


class TickCapture(Capture):
    def tick(self, seq, ns, rss):
        self._def(DEF_TICK, varint(seq) + varint(ns) + varint(rss))


class BoundedFlamegraph(unittest.TestCase):
    """Whatever the capture, the page stays under 10 MB and its timeline
    under a fixed number of points."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mt-fgbound-")

    def tearDown(self):
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)

    def page(self, capture):
        html = os.path.join(self.tmp, "fg.html")
        memtrace("flamegraph", "-f", "-o", html, "--leaks", capture,
                 timeout=300)
        with open(html) as fh:
            text = fh.read()
        return os.path.getsize(html), text, page_data(text)

    def test_million_distinct_stacks(self):
        size, text, data = self.page(os.path.join(FIXTURES, "million-stacks.bin"))
        self.assertLess(size, 10_000_000)
        # A million stacks of 16 bytes each, every one under 0.1%: all
        # summed up in one "other" box, which the page states.
        self.assertEqual(data["merged"], 1_000_000)
        others = [n for n in data["nodes"] if n[6] & FG_OTHER]
        self.assertEqual(len(others), 1)
        self.assertEqual((others[0][4], others[0][5], others[0][3]),
                         (16_000_000, 1_000_000, 1_000_000))
        self.assertEqual(data["nodes"][0][4], 16_000_000)
        self.assertIn('into one "other" box per caller', text)

    def test_timeline_is_downsampled(self):
        # 10,000 RSS samples; one allocation between each two; a spike of
        # 5 MB around sample 6,001 that a naive downsampling could drop.
        cap = TickCapture(flags=0)
        node = cap.node(0, 0x401000)
        cap.thread(0, 100, "main")
        for i in range(10_000):
            cap.malloc(0x10000000 + 64 * i, 100, node)
            if i == 6_000:
                cap.malloc(0x7000000, 5_000_000, node)
            if i == 6_002:
                cap.free(0x7000000)
            cap.tick(cap.seq + 1, (i + 1) * 1_000_000, 50_000_000 + i)
            cap.sync()
            if i % 1000 == 999:
                cap.flush()
        cap.trailer(10_001_000_000, 60 << 20)
        cap.flush()
        path = os.path.join(self.tmp, "ticks.bin")
        with open(path, "wb") as f:
            f.write(cap.data)
        _, _, data = self.page(path)
        samples = data["samples"]
        self.assertEqual(len(samples), 2000)
        # Sample i sees the i + 1 small blocks, and the spike at 6,000-6,001.
        self.assertEqual(max(s[1] for s in samples), 6_002 * 100 + 5_000_000)
        self.assertEqual(max(s[2] for s in samples), 50_000_000 + 9_999)
        times = [s[0] for s in samples]
        self.assertEqual(times, sorted(times))


if __name__ == "__main__":
    unittest.main()
