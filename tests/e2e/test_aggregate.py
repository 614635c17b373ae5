"""End-to-end: `memtrace run --aggregate` (and Tracker(aggregate=True)).
The tracer keeps per-stack totals and checkpoints them; the reports on such
a capture must equal those of a full-event capture of the same program, and
a program killed with SIGKILL after a checkpoint must still leave them."""
import json
import os
import signal
import subprocess
import sys
import time
import unittest

from harness import (BUILD, MEMTRACE, CaptureTest, memtrace, prog,
                     report_json, sites_by_function)
from test_native import AT_PEAK, LEAKED, OWN_COUNTS

# Summary fields that depend only on what the program allocated.
SAME_SUMMARY = ("peak_bytes", "current_bytes", "current_allocations",
                "total_allocations", "total_frees", "unmatched_frees",
                "total_bytes_allocated", "threads", "native", "complete")


def own(report, names):
    """{function: (bytes, count)} of the report's sites in names."""
    sites = sites_by_function(report)
    return {f: (sites[f]["bytes"], sites[f]["count"]) for f in names
            if f in sites}


def strip(report):
    """A report's JSON without what differs between two runs of a program
    (the capture's name, pid, times, RSS)."""
    return {k: v for k, v in report.items()
            if k not in ("capture", "pid", "duration_s", "peak_rss_bytes",
                         "peak_time_s", "warning")}


class KnownAllocations(CaptureTest):
    """tests/progs/known_allocs under --aggregate: the numbers of
    test_native.py, and the same reports as a full capture."""

    def setUp(self):
        super().setUp()
        self.agg, cp = self.record([prog("known_allocs")], name="agg.bin",
                                   extra=("--aggregate",))
        self.assertEqual(cp.stdout, "known_allocs: done\n")
        self.full, _ = self.record([prog("known_allocs")], name="full.bin")

    def test_exact_leaks_and_peak(self):
        leaks = report_json("report", self.agg, "--leaks", "--top", "1000")
        self.assertEqual(own(leaks, LEAKED), LEAKED)
        peak = report_json("report", self.agg, "--top", "1000")
        self.assertEqual(own(peak, AT_PEAK), AT_PEAK)
        self.assertEqual(peak["peak_bytes"] - sum(b for b, _ in AT_PEAK.values()),
                         report_json("report", self.full)["peak_bytes"] -
                         sum(b for b, _ in AT_PEAK.values()))
        every = sites_by_function(report_json(
            "report", self.agg, "--temporary-allocations", "--top", "1000"))
        # make_calloc's 10 blocks are each freed before the next is made.
        self.assertEqual((every["make_calloc"]["bytes"],
                          every["make_calloc"]["count"]), (5000, 10))

    def test_same_reports_as_full_capture(self):
        for args in ((), ("--leaks",)):
            a = report_json("report", self.agg, "--top", "1000", *args)
            f = report_json("report", self.full, "--top", "1000", *args)
            self.assertEqual(strip(a), strip(f), args)
        a, f = report_json("summary", self.agg), report_json("summary", self.full)
        self.assertEqual({k: a[k] for k in SAME_SUMMARY},
                         {k: f[k] for k in SAME_SUMMARY})
        counts = {fn: e["count"] for fn, e in sites_by_function(report_json(
            "report", self.agg, "--top", "1000", "--temporary-allocations",
            "--temporary-allocation-threshold", "1")).items() if fn in OWN_COUNTS}
        self.assertLessEqual(counts["make_calloc"], OWN_COUNTS["make_calloc"])
        sa, sf = report_json("stats", self.agg), report_json("stats", self.full)
        self.assertEqual(strip(sa), strip(sf))

    def test_every_report_reads_it(self):
        for cmd in (("summary",), ("stats",), ("report", "--leaks"),
                    ("tree",), ("tree", "--leaks"),
                    ("export", "--format", "folded", "-o", self.path("f.txt")),
                    ("export", "--format", "csv", "-o", self.path("f.csv")),
                    ("flamegraph", "-o", self.path("f.html")),
                    ("flamegraph", "--temporary-allocations", "-o",
                     self.path("t.html")),
                    ("table", "-o", self.path("t2.html")),
                    ("diff", self.full)):
            cp = memtrace(cmd[0], self.agg, *cmd[1:])
            self.assertEqual(cp.stderr, "", cmd)
        with open(self.path("f.txt")) as f:
            self.assertIn("big_peak", f.read())

    def test_reports_that_need_events_refuse(self):
        for cmd in ("report", "flamegraph"):
            cp = memtrace(cmd, self.agg, "--temporary-allocations",
                          "--temporary-allocation-threshold", "3", check=False)
            self.assertEqual(cp.returncode, 2, cp.stderr)
            self.assertEqual(cp.stdout, "")
            self.assertEqual(len(cp.stderr.splitlines()), 1, cp.stderr)
            self.assertIn("aggregate capture", cp.stderr)

    def test_capture_is_small_and_flagged(self):
        with open(self.agg, "rb") as f:
            head = f.read(12)
        self.assertEqual(int.from_bytes(head[10:12], "little") & 0x0010, 0x0010)
        self.assertEqual(report_json("summary", self.full)["complete"], True)


