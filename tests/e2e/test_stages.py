"""memtrace stages: named stages from C (tests/progs/stages.c, through
<memtrace/tracer.h> without linking memtrace) and from Python
(tests/e2e/py/stages.py, on every interpreter the build made the extension
for), with exact bytes; threads, nesting, repeated stages, an exit inside a
stage, an unbalanced leave, and the same programs without a tracer."""
import json
import os
import re
import subprocess
import sys
import unittest

from harness import BUILD, CaptureTest, SOURCE, memtrace, prog
from test_python import base_env, load_interpreters

PY_SCRIPT = os.path.join(os.path.abspath(SOURCE), "tests", "e2e", "py", "stages.py")


def stages(capture):
    """(JSON report, {stage name: row}) of `memtrace stages capture`."""
    rep = json.loads(memtrace("stages", capture, "--json").stdout)
    return rep, {s["stage"]: s for s in rep["stages"]}


class CStages(CaptureTest):
    def run_mode(self, mode, status=0):
        out, cp = self.record([prog("stages"), mode], name=mode + ".bin",
                              extra=("-q",), expect_status=status)
        return out

    def test_nested_and_repeated(self):
        rep, rows = stages(self.run_mode("basic"))
        self.assertEqual(list(rows), ["load", "work", "work.step", "untraced"])
        self.assertEqual(rep["stage_records"], 16)
        self.assertIsNone(rep["warning"])
        load, work, step = rows["load"], rows["work"], rows["work.step"]
        self.assertEqual((load["calls"], load["bytes_allocated"],
                          load["allocations"], load["heap_delta_bytes"]),
                         (1, 100000, 1, 100000))
        self.assertEqual((work["calls"], work["bytes_allocated"],
                          work["allocations"], work["heap_delta_bytes"],
                          work["heap_peak_rise_bytes"], work["depth"]),
                         (3, 3 * 70000, 6, 3 * 20000, 50000, 0))
        self.assertEqual((step["calls"], step["bytes_allocated"],
                          step["heap_delta_bytes"], step["heap_peak_rise_bytes"],
                          step["depth"]),
                         (3, 3 * 50000, 0, 50000, 1))
        # The third step runs with 100000 + 2 x 20000 kept: its peak.
        self.assertEqual(step["heap_peak_bytes"], 100000 + 40000 + 50000)
        self.assertGreaterEqual(work["wall_s"], step["wall_s"])
        self.assertGreaterEqual(work["wall_s"], work["wall_max_s"])
        for r in (load, work, step):
            self.assertFalse(r["untraced_growth"], r)

    def test_untraced_growth_is_flagged(self):
        out = self.run_mode("basic")
        _, rows = stages(out)
        u = rows["untraced"]
        # 8 MiB mapped by a raw system call and touched: RSS sees it, the
        # hooks do not.
        self.assertEqual((u["bytes_allocated"], u["heap_delta_bytes"]), (0, 0))
        self.assertGreaterEqual(u["rss_delta_bytes"], 8 << 20)
        self.assertTrue(u["untraced_growth"])
        text = memtrace("stages", out).stdout
        line = next(l for l in text.splitlines() if l.startswith("untraced"))
        self.assertTrue(line.endswith("!"), text)
        self.assertIn("RSS grew much more than the traced heap", text)

    def test_threads_nest_per_thread(self):
        _, rows = stages(self.run_mode("threads"))
        self.assertEqual(sorted(rows), ["main", "worker"])  # not main.worker
        w = rows["worker"]
        self.assertEqual((w["calls"], w["bytes_allocated"], w["allocations"],
                          w["depth"]),
                         (4, 10000 * (1 + 2 + 3 + 4), 4, 0))

    def test_threads_at_once(self):
        """8 threads entering and leaving at the same time, allocating
        inside: every call counted, every byte on its thread."""
        rep, rows = stages(self.run_mode("stress"))
        self.assertEqual(list(rows), ["stress"])
        s = rows["stress"]
        self.assertEqual((s["calls"], s["bytes_allocated"], s["allocations"]),
                         (16000, 1600000, 16000))
        self.assertEqual((rep["warning"], rep["unclosed"], rep["unmatched_leaves"],
                          rep["mismatched_leaves"]), (None, 0, 0, 0))

    def test_stages_from_a_signal_handler(self):
        """A timer's handler marks stages while the program allocates: the
        ones that interrupt the tracer itself are dropped whole, the rest
        nest in the interrupted stage; nothing deadlocks or breaks."""
        out = self.run_mode("signals")
        rep, rows = stages(out)
        # "sig" alone: the timer fired before "loop" began or after it ended.
        self.assertTrue(set(rows) <= {"sig", "loop", "loop.sig"}, rows)
        loop = rows["loop"]
        self.assertEqual((loop["calls"], loop["bytes_allocated"], loop["allocations"]),
                         (1, 100000 * 64, 100000))
        for name in ("sig", "loop.sig"):
            self.assertEqual(rows.get(name, {}).get("bytes_allocated", 0), 0)
        self.assertEqual((rep["warning"], rep["unclosed"], rep["unmatched_leaves"],
                          rep["mismatched_leaves"]), (None, 0, 0, 0))

    def test_exit_inside_stage(self):
        rep, rows = stages(self.run_mode("exit", status=3))
        self.assertEqual(list(rows), ["outer", "outer.inner"])
        self.assertEqual(rep["unclosed"], 2)
        self.assertIn("still open when the capture ended", rep["warning"])
        for r in rows.values():
            self.assertEqual((r["calls"], r["unclosed"], r["bytes_allocated"],
                              r["heap_delta_bytes"]), (1, 1, 4096, 4096))
        cp = memtrace("stages", self.path("exit.bin"))
        self.assertIn("(unclosed)", cp.stdout)
        self.assertIn("still open", cp.stderr)

    def test_unbalanced_leave(self):
        rep, rows = stages(self.run_mode("unbalanced"))
        self.assertEqual(rep["unmatched_leaves"], 1)
        self.assertEqual(list(rows), ["lone"])
        self.assertEqual(rows["lone"]["bytes_allocated"], 777)
        self.assertIn("had no open stage", rep["warning"])

    def test_follow_fork_child_defines_names_again(self):
        out, _ = self.record([prog("stages"), "fork"], name="f.bin",
                             extra=("-q", "--follow-fork"))
        _, rows = stages(out)
        self.assertEqual(list(rows), ["shared", "parent"])
        self.assertEqual(rows["shared"]["bytes_allocated"], 1000)
        self.assertEqual(rows["parent"]["bytes_allocated"], 3000)
        children = [f for f in os.listdir(self.tmp) if f.startswith("f.bin.")]
        self.assertEqual(len(children), 1, os.listdir(self.tmp))
        rep, rows = stages(self.path(children[0]))
        # "shared" was interned by the parent: the child's capture names it
        # anew; the parent's open "parent" is not in the child's capture.
        self.assertEqual(list(rows), ["shared"])
        self.assertEqual((rows["shared"]["calls"], rows["shared"]["bytes_allocated"]),
                         (1, 5000))
        self.assertEqual(rep["unclosed"] + rep["unmatched_leaves"], 0)

    def test_without_tracer(self):
        """No memtrace in the process: the weak references are NULL and the
        stages do nothing."""
        for mode in ("basic", "threads", "unbalanced", "fork"):
            cp = subprocess.run([prog("stages"), mode], capture_output=True,
                                text=True, timeout=60)
            self.assertEqual((cp.returncode, cp.stdout, cp.stderr),
                             (0, f"stages {mode} done\n", ""))

    def test_no_stages_text(self):
        out, _ = self.record([prog("known_allocs")], extra=("-q",))
        rep, rows = stages(out)
        self.assertEqual((rep["stages"], rep["stage_records"]), ([], 0))
        self.assertIn("No stages were recorded", memtrace("stages", out).stdout)


