"""End-to-end tests of memtrace's pytest plugin (python/memtrace/
pytest_plugin.py) with Debian's pytest and pytest-xdist on /usr/bin/python3:
pytest runs in a subprocess on a generated test file whose tests allocate
known amounts at known lines, and the tests check each test's outcome (from
pytest's JUnit XML), the failure messages, the summary and the captures.
Skipped, with the reason, when /usr/bin/python3 lacks pytest or the build
has no extension for it."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
import xml.etree.ElementTree as ET

from harness import BUILD, MEMTRACE, memtrace

PYTHON = "/usr/bin/python3"
PKG = os.path.join(os.path.abspath(BUILD), "python")

# The generated test file; "# @name" comments mark the lines the tests
# check. bytearray(n) allocates n + 1 bytes.
TESTS = '''\
import unittest

import pytest

KEEP = []


def big(n):
    return bytearray(n)  # @big


@pytest.mark.limit_memory("24 MB")
def test_over():
    x = big(30_000_000)  # @over
    del x


@pytest.mark.limit_memory("24 MB")
def test_under():
    x = big(10_000_000)
    del x


@pytest.mark.limit_leaks("1 MB")
def test_leak():
    KEEP.append(big(5_000_000))  # @leak


@pytest.mark.limit_leaks("1 MB")
def test_no_leak():
    x = big(5_000_000)
    del x


@pytest.mark.limit_memory("100MB")
@pytest.mark.limit_leaks("1MiB")
def test_both():
    KEEP.append(big(2_000_000))  # @both


def test_plain():
    x = big(3_000_000)
    del x


@pytest.mark.limit_memory("1 MB")
def test_fails_itself():
    x = big(2_000_000)
    raise ValueError("fails by itself")


@pytest.mark.limit_memory("24 XB")
def test_bad_size():
    pass


@pytest.fixture
def fat():
    return big(8_000_000)  # @fixture


@pytest.mark.limit_memory("1 MB")
def test_fixture_not_counted(fat):
    assert len(fat) == 8_000_000


class TestCaseStyle(unittest.TestCase):
    # Not called through pytest_pyfunc_call: the item's runtest is traced.
    @pytest.mark.limit_memory("24 MB")
    def test_unittest_over(self):
        x = big(25_000_000)  # @unittest
        del x

    @pytest.mark.limit_memory("24 MB")
    def test_unittest_under(self):
        x = big(1_000_000)
        del x
'''

# Each test's outcome (JUnit XML): passed, failure or error.
EXPECTED = {
    "test_over": "failure", "test_under": "passed", "test_leak": "failure",
    "test_no_leak": "passed", "test_both": "failure", "test_plain": "passed",
    "test_fails_itself": "failure", "test_bad_size": "error",
    "test_fixture_not_counted": "passed", "test_unittest_over": "failure",
    "test_unittest_under": "passed",
}
# The tests whose body ran (and was recorded) and their peak in bytes.
PEAKS = {
    "test_over": 30_000_001, "test_under": 10_000_001, "test_leak": 5_000_001,
    "test_no_leak": 5_000_001, "test_both": 2_000_001, "test_plain": 3_000_001,
    "test_fails_itself": 2_000_001, "test_fixture_not_counted": 0,
    "test_unittest_over": 25_000_001, "test_unittest_under": 1_000_001,
}


def nodeid(name):
    """pytest's id of the generated test name."""
    cls = "TestCaseStyle::" if name.startswith("test_unittest") else ""
    return f"test_gen.py::{cls}{name}"


def lines_of(text):
    """{marker: line} from the "# @marker" comments of text."""
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        m = re.search(r"# @([\w-]+)\s*$", line)
        if m:
            out[m.group(1)] = n
    return out


LINE = lines_of(TESTS)