class Checkpoints(CaptureTest):
    def start_hold(self, out, interval="100"):
        p = subprocess.Popen([MEMTRACE, "run", "-o", out, "--aggregate",
                              "--checkpoint-interval", interval, "--",
                              prog("lifecycle"), "hold"],
                             stdout=subprocess.PIPE, text=True)
        self.addCleanup(p.stdout.close)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        self.assertEqual(p.stdout.readline(), "ready\n")
        return p

    def wait_for_checkpoint(self, out):
        """Polls the capture (as a user could) until a checkpoint holds
        hold_work's blocks; the program is still running."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cp = memtrace("report", out, "--leaks", "--json", "--top", "1000",
                          check=False)
            if cp.returncode == 0:
                sites = sites_by_function(json.loads(cp.stdout))
                if "hold_work" in sites:
                    return
            time.sleep(0.05)
        self.fail("no checkpoint with hold_work's allocations in 60 s")

    def kill_program(self, p):
        # The program, not memtrace: memtrace run's only child.
        with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
            child = int(f.read().split()[0])
        os.kill(child, signal.SIGKILL)
        self.assertEqual(p.wait(timeout=30), 128 + signal.SIGKILL)

    def test_sigkill_after_a_checkpoint(self):
        """The OOM killer's case: SIGKILL, no exit handler, no trailer. The
        reports show the last checkpoint: every byte held, and the peak."""
        out = self.path("killed.bin")
        p = self.start_hold(out)
        self.wait_for_checkpoint(out)
        self.kill_program(p)
        cp = memtrace("report", out, "--leaks", "--json", "--top", "1000")
        self.assertIn("checkpoint", cp.stderr)
        self.assertEqual(len(cp.stderr.splitlines()), 1, cp.stderr)
        leaks = json.loads(cp.stdout)
        self.assertEqual(own(leaks, ["hold_work"]), {"hold_work": (1_200_000, 30)})
        self.assertNotIn("hold_peak", sites_by_function(leaks))
        peak = report_json("report", out, "--top", "1000")
        self.assertEqual(own(peak, ["hold_work", "hold_peak"]),
                         {"hold_work": (1_200_000, 30), "hold_peak": (8 << 20, 1)})
        s = report_json("summary", out)
        self.assertFalse(s["complete"])
        self.assertEqual(s["total_allocations"] - s["total_frees"],
                         s["current_allocations"])
        self.assertGreaterEqual(s["peak_bytes"], 1_200_000 + (8 << 20))
        self.assertGreater(s["duration_s"], 0)
        # The timeline came along: the heap at some tick held the blocks.
        fg = self.path("fg.html")
        memtrace("flamegraph", out, "-o", fg)
        with open(fg) as f:
            self.assertIn("hold_work", f.read())

    def test_killed_before_the_first_checkpoint(self):
        """A program killed before any checkpoint leaves a valid, empty
        capture, and the reader says why it is empty."""
        out = self.path("early.bin")
        p = self.start_hold(out, interval="3600000")
        time.sleep(0.3)
        self.kill_program(p)
        cp = memtrace("summary", out, "--json")
        self.assertIn("without a complete checkpoint", cp.stderr)
        self.assertEqual(json.loads(cp.stdout)["total_allocations"], 0)


class Endings(CaptureTest):
    def leaks(self, capture):
        return own(report_json("report", capture, "--leaks", "--top", "1000"),
                   ["before_crash"])

    def test_underscore_exit_writes_the_last_checkpoint(self):
        capture, _ = self.record([prog("lifecycle"), "_exit"],
                                 extra=("--aggregate",), expect_status=7)
        self.assertEqual(self.leaks(capture), {"before_crash": (5000, 5)})
        self.assertTrue(report_json("summary", capture)["complete"])

    def test_fatal_signal_writes_a_checkpoint(self):
        """abort and a segfault 0.4 s after allocating, long before the
        first checkpoint is due (5 s): the fatal-signal handler writes the
        totals of the writer's last round as one more checkpoint."""
        for mode, sig in (("abort", signal.SIGABRT), ("segv", signal.SIGSEGV)):
            capture, _ = self.record([prog("lifecycle"), mode], name=mode + ".bin",
                                     extra=("--aggregate",),
                                     expect_status=128 + sig)
            self.assertEqual(self.leaks(capture), {"before_crash": (5000, 5)}, mode)


