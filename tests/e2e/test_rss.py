"""`memtrace rss`: the RSS reconciliation, on runs whose gap is known.

tests/progs/rss_gap.c maps an N MiB file (file-backed memory), maps N MiB
with the raw system call (anonymous memory no hook sees), or mallocs N MiB
(traced), and touches every page; each stays until the process exits, so
the tracer's last memory sample sees it. Each is compared with a run that
does none of it, so the libraries' own pages cancel out; the tolerance
(1 MiB, 1/64 of the 64 MiB) is far tighter than any other part of the gap.
The peak RSS is compared with what /usr/bin/time -v says for the same run.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD, MEMTRACE, SOURCE, CaptureTest, memtrace, prog  # noqa: E402
from test_flamegraph import page_data  # noqa: E402

MIB = 1 << 20
N = 64
TOL = MIB
TIME = shutil.which("time", path="/usr/bin")


class RssTest(CaptureTest):
    def run_gap(self, *args, name="out.bin", env=None, extra=()):
        out, _ = self.record([prog("rss_gap"), *args], name=name,
                             extra=("-q", *extra), env=env)
        return json.loads(memtrace("rss", out, "--json").stdout)

    def baseline(self):
        if not hasattr(self, "_base"):
            self._base = self.run_gap("none", name="none.bin")
        return self._base

    def test_file_mapping_is_file_backed(self):
        base = self.baseline()["gap"]
        d = self.run_gap("file", str(N), self.path("data"))
        g = d["gap"]
        self.assertEqual(d["at_peak"]["source"], "smaps_rollup")
        self.assertEqual(d["at_peak"]["heap_bytes"], 0)
        self.assertAlmostEqual(g["file_backed_bytes"] - base["file_backed_bytes"],
                               N * MIB, delta=TOL)
        # Not anonymous memory: nothing of it is "not traced".
        self.assertAlmostEqual(g["not_traced_bytes"], base["not_traced_bytes"],
                               delta=TOL)
        self.assertEqual(g["total_bytes"], d["at_peak"]["rss_bytes"])
        self.assertIn("file-backed", d["verdict"])

    def test_raw_mmap_is_not_traced(self):
        base = self.baseline()["gap"]
        d = self.run_gap("raw", str(N))
        g = d["gap"]
        self.assertEqual(d["at_peak"]["heap_bytes"], 0)
        self.assertAlmostEqual(g["not_traced_bytes"] - base["not_traced_bytes"],
                               N * MIB, delta=TOL)
        self.assertAlmostEqual(g["file_backed_bytes"], base["file_backed_bytes"],
                               delta=TOL)
        self.assertIn("outside memtrace's hooks", d["verdict"])
        # The parts add up to the gap.
        parts = (g["file_backed_bytes"] + g["malloc_overhead_bytes"] +
                 g["memtrace_bytes"] + g["not_traced_bytes"] +
                 g["unexplained_bytes"])
        self.assertIsNone(g["pymalloc_beyond_live_bytes"])  # not Python
        self.assertEqual(parts, g["total_bytes"])

    def test_traced_heap_is_no_gap(self):
        base = self.baseline()["gap"]
        d = self.run_gap("heap", str(N))
        g = d["gap"]
        self.assertEqual(d["at_peak"]["heap_bytes"], N * MIB)
        self.assertEqual(d["peak_heap_bytes"], N * MIB)
        self.assertLess(g["not_traced_bytes"], base["not_traced_bytes"] + TOL)
        self.assertLess(g["total_bytes"], self.baseline()["gap"]["total_bytes"] + TOL)
        self.assertTrue(d["verdict"].startswith("RSS is the traced heap"),
                        d["verdict"])

    def test_without_smaps_rollup(self):
        # A kernel without smaps_rollup: the split comes from statm, which
        # counts the mapped file as shared.
        env = dict(os.environ, MEMTRACE_NO_SMAPS_ROLLUP="1")
        base = self.run_gap("none", name="b.bin", env=env)
        d = self.run_gap("file", str(N), self.path("data"), env=env)
        self.assertEqual(d["at_peak"]["source"], "statm")
        self.assertNotIn("rss_bytes", d["memory_samples"][0])
        self.assertIn("statm_rss_bytes", d["memory_samples"][0])
        self.assertAlmostEqual(d["gap"]["file_backed_bytes"] -
                               base["gap"]["file_backed_bytes"], N * MIB, delta=TOL)
        text = memtrace("rss", self.path("out.bin")).stdout
        self.assertIn("no smaps_rollup on this kernel", text)

    @unittest.skipUnless(TIME, "/usr/bin/time is missing (scripts/bootstrap installs it)")
    def test_peak_rss_equals_time_v(self):
        for args in (("heap", str(N)), ("raw", "32"),
                     ("file", "16", self.path("data"))):
            out = self.path("t.bin")
            cp = subprocess.run([TIME, "-v", MEMTRACE, "run", "-q", "-f", "-o", out,
                                 "--", prog("rss_gap"), *args],
                                capture_output=True, text=True, timeout=120)
            self.assertEqual(cp.returncode, 0, cp.stderr)
            kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)",
                               cp.stderr).group(1))
            d = json.loads(memtrace("rss", out, "--json").stdout)
            self.assertEqual(d["peak_rss_source"], "exit")
            self.assertEqual(d["peak_rss_bytes"], kb * 1024, args)
            s = json.loads(memtrace("summary", out, "--json").stdout)
            self.assertEqual(s["peak_rss_bytes"], kb * 1024)

    def test_samples_and_timeline(self):
        d = self.run_gap("heap", str(N))
        kinds = [s["kind"] for s in d["memory_samples"]]
        self.assertEqual(kinds[0], "start")
        self.assertEqual(kinds[-2:], ["end", "exit"])
        self.assertTrue(set(kinds) <= {"start", "peak", "end", "exit"})
        start, end = d["memory_samples"][0], d["memory_samples"][-2]
        self.assertEqual(start["heap_bytes"], 0)
        self.assertEqual(end["heap_bytes"], N * MIB)
        self.assertGreaterEqual(end["anonymous_bytes"], N * MIB)
        tl = d["timeline"]
        self.assertEqual(len(tl["time_s"]), len(tl["rss_bytes"]))
        self.assertEqual(len(tl["time_s"]), len(tl["heap_bytes"]))
        self.assertGreaterEqual(len(tl["time_s"]), 1)
        self.assertEqual(tl["heap_bytes"][-1], N * MIB)
        self.assertEqual(tl["time_s"], sorted(tl["time_s"]))

    def test_text(self):
        out, _ = self.record([prog("rss_gap"), "raw", str(N)], extra=("-q",))
        text = memtrace("rss", out).stdout
        for needle in ("Peak RSS:", "as /usr/bin/time -v shows it",
                       "RSS and traced heap over time",
                       "The gap at the RSS peak",
                       "file-backed mappings and shared libraries",
                       "not traced (anonymous, outside the hooks)",
                       "unexplained rest"):
            self.assertIn(needle, text)
        last = text.rstrip("\n").split("\n")[-1]
        self.assertTrue(last.startswith("Verdict: "), last)
        self.assertIn("outside memtrace's hooks", last)
        part = float(re.search(r"most of that \(([\d.]+) MiB\)", last).group(1))
        self.assertAlmostEqual(part, N, delta=1.0)  # the raw 64 MiB

    def test_spike_between_samples_is_pointed_out(self):
        """64 MiB touched and freed between two samples: the kernel's peak
        has it, no sample does, and the text says so under the peak; memory
        that stays until the end sample gets no such line."""
        out, _ = self.record([prog("rss_gap"), "spike", str(N)], name="spike.bin",
                             extra=("-q", "--rss-interval", "60000"))
        text = memtrace("rss", out).stdout
        lines = text.split("\n")
        peak = next(i for i, line in enumerate(lines) if line.startswith("Peak RSS:"))
        self.assertIn("every sample is below it (the highest: ", lines[peak + 1])
        self.assertEqual(lines[peak + 2].strip(), "memory that came and went between "
                         "two samples (--rss-interval 60000 ms)")
        rep = json.loads(memtrace("rss", out, "--json").stdout)
        self.assertGreaterEqual(rep["peak_rss_bytes"], N * MIB)
        kept, _ = self.record([prog("rss_gap"), "heap", str(N)], name="kept.bin",
                              extra=("-q", "--rss-interval", "60000"))
        self.assertNotIn("every sample is below it", memtrace("rss", kept).stdout)

    def test_flamegraph_shows_the_same_rss(self):
        out, _ = self.record([prog("rss_gap"), "heap", str(N)], extra=("-q",))
        d = json.loads(memtrace("rss", out, "--json").stdout)
        html = self.path("fg.html")
        memtrace("flamegraph", out, "-o", html)
        with open(html, encoding="utf-8") as f:
            data = page_data(f.read())
        self.assertEqual(data["peak_rss_bytes"], d["peak_rss_bytes"])
        self.assertEqual(max(s[2] for s in data["samples"]),
                         max(d["timeline"]["rss_bytes"]))

    def test_python(self):
        script = self.path("grow.py")
        with open(script, "w") as f:
            f.write(
                "import mmap, sys\n"
                "n = int(sys.argv[1]) << 20\n"
                "keep = []\n"
                "if n:\n"
                "    with open(sys.argv[2], 'wb') as f:\n"
                "        f.write(b'x' * n)\n"
                "    f = open(sys.argv[2], 'rb')\n"
                "    m = mmap.mmap(f.fileno(), n, access=mmap.ACCESS_READ)\n"
                "    s = sum(m[i] for i in range(0, n, 4096))\n"
                "    keep.append(m)\n"
                "data = bytearray(16 << 20)\n"
                "for i in range(0, len(data), 4096):\n"
                "    data[i] = 1\n")
        res = {}
        for flags in ((), ("--trace-python-allocators",)):
            for n in (0, 32):
                out = self.path(f"py{n}{len(flags)}.bin")
                cp = memtrace("run", "-q", "-o", out, *flags, script, str(n),
                              self.path("pydata"), check=False)
                self.assertEqual(cp.returncode, 0, cp.stderr)
                res[flags, n] = json.loads(memtrace("rss", out, "--json").stdout)
            a, b = res[flags, 0], res[flags, 32]
            self.assertAlmostEqual(b["gap"]["file_backed_bytes"] -
                                   a["gap"]["file_backed_bytes"], 32 * MIB,
                                   delta=TOL)
            self.assertGreaterEqual(b["at_peak"]["heap_bytes"], 16 * MIB)
        self.assertIsNone(res[(), 32]["gap"]["pymalloc_beyond_live_bytes"])
        self.assertTrue(res[(), 0]["gap"]["pymalloc_note"].startswith("in the traced heap"))
        pa = res[("--trace-python-allocators",), 32]["gap"]
        self.assertTrue(pa["pymalloc_note"].startswith("measured"))
        self.assertGreaterEqual(pa["pymalloc_beyond_live_bytes"], 0)

    def test_capture_without_samples(self):
        # A capture of format version 1 (no SMAPS records): the peak and
        # the timeline, and no split.
        golden = os.path.join(SOURCE, "tests", "fixtures", "golden-v1.bin")
        d = json.loads(memtrace("rss", golden, "--json").stdout)
        self.assertEqual(d["peak_rss_bytes"], 3 << 20)
        self.assertEqual(d["peak_rss_source"], "trailer")
        self.assertEqual(d["timeline"]["rss_bytes"], [1 << 20, 2 << 20])
        self.assertEqual(d["memory_samples"], [])
        self.assertIsNone(d["at_peak"])
        self.assertIsNone(d["gap"])
        self.assertIn("cannot be split", d["verdict"])
        self.assertIn("cannot be split", memtrace("rss", golden).stdout)

    def test_pymalloc_free_space(self):
        # 300000 objects of 16 bytes, every other one freed: pymalloc keeps
        # the arenas (every pool still has live blocks), so its free space
        # grows by 150000 x 16 bytes against a run that frees nothing.
        res = {}
        for name, stmt in (("keep", "pass"), ("half", "del a[::2]")):
            out = self.path(name + ".bin")
            memtrace("run", "-q", "-o", out, "--trace-python-allocators", "-c",
                     "a = [object() for i in range(300000)]\n" + stmt)
            res[name] = json.loads(memtrace("rss", out, "--json").stdout)
        keep, half = res["keep"], res["half"]
        self.assertTrue(half["gap"]["pymalloc_note"].startswith("measured"))
        self.assertAlmostEqual(half["gap"]["pymalloc_beyond_live_bytes"] -
                               keep["gap"]["pymalloc_beyond_live_bytes"],
                               150000 * 16, delta=64 << 10)
        self.assertAlmostEqual(keep["at_peak"]["pymalloc_live_bytes"] -
                               half["at_peak"]["pymalloc_live_bytes"],
                               150000 * 16, delta=64 << 10)
        self.assertGreater(half["at_peak"]["pymalloc_arena_bytes"],
                           keep["at_peak"]["pymalloc_live_bytes"])
        # pymalloc turned off: no arenas, nothing measured.
        out = self.path("off.bin")
        memtrace("run", "-q", "-o", out, "--trace-python-allocators", "-c",
                 "a = [object() for i in range(1000)]",
                 env=dict(os.environ, PYTHONMALLOC="malloc"))
        off = json.loads(memtrace("rss", out, "--json").stdout)
        self.assertIsNone(off["gap"]["pymalloc_beyond_live_bytes"])
        self.assertIsNone(off["at_peak"]["pymalloc_arena_bytes"])

    def test_tracker_sessions(self):
        # memtrace.Tracker in a process memtrace did not start, twice: each
        # capture has its start sample (before its first event: heap 0) and
        # its end sample, and the peak RSS comes from the tracer.
        code = (
            "import sys, memtrace\n"
            "keep = []\n"
            "for i in range(2):\n"
            "    with memtrace.Tracker(sys.argv[1] + str(i) + '.bin'):\n"
            "        keep.append(bytearray(8 << 20))\n")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "MEMTRACE_")) and k != "LD_PRELOAD"}
        env["PYTHONPATH"] = os.path.join(os.path.abspath(BUILD), "python")
        cp = subprocess.run([sys.executable, "-c", code, self.path("s")],
                            capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        for i in range(2):
            d = json.loads(memtrace("rss", self.path(f"s{i}.bin"), "--json").stdout)
            kinds = [m["kind"] for m in d["memory_samples"]]
            self.assertEqual(kinds[0], "start")
            self.assertEqual(kinds[-1], "end")
            self.assertEqual(d["memory_samples"][0]["heap_bytes"], 0)
            self.assertGreaterEqual(d["memory_samples"][-1]["heap_bytes"], 8 << 20)
            self.assertEqual(d["peak_rss_source"], "trailer")


if __name__ == "__main__":
    unittest.main()
