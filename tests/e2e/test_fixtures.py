"""test_fixtures.py: the reader under hostile input (issue: trust).

Every file of tests/fixtures/ (written by tests/fixtures/make_fixtures.py)
is read with `memtrace summary`, `memtrace report --json` and `memtrace
stats`. Each must give exactly what the table below says: either exit
status 2, nothing on stdout and ONE line on stderr naming the file and the
problem, or exit status 0 with a report and a one-line warning. Never a
crash, never a hang (60 s), never more than 1 GiB of address space (the
limit is skipped with MT_SANITIZED=1: ASan reserves more).

Also: the golden capture of format version 1 (tests/fixtures/golden-v1.bin,
written by tests/test_reader.c) reads with its exact numbers, a capture of a
million distinct stacks reads in time, and the generator still writes the
committed fixtures byte for byte.

Environment: MT_BUILD (the build directory), MT_SOURCE (the source tree).
"""
import filecmp
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import unittest

from harness import MEMTRACE, SOURCE

FIXTURES = os.path.join(SOURCE, "tests", "fixtures")
SANITIZED = os.environ.get("MT_SANITIZED") == "1"
TIMEOUT = 60
COMMANDS = (["summary"], ["report", "--json"], ["stats"])

ERROR, WARNING = "error", "warning"

# fixture: (what the reader does, words its message must contain)
CASES = {
    "empty.bin": (ERROR, ["not a memtrace capture", "file is empty"]),
    "bad-magic.bin": (ERROR, ["not a memtrace capture", "unknown magic"]),
    "version-2.bin": (ERROR, ["format version 2", "reads 1"]),
    "reserved-flags.bin": (ERROR, ["reserved header flag bits",
                                   "0x8000"]),
    "header-beyond-file.bin": (ERROR, ["truncated", "header",
                                       "4096 bytes of payload"]),
    "header-field-huge.bin": (ERROR, ["corrupt header", "cut short"]),
    "cut-node.bin": (ERROR, ["node record cut short"]),
    "cut-module-load.bin": (ERROR, ["module record cut short"]),
    "cut-thread.bin": (ERROR, ["bad thread record"]),
    "cut-tick.bin": (ERROR, ["tick record cut short"]),
    "cut-trailer.bin": (ERROR, ["trailer record cut short"]),
    "cut-note.bin": (ERROR, ["note record cut short"]),
    "cut-pycode.bin": (ERROR, ["python code record cut short"]),
    "cut-python.bin": (ERROR, ["python record cut short"]),
    "cut-stage.bin": (ERROR, ["stage record cut short"]),
    "cut-event.bin": (ERROR, ["event cut short"]),
    "sync-without-varint.bin": (ERROR, ["bad sync section"]),
    "varint-endless-event.bin": (ERROR, ["bad malloc event",
                                         "overlong varint"]),
    "varint-endless-def.bin": (ERROR, ["node record"]),
    "size-overflow.bin": (ERROR, ["allocated bytes overflow 64 bits"]),
    "module-nseg-huge.bin": (ERROR, ["module record cut short"]),
    "string-length-huge.bin": (ERROR, ["module record cut short"]),
    "stack-dangling.bin": (ERROR, ["stack node 99",
                                   "only 4 nodes are defined"]),
    "block-raw-64mib.bin": (ERROR, ["block sizes out of range",
                                    "raw 67108864 bytes", "offset 90"]),
    "block-cut-in-frame.bin": (WARNING, ["incomplete",
                                         "read up to offset 188",
                                         "cut short"]),
    "block-bad-checksum.bin": (WARNING, ["incomplete",
                                         "block at offset 188 is damaged",
                                         "checksum"]),
    "no-trailer.bin": (WARNING, ["no trailer"]),
    "million-stacks.bin": (None, []),   # read cleanly: MillionStacks
}

