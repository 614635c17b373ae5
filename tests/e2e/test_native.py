"""End-to-end: native programs under `memtrace run`, checked through the
summary and report JSON with numbers a wrong tracer or reader would miss."""
import os
import signal
import stat
import subprocess
import time
import unittest

from harness import (CaptureTest, memtrace, prog, report_json,
                     sites_by_function)

MIB = 1 << 20

# tests/progs/known_allocs.c, function by function: what is live at the
# end (leaks) and at the high-water mark (inside big_peak).
LEAKED = {"make_small": (4000, 40), "aligned": (1024, 1),
          "anon_mmap": (512 << 10, 1), "thread_work": (8000, 8)}
AT_PEAK = {"make_small": (4000, 40), "aligned": (1024, 1),
           "big_peak": (10 * MIB, 1)}
# Every allocation the program makes itself, by function.
OWN_COUNTS = {"make_small": 100, "make_calloc": 10, "realloc_chain": 3,
              "aligned": 4, "big_peak": 1, "anon_mmap": 1, "thread_work": 800}
LIBC = ("libc.so", "ld-linux")


def from_libc(entry):
    """An allocation site inside the C library or the dynamic loader (their
    own allocations: thread set-up, for instance)."""
    return any(name in entry["site"].get("module", "") + entry["site"]["file"]
               for name in LIBC)


class KnownAllocations(CaptureTest):
    def setUp(self):
        super().setUp()
        self.capture, cp = self.record([prog("known_allocs")])
        self.assertEqual(cp.stdout, "known_allocs: done\n")

    def test_leaks_exact_by_site(self):
        rep = report_json("report", self.capture, "--leaks", "--top", "1000")
        sites = sites_by_function(rep)
        for fn, (size, count) in LEAKED.items():
            self.assertIn(fn, sites, f"no leak site {fn}: {list(sites)}")
            self.assertEqual((sites[fn]["bytes"], sites[fn]["count"]),
                             (size, count), fn)
        # Everything else still live is the C library's own.
        others = [e for f, e in sites.items() if f not in LEAKED]
        for e in others:
            self.assertTrue(from_libc(e), f"unexpected leak site {e['site']}")
        self.assertEqual(rep["current_bytes"],
                         sum(e["bytes"] for e in rep["top"]))

    def test_peak_exact_by_site(self):
        rep = report_json("report", self.capture, "--top", "1000")
        sites = sites_by_function(rep)
        for fn, (size, count) in AT_PEAK.items():
            self.assertIn(fn, sites, f"no peak site {fn}: {list(sites)}")
            self.assertEqual((sites[fn]["bytes"], sites[fn]["count"]),
                             (size, count), fn)
        for f, e in sites.items():
            if f not in AT_PEAK:
                self.assertTrue(from_libc(e), f"unexpected peak site {e['site']}")
        self.assertEqual(rep["peak_bytes"], sum(e["bytes"] for e in rep["top"]))
        # The innermost frame of the heaviest stack is the site itself, and
        # main called it.
        stack = [f["function"] for f in sites["big_peak"]["stack"]]
        self.assertEqual(stack[0], "big_peak")
        self.assertIn("main", stack)

    def test_summary_totals(self):
        s = report_json("summary", self.capture)
        leaks = report_json("report", self.capture, "--leaks", "--top", "1000")
        libc_live = sum(e["bytes"] for e in leaks["top"] if from_libc(e))
        self.assertEqual(s["current_bytes"],
                         sum(b for b, _ in LEAKED.values()) + libc_live)
        self.assertGreaterEqual(s["peak_bytes"], 10 * MIB + 4000 + 1024)
        # Allocations minus frees is what is live at the end.
        self.assertEqual(s["total_allocations"] - s["total_frees"],
                         s["current_allocations"])
        # Every allocation is either the program's own, site by site, or
        # the C library's (thread set-up), which are counted, not guessed.
        everything = report_json("report", self.capture, "--all-allocations",
                                 "--top", "1000")
        own = sites_by_function(everything)
        self.assertEqual(
            {f: own[f]["count"] for f in OWN_COUNTS}, OWN_COUNTS)
        libc_count = sum(e["count"] for e in everything["top"] if from_libc(e))
        self.assertEqual(libc_count + sum(OWN_COUNTS.values()),
                         s["total_allocations"])
        self.assertEqual(everything["view_allocations"], s["total_allocations"])
        # main thread + 8 workers
        self.assertEqual(s["threads"], 9)
        self.assertTrue(s["native"])
        self.assertIsNone(s["python_version"])
        self.assertGreater(s["peak_rss_bytes"], 10 * MIB)

    def test_temporary_allocations(self):
        """Freed before N other allocations were made: N=1 is a free right
        after the allocation (realloc counts its old block as freed at
        once); N=100 also catches make_small's 60 frees after 100 mallocs
        and aligned's frees after 1 and 3 more allocations. thread_work's
        8 threads interleave, so its count can only be bounded."""
        def own(report):
            sites = sites_by_function(report)
            return {f: (e["bytes"], e["count"]) for f, e in sites.items()
                    if f in OWN_COUNTS}
        one = own(report_json("report", self.capture, "--temporary-allocations",
                              "--top", "1000"))
        hundred = own(report_json("report", self.capture, "--temporary-allocations",
                                  "--temporary-allocation-threshold", "100",
                                  "--top", "1000"))
        for got in (one, hundred):
            threads = got.pop("thread_work")
            self.assertTrue(0 < threads[1] <= 8 * 99, threads)
            self.assertEqual(threads[0], threads[1] * 1000)
        want_one = {"big_peak": (10 * MIB, 1), "realloc_chain": (101010, 3),
                    "make_calloc": (5000, 10), "aligned": (4096, 1)}
        self.assertEqual(one, want_one)
        self.assertEqual(hundred, dict(want_one, make_small=(6000, 60),
                                       aligned=(4096 + 512 + 256, 3)))

    def test_fail_over_for_ci(self):
        peak = report_json("summary", self.capture)["peak_bytes"]
        at = memtrace("report", self.capture, "--fail-over", str(peak), check=False)
        self.assertEqual(at.returncode, 0, at.stderr)
        over = memtrace("report", self.capture, "--fail-over", str(peak - 1),
                        check=False)
        self.assertEqual(over.returncode, 1)
        self.assertIn(f"({peak} bytes) is over the limit", over.stderr)
        self.assertIn("Top", over.stdout)  # the report still comes out
        self.assertEqual(memtrace("report", self.capture, "--fail-over", "10MiB",
                                  check=False).returncode, 1)  # 10 MiB + more
        self.assertEqual(memtrace("report", self.capture, "--fail-over", "11MB",
                                  check=False).returncode, 0)
        self.assertEqual(memtrace("report", self.capture, "--fail-over", "1.5XB",
                                  check=False).returncode, 2)

    def test_capture_is_private(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.capture).st_mode), 0o600)


