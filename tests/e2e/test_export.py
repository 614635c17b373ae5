"""End-to-end: `memtrace export` as folded stacks and CSV, read back with
parsers that are not ours where one exists (Python's csv module)."""
import csv
import io
import os
import subprocess
import unittest

from harness import CaptureTest, memtrace, prog, report_json

MIB = 1 << 20
LEAKED = {"make_small": (4000, 40), "aligned": (1024, 1),
          "anon_mmap": (512 << 10, 1), "thread_work": (8000, 8)}

# A Python function whose name is hostile to both formats: a formula for
# spreadsheets, CSV's delimiter and quote, and folded's frame separator.
HOSTILE = '''
def f():
    return bytearray(2_000_000)
name = '=cmd|x,"y";z'
code = f.__code__.replace(co_name=name)
if hasattr(code, "co_qualname"):
    code = code.replace(co_qualname=name)
f.__code__ = code
keep = f()
'''


class Export(CaptureTest):
    def setUp(self):
        super().setUp()
        self.capture, _ = self.record([prog("known_allocs")])

    def folded(self, *args):
        out = memtrace("export", self.capture, "--format", "folded", *args).stdout
        rows = []
        for line in out.splitlines():
            stack, value = line.rsplit(" ", 1)
            rows.append((stack.split(";"), int(value)))
        return rows

    def test_folded_peak_and_leaks(self):
        peak = self.folded()
        self.assertEqual(sum(v for _, v in peak),
                         report_json("summary", self.capture)["peak_bytes"])
        big = [(s, v) for s, v in peak if s[-1].startswith("big_peak (")]
        self.assertEqual(len(big), 1)
        self.assertEqual(big[0][1], 10 * MIB)
        self.assertTrue(big[0][0][-1].endswith("known_allocs.c:67)"))
        self.assertTrue(any(f.startswith("main (") for f in big[0][0]))
        leaks = self.folded("--leaks")
        by_fn = {}
        for stack, value in leaks:
            fn = stack[-1].split(" (")[0]
            by_fn[fn] = by_fn.get(fn, 0) + value
        for fn, (size, _) in LEAKED.items():
            self.assertEqual(by_fn[fn], size, fn)

    def test_csv_snapshots(self):
        text = memtrace("export", self.capture, "--format", "csv").stdout
        rows = list(csv.DictReader(io.StringIO(text)))
        self.assertEqual(list(rows[0].keys()),
                         ["snapshot", "bytes", "count", "function", "file",
                          "line", "module"])
        summary = report_json("summary", self.capture)
        for snap, total in (("peak", summary["peak_bytes"]),
                            ("leaks", summary["current_bytes"])):
            self.assertEqual(sum(int(r["bytes"]) for r in rows
                                 if r["snapshot"] == snap), total, snap)
        leaks = {}
        for r in rows:
            if r["snapshot"] == "leaks" and r["function"] in LEAKED:
                b, c = leaks.get(r["function"], (0, 0))
                leaks[r["function"]] = (b + int(r["bytes"]), c + int(r["count"]))
        self.assertEqual(leaks, LEAKED)
        big = [r for r in rows if r["snapshot"] == "peak"
               and r["function"] == "big_peak"]
        self.assertEqual((big[0]["bytes"], big[0]["line"]), (str(10 * MIB), "67"))

    def test_output_file_and_errors(self):
        out = self.path("x.folded")
        memtrace("export", self.capture, "--format", "folded", "-o", out)
        self.assertGreater(os.path.getsize(out), 0)
        again = memtrace("export", self.capture, "--format", "folded", "-o", out,
                         check=False)
        self.assertEqual(again.returncode, 2)
        self.assertIn("use -f", again.stderr)
        for fmt, words in (("pprof", "not available"), ("nope", "unknown format")):
            cp = memtrace("export", self.capture, "--format", fmt, check=False)
            self.assertEqual(cp.returncode, 2)
            self.assertIn(words, cp.stderr)

    def test_hostile_names(self):
        script = self.path("hostile.py")
        with open(script, "w") as f:
            f.write(HOSTILE)
        capture = self.path("hostile.bin")
        cp = memtrace("run", "-q", "-o", capture, script, check=False)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.capture = capture
        rows = list(csv.DictReader(io.StringIO(
            memtrace("export", capture, "--format", "csv").stdout)))
        names = {r["function"] for r in rows}
        self.assertIn("'" + '=cmd|x,"y";z', names)  # quoted, defused, intact
        folded = self.folded()
        leaf = [s[-1] for s, v in folded if v >= 2_000_000]
        self.assertEqual(len(leaf), 1)
        self.assertTrue(leaf[0].startswith('=cmd|x,"y":z ('), leaf[0])


class Diff(CaptureTest):
    """`memtrace diff` on two runs of tests/e2e/py/grow.py: 1000 and then
    3000 bytearrays of 1000 bytes (1001 allocated) at the line marked grow,
    a block only in the first run (old) and one only in the second (new)."""

    def test_grown_new_and_vanished_sites(self):
        from harness import SOURCE
        script = os.path.realpath(os.path.join(SOURCE, "tests", "e2e", "py",
                                               "grow.py"))
        lines = {}
        with open(script) as f:
            for n, text in enumerate(f, 1):
                for mark in ("grow", "old", "new"):
                    if text.rstrip().endswith("# " + mark):
                        lines[mark] = n
        before, after = self.path("before.bin"), self.path("after.bin")
        for out, n in ((before, "1000"), (after, "3000")):
            cp = memtrace("run", "-q", "-o", out, script, n, check=False)
            self.assertEqual(cp.returncode, 0, cp.stderr)
        rep = report_json("diff", before, after, "--leaks", "--top", "50")
        at = {e["site"]["line"]: e for e in rep["top"]
              if os.path.realpath(e["site"]["file"]) == script}
        grow = at[lines["grow"]]
        self.assertEqual((grow["bytes"], grow["bytes_diff"], grow["count"],
                          grow["count_diff"], grow["average"], grow["status"]),
                         (3000 * 1001, 2000 * 1001, 3000, 2000, 1001, "changed"))
        self.assertEqual((at[lines["new"]]["bytes_diff"], at[lines["new"]]["status"]),
                         (700_001, "new"))
        self.assertEqual((at[lines["old"]]["bytes_diff"], at[lines["old"]]["status"],
                          at[lines["old"]]["bytes"]), (-500_001, "vanished", 0))
        self.assertEqual(rep["top"][0]["site"]["line"], lines["grow"])  # largest change
        self.assertGreaterEqual(rep["new_sites"], 1)
        self.assertGreaterEqual(rep["vanished_sites"], 1)
        self.assertEqual(rep["bytes_diff"], rep["after_bytes"] - rep["before_bytes"])
        # The text: tracemalloc's shape.
        text = memtrace("diff", before, after, "--leaks").stdout
        self.assertIn(f"grow.py:{lines['grow']}: size=2.9 MiB (+1.9 MiB), "
                      f"count=3000 (+2000), average=1001 B  in <module>", text)
        self.assertIn("[vanished]", text)
        bad = memtrace("diff", before, check=False)
        self.assertEqual(bad.returncode, 2)


if __name__ == "__main__":
    unittest.main()