# The numbers of the base capture of the warning fixtures (its first block):
# malloc 100, malloc 200, free of the 100, malloc 300.
BASE = {"current_bytes": 500, "peak_bytes": 500, "total_allocations": 3,
        "total_bytes_allocated": 600, "current_allocations": 2,
        "complete": False}


def limit_memory():
    if not SANITIZED:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def fixture(name):
    return os.path.join(FIXTURES, name)


class FixtureTest(unittest.TestCase):
    def run_memtrace(self, *args):
        """Runs memtrace under the memory limit; fails on a hang or a
        crash. Returns (status, stdout, stderr) as text."""
        try:
            cp = subprocess.run([MEMTRACE, *args], capture_output=True,
                                timeout=TIMEOUT, preexec_fn=limit_memory)
        except subprocess.TimeoutExpired:
            self.fail("memtrace %s hangs (over %d s)" % (" ".join(args),
                                                         TIMEOUT))
        err = cp.stderr.decode("utf-8", "replace")
        what = "memtrace %s: status %d, stderr: %s" % (" ".join(args),
                                                       cp.returncode, err)
        self.assertGreaterEqual(cp.returncode, 0, "killed by a signal: " + what)
        self.assertLess(cp.returncode, 128, "crashed: " + what)
        for bad in ("Traceback", "AddressSanitizer", "runtime error",
                    "LeakSanitizer", "Segmentation", "core dumped"):
            self.assertNotIn(bad, err, what)
        return cp.returncode, cp.stdout.decode("utf-8", "replace"), err

    def check_fixture(self, name):
        kind, words = CASES[name]
        path = fixture(name)
        for cmd in COMMANDS:
            with self.subTest(fixture=name, command=cmd[0]):
                status, out, err = self.run_memtrace(cmd[0], path, *cmd[1:])
                self.assertEqual(err.count("\n"), 1, err)
                self.assertTrue(err.endswith("\n"), err)
                if kind == ERROR:
                    self.assertEqual(status, 2, err)
                    self.assertEqual(out, "")
                    self.assertTrue(err.startswith("memtrace: %s: " % path),
                                    err)
                else:
                    self.assertEqual(status, 0, err)
                    self.assertTrue(
                        err.startswith("memtrace: warning: %s: " % path), err)
                    self.check_base_numbers(cmd[0], out)
                for w in words:
                    self.assertIn(w, err)

    def check_base_numbers(self, cmd, out):
        """A warning fixture is read up to its damage: the base block."""
        if cmd == "report":
            r = json.loads(out)
            for key, value in BASE.items():
                self.assertEqual(r[key], value, key)
            self.assertIsInstance(r["warning"], str)
            self.assertEqual([(t["bytes"], t["count"], t["site"]["function"])
                              for t in r["top"]],
                             [(300, 1, "0x402100"), (200, 1, "0x402000")])
        elif cmd == "summary":
            self.assertIn("Peak memory:         500 B", out)
            self.assertIn("Total allocated:     600 B in 3 allocations", out)
            self.assertIn("(incomplete capture)", out)
        else:
            self.assertIn("Total allocations:     3\n", out)
            self.assertIn("Total bytes allocated: 600 B (600 B)\n", out)


def _make_test(name):
    def test(self):
        self.check_fixture(name)
    test.__doc__ = "%s: %s" % (name, CASES[name][0])
    return test


class Fixtures(FixtureTest):
    """One test per damaged fixture (generated from CASES)."""

    def test_every_fixture_has_a_case(self):
        names = sorted(n for n in os.listdir(FIXTURES) if n.endswith(".bin"))
        self.assertEqual(names, sorted(list(CASES) + ["golden-v1.bin"]))

    def test_fixtures_are_small(self):
        for name in CASES:
            self.assertLess(os.path.getsize(fixture(name)), 64 << 10, name)

    def test_generator_writes_the_committed_files(self):
        """make_fixtures.py is deterministic and the files match it."""
        with tempfile.TemporaryDirectory(prefix="mt-fixtures-") as d:
            subprocess.run([sys.executable,
                            os.path.join(FIXTURES, "make_fixtures.py"), d],
                           check=True, timeout=120)
            made = sorted(os.listdir(d))
            self.assertEqual(made, sorted(CASES))
            match, mismatch, errors = filecmp.cmpfiles(FIXTURES, d, made,
                                                       shallow=False)
            self.assertEqual((mismatch, errors), ([], []))


