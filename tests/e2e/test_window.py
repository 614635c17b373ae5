"""Windows of a run (--from/--to) and combined multi-process reports, on
tests/progs/phases.c, whose allocations come in phases 400 ms apart:

  phases        phase_a 1 MB at 0 s; phase_b 2 MB and free A at 0.4 s;
                phase_c 4 MB at 0.8 s; exit at 1.2 s
  phases fork   parent_keep 1 MB; two children one after the other
                (from 0.2 s to 0.6 s and from 0.8 s to 1.2 s), each
                child_hold 3 MB. Peak of the sum 4 MB, sum of peaks 7 MB.

Window edges sit in the middle of the sleeps, 200 ms from any allocation;
the reader places them at RSS samples (10 ms)."""
import json
import os
import unittest

from harness import CaptureTest, memtrace, prog, report_json, sites_by_function

MB = 1000000


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def fn_bytes(report):
    return {f: (e["bytes"], e["count"])
            for f, e in sites_by_function(report).items()}


class Windows(CaptureTest):
    @classmethod
    def setUpClass(cls):
        cls.shared = CaptureTest()
        cls.shared.setUp()
        cls.capture, _ = cls.shared.record([prog("phases")])

    @classmethod
    def tearDownClass(cls):
        cls.shared.tearDown()

    def report(self, *args):
        return report_json("report", self.capture, "--top", "100", *args)

    def test_whole_run(self):
        r = self.report()
        self.assertIsNone(r["window"])
        self.assertEqual(len(r["processes"]), 1)
        self.assertEqual(fn_bytes(r)["phase_b"], (2 * MB, 1))
        self.assertEqual(fn_bytes(r)["phase_c"], (4 * MB, 1))

    def test_first_phase(self):
        r = self.report("--to", "0.2")
        self.assertEqual(r["peak_bytes"], 1 * MB)
        self.assertEqual(fn_bytes(r), {"phase_a": (1 * MB, 1)})
        leaks = self.report("--to", "200ms", "--leaks")
        self.assertEqual(fn_bytes(leaks), {"phase_a": (1 * MB, 1)})
        w = leaks["window"]
        self.assertEqual(w["from_s"], 0)
        self.assertGreaterEqual(w["to_s"], 0.2)
        self.assertLess(w["to_s"], 0.4)  # placed at the next 10 ms sample
        self.assertFalse(w["clamped"])

    def test_second_phase(self):
        args = ("--from", "0.2", "--to", "0.6")
        r = self.report(*args)
        # The high-water mark inside: A (made before, still live) and B.
        self.assertEqual(r["peak_bytes"], 3 * MB)
        self.assertEqual(fn_bytes(r), {"phase_a": (1 * MB, 1),
                                       "phase_b": (2 * MB, 1)})
        # Made inside and live at its end: B only (A was made before).
        self.assertEqual(fn_bytes(self.report(*args, "--leaks")),
                         {"phase_b": (2 * MB, 1)})
        self.assertEqual(fn_bytes(self.report(*args, "--all-allocations")),
                         {"phase_b": (2 * MB, 1)})
        self.assertEqual(r["window"]["start_bytes"], 1 * MB)
        s = report_json("summary", self.capture, *args)
        self.assertEqual((s["total_allocations"], s["total_frees"],
                          s["total_bytes_allocated"], s["current_bytes"]),
                         (1, 1, 2 * MB, 2 * MB))

    def test_third_phase(self):
        args = ("--from", "0.6", "--to", "1")
        r = self.report(*args)
        self.assertEqual(r["peak_bytes"], 6 * MB)
        self.assertEqual(fn_bytes(r), {"phase_b": (2 * MB, 1),
                                       "phase_c": (4 * MB, 1)})
        self.assertEqual(fn_bytes(self.report(*args, "--leaks")),
                         {"phase_c": (4 * MB, 1)})

    def test_to_after_the_end_is_clamped(self):
        r = self.report("--from", "1.0", "--to", "1000")
        self.assertTrue(r["window"]["clamped"])
        self.assertEqual(r["window"]["start_bytes"], 6 * MB)
        # Only stdout's buffer comes after (its size is libc's business).
        self.assertGreaterEqual(r["peak_bytes"], 6 * MB)
        self.assertLess(r["peak_bytes"], 6 * MB + 65536)
        self.assertNotIn("phase_c", fn_bytes(self.report("--from", "1.0",
                                                         "--leaks")))

    def test_bad_windows(self):
        for args, words in ((("--from", "1000"), "after the capture's last RSS"),
                            (("--from", "-1"), "--from needs a time"),
                            (("--to", "0.5", "--from", "0.5"), "must be before"),
                            (("--to", "soon"), "stage name")):
            cp = memtrace("report", self.capture, *args, check=False)
            self.assertEqual(cp.returncode, 2, args)
            self.assertIn(words, cp.stderr)
            self.assertEqual(cp.stdout, "")
            self.assertNotIn("Traceback", cp.stderr)
            first = cp.stderr.splitlines()[0]
            self.assertTrue(first.startswith("memtrace"), first)
        cp = memtrace("summary", self.capture, "--from", "1000", check=False)
        self.assertEqual(len(cp.stderr.splitlines()), 1, cp.stderr)
        self.assertIn(self.capture, cp.stderr)

    def test_every_reading_command_takes_a_window(self):
        args = ("--from", "0.6", "--to", "1.0")
        t = report_json("tree", self.capture, *args)
        self.assertEqual(t["bytes"], 6 * MB)
        st = report_json("stats", self.capture, *args)
        self.assertEqual((st["total_allocations"], st["peak_bytes"]), (1, 6 * MB))
        cp = memtrace("export", self.capture, "--format", "folded", "--leaks",
                      *args)
        self.assertEqual(sum(int(l.rsplit(" ", 1)[1])
                             for l in cp.stdout.splitlines()), 4 * MB)
        cp = memtrace("export", self.capture, "--format", "csv", *args)
        peak = sum(int(r.split(",")[1]) for r in cp.stdout.splitlines()[1:]
                   if r.startswith("peak,"))
        self.assertEqual(peak, 6 * MB)
        page = self.path("fg.html")
        memtrace("flamegraph", self.capture, "-o", page, *args)
        html = read(page)
        self.assertRegex(html, r'"peak_bytes":\s*6000000\b')
        table = self.path("t.html")
        memtrace("table", self.capture, "-o", table, "--leaks", *args)
        self.assertIn("phase_c", read(table))
        d = report_json("diff", self.capture, self.capture, "--to", "0.2")
        self.assertEqual(d["bytes_diff"], 0)
        self.assertEqual(d["after_bytes"], 1 * MB)


