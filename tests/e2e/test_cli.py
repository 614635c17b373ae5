"""test_cli.py: the `memtrace` command as users and scripts meet it: the
version, the help, usage errors, unreadable captures (one line on stderr
naming the file, exit status 2, never a crash), and the summary, report and
stats reports (text and JSON) of synthetic captures with known numbers.

The captures are written here in pure Python (the format of
common/format.h, with LZ4 frames made of uncompressed blocks), so these
tests do not depend on the tracer. Environment: MT_BUILD is the build
directory holding the `memtrace` binary.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

BUILD = os.environ.get("MT_BUILD", os.path.join(os.path.dirname(__file__),
                                                "..", "..", "build"))
MEMTRACE = os.path.join(BUILD, "memtrace")

CONTRACT_COMMANDS = ["run", "summary", "stats", "report", "flamegraph",
                     "table", "tree", "diff", "rss", "stages", "export"]

# ---- a tiny capture writer -------------------------------------------------
# The format's constants and encoders (varints, zigzag, LZ4 frames with their
# xxh32 checksums) are the fixture generator's: one Python writer of the
# format, not two.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fixtures"))
from make_fixtures import (BLOCK_MAGIC, DEF_NODE, DEF_THREAD,  # noqa: E402
                           DEF_TRAILER, EV_CALLOC, EV_FREE, EV_MALLOC,
                           FLAG_NATIVE, HDR_ARGV, HDR_EXE, HDR_PID, HDR_TRACER,
                           MAGIC, SEC_DEFS, SEC_EVENTS, SEC_SYNC, lz4_frame,
                           varint)
from make_fixtures import zz as zigzag  # noqa: E402


class Capture:
    """Builds a capture: header, then blocks of sections."""

    def __init__(self, flags=0, pid=4242, argv=("./prog", "--size", "10"),
                 version=1):
        payload = (self._field(HDR_PID, varint(pid)) +
                   self._field(HDR_ARGV,
                               b"".join(a.encode() + b"\0" for a in argv)) +
                   self._field(HDR_EXE, b"/usr/bin/prog") +
                   self._field(HDR_TRACER, b"test"))
        self.data = bytearray(MAGIC + struct.pack("<HHI", version, flags,
                                                  len(payload)) + payload)
        self.block = bytearray()
        self.defs = bytearray()
        self.prev_ip = 0
        self.nodes = 0
        self.events = bytearray()
        self.ev_state = None
        self.seq = 0
        self.count = 0

    @staticmethod
    def _field(tag, value):
        return varint(tag) + varint(len(value)) + value

    def _def(self, kind, payload):
        self._end_events()
        self.defs += bytes([kind]) + varint(len(payload)) + payload

    def _end_defs(self):
        if self.defs:
            self.block += bytes([SEC_DEFS]) + varint(len(self.defs)) + self.defs
            self.defs = bytearray()

    def _end_events(self):
        if self.ev_state is not None:
            self.block += (bytes([SEC_EVENTS]) + varint(len(self.events)) +
                           self.events)
            self.events = bytearray()
            self.ev_state = None

    def node(self, parent, ip):
        self._def(DEF_NODE, varint(parent) + varint(zigzag(ip - self.prev_ip)))
        self.prev_ip = ip
        self.nodes += 1
        return self.nodes

    def thread(self, index, tid, name):
        self._def(DEF_THREAD, varint(index) + varint(tid) +
                  varint(len(name)) + name.encode())

    def trailer(self, ns, peak_rss, flags=0):
        self._def(DEF_TRAILER, varint(ns) + varint(peak_rss) +
                  varint(self.count) + varint(flags))

    def _event(self, kind, addr, size=None, stack=None):
        self._end_defs()
        if self.ev_state is None:
            self.ev_state = [0, 0, 0]  # seq, addr, stack
            self.events = bytearray(varint(0))  # thread index 0
        st = self.ev_state
        self.seq += 1
        self.count += 1
        d = self.seq - st[0] - 1
        st[0] = self.seq
        if d < 7:
            self.events.append(kind | (d << 5))
        else:
            self.events.append(kind | (7 << 5))
            self.events += varint(d - 7)
        self.events += varint(zigzag(addr - st[1]))
        st[1] = addr
        if kind == EV_FREE:
            return
        self.events += varint(size)
        self.events += varint(zigzag(stack - st[2]))
        st[2] = stack

    def malloc(self, addr, size, stack, kind=EV_MALLOC):
        self._event(kind, addr, size, stack)

    def free(self, addr):
        self._event(EV_FREE, addr)

    def sync(self):
        self._end_defs()
        self._end_events()
        payload = varint(self.seq + 1)
        self.block += bytes([SEC_SYNC]) + varint(len(payload)) + payload

    def flush(self):
        self._end_defs()
        self._end_events()
        if not self.block:
            return
        frame = lz4_frame(bytes(self.block))
        self.data += struct.pack("<III", BLOCK_MAGIC, len(frame),
                                 len(self.block)) + frame
        self.block = bytearray()

    def bytes(self):
        self.flush()
        return bytes(self.data)


def numbers_capture(flags=0):
    """The capture of the unit tests' numbers: 5 allocations of 1860 bytes,
    peak 1750, current 860 in 4, one free, one unmatched free."""
    c = Capture(flags=flags)
    c.node(0, 0x1000)
    c.node(1, 0x2000)
    c.node(1, 0x3000)
    c.thread(0, 4242, "main")
    c.malloc(0x10000, 1000, 2)
    c.malloc(0x20000, 500, 3)
    c.malloc(0x30000, 250, 2)
    c.free(0x10000)
    c.malloc(0x40000, 100, 3)
    c.free(0x99999)
    c.malloc(0x50000, 10, 3, kind=EV_CALLOC)
    c.sync()
    c.trailer(2500000000, 8 << 20)
    return c.bytes()


def frame(addr):
    return {"function": addr, "file": "", "line": 0, "module": ""}


# ---- the tests --------------------------------------------------------------

class CliTestCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="mt-cli-")
        self.addCleanup(self.tmp.cleanup)

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def write(self, name, data):
        p = self.path(name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def memtrace(self, *args):
        return subprocess.run([MEMTRACE] + list(args), capture_output=True,
                              timeout=60)

    def assert_no_crash(self, r):
        err = r.stderr.decode("utf-8", "replace")
        self.assertGreaterEqual(r.returncode, 0, "killed by a signal: " + err)
        for bad in ("Traceback", "Segmentation", "AddressSanitizer",
                    "runtime error", "Aborted", "core dumped"):
            self.assertNotIn(bad, err)

    def assert_one_line_error(self, r, name):
        """Exit 2, nothing on stdout, exactly one line on stderr that names
        the file."""
        self.assert_no_crash(r)
        err = r.stderr.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 2, err)
        self.assertEqual(r.stdout, b"")
        self.assertEqual(err.count("\n"), 1, err)
        self.assertTrue(err.endswith("\n"), err)
        self.assertTrue(err.startswith("memtrace: "), err)
        self.assertIn(name, err)
        return err


class Progress(CliTestCase):
    """A read longer than MEMTRACE_PROGRESS_AFTER seconds (1 by default)
    shows "reading FILE: N%" on stderr when it is a terminal, and clears
    the line when done; never when stderr is a file or a pipe."""
    GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                          "fixtures", "golden-v1.bin")

    def run_summary(self, stderr_tty):
        import pty
        env = dict(os.environ, MEMTRACE_PROGRESS_AFTER="0")
        if not stderr_tty:
            return subprocess.run([MEMTRACE, "summary", self.GOLDEN],
                                  capture_output=True, env=env, timeout=60)
        master, slave = pty.openpty()
        try:
            r = subprocess.run([MEMTRACE, "summary", self.GOLDEN],
                               stdout=subprocess.PIPE, stderr=slave, env=env,
                               timeout=60)
            os.close(slave)
            slave = -1
            err = b""
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the other side is closed
                    break
                if not chunk:
                    break
                err += chunk
        finally:
            if slave >= 0:
                os.close(slave)
            os.close(master)
        r.stderr = err
        return r

    def test_progress_on_a_terminal(self):
        r = self.run_summary(True)
        self.assertEqual(r.returncode, 0, r.stderr)
        want = b"\rmemtrace: reading " + self.GOLDEN.encode() + b": "
        self.assertIn(want, r.stderr)
        self.assertTrue(r.stderr.endswith(b"\r\x1b[K"), r.stderr)
        self.assertIn(b"Peak", r.stdout)

    def test_no_progress_into_a_pipe(self):
        r = self.run_summary(False)
        self.assertEqual((r.returncode, r.stderr), (0, b""))


class VersionAndHelp(CliTestCase):
    def test_version(self):
        r = self.memtrace("--version")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.stdout, b"memtrace 0.1.0 (capture format 1)\n")
        self.assertEqual(r.stderr, b"")

    def test_help_lists_every_command(self):
        for args in (["help"], ["--help"], ["-h"]):
            r = self.memtrace(*args)
            self.assertEqual(r.returncode, 0)
            out = r.stdout.decode()
            for cmd in CONTRACT_COMMANDS:
                self.assertRegex(out, r"\n  %s +\S" % cmd)

    def test_command_help(self):
        r = self.memtrace("help", "report")
        self.assertEqual(r.returncode, 0)
        out = r.stdout.decode()
        self.assertIn("usage: memtrace report FILE... [--top N] [--leaks | "
                      "--all-allocations |", out)
        for option in ("--leaks", "--all-allocations",
                       "--temporary-allocations", "--json"):
            self.assertIn(option, out)
        r2 = self.memtrace("report", "--help")
        self.assertEqual(r2.returncode, 0)
        self.assertEqual(r2.stdout, r.stdout)
        r3 = self.memtrace("summary", "-h")
        self.assertEqual(r3.returncode, 0)
        self.assertIn(b"peak_bytes", r3.stdout)
        self.assertIn(b"by_allocator", self.memtrace("help", "stats").stdout)
        self.assertIn(b"--native", self.memtrace("help", "run").stdout)

    def test_no_command(self):
        r = self.memtrace()
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, b"")
        self.assertIn(b"usage: memtrace", r.stderr)

    def test_unknown_command(self):
        r = self.memtrace("frobnicate", "x.bin")
        self.assert_no_crash(r)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, b"")
        self.assertIn(b"unknown command 'frobnicate'", r.stderr)
        self.assertIn(b"usage: memtrace", r.stderr)
        r = self.memtrace("help", "frobnicate")
        self.assertEqual(r.returncode, 2)
        # A terminal escape in the name is shown, not sent.
        r = self.memtrace("\x1b[2Jx")
        self.assertEqual(r.returncode, 2)
        self.assertNotIn(b"\x1b", r.stderr)
        self.assertIn(b"\\x1b[2Jx", r.stderr)


class UsageErrors(CliTestCase):
    def test_option_errors(self):
        good = self.write("good.bin", numbers_capture())
        cases = [
            ["summary"],                          # no FILE
            ["summary", good, "--from", "2", "--to", "1"],
            ["summary", good, "--from", "-1"],
            ["summary", good, "--to", "1h"],
            ["report", good, "--from", "extract", "--to", "1"],  # mixed
            ["summary", good, "--bogus"],
            ["summary", good, "--top", "3"],      # report's option
            ["stats", good, "-x"],
            ["report", good, "--top"],            # no value
            ["report", good, "--top", "0"],
            ["report", good, "--top", "-3"],
            ["report", good, "--top", "ten"],
            ["report", good, "--top", "99999999999999999999999"],
            ["report", good, "--json=yes"],
        ]
        for args in cases:
            r = self.memtrace(*args)
            self.assert_no_crash(r)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(r.stdout, b"", args)
            self.assertIn(b"memtrace %s: " % args[0].encode(), r.stderr)


    def test_output_in_a_missing_directory(self):
        """A report that cannot be written: one line naming the path the
        user gave (not a temporary name of ours), status 2, no file left."""
        good = self.write("good.bin", numbers_capture())
        out_dir = self.path("no-such-dir")
        for args, out in ((["flamegraph"], "page.html"), (["table"], "page.html"),
                          (["export", "--format", "csv"], "sites.csv")):
            target = os.path.join(out_dir, out)
            r = self.memtrace(args[0], good, *args[1:], "-o", target)
            self.assert_no_crash(r)
            err = r.stderr.decode()
            self.assertEqual(r.returncode, 2, err)
            self.assertEqual(err, f"memtrace {args[0]}: cannot write {target}: "
                                  f"{err.rsplit(': ', 1)[1]}", args)
            self.assertEqual(err.count("\n"), 1, err)
        self.assertFalse(os.path.exists(out_dir))


class BadCaptures(CliTestCase):
    def test_missing_file(self):
        p = self.path("no-such-capture.bin")
        for cmd in ("summary", "report", "stats"):
            self.assert_one_line_error(self.memtrace(cmd, p), p)
            self.assert_one_line_error(self.memtrace(cmd, p, "--json"), p)

    def test_empty_file(self):
        p = self.write("empty.bin", b"")
        self.assert_one_line_error(self.memtrace("summary", p), p)

    def test_directory(self):
        p = self.path("adir")
        os.mkdir(p)
        self.assert_one_line_error(self.memtrace("report", p), p)

    def test_wrong_magic(self):
        p = self.write("notes.txt", b"this is not a capture at all\n" * 10)
        self.assert_one_line_error(self.memtrace("summary", p, "--json"), p)
        p = self.write("elf.bin", b"\x7fELF" + b"\0" * 60)
        self.assert_one_line_error(self.memtrace("stats", p), p)

    def test_newer_version(self):
        data = Capture(version=99).bytes()
        p = self.write("future.bin", data)
        err = self.assert_one_line_error(self.memtrace("summary", p), p)
        self.assertIn("version", err)

    def test_truncated_header(self):
        data = numbers_capture()
        for cut in (5, 15, 20):
            p = self.write("cut%d.bin" % cut, data[:cut])
            self.assert_one_line_error(self.memtrace("summary", p), p)

    def test_truncated_block(self):
        """Cut inside the only block: an error, or the header alone read
        with a warning; either way one line naming the file."""
        data = numbers_capture()
        p = self.write("cutblock.bin", data[:len(data) - 7])
        r = self.memtrace("summary", p, "--json")
        self.assert_no_crash(r)
        err = r.stderr.decode()
        self.assertEqual(err.count("\n"), 1, err)
        self.assertIn(p, err)
        if r.returncode == 0:
            self.assertTrue(err.startswith("memtrace: warning: "), err)
            s = json.loads(r.stdout)
            self.assertFalse(s["complete"])
            self.assertIsNotNone(s["warning"])
        else:
            self.assertEqual(r.returncode, 2, err)

    def test_truncated_after_a_complete_block(self):
        """A readable first block, then half a second one: the first
        block's numbers, with a warning."""
        c = Capture()
        c.node(0, 0x1000)
        c.thread(0, 1, "main")
        c.malloc(0x100, 300, 1)
        c.malloc(0x200, 200, 1)
        c.sync()
        c.flush()
        c.malloc(0x300, 5000, 1)
        c.sync()
        c.trailer(10, 4096)
        data = c.bytes()
        # Find the second block's start: the first block ends where the
        # second block magic begins.
        magic = struct.pack("<I", BLOCK_MAGIC)
        second = data.index(magic, data.index(magic) + 1)
        p = self.write("half.bin", data[:second + 20])
        r = self.memtrace("summary", p, "--json")
        self.assert_no_crash(r)
        err = r.stderr.decode()
        self.assertEqual(err.count("\n"), 1, err)
        self.assertIn(p, err)
        if r.returncode == 2:
            return  # reading up to the last block is allowed, not required
        self.assertEqual(r.returncode, 0, err)
        self.assertTrue(err.startswith("memtrace: warning: "), err)
        s = json.loads(r.stdout)
        self.assertEqual(s["total_allocations"], 2)
        self.assertEqual(s["peak_bytes"], 500)
        self.assertFalse(s["complete"])
        self.assertIsInstance(s["warning"], str)

    def test_garbage_after_header(self):
        data = Capture().bytes() + b"\x4d\x54\x42\x4b" + b"\xff" * 40
        p = self.write("garbage.bin", data)
        r = self.memtrace("report", p)
        self.assert_no_crash(r)
        self.assertEqual(r.stderr.decode().count("\n"), 1, r.stderr)
        self.assertIn(p.encode(), r.stderr)
        self.assertIn(r.returncode, (0, 2))

    def test_name_with_control_characters(self):
        """A file name with a newline and an escape still gives one line,
        and sends no escape sequence to the terminal."""
        p = self.path("evil\n\x1b[31mname.bin")
        r = self.memtrace("summary", p)
        self.assert_no_crash(r)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr.count(b"\n"), 1, r.stderr)
        self.assertNotIn(b"\x1b", r.stderr)
        self.assertIn(b"evil", r.stderr)