for _name, (_kind, _) in CASES.items():
    if _kind is not None:
        _test = "test_" + _name[:-4].replace("-", "_")
        setattr(Fixtures, _test, _make_test(_name))


class MillionStacks(FixtureTest):
    """A million NODE records, each the stack of one malloc of 16 bytes."""

    path = fixture("million-stacks.bin")

    def test_summary(self):
        status, out, err = self.run_memtrace("summary", self.path, "--json")
        self.assertEqual((status, err), (0, ""))
        s = json.loads(out)
        self.assertEqual(s["total_allocations"], 1000000)
        self.assertEqual(s["current_allocations"], 1000000)
        self.assertEqual(s["total_bytes_allocated"], 16000000)
        self.assertEqual(s["peak_bytes"], 16000000)
        self.assertEqual(s["total_frees"], 0)
        self.assertIs(s["complete"], True)
        self.assertIsNone(s["warning"])
        status, out, err = self.run_memtrace("summary", self.path)
        self.assertEqual((status, err), (0, ""))
        self.assertIn("Total allocated:     15.3 MiB in 1000000 allocations",
                      out)

    def test_report_json(self):
        start = time.monotonic()
        status, out, err = self.run_memtrace("report", self.path, "--json")
        elapsed = time.monotonic() - start
        self.assertEqual((status, err), (0, ""))
        self.assertLess(elapsed, TIMEOUT)
        r = json.loads(out)
        self.assertEqual(r["sites"], 1000000)
        self.assertEqual(r["view_allocations"], 1000000)
        self.assertEqual(len(r["top"]), 10)
        for t in r["top"]:
            self.assertEqual((t["bytes"], t["count"]), (16, 1))
            self.assertEqual(len(t["stack"]), 1)
        # Every stack is its own site: ten distinct frames.
        self.assertEqual(len({t["site"]["function"] for t in r["top"]}), 10)

    def test_stats(self):
        status, out, err = self.run_memtrace("stats", self.path)
        self.assertEqual((status, err), (0, ""))
        self.assertIn("Total allocations:     1000000\n", out)
        self.assertIn("  malloc                1000000", out)


class HostileModulePaths(FixtureTest):
    """A capture names files on the reader's machine (module paths), and
    the reader opens them to symbolize: a FIFO, a device, a directory, a
    text file and a damaged ELF file must neither hang nor crash it. The
    capture is written at test time (it needs the paths of a scratch
    directory), with make_fixtures.py's encoders."""

    def test_fifo_device_directory_text_and_bad_elf(self):
        sys.path.insert(0, FIXTURES)
        saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
        try:
            import make_fixtures as mf
        finally:
            sys.path.remove(FIXTURES)
            sys.dont_write_bytecode = saved
        with tempfile.TemporaryDirectory(prefix="mt-modules-") as d:
            os.mkfifo(os.path.join(d, "fifo"))
            with open(os.path.join(d, "text"), "w") as f:
                f.write("not an ELF file\n")
            with open(os.path.join(d, "badelf"), "wb") as f:
                f.write(b"\x7fELF\x02\x01\x01" + b"\xff" * 200)
            paths = [os.path.join(d, "fifo"), "/dev/zero", d,
                     os.path.join(d, "text"), os.path.join(d, "badelf")]
            defs, evs, prev = b"", [], 0
            for i, path in enumerate(paths, 1):
                bias = i << 20
                defs += mf.record(mf.DEF_MODULE_LOAD, mf.varint(i) +
                                  mf.varint(bias) + mf.sstr(path.encode()) +
                                  mf.sstr(b"\x01\x02") + mf.varint(1) +
                                  mf.varint(0) + mf.varint(0x10000))
            for i in range(1, len(paths) + 1):
                ip = (i << 20) + 0x1000
                defs += mf.node(0, ip - prev)
                prev = ip
                evs.append((mf.EV_MALLOC, i, i << 12, 10 * i, i))
            raw = (mf.section(mf.SEC_DEFS, defs + mf.TRAILER) +
                   mf.section(mf.SEC_EVENTS, mf.events(0, evs)) +
                   mf.sync(len(paths) + 1))
            cap = os.path.join(d, "cap.bin")
            with open(cap, "wb") as f:
                f.write(mf.header() + mf.block(raw))
            status, out, err = self.run_memtrace("report", cap, "--json")
            self.assertEqual((status, err), (0, ""))
            r = json.loads(out)
            got = {t["site"]["module"]: (t["bytes"], t["site"]["function"])
                   for t in r["top"]}
            want = {p: (10 * i, os.path.basename(p) + "+0xfff")
                    for i, p in enumerate(paths, 1)}
            self.assertEqual(got, want)
            for cmd in ("summary", "stats"):
                status, out, err = self.run_memtrace(cmd, cap)
                self.assertEqual((status, err), (0, ""))