class Combined(CaptureTest):
    @classmethod
    def setUpClass(cls):
        cls.shared = CaptureTest()
        cls.shared.setUp()
        cls.capture, cp = cls.shared.record([prog("phases"), "fork"],
                                            extra=("--follow-fork",))
        cls.children = sorted(
            os.path.join(cls.shared.tmp, f) for f in os.listdir(cls.shared.tmp)
            if f.startswith("out.bin."))

    @classmethod
    def tearDownClass(cls):
        cls.shared.tearDown()

    def test_two_children_written(self):
        self.assertEqual(len(self.children), 2)

    def test_peak_of_the_sum(self):
        r = report_json("report", self.capture, "--top", "100")
        procs = r["processes"]
        self.assertEqual([p["capture"] for p in procs],
                         [self.capture] + self.children)
        self.assertEqual([p["parent_pid"] for p in procs[1:]],
                         [procs[0]["pid"]] * 2)
        # The children ran one after the other: the job's high-water mark
        # is the parent's 1 MB and one child's 3 MB, not the 7 MB summed.
        self.assertEqual(r["peak_bytes"], 4 * MB)
        self.assertGreater(sum(p["peak_bytes"] for p in procs), 7 * MB)
        self.assertEqual(fn_bytes(r), {"parent_keep": (1 * MB, 1),
                                       "child_hold": (3 * MB, 1)})
        self.assertEqual(sum(p["at_peak_bytes"] for p in procs), 4 * MB)
        self.assertEqual(sorted(p["at_peak_bytes"] for p in procs[1:]),
                         [0, 3 * MB])
        self.assertEqual([p["peak_bytes"] for p in procs[1:]], [3 * MB] * 2)

    def test_summed_per_site(self):
        leaks = report_json("report", self.capture, "--leaks")
        self.assertEqual(fn_bytes(leaks)["child_hold"], (6 * MB, 2))
        self.assertEqual(fn_bytes(leaks)["parent_keep"], (1 * MB, 1))
        self.assertEqual([p["leaked_bytes"] for p in leaks["processes"][1:]],
                         [3 * MB] * 2)
        total = report_json("report", self.capture, "--all-allocations")
        self.assertEqual(fn_bytes(total)["child_hold"], (6 * MB, 2))

    def test_files_named_one_by_one(self):
        named = report_json("summary", self.capture, *self.children)
        found = report_json("summary", self.capture)
        for key in ("peak_bytes", "total_allocations", "current_bytes",
                    "processes"):
            self.assertEqual(named[key], found[key], key)
        alone = report_json("summary", self.capture, "--no-children")
        self.assertEqual(len(alone["processes"]), 1)
        self.assertLess(alone["peak_bytes"], 2 * MB)

    def test_text_says_how_many(self):
        for cmd in ("report", "summary", "stats"):
            out = memtrace(cmd, self.capture).stdout
            self.assertIn("Combined: 3 processes", out, cmd)

    def test_window_of_the_job(self):
        # From 0.7 s: the first child is gone, the second not yet started.
        r = report_json("report", self.capture, "--from", "0.7")
        self.assertEqual(len(r["processes"]), 2)
        self.assertEqual(r["processes"][1]["capture"], self.children[1])
        self.assertEqual(r["peak_bytes"], 4 * MB)
        self.assertEqual(fn_bytes(report_json("report", self.capture,
                                              "--from", "0.7", "--leaks")),
                         {"child_hold": (3 * MB, 1), "_IO_file_doallocate":
                          fn_bytes(report_json("report", self.capture,
                                               "--leaks"))["_IO_file_doallocate"]})
        r = report_json("report", self.capture, "--to", "0.5")
        self.assertEqual([p["capture"] for p in r["processes"]],
                         [self.capture, self.children[0]])

    def test_every_reading_command_combines(self):
        t = report_json("tree", self.capture)
        self.assertEqual(t["bytes"], 4 * MB)
        page = self.path("fg.html")
        memtrace("flamegraph", self.capture, *self.children, "-o", page,
                 "--from", "0.1")
        html = read(page)
        self.assertIn("child_hold", html)
        self.assertRegex(html, r'"processes":\s*3\b')
        self.assertRegex(html, r'"window":\s*\[1\d{8},')  # at 0.1xx s
        cp = memtrace("export", self.capture, "--format", "folded")
        self.assertEqual(sum(int(l.rsplit(" ", 1)[1])
                             for l in cp.stdout.splitlines()), 4 * MB)


if __name__ == "__main__":
    unittest.main()
