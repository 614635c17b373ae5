"""Windows of a run (--from/--to) and combined multi-process reports, on
tests/progs/phases.c, whose allocations come in phases 400 ms apart:

  phases        phase_a 1 MB at 0 s; phase_b 2 MB and free A at 0.4 s;
                phase_c 4 MB at 0.8 s; exit at 1.2 s
  phases fork   parent_keep 1 MB; two children one after the other
                (from 0.2 s to 0.6 s and from 0.8 s to 1.2 s), each
                child_hold 3 MB. Peak of the sum 4 MB, sum of peaks 7 MB.

Window edges sit in the middle of the sleeps, 200 ms from any allocation;
the reader places them at RSS samples (10 ms). Windows by stage name
(StageWindows) are exact, on tests/progs/stages.c's window mode."""
import json
import os
import subprocess
import unittest

from harness import (MEMTRACE, CaptureTest, memtrace, prog, report_json,
                     sites_by_function)

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
                            (("--to", "soon"), "has no stages")):
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


class StageWindows(CaptureTest):
    """--from/--to STAGE on tests/progs/stages.c's window mode:

      1000 kept; extract { 30000 kept; 50000 freed }; transform {
      2 x step { 7000 freed; 2000 kept }; 4000 kept }; load { free
      extract's 30000; 200000 kept }; then 500000 freed in no stage.

    The program runs in well under one RSS interval: only exact edges (the
    stages' places in the event order) can tell its stages apart."""

    @classmethod
    def setUpClass(cls):
        cls.shared = CaptureTest()
        cls.shared.setUp()
        cls.capture, _ = cls.shared.record([prog("stages"), "window"],
                                           extra=("-q",))

    @classmethod
    def tearDownClass(cls):
        cls.shared.tearDown()

    def report(self, *args):
        return report_json("report", self.capture, "--top", "100", *args)

    def summary(self, *args):
        s = report_json("summary", self.capture, *args)
        return (s["peak_bytes"], s["current_bytes"], s["total_allocations"],
                s["total_bytes_allocated"])

    def test_whole_run(self):
        s = report_json("summary", self.capture)
        self.assertEqual(s["peak_bytes"], 709000)  # outside every stage
        self.assertIsNone(s["window"])

    def test_from_a_stage_is_its_window(self):
        r = self.report("--from", "extract")
        # 1000 there before it, 30000 kept and 50000 freed inside.
        self.assertEqual(r["peak_bytes"], 81000)
        self.assertEqual(fn_bytes(r), {"windows": (31000, 2),
                                       "touched": (50000, 1)})
        w = r["window"]
        self.assertEqual((w["start_bytes"], w["exact"], w["clamped"]),
                         (1000, True, False))
        self.assertLessEqual(w["from_s"], w["to_s"])
        self.assertEqual(fn_bytes(self.report("--from", "extract", "--leaks")),
                         {"windows": (30000, 1)})
        self.assertEqual(self.summary("--from", "extract"),
                         (81000, 31000, 2, 80000))

    def test_to_a_stage(self):
        self.assertEqual(self.summary("--to", "extract"),
                         (81000, 31000, 3, 81000))
        self.assertEqual(fn_bytes(self.report("--to", "extract", "--leaks")),
                         {"windows": (31000, 2)})
        self.assertEqual(self.summary("--to", "load"),
                         (209000, 209000, 9, 303000))
        self.assertEqual(report_json("summary", self.capture, "--to",
                                     "load")["window"]["start_bytes"], 0)

    def test_nested_stage(self):
        # Both calls of transform.step, from the first enter to the last
        # leave: the second runs with 31000 + 2000 live.
        r = self.report("--from", "transform.step")
        self.assertEqual(r["peak_bytes"], 40000)
        self.assertEqual(r["window"]["start_bytes"], 31000)
        self.assertEqual(fn_bytes(self.report("--from", "transform.step",
                                              "--leaks")),
                         {"windows": (4000, 2)})
        self.assertEqual(self.summary("--from", "transform.step"),
                         (40000, 35000, 4, 18000))

    def test_from_one_stage_to_another(self):
        args = ("--from", "transform", "--to", "load")
        self.assertEqual(self.summary(*args), (209000, 209000, 6, 222000))
        self.assertEqual(fn_bytes(self.report(*args, "--leaks")),
                         {"windows": (208000, 4)})

    def test_bad_stage_windows(self):
        stages = "extract, transform, transform.step, load"
        for args, words in ((("--from", "extrac"), "its stages: " + stages),
                            (("--to", "step"), "its stages: " + stages),
                            (("--from", "load", "--to", "extract"),
                             "was last left (event"),
                            (("--from", "extract", "--to", "1s"),
                             "must both be times or both stage names")):
            cp = memtrace("report", self.capture, *args, check=False)
            self.assertEqual(cp.returncode, 2, args)
            self.assertIn(words, cp.stderr, args)
            self.assertEqual(cp.stdout, "")
            self.assertTrue(cp.stderr.startswith("memtrace"), cp.stderr)
            if "1s" not in args:  # a usage error adds a hint
                self.assertEqual(len(cp.stderr.splitlines()), 1, cp.stderr)
        cp = subprocess.run(["sh", "-c", 'cat "$1" | "$2" summary /dev/stdin '
                             '--from extract', "sh", self.capture, MEMTRACE],
                            capture_output=True, text=True, timeout=60)
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertIn("not a pipe", cp.stderr)
        agg, _ = self.record([prog("stages"), "window"], name="agg.bin",
                             extra=("-q", "--aggregate"))
        cp = memtrace("report", agg, "--from", "nope", check=False)
        self.assertEqual(cp.returncode, 2)
        self.assertIn("recorded with --aggregate", cp.stderr)

    def test_every_reading_command_takes_a_stage(self):
        self.assertEqual(report_json("tree", self.capture, "--from",
                                     "load")["bytes"], 209000)
        out = memtrace("report", self.capture, "--from", "load").stdout
        self.assertIn("exact edges, at stage marks", out)
        page = self.path("fg.html")
        memtrace("flamegraph", self.capture, "-o", page, "--from", "load")
        self.assertRegex(read(page), r'"window":\s*\[\d+,\s*\d+,\s*39000,\s*1\]')
        cp = memtrace("export", self.capture, "--format", "folded", "--leaks",
                      "--from", "transform")
        self.assertEqual(sum(int(l.rsplit(" ", 1)[1])
                             for l in cp.stdout.splitlines()), 8000)

    def test_a_job_of_several_processes_is_refused(self):
        cap, _ = self.record([prog("stages"), "fork"], name="fork.bin",
                             extra=("-q", "--follow-fork"))
        cp = memtrace("report", cap, "--from", "parent", check=False)
        self.assertEqual(cp.returncode, 2)
        self.assertIn("reads one process", cp.stderr)
        self.assertIn("--no-children", cp.stderr)
        self.assertEqual(len(cp.stderr.splitlines()), 1, cp.stderr)
        # The parent alone: 1000 before, 3000 kept inside "parent".
        r = report_json("report", cap, "--from", "parent", "--no-children",
                        "--leaks")
        self.assertEqual(fn_bytes(r), {"forks": (3000, 1)})
        self.assertEqual(r["window"]["start_bytes"], 1000)


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
