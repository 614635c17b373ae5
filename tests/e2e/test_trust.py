"""End-to-end: the tracer never breaks the program, under load and faults
(issue: trust). Each test runs a real program under `memtrace run` and
checks both the program's own result and the capture."""
import json
import os
import resource
import shutil
import subprocess
import unittest

from harness import (MEMTRACE, CaptureTest, memtrace, prog, report_json,
                     sites_by_function)

SANITIZED = os.environ.get("MT_SANITIZED") == "1"


def balanced(testcase, capture):
    s = report_json("summary", capture)
    testcase.assertEqual(s["total_allocations"] - s["total_frees"],
                         s["current_allocations"])
    return s


class Load(CaptureTest):
    def test_16_threads_with_churn(self):
        capture, cp = self.record([prog("lifecycle"), "threads16"], timeout=120)
        plain = subprocess.run([prog("lifecycle"), "threads16"],
                               capture_output=True, text=True, timeout=60)
        self.assertEqual(cp.stdout, plain.stdout)
        s = balanced(self, capture)
        self.assertGreater(s["threads"], 16)
        self.assertGreater(s["total_allocations"], 16 * 20000)
        # Every worker frees what it allocated: only the C library's own
        # thread set-up is still live.
        leaks = sites_by_function(report_json("report", capture, "--leaks",
                                              "--top", "1000"))
        self.assertNotIn("worker16", leaks)