class Threads(CaptureTest):
    def test_no_event_lost(self):
        """8 threads x 1,000,000 malloc/free pairs: every pair is there."""
        capture, cp = self.record([prog("stress"), "8", "1000000"])
        self.assertEqual(cp.stdout, "8000000 pairs\n")
        s = report_json("summary", capture)
        self.assertGreaterEqual(s["total_allocations"], 8_000_000)
        self.assertLess(s["total_allocations"], 8_000_000 + 100)
        self.assertEqual(s["total_allocations"] - s["total_frees"],
                         s["current_allocations"])
        self.assertEqual(s["threads"], 9)


class Lifecycle(CaptureTest):
    def run_mode(self, mode, status=0, extra=()):
        capture, cp = self.record([prog("lifecycle"), mode], extra=extra,
                                  expect_status=status, timeout=60)
        untraced = subprocess.run([prog("lifecycle"), mode], capture_output=True,
                                  text=True, timeout=60)
        self.assertEqual(untraced.returncode, status)
        self.assertEqual(cp.stdout, untraced.stdout)
        return capture

    def summary(self, capture):
        s = report_json("summary", capture)
        self.assertEqual(s["total_allocations"] - s["total_frees"],
                         s["current_allocations"])
        return s

    def test_fork_child_stops_tracing(self):
        capture = self.run_mode("fork")
        sites = sites_by_function(
            report_json("report", capture, "--leaks", "--top", "1000"))
        self.assertEqual(sites["parent_work"]["count"], 10)
        self.assertNotIn("child_work", sites)
        self.assertEqual([f for f in os.listdir(self.tmp)], ["out.bin"])

    def test_follow_fork_child_writes_its_own(self):
        capture = self.run_mode("fork", extra=("--follow-fork",))
        children = [f for f in os.listdir(self.tmp) if f.startswith("out.bin.")]
        self.assertEqual(len(children), 1, os.listdir(self.tmp))
        child = sites_by_function(report_json(
            "report", self.path(children[0]), "--leaks", "--top", "1000"))
        self.assertEqual((child["child_work"]["bytes"],
                          child["child_work"]["count"]), (20000, 10))
        parent = sites_by_function(report_json(
            "report", capture, "--leaks", "--top", "1000", "--no-children"))
        self.assertNotIn("child_work", parent)
        # The parent alone finds its child and combines the two.
        both = report_json("report", capture, "--leaks", "--top", "1000")
        self.assertEqual([p["capture"] for p in both["processes"]],
                         [capture, self.path(children[0])])
        sites = sites_by_function(both)
        self.assertEqual((sites["child_work"]["bytes"],
                          sites["parent_work"]["bytes"]), (20000, 10000))

    def test_fork_exec_not_traced(self):
        self.run_mode("fork-exec")
        self.assertEqual(os.listdir(self.tmp), ["out.bin"])

    def test_exit_while_threads_allocate(self):
        s = self.summary(self.run_mode("exit-threads"))
        self.assertGreater(s["total_allocations"], 1000)

    def test_signal_handler_allocates(self):
        self.summary(self.run_mode("signals"))

    def test_thread_churn(self):
        capture = self.run_mode("churn")
        s = self.summary(capture)
        self.assertEqual(s["threads"], 201)
        rep = report_json("report", capture, "--leaks", "--top", "1000")
        self.assertNotIn("short_thread", sites_by_function(rep))

    def test_dlopen_loop(self):
        self.summary(self.run_mode("dlopen"))

    def test_underscore_exit_flushes_everything(self):
        capture = self.run_mode("_exit", status=7)
        sites = sites_by_function(
            report_json("report", capture, "--leaks", "--top", "1000"))
        self.assertEqual(sites["before_crash"]["count"], 5)

    def test_abort_and_segv_leave_readable_capture(self):
        for mode, sig in (("abort", signal.SIGABRT), ("segv", signal.SIGSEGV)):
            capture, cp = self.record([prog("lifecycle"), mode], name=mode + ".bin",
                                      expect_status=128 + sig)
            sites = sites_by_function(
                report_json("report", capture, "--leaks", "--top", "1000"))
            self.assertEqual(sites["before_crash"]["count"], 5, mode)

    def test_crash_at_once_still_records(self):
        """abort, a segfault, SIGTERM (also where the program's own handler
        restores the default action and raises it again) and SIGPIPE right
        after allocating, before any writer round: the fatal-signal handler
        writes a last block."""
        for mode, sig in (("abort-now", signal.SIGABRT), ("segv-now", signal.SIGSEGV),
                          ("term-now", signal.SIGTERM), ("term-own-now", signal.SIGTERM),
                          ("pipe-now", signal.SIGPIPE)):
            capture, cp = self.record([prog("lifecycle"), mode], name=mode + ".bin",
                                      expect_status=128 + sig)
            sites = sites_by_function(
                report_json("report", capture, "--leaks", "--top", "1000"))
            self.assertEqual(sites["before_crash"]["count"], 5, mode)

    def test_sigkill_reads_up_to_last_block(self):
        out = self.path("killed.bin")
        p = subprocess.Popen([memtrace_path(), "run", "-o", out, "--",
                              prog("lifecycle"), "loop"],
                             stdout=subprocess.PIPE, text=True)
        self.assertEqual(p.stdout.readline(), "ready\n")
        time.sleep(0.5)
        # Kill the program, not memtrace: find memtrace's child.
        child = int(open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()[0])
        os.kill(child, signal.SIGKILL)
        self.assertEqual(p.wait(timeout=30), 128 + signal.SIGKILL)
        cp = memtrace("summary", out, "--json")
        self.assertIn("warning", cp.stderr)
        import json
        s = json.loads(cp.stdout)
        self.assertGreater(s["total_allocations"], 1000)
        self.assertEqual(s["total_allocations"] - s["total_frees"],
                         s["current_allocations"])


