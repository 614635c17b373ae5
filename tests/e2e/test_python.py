"""End-to-end tests of memtrace's Python support, run once for every CPython
the build made the extension for (build/python/interpreters.txt, written by
python/CMakeLists.txt): Python stacks at known lines, threads, the
launcher's fidelity (argv, sys.path, __main__, streams, exit status) against
plain python, memtrace.Tracker in a process memtrace did not start, and
--trace-python-allocators against tracemalloc. Scripts are in py/."""
import json
import os
import re
import subprocess
import sys
import unittest

from harness import BUILD, SOURCE, memtrace

PY = os.path.join(os.path.abspath(SOURCE), "tests", "e2e", "py")
PKG = os.path.join(os.path.abspath(BUILD), "python")


def script(name):
    return os.path.join(PY, name)


def markers(name):
    """{marker: line} from the "# @marker" comments of py/NAME."""
    out = {}
    with open(script(name)) as f:
        for n, text in enumerate(f, 1):
            m = re.search(r"# @([\w-]+)\s*$", text)
            if m:
                out[m.group(1)] = n
    return out


def base_env(**extra):
    """The environment for the programs: ours without Python settings that
    would change how they start."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "MEMTRACE_", "MT_")) and k != "LD_PRELOAD"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def frames(stack):
    """[(function, line)] of a JSON stack."""
    return [(fr["function"], fr["line"]) for fr in stack]


def line_total(report, file, line):
    """(bytes, count) summed over the report's "top" entries at file:line
    (several functions can share a line: a comprehension and its caller)."""
    hits = [e for e in report["top"]
            if e["site"]["file"] == file and e["site"]["line"] == line]
    return sum(e["bytes"] for e in hits), sum(e["count"] for e in hits)


def find_site(report, file, line):
    """The report's "top" entry whose site is file:line, or None."""
    for e in report["top"]:
        if e["site"]["file"] == file and e["site"]["line"] == line:
            return e
    return None