class ThreadsAndForks(CaptureTest):
    def test_threads_every_pair(self):
        """8 threads x 200,000 malloc/free pairs, replayed in the tracer."""
        capture, cp = self.record([prog("stress"), "8", "200000"],
                                  extra=("--aggregate",))
        self.assertEqual(cp.stdout, "1600000 pairs\n")
        s = report_json("summary", capture)
        self.assertGreaterEqual(s["total_allocations"], 1_600_000)
        self.assertLess(s["total_allocations"], 1_600_000 + 100)
        self.assertEqual(s["total_allocations"] - s["total_frees"],
                         s["current_allocations"])
        self.assertEqual(s["threads"], 9)
        # A small file: no events, only stacks and checkpoints.
        self.assertLess(os.path.getsize(capture), 64 << 10)

    def test_follow_fork(self):
        capture, cp = self.record([prog("lifecycle"), "fork"],
                                  extra=("--aggregate", "--follow-fork"))
        children = [f for f in os.listdir(self.tmp) if f.startswith("out.bin.")]
        self.assertEqual(len(children), 1, os.listdir(self.tmp))
        child = sites_by_function(report_json(
            "report", self.path(children[0]), "--leaks", "--top", "1000"))
        self.assertEqual((child["child_work"]["bytes"],
                          child["child_work"]["count"]), (20000, 10))
        parent = sites_by_function(
            report_json("report", capture, "--leaks", "--top", "1000"))
        self.assertNotIn("child_work", parent)
        self.assertEqual(parent["parent_work"]["count"], 10)

    def test_checkpoint_interval_needs_aggregate(self):
        cp = memtrace("run", "-o", self.path("x.bin"), "--checkpoint-interval",
                      "100", "--", prog("known_allocs"), check=False)
        self.assertEqual(cp.returncode, 2)
        self.assertIn("--checkpoint-interval needs --aggregate", cp.stderr)
        self.assertFalse(os.path.exists(self.path("x.bin")))


PKG = os.path.join(os.path.abspath(BUILD), "python")
TRACKER = """
import sys, memtrace
KEEP = []
def work():
    KEEP.append(bytes(23_456_789))
with memtrace.Tracker(sys.argv[1], aggregate=True, checkpoint_ms=100):
    work()
"""


class Tracker(CaptureTest):
    def test_tracker_aggregate(self):
        ext = f"_memtrace.cpython-{sys.version_info[0]}{sys.version_info[1]}"
        if not any(f.startswith(ext) for f in os.listdir(os.path.join(PKG, "memtrace"))):
            self.skipTest(f"no extension built for {sys.executable}")
        out = self.path("tracker.bin")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "MEMTRACE_")) and k != "LD_PRELOAD"}
        env["PYTHONPATH"] = PKG
        cp = subprocess.run([sys.executable, "-c", TRACKER, out], env=env,
                            capture_output=True, text=True, timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        with open(out, "rb") as f:
            self.assertEqual(int.from_bytes(f.read(12)[10:12], "little") & 0x10, 0x10)
        sites = sites_by_function(report_json("report", out, "--leaks", "--top", "100"))
        self.assertEqual(sites["work"]["count"], 1)
        self.assertEqual(sites["work"]["bytes"], 23_456_789 + 33)


if __name__ == "__main__":
    unittest.main()