class Faults(CaptureTest):
    def test_out_of_memory_under_rlimit_as(self):
        def limit():
            resource.setrlimit(resource.RLIMIT_AS, (768 << 20, 768 << 20))
        if SANITIZED:
            self.skipTest("ASan's shadow memory needs more address space")
        capture, cp = self.record([prog("lifecycle"), "oom"], preexec_fn=limit,
                                  timeout=120)
        self.assertEqual(cp.stdout, "malloc failed, recovered\n")
        balanced(self, capture)

    def test_file_size_limit_stops_tracing_not_the_program(self):
        # 2M pairs make at least 50 KiB of capture, however well they
        # compress: a 16 KiB limit is always hit.
        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 10, 16 << 10))
        capture, cp = self.record([prog("stress"), "4", "500000", "100"],
                                  preexec_fn=limit, timeout=120)
        self.assertEqual(cp.stdout, "2000000 pairs\n")
        self.assertIn("capture incomplete", cp.stderr)
        self.assertLessEqual(os.path.getsize(capture), 16 << 10)
        # What was written is readable, with a warning and no crash.
        r = memtrace("summary", capture, "--json", check=False)
        self.assertIn(r.returncode, (0, 2), r.stderr)
        if r.returncode == 0:
            self.assertIsNotNone(json.loads(r.stdout)["warning"])
        else:
            self.assertEqual(len(r.stderr.strip().splitlines()), 1)

    def test_output_directory_removed_while_recording(self):
        d = self.path("vanishing")
        os.mkdir(d)
        p = subprocess.Popen([MEMTRACE, "run", "-o", os.path.join(d, "x.bin"),
                              "--", prog("lifecycle"), "sleep"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        import time
        time.sleep(0.3)
        shutil.rmtree(d)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0)
        self.assertEqual(out, "slept\n")
        self.assertIn("no longer exists", err)

    def test_program_with_its_own_malloc(self):
        capture, cp = self.record([prog("own_malloc")])
        self.assertEqual(cp.stdout, "own allocator used 100000 bytes\n")
        self.assertIn("malloc is defined by", cp.stderr)
        s = report_json("summary", capture)
        self.assertIn("not traced", s["warning"])


class FollowFork(CaptureTest):
    def test_pool_workers_three_times(self):
        """multiprocessing.Pool's fork workers under --follow-fork: a child
        once deadlocked on a lock its parent's writer held at the fork."""
        from harness import SOURCE
        script = os.path.join(SOURCE, "tests", "e2e", "py", "pool_fork.py")
        for i in range(3):
            out = self.path(f"pool{i}.bin")
            cp = memtrace("run", "-q", "-o", out, "--follow-fork", script,
                          check=False, timeout=120)
            self.assertEqual((cp.returncode, cp.stdout), (0, "16000\n"), cp.stderr)
            children = [f for f in os.listdir(self.tmp)
                        if f.startswith(f"pool{i}.bin.")]
            self.assertEqual(len(children), 4, os.listdir(self.tmp))
            for child in children:
                balanced(self, self.path(child))


class ReaderUnderValgrind(CaptureTest):
    def test_report_is_clean_under_valgrind(self):
        if SANITIZED or not shutil.which("valgrind"):
            self.skipTest("valgrind needs the unsanitized build and valgrind")
        capture, _ = self.record([prog("known_allocs")])
        for args in (["summary", capture, "--json"],
                     ["report", capture, "--leaks", "--json"],
                     ["stats", capture]):
            cp = subprocess.run(["valgrind", "-q", "--error-exitcode=1",
                                 "--leak-check=full", "--errors-for-leak-kinds=definite",
                                 MEMTRACE, *args],
                                capture_output=True, text=True, timeout=300)
            self.assertEqual(cp.returncode, 0, cp.stderr[-3000:])


def python_for_tests():
    """The first interpreter the build made the extension for (from
    <build>/python/interpreters.txt), or None."""
    path = os.path.join(os.path.dirname(MEMTRACE), "python", "interpreters.txt")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and parts[0] in ("build", "test"):
                return parts[1]
    return None


def python_env():
    """Our environment without settings that change how Python starts."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "MEMTRACE_", "MT_"))
            and k != "LD_PRELOAD"}


class PythonEndsAbruptly(CaptureTest):
    """A Python program that leaves through os._exit or os.abort: the
    program's status is kept, and the capture is readable."""

    def setUp(self):
        super().setUp()
        self.python = python_for_tests()
        if not self.python:
            self.skipTest("no Python extension was built")

    def run_code(self, code, status):
        out = self.path("out.bin")
        cp = memtrace("run", "-q", "-o", out, "--python", self.python, "-c",
                      code, check=False, timeout=120, env=python_env())
        self.assertEqual(cp.returncode, status, cp.stderr)
        return out

    def code_site(self, capture, line=1):
        """(bytes, count) of the report's site at line of "<string>" (how
        a -c program's frames are named: function "<module>")."""
        r = report_json("report", capture, "--top", "1000")
        hits = [(e["bytes"], e["count"]) for e in r["top"]
                if e["site"] == {"function": "<module>", "file": "<string>",
                                 "line": line, "module": ""}]
        self.assertEqual(len(hits), 1, r["top"][:5])
        return hits[0]

    def test_os_exit(self):
        """os._exit(3): exit status 3; _exit is intercepted, so the capture
        is complete, with the bytearray's allocation (5,000,000 bytes plus
        the NUL byte a bytearray keeps after its data)."""
        capture = self.run_code(
            "import os; x = bytearray(5_000_000); os._exit(3)", 3)
        s = report_json("summary", capture)
        self.assertIs(s["complete"], True)
        self.assertIsNone(s["warning"])
        self.assertEqual(self.code_site(capture), (5000001, 1))

    def test_os_abort(self):
        """os.abort(): exit status 134 (128 + SIGABRT). The capture has no
        trailer, so it reads with a warning, and holds what was written
        before the signal: the bytearray made a second earlier (the
        writer flushes at least every 100 ms)."""
        capture = self.run_code("import os, time; x = bytearray(3_000_000); "
                                "time.sleep(1); os.abort()", 134)
        r = memtrace("summary", capture, "--json", check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
        self.assertIn("no trailer", r.stderr)
        s = json.loads(r.stdout)
        self.assertIs(s["complete"], False)
        self.assertIn("no trailer", s["warning"])
        self.assertEqual(self.code_site(capture), (3000001, 1))

    def test_os_abort_at_once(self):
        """os.abort() before the writer's first round: the capture may
        hold no event, but it is still a readable capture."""
        capture = self.run_code("import os; os.abort()", 134)
        r = memtrace("summary", capture, "--json", check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        s = json.loads(r.stdout)
        self.assertIs(s["complete"], False)
        self.assertGreater(s["pid"], 0)
        self.assertIn("os.abort()", s["command"])


if __name__ == "__main__":
    unittest.main()