def env(**extra):
    """Our environment without Python settings that would change how
    pytest starts, with the build's package on PYTHONPATH."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("PYTHON", "PYTEST", "MEMTRACE_", "MT_")) and k != "LD_PRELOAD"}
    e["PYTHONDONTWRITEBYTECODE"] = "1"
    e["PYTHONPATH"] = PKG
    e.update(extra)
    return e


def has_module(name):
    cp = subprocess.run([PYTHON, "-c", f"import {name}"], capture_output=True,
                        env=env(), timeout=60)
    return cp.returncode == 0


def why_skip():
    """The reason to skip every test, or None."""
    if not os.path.exists(PYTHON):
        return f"{PYTHON} does not exist"
    if not has_module("pytest"):
        return f"{PYTHON} has no pytest (install python3-pytest)"
    if not has_module("memtrace._memtrace"):
        return f"the build has no memtrace extension for {PYTHON} (see interpreters.txt)"
    return None


SKIP = why_skip()


@unittest.skipIf(SKIP, SKIP or "")
class PytestPluginTests(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mt-pytest-")
        with open(os.path.join(self.tmp, "test_gen.py"), "w") as f:
            f.write(TESTS)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def pytest(self, *args, extra_env=None, cmd=None):
        """Runs pytest on test_gen.py in the scratch directory; returns
        (CompletedProcess, {test name: (outcome, message)})."""
        xml = os.path.join(self.tmp, "junit.xml")
        if os.path.exists(xml):
            os.unlink(xml)
        argv = (cmd or [PYTHON, "-m", "pytest"]) + [
            "-p", "no:cacheprovider", "-o", "junit_family=xunit1",
            f"--junitxml={xml}", *args, "test_gen.py"]
        cp = subprocess.run(argv, cwd=self.tmp, capture_output=True, text=True,
                            timeout=300, env=env(**(extra_env or {})))
        outcomes = {}
        if os.path.exists(xml):
            for case in ET.parse(xml).getroot().iter("testcase"):
                outcome, message = "passed", ""
                for kind in ("failure", "error", "skipped"):
                    node = case.find(kind)
                    if node is not None:
                        outcome = kind
                        message = (node.get("message") or "") + "\n" + (node.text or "")
                        break
                outcomes[case.get("name")] = (outcome, message)
        return cp, outcomes

    def check_outcomes(self, cp, outcomes, exact=True):
        self.assertEqual({k: v[0] for k, v in outcomes.items()}, EXPECTED,
                         cp.stdout + cp.stderr)
        over = outcomes["test_over"][1]
        # The limit, the peak (exact when nothing else runs in the process
        # meanwhile), and the allocation's site with its stack.
        peak = (r"30000001" if exact else r"\d+")
        self.assertRegex(over, r"memtrace: peak memory [\d.]+ MiB \(" + peak + r" bytes\) "
                         r"is over limit_memory\('24 MB'\), 22\.9 MiB \(24000000 bytes\)")
        self.assertIn(f"#1 28.6 MiB in 1 allocation at test_gen.py:{LINE['big']}, in big\n"
                      f"       test_gen.py:{LINE['big']}, in big\n"
                      f"       test_gen.py:{LINE['over']}, in test_over\n", over)
        leak = outcomes["test_leak"][1]
        self.assertRegex(leak, r"memtrace: memory left allocated at the end 4\.8 MiB "
                         r"\(" + ("5000001" if exact else r"\d+") + r" bytes\) is over "
                         r"limit_leaks\('1 MB'\), 976\.6 KiB \(1000000 bytes\)")
        self.assertIn("Top allocation sites left allocated at the end", leak)
        self.assertIn(f"4.8 MiB in 1 allocation at test_gen.py:{LINE['big']}, in big\n"
                      f"       test_gen.py:{LINE['big']}, in big\n"
                      f"       test_gen.py:{LINE['leak']}, in test_leak\n", leak)
        # Both markers: the peak (2 MB) is under 100MB, the leak is not; the
        # sites are those left at the end.
        both = outcomes["test_both"][1]
        self.assertNotIn("limit_memory", both)
        self.assertIn("is over limit_leaks('1MiB'), 1.0 MiB (1048576 bytes)", both)
        self.assertIn(f"1.9 MiB in 1 allocation at test_gen.py:{LINE['big']}, in big\n"
                      f"       test_gen.py:{LINE['big']}, in big\n"
                      f"       test_gen.py:{LINE['both']}, in test_both\n", both)
        # A unittest.TestCase method: its stack starts in unittest's code,
        # the site and the test's own frame are the same.
        ut = outcomes["test_unittest_over"][1]
        self.assertRegex(ut, r"memtrace: peak memory 23\.8 MiB \(" + ("25000001" if exact else r"\d+")
                         + r" bytes\) is over limit_memory\('24 MB'\)")
        self.assertRegex(ut, re.escape(
            f"23.8 MiB in 1 allocation at test_gen.py:{LINE['big']}, in big\n"
            f"       test_gen.py:{LINE['big']}, in big\n"
            f"       test_gen.py:{LINE['unittest']}, in ") +
            r"(TestCaseStyle\.)?test_unittest_over\n")
        # A test that fails by itself keeps its own failure.
        itself = outcomes["test_fails_itself"][1]
        self.assertIn("ValueError: fails by itself", itself)
        self.assertNotIn("memtrace:", itself)
        self.assertIn("memtrace: limit_memory: not a size such as", outcomes["test_bad_size"][1])

    def summary(self, stdout):
        """[(peak text, leaked text, allocations, test id)] of the summary."""
        self.assertIn("memtrace: memory by test", stdout)
        part = stdout.split("memtrace: memory by test", 1)[1]
        rows = re.findall(r"^\s*([\d.]+ \w?i?B)\s+([\d.]+ \w?i?B)\s+(\d+)\s+(\S+::\S+)$",
                          part, re.M)
        return rows

    def test_limits_and_summary(self):
        cp, outcomes = self.pytest("--memtrace", "--memtrace-most-allocations", "0")
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        self.check_outcomes(cp, outcomes)
        rows = self.summary(cp.stdout)
        # Every test whose body ran, highest peak first, with its numbers.
        names = [r[3].split("::")[-1] for r in rows]
        self.assertEqual(names, sorted(PEAKS, key=lambda n: (-PEAKS[n], nodeid(n))))
        self.assertEqual([r[3] for r in rows], [nodeid(n) for n in names])
        got = {r[3].split("::")[-1]: r for r in rows}
        self.assertEqual(got["test_over"][:3], ("28.6 MiB", "0 B", "1"))
        self.assertEqual(got["test_leak"][:3], ("4.8 MiB", "4.8 MiB", "1"))
        # The fixture's 8 MB were allocated in setup, outside the body.
        self.assertEqual(got["test_fixture_not_counted"][:3], ("0 B", "0 B", "0"))
        self.assertIn(f"biggest at the peak: 28.6 MiB at test_gen.py:{LINE['big']}, in big",
                      cp.stdout)
        self.assertIn("memtrace: profiling each test's body", cp.stdout)
        # The default: the five highest.
        cp, _ = self.pytest("--memtrace")
        self.assertEqual(len(self.summary(cp.stdout)), 5)
        self.assertEqual(self.summary(cp.stdout)[0][3], "test_gen.py::test_over")

    def test_captures_kept_or_removed(self):
        # Default: a temporary directory, removed at the end.
        tmpdir = os.path.join(self.tmp, "tmpdir")
        os.mkdir(tmpdir)
        cp, outcomes = self.pytest("--memtrace", extra_env={"TMPDIR": tmpdir})
        self.assertEqual(len(outcomes), len(EXPECTED), cp.stdout + cp.stderr)
        self.assertEqual(os.listdir(tmpdir), [])
        # --memtrace-bin-dir (alone: it implies --memtrace): one capture per
        # test whose body ran, named after it, holding that test's peak.
        bins = os.path.join(self.tmp, "bins")
        cp, outcomes = self.pytest("--memtrace-bin-dir", "bins")
        self.check_outcomes(cp, outcomes)
        files = sorted(os.listdir(bins))
        self.assertEqual(len(files), len(PEAKS), files)
        for name, peak in PEAKS.items():
            prefix = nodeid(name).replace("::", "-")
            mine = [f for f in files if f.startswith(prefix + "-")]
            self.assertEqual(len(mine), 1, (name, files))
            s = json.loads(memtrace("summary", os.path.join(bins, mine[0]), "--json").stdout)
            self.assertEqual(s["peak_bytes"], peak, name)
        self.assertIn(f"Captures in {bins}", cp.stdout)
        self.assertIn(f"Capture: {bins}{os.sep}test_gen.py-test_over-", outcomes["test_over"][1])

    @unittest.skipUnless(SKIP or has_module("xdist"),
                         f"{PYTHON} has no pytest-xdist (install python3-pytest-xdist)")
    def test_xdist(self):
        cp, outcomes = self.pytest("-n", "2", "--memtrace", "--memtrace-bin-dir", "bins",
                                   "--memtrace-most-allocations", "0")
        self.assertEqual(cp.returncode, 1, cp.stdout + cp.stderr)
        # In a worker, execnet's thread may allocate while a test runs: the
        # numbers are at least the test's own, the sites are the same.
        self.check_outcomes(cp, outcomes, exact=False)
        rows = self.summary(cp.stdout)
        self.assertEqual(sorted(r[3] for r in rows), sorted(map(nodeid, PEAKS)))
        bins = os.path.join(self.tmp, "bins")
        pids = set()
        for f in os.listdir(bins):
            pids.add(json.loads(memtrace("summary", os.path.join(bins, f), "--json").stdout)["pid"])
        self.assertEqual(len(os.listdir(bins)), len(PEAKS))
        self.assertEqual(len(pids), 2, "the captures should come from both workers")

    def test_markers_inactive_without_memtrace(self):
        # As with pytest-memray: without --memtrace the markers are declared
        # (--strict-markers accepts them) but not enforced, and nothing is
        # printed.
        cp, outcomes = self.pytest("--strict-markers")
        want = {k: "passed" for k in EXPECTED}
        want["test_fails_itself"] = "failure"
        self.assertEqual({k: v[0] for k, v in outcomes.items()}, want, cp.stdout + cp.stderr)
        self.assertNotIn("memtrace:", cp.stdout)

    def test_loading(self):
        # -p memtrace.pytest_plugin: alone, and beside the entry point
        # (which must not load it a second time).
        for extra in ({"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, {}):
            cp, outcomes = self.pytest("-p", "memtrace.pytest_plugin", "--memtrace",
                                       extra_env=extra)
            self.check_outcomes(cp, outcomes)
        # Through the entry point, the distribution is named in the header.
        cp, _ = self.pytest("--memtrace")
        self.assertRegex(cp.stdout, r"plugins: .*memtrace-\d+\.\d+\.\d+")
        # Disabled by its entry point's name.
        cp, outcomes = self.pytest("-p", "no:memtrace.pytest_plugin")
        self.assertEqual(outcomes["test_over"][0], "passed", cp.stdout + cp.stderr)

    def test_installed_layout(self):
        # `cmake --install`: the package and its dist-info in
        # PREFIX/lib/memtrace/python find PREFIX/bin/memtrace.
        prefix = os.path.join(self.tmp, "prefix")
        cp = subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix],
                            capture_output=True, text=True, timeout=120)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        site = os.path.join(prefix, "lib", "memtrace", "python")
        self.assertFalse(os.path.exists(os.path.join(site, "memtrace", "_paths.py")))
        cp, outcomes = self.pytest("--memtrace", extra_env={"PYTHONPATH": site})
        self.check_outcomes(cp, outcomes)
        self.assertRegex(cp.stdout, r"plugins: .*memtrace-\d+\.\d+\.\d+")

    def test_native_and_python_allocators(self):
        # --memtrace-native: the C frames of the allocation are in the
        # stack, which still ends at the test function.
        cp, outcomes = self.pytest("--memtrace", "--memtrace-native")
        self.assertEqual({k: v[0] for k, v in outcomes.items()}, EXPECTED,
                         cp.stdout + cp.stderr)
        over = outcomes["test_over"][1]
        self.assertRegex(over, r"#1 28\.6 MiB in 1 allocation at test_gen\.py:%d, in big\n"
                         r"(       \S+, in \S+\n)*"
                         r"       \S*python3[.\d]*:0, in \S+\n" % LINE["big"])
        self.assertIn(f"       test_gen.py:{LINE['big']}, in big\n"
                      f"       test_gen.py:{LINE['over']}, in test_over\n", over)
        self.assertNotIn("pytest_plugin.py", over)
        self.assertNotIn("_pytest", over)
        # --memtrace-trace-python-allocators: every object is seen; the
        # big allocations decide the same outcomes.
        cp, outcomes = self.pytest("--memtrace", "--memtrace-trace-python-allocators")
        self.assertEqual({k: v[0] for k, v in outcomes.items()}, EXPECTED,
                         cp.stdout + cp.stderr)

    def test_whole_run_traced(self):
        # Under `memtrace run`, --memtrace cannot also record each test: one
        # line, pytest's usage error status.
        out = os.path.join(self.tmp, "whole.bin")
        cp, _ = self.pytest("--memtrace", cmd=[MEMTRACE, "run", "-q", "-o", out,
                                               "--python", PYTHON, "-m", "pytest"])
        self.assertEqual(cp.returncode, 4, cp.stdout + cp.stderr)
        self.assertIn("--memtrace: this pytest is already traced as a whole", cp.stderr)
        self.assertNotIn("Traceback", cp.stderr)

    def test_parse_size(self):
        code = ("import json, sys\n"
                "from memtrace.pytest_plugin import parse_size\n"
                "out = []\n"
                "for a in json.loads(sys.argv[1]):\n"
                "    try:\n"
                "        out.append(parse_size(a))\n"
                "    except ValueError:\n"
                "        out.append(None)\n"
                "print(json.dumps(out))\n")
        cases = {"512MB": 512_000_000, "1.5GiB": 1_610_612_736, "24 MB": 24_000_000,
                 "1000000": 1_000_000, "1k": 1000, "2KiB": 2048, "3 mib": 3 << 20,
                 "1G": 10**9, "10b": 10, "0": 0, 5: 5, "1e3": 1000,
                 "24 XB": None, "-1MB": None, "": None, "MB": None, "1.5.5": None,
                 "12 M B": None, -3: None, True: None}
        keys = list(cases)
        cp = subprocess.run([PYTHON, "-c", code, json.dumps(keys)], capture_output=True,
                            text=True, env=env(), timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(dict(zip(map(repr, keys), json.loads(cp.stdout))),
                         {repr(k): v for k, v in cases.items()})


if __name__ == "__main__":
    unittest.main()