class Golden(FixtureTest):
    """tests/fixtures/golden-v1.bin: the capture written by write_golden()
    in tests/test_reader.c, read with its exact numbers."""

    path = fixture("golden-v1.bin")

    def read_json(self, *args):
        status, out, err = self.run_memtrace(*args)
        self.assertEqual((status, err), (0, ""))
        return json.loads(out)

    def test_summary(self):
        s = self.read_json("summary", self.path, "--json")
        want = {"pid": 4242, "command": "./app --size 3",
                "peak_bytes": 4096 + 300 + 200 + 0x10000,
                "peak_time_s": 0.01,
                "current_bytes": 4096 + 300 + 0xc000,
                "current_allocations": 3, "total_allocations": 5,
                "total_frees": 2, "unmatched_frees": 0,
                "total_bytes_allocated": 4096 + 100 + 200 + 300 + 0x10000,
                "duration_s": 0.025, "peak_rss_bytes": 3 << 20,
                "threads": 2, "native": True, "python_version": None,
                "complete": True, "events_lost": False, "warning": None}
        for key, value in want.items():
            self.assertEqual(s[key], value, key)

    def test_report(self):
        frame = {"file": "/usr/bin/app", "line": 0, "module": "/usr/bin/app"}
        r = self.read_json("report", self.path, "--json")
        self.assertEqual((r["view_bytes"], r["view_allocations"], r["sites"]),
                         (70132, 4, 2))
        self.assertEqual(r["top"], [
            {"bytes": 69932, "count": 3,
             "site": dict(frame, function="app+0x12ff"),
             "stack": [dict(frame, function="app+0x12ff"),
                       dict(frame, function="app+0x10ff")],
             "stack_truncated": False},
            {"bytes": 200, "count": 1,
             "site": dict(frame, function="app+0x11ff"),
             "stack": [dict(frame, function="app+0x11ff"),
                       dict(frame, function="app+0x10ff")],
             "stack_truncated": False}])
        r = self.read_json("report", self.path, "--leaks", "--json")
        self.assertEqual([(t["bytes"], t["count"], t["site"]["function"])
                          for t in r["top"]], [(53548, 3, "app+0x12ff")])

    def test_stats(self):
        s = self.read_json("stats", self.path, "--json")
        by = {k: (v["count"], v["bytes"]) for k, v in
              s["by_allocator"].items() if v["count"]}
        self.assertEqual(by, {"malloc": (2, 4196), "calloc": (1, 200),
                              "realloc": (1, 300), "mmap": (1, 65536)})
        self.assertEqual([(h["min"], h["count"]) for h in s["size_histogram"]],
                         [(64, 1), (128, 1), (256, 1), (4096, 1), (65536, 1)])


if __name__ == "__main__":
    unittest.main()