class Reports(CliTestCase):
    def setUp(self):
        super().setUp()
        self.cap = self.write("numbers.bin", numbers_capture(FLAG_NATIVE))

    def run_ok(self, *args):
        r = self.memtrace(*args)
        self.assert_no_crash(r)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, b"")
        return r.stdout.decode()

    def test_summary_json(self):
        s = json.loads(self.run_ok("summary", self.cap, "--json"))
        want = {
            "capture": self.cap, "pid": 4242, "command": "./prog --size 10",
            "peak_bytes": 1750, "current_bytes": 860,
            "current_allocations": 4, "total_allocations": 5,
            "total_frees": 1, "unmatched_frees": 1,
            "total_bytes_allocated": 1860, "peak_rss_bytes": 8 << 20,
            "threads": 1, "native": True, "python_version": None,
            "complete": True, "warning": None,
        }
        for key, value in want.items():
            self.assertEqual(s[key], value, key)
        self.assertIsInstance(s["duration_s"], float)
        self.assertAlmostEqual(s["duration_s"], 2.5)
        self.assertEqual([(t["bytes"], t["count"], t["site"]) for t in s["top"]],
                         [(1250, 2, frame("0x2000")),
                          (500, 1, frame("0x3000"))])
        # Not native: the flag says so.
        plain = self.write("plain.bin", numbers_capture(0))
        s = json.loads(self.run_ok("summary", plain, "--json"))
        self.assertIs(s["native"], False)

    def test_summary_text(self):
        out = self.run_ok("summary", self.cap)
        self.assertIn("Peak memory:         1.7 KiB at ", out)
        self.assertIn("Current memory:      860 B in 4 allocations", out)
        self.assertIn("Total allocated:     1.8 KiB in 5 allocations\n", out)
        self.assertIn("Top 2 locations at the peak:\n"
                      "  1.    1.2 KiB in 2 allocations: 0x2000\n"
                      "  2.      500 B in 1 allocation: 0x3000\n", out)

    def test_report_json(self):
        r = json.loads(self.run_ok("report", self.cap, "--json"))
        self.assertEqual(r["capture"], self.cap)
        self.assertEqual((r["current_bytes"], r["peak_bytes"],
                          r["total_allocations"],
                          r["total_bytes_allocated"]), (860, 1750, 5, 1860))
        self.assertEqual(r["top"], [
            {"bytes": 1250, "count": 2, "site": frame("0x2000"),
             "stack": [frame("0x2000"), frame("0x1000")],
             "stack_truncated": False},
            {"bytes": 500, "count": 1, "site": frame("0x3000"),
             "stack": [frame("0x3000"), frame("0x1000")],
             "stack_truncated": False},
        ])
        # Options may come before the file too.
        r1 = json.loads(self.run_ok("report", "--top", "1", "--json",
                                    self.cap))
        self.assertEqual([t["bytes"] for t in r1["top"]], [1250])
        r1 = json.loads(self.run_ok("report", self.cap, "--json", "--top=1"))
        self.assertEqual([t["bytes"] for t in r1["top"]], [1250])

    def test_report_leaks(self):
        r = json.loads(self.run_ok("report", self.cap, "--leaks", "--json"))
        self.assertEqual(r["view"], "leaks")
        self.assertEqual([(t["bytes"], t["count"], t["site"]["function"])
                          for t in r["top"]],
                         [(610, 3, "0x3000"), (250, 1, "0x2000")])

    def test_report_text(self):
        out = self.run_ok("report", self.cap, "--top", "1")
        self.assertIn("Current memory: 860 B in 4 allocations\n"
                      "Peak memory: 1.7 KiB\n", out)
        self.assertIn("Top 1 site at the peak:\n"
                      "#1: 0x2000: 1.2 KiB in 2 allocations\n"
                      "    0x2000\n"
                      "    0x1000\n"
                      "1 other site: 500 B in 1 allocation\n", out)
        out = self.run_ok("report", self.cap, "--leaks")
        self.assertIn("Top 2 sites live when tracing ended (leaks):\n"
                      "#1: 0x3000: 610 B in 3 allocations\n", out)

    def test_stats(self):
        s = json.loads(self.run_ok("stats", self.cap, "--json"))
        self.assertEqual((s["total_allocations"], s["total_frees"],
                          s["unmatched_frees"], s["total_bytes_allocated"]),
                         (5, 1, 1, 1860))
        self.assertEqual(s["by_allocator"]["malloc"],
                         {"count": 4, "bytes": 1850})
        self.assertEqual(s["by_allocator"]["calloc"],
                         {"count": 1, "bytes": 10})
        self.assertEqual(s["by_allocator"]["mmap"], {"count": 0, "bytes": 0})
        self.assertNotIn("free", s["by_allocator"])
        self.assertEqual(s["size_histogram"], [
            {"min": 8, "max": 15, "count": 1},
            {"min": 64, "max": 127, "count": 1},
            {"min": 128, "max": 255, "count": 1},
            {"min": 256, "max": 511, "count": 1},
            {"min": 512, "max": 1023, "count": 1}])
        self.assertEqual([(t["bytes"], t["count"]) for t in s["top_by_bytes"]],
                         [(1250, 2), (610, 3)])
        self.assertEqual([(t["bytes"], t["count"]) for t in s["top_by_count"]],
                         [(610, 3), (1250, 2)])
        out = self.run_ok("stats", self.cap)
        self.assertIn("Total allocations:     5\n", out)
        self.assertIn("Unmatched frees:       1\n", out)
        self.assertIn("  calloc ", out)

    def test_empty_capture(self):
        """A header and no events: zeros everywhere, not an error."""
        c = Capture()
        c.trailer(5, 4096)
        p = self.write("nothing.bin", c.bytes())
        s = json.loads(self.run_ok("summary", p, "--json"))
        self.assertEqual((s["peak_bytes"], s["total_allocations"], s["top"]),
                         (0, 0, []))
        r = json.loads(self.run_ok("report", p, "--json"))
        self.assertEqual(r["top"], [])
        self.assertIn("No memory was live at the peak.",
                      self.run_ok("report", p))
        self.assertEqual(json.loads(self.run_ok("stats", p, "--json"))
                         ["size_histogram"], [])

    def test_incomplete_capture(self):
        """No trailer (the program was killed): read, marked incomplete."""
        c = Capture()
        c.node(0, 0x1000)
        c.thread(0, 1, "main")
        c.malloc(0x100, 64, 1)
        c.sync()
        p = self.write("killed.bin", c.bytes())
        r = self.memtrace("summary", p, "--json")
        self.assert_no_crash(r)
        self.assertEqual(r.returncode, 0, r.stderr)
        s = json.loads(r.stdout)
        self.assertFalse(s["complete"])
        self.assertEqual(s["current_bytes"], 64)


if __name__ == "__main__":
    unittest.main()