def memtrace_path():
    from harness import MEMTRACE
    return MEMTRACE


class EarlyAllocations(CaptureTest):
    def test_allocations_before_the_tracer_starts(self):
        """A preloaded library allocates in its constructor, which runs
        before memtrace's: the hooks must resolve the real allocator on the
        spot (dlsym bootstrap) and let the program go on."""
        from harness import BUILD
        lib = os.path.join(BUILD, "tests", "libs", "libearly_alloc.so")
        # The user's LD_PRELOAD reaches memtrace run itself too; in the
        # sanitizer build, ASan must be told that another library may
        # come before its runtime there.
        env = dict(os.environ, LD_PRELOAD=lib,
                   ASAN_OPTIONS="verify_asan_link_order=0")
        capture, cp = self.record([prog("known_allocs")], env=env)
        self.assertIn("early: allocated before memtrace started", cp.stderr)
        self.assertEqual(cp.stdout, "known_allocs: done\n")
        sites = sites_by_function(report_json("report", capture, "--leaks",
                                              "--top", "1000"))
        self.assertEqual((sites["make_small"]["bytes"],
                          sites["make_small"]["count"]), (4000, 40))


class RuntimeStart(CaptureTest):
    """Tracing started and stopped at run time in a program not started by
    memtrace run (relocation patching), in two sessions."""

    def test_two_sessions(self):
        from harness import BUILD
        out = self.path("rt.bin")
        cp = subprocess.run([prog("runtime_start"),
                             os.path.join(BUILD, "libmemtrace_preload.so"), out],
                            capture_output=True, text=True, timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, "restart refused: yes, stop refused: yes\n")
        one = report_json("summary", out)
        self.assertEqual((one["total_allocations"], one["total_frees"],
                          one["current_bytes"], one["peak_bytes"]),
                         (3, 1, 14000, 21000))
        self.assertTrue(one["complete"])
        two = report_json("summary", out + ".2")
        self.assertEqual((two["total_allocations"], two["current_bytes"]),
                         (5, 15000))
        sites = sites_by_function(report_json("report", out + ".2", "--leaks"))
        self.assertEqual(list(sites), ["traced_two"])