class PythonStages:
    """For one interpreter: PYTHON (path)."""
    PYTHON = None

    def setUp(self):
        import tempfile
        self.tmp = tempfile.mkdtemp(prefix="mt-stages-")

    def tearDown(self):
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)

    def record(self, args, status=0):
        out = os.path.join(self.tmp, "out.bin")
        cp = subprocess.run([os.path.join(BUILD, "memtrace"), "run", "-q", "-f", "-o", out,
                             "--python", self.PYTHON, *args],
                            capture_output=True, text=True, timeout=60, env=base_env())
        self.assertEqual(cp.returncode, status, f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
        return out, cp

    def test_known_stages(self):
        out, cp = self.record([PY_SCRIPT])
        self.assertEqual(cp.stdout, "recorded\n")
        rep, rows = stages(out)
        self.assertIsNone(rep["warning"])
        self.assertEqual(list(rows), ["load", "work", "work.step", "deco",
                                      "worker", "fails", "probe"])
        got = {name: (r["calls"], r["bytes_allocated"], r["allocations"])
               for name, r in rows.items()}
        self.assertEqual(got["load"], (1, 1_000_001, 1))
        self.assertEqual(got["work"], (3, 3 * (2_000_001 + 500_001), 6))
        self.assertEqual(got["work.step"], (3, 3 * 2_000_001, 3))
        self.assertEqual(got["deco"], (2, 2 * 300_001, 2))
        self.assertEqual(got["worker"], (4, 1_000_004, 4))
        self.assertEqual(got["fails"], (1, 70_001, 1))  # left by the exception
        self.assertEqual(rows["load"]["heap_delta_bytes"], 1_000_001)
        self.assertEqual(rows["work"]["heap_delta_bytes"], 3 * 500_001)
        self.assertEqual(rows["work.step"]["heap_delta_bytes"], 0)
        self.assertEqual(rows["work.step"]["heap_peak_rise_bytes"], 2_000_001)
        self.assertEqual(rows["work"]["heap_peak_rise_bytes"], 2_000_001)
        self.assertEqual(rows["deco"]["heap_delta_bytes"], 600_002)
        self.assertEqual(rows["work.step"]["depth"], 1)
        self.assertEqual(rep["unclosed"] + rep["unmatched_leaves"], 0)

    def test_exit_inside_stage(self):
        out, _ = self.record([PY_SCRIPT, "exit"], status=5)
        rep, rows = stages(out)
        self.assertEqual(list(rows), ["dying", "dying.inner"])
        self.assertEqual(rep["unclosed"], 2)
        for r in rows.values():
            self.assertEqual((r["calls"], r["unclosed"], r["bytes_allocated"]),
                             (1, 1, 40_001))

    def test_without_tracer(self):
        """Plain python: the same script runs, and nothing is recorded."""
        env = base_env(PYTHONPATH=os.path.join(BUILD, "python"))
        cp = subprocess.run([self.PYTHON, PY_SCRIPT], capture_output=True, text=True,
                            timeout=60, env=env)
        self.assertEqual((cp.returncode, cp.stdout, cp.stderr), (0, "not recorded\n", ""))

    def test_tracker_and_misuse(self):
        """Inside a Tracker (the library loaded at run time) stages are
        recorded; before and after it they are not; a stage entered before
        the Tracker started and left inside it is an unmatched leave."""
        code = (
            "import memtrace, sys\n"
            "from memtrace import _memtrace\n"
            "s = memtrace.stage('early'); s.__enter__()\n"
            "with memtrace.Tracker(sys.argv[1]):\n"
            "    s.__exit__(None, None, None)\n"
            "    with memtrace.stage('in'):\n"
            "        k = bytearray(123_456)\n"
            "print(_memtrace.stage_enter('after'))\n"
            "try:\n"
            "    _memtrace.stage_enter(3)\n"
            "except TypeError as e:\n"
            "    print('TypeError')\n"
            "print(repr(memtrace.stage(7)))\n")
        out = os.path.join(self.tmp, "t.bin")
        env = base_env(PYTHONPATH=os.path.join(BUILD, "python"))
        cp = subprocess.run([self.PYTHON, "-c", code, out], capture_output=True,
                            text=True, timeout=60, env=env)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, "False\nTypeError\nmemtrace.stage('7')\n")
        rep, rows = stages(out)
        self.assertEqual(list(rows), ["in"])
        self.assertEqual(rows["in"]["bytes_allocated"], 123_457)
        self.assertEqual(rep["unmatched_leaves"], 1)


def make_cases():
    for kind, path, info in load_interpreters():
        if kind == "skip":
            continue
        name = "TestPythonStages_" + re.sub(r"\W", "_", info + "_" + path)
        globals()[name] = type(name, (PythonStages, unittest.TestCase),
                               {"PYTHON": path})


make_cases()

if __name__ == "__main__":
    unittest.main()