class PythonTests:
    """The tests, for one interpreter: PYTHON (path) and VERSION (tuple)."""
    PYTHON = None
    VERSION = None

    def setUp(self):
        import tempfile
        self.tmp = tempfile.mkdtemp(prefix="mt-py-")

    def tearDown(self):
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)

    def qual(self, qualname):
        """The name a code object has on this version: 3.11+ qualified."""
        return qualname if self.VERSION >= (3, 11) else qualname.rsplit(".", 1)[-1]

    def record(self, args, name="out.bin", options=(), status=0, **kw):
        """memtrace run -q [options] --python PYTHON args; returns the
        capture's path."""
        out = os.path.join(self.tmp, name)
        cp = subprocess.run([os.path.join(BUILD, "memtrace"), "run", "-q", "-o", out,
                             *options, "--python", self.PYTHON, *args],
                            capture_output=True, text=True, timeout=60,
                            env=kw.pop("env", base_env()), **kw)
        self.assertEqual(cp.returncode, status, f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
        return out

    def report(self, capture, *args, top=50):
        return json.loads(memtrace("report", capture, "--json", "--top", str(top),
                                   *args).stdout)

    # ---- Python stacks ----------------------------------------------------

    def test_module_globals_are_leaks(self):
        """What the program still holds when it ends is a leak, although
        the interpreter's shutdown frees module globals afterwards: the
        recording ends with the program, not with the interpreter."""
        code = "CACHE = [bytes(1_000_000) for _ in range(5)]"
        rep = self.report(self.record(["-c", code]), "--leaks")
        self.assertEqual(line_total(rep, "<string>", 1), (5 * 1_000_033, 5))

    def test_known_sites_at_peak(self):
        m = markers("known.py")
        file = script("known.py")
        rep = self.report(self.record([file]))
        temp = find_site(rep, file, m["temp"])
        self.assertIsNotNone(temp, json.dumps(rep["top"][:3], indent=1))
        self.assertEqual(rep["top"][0]["site"], temp["site"])  # the largest site
        self.assertEqual(temp["bytes"], 50_000_033)
        self.assertEqual(temp["count"], 1)
        self.assertEqual(temp["site"]["function"], "temp")
        # The whole stack: the program's frames only, executing lines exact.
        self.assertEqual(frames(temp["stack"]), [
            ("temp", m["temp"]), ("main", m["main-calls-temp"]),
            ("<module>", m["module-calls-main"])])
        f = find_site(rep, file, m["f"])
        self.assertIsNotNone(f)
        self.assertEqual((f["bytes"], f["count"]), (10_000_033, 1))
        self.assertEqual(frames(f["stack"]), [
            ("f", m["f"]), ("g", m["g-calls-f"]), ("main", m["main-calls-g"]),
            ("<module>", m["module-calls-main"])])
        self.assertTrue(all(fr["file"] == file for fr in f["stack"]))
        self.assertGreaterEqual(rep["peak_bytes"], 50_000_033 + 10_000_033 +
                                3_000_033 + 7_000_033 + 1_033_000)

    def test_known_sites_leaks_and_thread(self):
        m = markers("known.py")
        file = script("known.py")
        rep = self.report(self.record([file]), "--leaks")
        self.assertIsNone(find_site(rep, file, m["temp"]))  # freed
        leak = find_site(rep, file, m["leak"])
        self.assertIsNotNone(leak)
        self.assertEqual((leak["bytes"], leak["count"]), (1000 * 1033, 1000))
        self.assertEqual(frames(leak["stack"]), [
            ("leak", m["leak"]), ("main", m["main-calls-leak"]),
            ("<module>", m["module-calls-main"])])
        meth = find_site(rep, file, m["method"])
        self.assertIsNotNone(meth)
        self.assertEqual(meth["bytes"], 3_000_033)
        self.assertEqual(frames(meth["stack"])[:2], [
            (self.qual("Holder.grow"), m["method"]), ("main", m["main-calls-grow"])])
        # The thread's allocation carries the thread's own stack.
        th = find_site(rep, file, m["thread"])
        self.assertIsNotNone(th)
        self.assertEqual((th["bytes"], th["count"]), (7_000_033, 1))
        names = [fr["function"] for fr in th["stack"]]
        self.assertEqual(names, ["worker", self.qual("Thread.run"),
                                 self.qual("Thread._bootstrap_inner"),
                                 self.qual("Thread._bootstrap")])
        self.assertTrue(th["stack"][1]["file"].endswith("threading.py"))

    def test_allocation_without_gil_names_its_frames(self):
        """A C extension that releases the GIL around an allocation (numpy's
        large arrays do) still gets the function and file of every frame,
        although the code objects cannot be pinned at that moment."""
        m = markers("nogil.py")
        file = script("nogil.py")
        for options in ((), ("--native",)):
            cap = self.record([file], name=f"nogil{len(options)}.bin", options=options)
            rep = self.report(cap, "--leaks")
            site = find_site(rep, file, m["grab"])
            self.assertIsNotNone(site, json.dumps(rep["top"][:3], indent=1))
            self.assertEqual((site["bytes"], site["count"]), (12_345_678 + 2_000_000, 3))
            self.assertEqual(site["site"]["function"], "grab")
            # Every stack through grab, Python frames only, named and exact.
            folded = memtrace("export", cap, "--format", "folded", "--leaks").stdout
            stacks = {}
            for text in folded.splitlines():
                stack, n = text.rsplit(" ", 1)
                py = ";".join(fr for fr in stack.split(";") if file in fr)
                if f"{file}:{m['grab']})" in py:
                    stacks[py] = stacks.get(py, 0) + int(n)

            def fr(fn, line):
                return f"{fn} ({file}:{m[line]})"
            self.assertEqual(stacks, {
                f"{fr('<module>', 'module-calls-grab')};{fr('grab', 'grab')}": 12_345_678,
                f"{fr('<module>', 'module-calls-twice')};{fr('grab_twice', 'twice-calls-grab')};"
                f"{fr('grab', 'grab')}": 1_000_000,
                f"{fr('<module>', 'module-calls-twice')};"
                f"{fr('grab_twice', 'twice-calls-grab-again')};{fr('grab', 'grab')}": 1_000_000,
            }, folded[-2000:])

    def test_native_merge(self):
        m = markers("known.py")
        file = script("known.py")
        rep = self.report(self.record([file], options=["--native"]))
        temp = find_site(rep, file, m["temp"])
        self.assertIsNotNone(temp, json.dumps(rep["top"][:2], indent=1))
        self.assertEqual(temp["bytes"], 50_000_033)
        st = temp["stack"]
        py = [(fr["function"], fr["line"]) for fr in st if fr["file"] == file]
        self.assertEqual(py, [("temp", m["temp"]), ("main", m["main-calls-temp"]),
                              ("<module>", m["module-calls-main"])])
        # Native frames inside the Python one (the bytes constructor), and
        # the eval loop's frames replaced by the Python frames they ran.
        first_py = next(i for i, fr in enumerate(st) if fr["file"] == file)
        self.assertGreater(first_py, 0)
        self.assertNotIn("_PyEval_EvalFrameDefault",
                         [fr["function"] for fr in st[:first_py + 3]])

    def test_walker_matches_interpreter(self):
        # Needs no tracer: the walker's view against sys._getframe().
        cp = subprocess.run([self.PYTHON, script("walk.py")], capture_output=True,
                            text=True, timeout=60, env=base_env(PYTHONPATH=PKG))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        res = json.loads(cp.stdout)
        for case, (got, entries, want) in res.items():
            with self.subTest(case=case):
                self.assertEqual(got[0][0], "sample")
                self.assertEqual(got[1:], want)
        # Entry frames: every frame before 3.11; from 3.11 only a frame
        # called from C (sorted's key, the thread's start, the module).
        got, entries, want = res["via_c"]
        names = [g[0] for g in got]
        lam = names.index(self.qual("via_c.<locals>.<lambda>"))
        if self.VERSION < (3, 11):
            self.assertTrue(all(entries))
        else:
            self.assertEqual(entries[lam], 1)
            self.assertEqual(entries[names.index(self.qual("C.meth"))], 0)
            self.assertEqual(entries[names.index("via_c")], 0)
            self.assertEqual(entries[-1], 1)  # <module>

    # ---- --trace-python-allocators ----------------------------------------

    def test_python_allocators_match_tracemalloc(self):
        m = markers("pyalloc.py")
        file = script("pyalloc.py")
        rep = self.report(self.record([file], options=["--trace-python-allocators"]),
                          "--leaks", top=100000)
        size, count = line_total(rep, file, m["objs"])
        cp = subprocess.run([self.PYTHON, "-X", "tracemalloc", file, "--tracemalloc"],
                            capture_output=True, text=True, timeout=60, env=base_env())
        self.assertEqual(cp.returncode, 0, cp.stderr)
        tm = json.loads(cp.stdout)
        self.assertGreaterEqual(tm["count"], 5000)
        self.assertGreaterEqual(size, 5000 * 133)  # 5000 bytes(100) at least
        # The same blocks as tracemalloc's: the 5000 objects and the list's
        # buffer, give or take the list object and (3.8-3.10) the
        # comprehension's frame, which come from free lists in one run and
        # not in the other.
        self.assertLessEqual(abs(count - tm["count"]), 2, (size, count, tm))
        self.assertLessEqual(abs(size - tm["size"]), 1024, (size, count, tm))
        # Without the option, pymalloc's blocks are not seen one by one.
        rep = self.report(self.record([file], name="plain.bin"), "--leaks", top=100000)
        self.assertLess(line_total(rep, file, m["objs"])[1], 100)

    # ---- memtrace.Tracker -------------------------------------------------

    def test_tracker(self):
        m = markers("tracker.py")
        file = script("tracker.py")
        cp = subprocess.run([self.PYTHON, file, self.tmp], capture_output=True,
                            text=True, timeout=60, env=base_env(PYTHONPATH=PKG))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        res = json.loads(cp.stdout)
        self.assertEqual(res["nested"], "Error")
        self.assertEqual(res["exists"], "FileExistsError")
        self.assertEqual((res["active_inside"], res["active_after"]), (True, False))
        self.assertEqual(res["report_missing"], "Error")
        one = os.path.join(self.tmp, "one.bin")
        self.assertEqual(res["report"], memtrace("report", one, "--top", "3").stdout)
        rep = self.report(one, "--leaks")
        b = find_site(rep, file, m["bytes"])
        self.assertIsNotNone(b, json.dumps(rep["top"][:3], indent=1))
        self.assertEqual((b["bytes"], b["count"]), (23_456_789 + 33, 1))
        self.assertEqual(frames(b["stack"])[:2], [("work", m["bytes"]),
                                                  ("<module>", m["with"])])
        two = self.report(os.path.join(self.tmp, "two.bin"), "--leaks")
        s = find_site(two, file, m["second"])
        self.assertIsNotNone(s)
        self.assertEqual(s["bytes"], 4_567_890 + 33)
        self.assertIsNone(find_site(two, file, m["bytes"]))  # not in session two
        # malloc through a pointer from dlsym() taken while tracing.
        c = find_site(rep, file, m["ctypes"])
        self.assertIsNotNone(c, "malloc called through ctypes was not seen")
        self.assertEqual((c["bytes"], c["count"]), (12_345_678, 1))
        self.assertEqual(frames(c["stack"])[:2], [("work", m["ctypes"]),
                                                  ("<module>", m["with"])])

    def test_tracker_many_sessions(self):
        # One session per test under the pytest plugin: the 400th must work
        # like the first, and nothing may pile up (each session used to
        # leave a descriptor and a compression context behind).
        n = 400
        file = script("tracker_many.py")
        line = markers("tracker_many.py")["keep"]
        cp = subprocess.run([self.PYTHON, file, self.tmp, str(n)], capture_output=True,
                            text=True, timeout=120, env=base_env(PYTHONPATH=PKG))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        res = json.loads(cp.stdout)
        # libunwind opens a pipe pair once, at its first unwind, which may
        # come in any session (a thread's allocation before the walker is
        # attached); the tracer's own descriptors must all be closed.
        first, last = res["fds_first"], res["fds_last"]
        left = [t for t in last.values() if "statm" in t or t.startswith(self.tmp)]
        self.assertLessEqual(len(left), 0 if "statm" not in str(first) else 1,
                             f"{len(left)} descriptors left open, e.g. {left[-1:]}")
        # (A library being loaded has a descriptor open for a moment: glibc
        # loads libgcc_s while the thread exits, which join() may not wait.)
        lasting = [t for t in last.values() if not re.search(r"\.so(\.|$)", t)]
        self.assertLessEqual(len(lasting), len(first) + 2, (first, last))
        # The kept bytearrays are 400 MB; the tracer's own growth must stay
        # far below one more megabyte per session.
        kept = sum(1_000_000 + i for i in range(1, n))
        self.assertLess(res["rss_last"] - res["rss_first"] - kept, 64 << 20)
        for i in (0, 1, n // 2, n - 1):
            rep = self.report(os.path.join(self.tmp, f"s{i}.bin"), "--leaks")
            s = find_site(rep, file, line)
            self.assertIsNotNone(s, (i, json.dumps(rep["top"][:3], indent=1)))
            # bytearray(n) allocates n + 1 bytes (a trailing NUL).
            self.assertEqual((s["bytes"], s["count"]), (1_000_001 + i, 1))
            # Only this session's allocation is at that line.
            self.assertEqual(line_total(rep, file, line), (1_000_001 + i, 1))

    # ---- The launcher: as python would run the program -------------------

    def compare(self, args, python_args, action, cwd=PY, env=None, stdin="in\nput\n"):
        """Runs the program under python and under memtrace run; asserts the
        same stdout, stderr and exit status."""
        env = env or base_env()
        plain = subprocess.run([self.PYTHON, *python_args, action], input=stdin,
                               capture_output=True, text=True, cwd=cwd, env=env,
                               timeout=60)
        out = os.path.join(self.tmp, "launch.bin")
        traced = subprocess.run([os.path.join(BUILD, "memtrace"), "run", "-q", "-f",
                                 "-o", out, "--python", self.PYTHON, *args, action],
                                input=stdin, capture_output=True, text=True, cwd=cwd,
                                env=env, timeout=60)
        want = 128 - plain.returncode if plain.returncode < 0 else plain.returncode
        if plain.stdout.startswith("{"):
            self.assertEqual(json.loads(traced.stdout), json.loads(plain.stdout))
        self.assertEqual(traced.stdout, plain.stdout)
        self.assertEqual(traced.stderr, plain.stderr)
        self.assertEqual(traced.returncode, want)
        return plain

    def test_launch_script(self):
        p = script("probe.py")
        env = base_env(PYTHONPATH=os.path.join(self.tmp, "user-path"))
        for action, status in (("ok", 0), ("raise", 1), ("kbint", -2)):
            with self.subTest(action=action):
                r = self.compare([p], [p], action, cwd=self.tmp, env=env)
                self.assertEqual(r.returncode, status)
        # A relative path (argv[0] as given, __file__ absolute from 3.9),
        # and a symbolic link (sys.path[0] is the real script's directory).
        self.compare(["probe.py"], ["probe.py"], "ok", cwd=PY)
        link = os.path.join(self.tmp, "link.py")
        os.symlink(p, link)
        self.compare([link], [link], "ok", cwd=self.tmp)
        # A script python cannot open: same message, status 2.
        missing = os.path.join(self.tmp, "missing.py")
        r = self.compare([missing], [missing], "ok", cwd=self.tmp)
        self.assertEqual(r.returncode, 2)

    def test_signal_handlers_as_without_memtrace(self):
        """The tracer's handlers for fatal signals and SIGTERM are not
        visible: every signal's handler reads as it would without memtrace."""
        code = ("import signal, sys; print(sys.argv[1], sorted((s.name, "
                "str(signal.getsignal(s))) for s in signal.Signals "
                "if s not in (signal.SIGKILL, signal.SIGSTOP)))")
        self.compare(["-c", code], ["-c", code], "ok")

    def test_launch_module(self):
        for action, status in (("ok", 0), ("raise", 1), ("exitmsg", 1)):
            with self.subTest(action=action):
                r = self.compare(["-m", "probe"], ["-m", "probe"], action)
                self.assertEqual(r.returncode, status)
        r = self.compare(["-m", "no_such_module_here"], ["-m", "no_such_module_here"], "ok")
        self.assertEqual(r.returncode, 1)
        if self.VERSION >= (3, 11):
            # -P / PYTHONSAFEPATH: nothing goes in front of sys.path.
            env = base_env(PYTHONSAFEPATH="1", PYTHONPATH=PY)
            r = self.compare(["-m", "probe"], ["-m", "probe"], "ok", cwd=self.tmp, env=env)
            self.assertEqual(r.returncode, 0)

    def test_launch_code(self):
        code = "import probe; probe.main()"
        env = base_env(PYTHONPATH=PY)
        for action, status in (("ok", 0), ("exit3", 3), ("raise", 1)):
            with self.subTest(action=action):
                r = self.compare(["-c", code], ["-c", code], action, cwd=self.tmp, env=env)
                self.assertEqual(r.returncode, status)
        r = self.compare(["-c", "1 +"], ["-c", "1 +"], "ok", cwd=self.tmp)
        self.assertEqual(r.returncode, 1)  # a SyntaxError, printed as python does


def load_interpreters():
    """[(kind, path, version or reason)] from the build's list."""
    path = os.path.join(BUILD, "python", "interpreters.txt")
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3:
                out.append((parts[0], parts[1], parts[2]))
    return out


def make_cases():
    """One TestCase class per interpreter, named after its version; the
    skipped ones say why."""
    tested, skipped = [], []
    for kind, path, info in load_interpreters():
        if kind == "skip":
            skipped.append(f"{path} ({info})")
            name = "TestSkipped_" + re.sub(r"\W", "_", path)
            reason = f"{path}: {info}"

            def setUpClass(cls, reason=reason):
                raise unittest.SkipTest(reason)
            globals()[name] = type(name, (unittest.TestCase,), {
                "setUpClass": classmethod(setUpClass), "test_skipped": lambda self: None})
            continue
        version = tuple(int(x) for x in info.split(".")[:3])
        name = "TestPython_" + info.replace(".", "_")
        if kind == "test":
            name += "_" + re.sub(r"\W", "_", path)
        globals()[name] = type(name, (PythonTests, unittest.TestCase),
                               {"PYTHON": path, "VERSION": version})
        tested.append(f"{info} ({path})")
    if not tested:
        def setUpClass(cls):
            raise unittest.SkipTest("no Python extension was built (see cmake's output)")
        globals()["TestNoPython"] = type("TestNoPython", (unittest.TestCase,), {
            "setUpClass": classmethod(setUpClass), "test_none": lambda self: None})
    sys.stderr.write("test_python: testing " + (", ".join(tested) or "nothing") +
                     ("; skipping " + ", ".join(skipped) if skipped else "") + "\n")


make_cases()

if __name__ == "__main__":
    unittest.main()