class Runner(CaptureTest):
    def test_exit_status_and_streams_pass_through(self):
        _, cp = self.record(["/bin/sh", "-c", "read x; echo out $x; echo err >&2; exit 5"],
                            expect_status=5, input="hello\n")
        self.assertEqual(cp.stdout, "out hello\n")
        self.assertTrue(cp.stderr.startswith("err\n"), cp.stderr)

    def test_environment_is_the_programs(self):
        env = dict(os.environ, LD_PRELOAD="", MY_VAR="x")
        env.pop("LD_PRELOAD")
        _, cp = self.record(["/usr/bin/env"], env=env)
        names = {line.split("=", 1)[0] for line in cp.stdout.splitlines()}
        self.assertIn("MY_VAR", names)
        self.assertFalse([n for n in names if n.startswith("MEMTRACE_")], names)
        self.assertNotIn("LD_PRELOAD", names)

    def test_refuses_to_overwrite_without_force(self):
        out, _ = self.record(["/bin/true"])
        cp = memtrace("run", "-o", out, "--", "/bin/true", check=False)
        self.assertEqual(cp.returncode, 2)
        self.assertIn("exists", cp.stderr)
        memtrace("run", "-f", "-o", out, "--", "/bin/true")

    def test_never_follows_a_planted_symlink(self):
        target = self.path("victim")
        with open(target, "w") as f:
            f.write("precious")
        link = self.path("link.bin")
        os.symlink(target, link)
        cp = memtrace("run", "-o", link, "--", "/bin/true", check=False)
        self.assertEqual(cp.returncode, 2)
        self.assertEqual(open(target).read(), "precious")

    def test_missing_program(self):
        cp = memtrace("run", "-o", self.path("x.bin"), "--", "/nonexistent/prog",
                      check=False)
        self.assertEqual(cp.returncode, 127)
        self.assertIn("cannot run", cp.stderr)
        self.assertFalse(os.path.exists(self.path("x.bin")))

    def test_program_that_cannot_run(self):
        """As a shell says it: 127 for no such program, 126 for one that
        cannot be run, with the reason, and no capture left."""
        text = self.path("notes.txt")
        with open(text, "w") as f:
            f.write("not a program\n")
        for argv0, status, why in (
                ("/nonexistent/prog", 127, "no such file"),
                (self.tmp, 126, "it is a directory"),
                (text, 126, "not an executable file"),
                ("no-such-command-here", 127, "command not found on PATH")):
            cp = memtrace("run", "-o", self.path("x.bin"), "--", argv0, check=False)
            self.assertEqual((cp.returncode, cp.stderr),
                             (status, f"memtrace run: cannot run '{argv0}': {why}\n"))
            self.assertFalse(os.path.exists(self.path("x.bin")))

    def test_report_on_stderr_when_the_program_ends(self):
        _, cp = self.record([prog("known_allocs")], extra=("--report=2",))
        self.assertEqual(cp.stdout, "known_allocs: done\n")
        self.assertIn("Top 2 sites at the peak:", cp.stderr)
        self.assertIn("known_allocs.c:67: 10.0 MiB in 1 allocation", cp.stderr)

    def test_signal_death_is_128_plus_n(self):
        self.record(["/bin/sh", "-c", "kill -TERM $$"], expect_status=128 + 15)


if __name__ == "__main__":
    unittest.main()
