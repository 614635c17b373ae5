"""End-to-end tests of `memtrace run --follow-fork` with worker processes:
multiprocessing pools with each start method (fork, spawn, forkserver),
concurrent.futures.ProcessPoolExecutor, subprocess running Python, and
native programs starting children with posix_spawn, vfork+exec, fork+exec.

Every worker must leave a capture FILE.<pid> that reads, with Python stacks
and the exact bytes at the known line of py/workers.py; the captures must
link up (each child's parent lists it among its children, up to the root);
memtrace run must leave no process behind. The Python cases run on the
first interpreter the build made the extension for and on the system's
/usr/bin/python3 (Debian's, which has a sitecustomize of its own), the spawn
case on every interpreter."""
import json
import os
import re
import subprocess
import sys
import tempfile
import shutil
import unittest

from harness import BUILD, MEMTRACE, SOURCE, memtrace, prog

PY = os.path.join(os.path.abspath(SOURCE), "tests", "e2e", "py")
WORKERS = os.path.join(PY, "workers.py")
ALLOC_LINE = next(n for n, text in enumerate(open(WORKERS), 1)
                  if text.rstrip().endswith("# @alloc"))


def base_env(**extra):
    """Our environment without Python settings that would change how the
    programs start."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "MEMTRACE_", "MT_")) and k != "LD_PRELOAD"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


# Each capture on its own (--no-children): these tests check the process
# tree capture by capture; test_window.py checks the combined reports.
def summary(path):
    return json.loads(memtrace("summary", path, "--json", "--no-children").stdout)


def leaks(path):
    return json.loads(memtrace("report", path, "--leaks", "--json",
                               "--top", "200", "--no-children").stdout)


def at_line(report, file, line):
    """(bytes, count) at file:line, and the heaviest entry there."""
    hits = [e for e in report["top"]
            if e["site"]["file"] == file and e["site"]["line"] == line]
    return (sum(e["bytes"] for e in hits), sum(e["count"] for e in hits),
            max(hits, key=lambda e: e["bytes"]) if hits else None)


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class FollowTest:
    """Helpers (a mixin: the test classes add unittest.TestCase)."""
    PYTHON = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mt-workers-")
        self.out = os.path.join(self.tmp, "out.bin")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_follow(self, args, env=None):
        cp = subprocess.run([MEMTRACE, "run", "-q", "-o", self.out, "--follow-fork",
                             *args], capture_output=True, text=True, timeout=120,
                            env=env or base_env())
        self.assertEqual(cp.returncode, 0, f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
        return cp

    def capture_of(self, pid, root):
        return self.out if pid == root else f"{self.out}.{pid}"

    def check_tree(self, unlisted=()):
        """Every capture of the run reads and is complete; each child's
        traced parent lists it (but the pids in unlisted), up to the root;
        no process is left. Returns {pid: summary}."""
        root = summary(self.out)
        self.assertEqual((root["origin"], root["root_pid"], root["parent_pid"]),
                         ("root", root["pid"], None))
        sums = {root["pid"]: root}
        for name in os.listdir(self.tmp):
            m = re.fullmatch(r"out\.bin\.(\d+)", name)
            if not m:
                continue
            s = summary(os.path.join(self.tmp, name))
            self.assertEqual(s["pid"], int(m.group(1)))
            self.assertTrue(s["complete"], name)
            self.assertEqual(s["root_pid"], root["pid"], name)
            self.assertIn(s["origin"], ("fork", "exec"), name)
            sums[s["pid"]] = s
        self.assertTrue(root["complete"])
        for pid, s in sums.items():
            if pid == root["pid"]:
                continue
            parent = s["parent_pid"]
            self.assertIn(parent, sums, f"the parent of {pid} has no capture")
            if pid not in unlisted:
                self.assertIn(pid, sums[parent]["children"],
                              f"{parent} does not list {pid}")
        for s in sums.values():
            for kid in s["children"]:
                self.assertFalse(alive(kid), f"child {kid} of {s['pid']} still runs")
        return sums


class PythonWorkers(FollowTest):
    """The tests, for one interpreter (PYTHON)."""

    def run_workers(self, mode):
        cp = self.run_follow(["--python", self.PYTHON, WORKERS, mode])
        tasks = json.loads(cp.stdout)
        self.assertEqual(sorted(i for _, i in tasks), [0, 1, 2, 3], cp.stdout)
        sums = self.check_tree()
        root = summary(self.out)["pid"]
        by_pid = {}
        for pid, i in tasks:
            by_pid.setdefault(pid, []).append(i)
        for pid, mine in by_pid.items():
            self.assertNotEqual(pid, root, "a task ran in the parent")
            self.assertIn(pid, sums, f"worker {pid} has no capture")
            rep = leaks(self.capture_of(pid, root))
            got, count, entry = at_line(rep, WORKERS, ALLOC_LINE)
            # bytearray(n) asks the allocator for n + 1 bytes.
            self.assertEqual((got, count),
                             (sum(3_000_001 + i for i in mine), len(mine)),
                             f"worker {pid} ran {mine}")
            self.assertEqual(entry["site"]["function"], "work")
            self.assertEqual((entry["stack"][0]["function"], entry["stack"][0]["line"]),
                             ("work", ALLOC_LINE))
            # Python frames only: the stack goes up through the interpreter's
            # own Python code, never into C.
            self.assertTrue(all(f["file"].endswith(".py") or f["file"].startswith("<")
                                for f in entry["stack"]), entry["stack"])
        self.check_combined(sums)
        return sums, by_pid, root

    def check_combined(self, sums):
        """The root's capture read alone reports the whole job: every
        process listed, and the four tasks' 12,000,010 bytes (kept until
        each worker ends, so in its leaks) summed at the known line."""
        whole = json.loads(memtrace("report", self.out, "--leaks", "--json",
                                    "--top", "200").stdout)
        self.assertEqual(sorted(p["pid"] for p in whole["processes"]),
                         sorted(sums), whole["processes"])
        got, count, entry = at_line(whole, WORKERS, ALLOC_LINE)
        self.assertEqual((got, count), (sum(3_000_001 + i for i in range(4)), 4))
        # Every Python frame keeps its name and file: a code object met at
        # several nodes, or in several processes, is one and the same.
        self.assertEqual(entry["site"]["function"], "work")
        # (Allocations with no stack at all have an unknown site, line 0.)
        for e in whole["top"]:
            for fr in (e["site"], *e["stack"]):
                if fr["line"]:
                    self.assertNotEqual(fr["file"], "<unknown>", e["stack"])
        # At the job's high-water mark (the peak of the summed heaps) at
        # least one task's memory is live, and never more than all four.
        peak = json.loads(memtrace("report", self.out, "--json",
                                   "--top", "200").stdout)
        got, _, _ = at_line(peak, WORKERS, ALLOC_LINE)
        self.assertGreaterEqual(got, 3_000_001)
        self.assertLessEqual(got, 12_000_010)

    def test_pool_fork(self):
        sums, workers, root = self.run_workers("fork")
        for pid in workers:
            self.assertEqual((sums[pid]["origin"], sums[pid]["parent_pid"]), ("fork", root))
            # A forked worker runs the program as typed, not memtrace's
            # launcher (which the interpreter's own command line names).
            self.assertEqual(sums[pid]["command"], f"{self.PYTHON} {WORKERS} fork")
        self.assertEqual(sums[root]["command"], f"{self.PYTHON} {WORKERS} fork")

    def test_pool_spawn(self):
        sums, workers, root = self.run_workers("spawn")
        for pid in workers:
            self.assertEqual((sums[pid]["origin"], sums[pid]["parent_pid"]), ("exec", root))

    def test_pool_forkserver(self):
        sums, workers, root = self.run_workers("forkserver")
        # The workers are forked by the forkserver, which the root started.
        for pid in workers:
            server = sums[pid]["parent_pid"]
            self.assertEqual(sums[pid]["origin"], "fork")
            self.assertEqual((sums[server]["origin"], sums[server]["parent_pid"]),
                             ("exec", root))

    def test_process_pool_executor(self):
        self.run_workers("executor-default")

    def test_process_pool_executor_spawn(self):
        self.run_workers("executor-spawn")

    def test_subprocess_runs_python(self):
        sums, workers, root = self.run_workers("subprocess")
        self.assertEqual(len(workers), 4)
        self.assertEqual([p for p in sums[root]["children"] if p in workers],
                         [pid for pid in workers])  # in the order they started

    def test_pool_fork_while_threads_allocate(self):
        self.run_workers("threads-fork")

    def test_pool_terminated_by_with(self):
        """`with Pool() as p:` kills its workers with SIGTERM when the block
        ends: each worker's capture still holds what it did (written by
        the tracer's handler as the signal arrives), the tasks' bytes at
        the known line, although the worker never reached its exit."""
        cp = self.run_follow(["--python", self.PYTHON, WORKERS, "with-fork"])
        tasks = json.loads(cp.stdout)
        by_pid = {}
        for pid, i in tasks:
            by_pid.setdefault(pid, []).append(i)
        for pid, mine in by_pid.items():
            got = memtrace("report", f"{self.out}.{pid}", "--leaks", "--json",
                           "--top", "200", "--no-children")
            got, count, entry = at_line(json.loads(got.stdout), WORKERS, ALLOC_LINE)
            self.assertEqual((got, count), (sum(3_000_001 + i for i in mine), len(mine)),
                             f"worker {pid} ran {mine}")
            self.assertEqual(entry["site"]["function"], "work")
        self.assertEqual(sorted(i for _, i in tasks), [0, 1, 2, 3])

    def test_program_sees_no_memtrace(self):
        """The program and its children see their environment as without
        memtrace (PYTHONPATH as given, no memtrace variable), sys.path
        without memtrace's hook, and the system's own sitecustomize."""
        env = base_env(PYTHONPATH="/nonexistent-dir")
        probe = os.path.join(PY, "env_probe.py")
        plain = subprocess.run([self.PYTHON, probe], capture_output=True, text=True,
                               env=env, timeout=60, check=True)
        want = json.loads(plain.stdout)
        got = json.loads(self.run_follow(["--python", self.PYTHON, probe], env=env).stdout)
        # python -S runs no sitecustomize: the tracer itself takes PYTHONPATH
        # back, and the child is traced with native stacks.
        for who in ("parent", "child", "own_env", "no_site"):
            self.assertEqual(got[who]["env"], {"PYTHONPATH": "/nonexistent-dir"}, who)
            self.assertEqual(got[who]["path"], [], who)
        self.assertTrue(os.path.exists(f"{self.out}.{got['no_site']['pid']}"))
        for who in ("child", "own_env"):
            self.assertEqual(got[who]["memtrace_modules"], [], who)
            if want[who]["sitecustomize"]:  # the system's must still run
                self.assertEqual(got[who]["sitecustomize"], want[who]["sitecustomize"])
            # The child ran traced, with Python stacks.
            pid = got[who]["pid"]
            rep = leaks(f"{self.out}.{pid}")
            self.assertIn("<module>", [e["site"]["function"] for e in rep["top"]])
        self.check_tree()


    def test_tracker_follow_fork_lists_its_child(self):
        """memtrace.Tracker(follow_fork=True), in a program memtrace run
        did not start: the forked child writes FILE.<pid>, the parent's
        capture lists it."""
        code = ("import memtrace, os, sys\n"
                "with memtrace.Tracker(sys.argv[1], follow_fork=True):\n"
                "    pid = os.fork()\n"
                "    if pid == 0:\n"
                "        keep = bytearray(1_500_000)\n"
                "        os._exit(0)\n"
                "    os.waitpid(pid, 0)\n"
                "print(pid)\n")
        cp = subprocess.run([self.PYTHON, "-c", code, self.out], capture_output=True,
                            text=True, timeout=60, check=True,
                            env=base_env(PYTHONPATH=os.path.join(BUILD, "python")))
        pid = int(cp.stdout)
        self.assertEqual(summary(self.out)["children"], [pid])
        child = summary(f"{self.out}.{pid}")
        self.assertEqual((child["parent_pid"], child["origin"]),
                         (summary(self.out)["pid"], "fork"))
        self.assertEqual(at_line(leaks(f"{self.out}.{pid}"), "<string>", 5)[:2],
                         (1_500_001, 1))


def interpreters():
    """[(kind, path, version)] from <build>/python/interpreters.txt."""
    path = os.path.join(BUILD, "python", "interpreters.txt")
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and parts[0] in ("build", "test"):
                out.append((parts[0], parts[1], parts[2]))
    return out


class NativeChildren(FollowTest, unittest.TestCase):
    """A native program starting copies of itself (tests/progs/spawner.c),
    each keeping malloc(1000000 + i) in child_alloc."""

    def run_spawner(self, mode):
        cp = self.run_follow(["--", prog("spawner"), mode])
        pids = [int(x) for x in cp.stdout.split()]
        self.assertEqual(len(pids), 2, cp.stdout)
        sums = self.check_tree()
        root = summary(self.out)["pid"]
        self.assertEqual(sums[root]["children"], pids)
        for i, pid in enumerate(pids):
            self.assertEqual((sums[pid]["parent_pid"], sums[pid]["origin"]), (root, "exec"))
            rep = leaks(f"{self.out}.{pid}")
            sites = {e["site"]["function"]: (e["bytes"], e["count"]) for e in rep["top"]}
            self.assertEqual(sites.get("child_alloc"), (1_000_000 + i, 1), rep["top"][:3])
        return sums, pids

    def test_posix_spawn(self):
        self.run_spawner("posix_spawn")

    def test_posix_spawnp_with_its_own_environment(self):
        self.run_spawner("posix_spawnp")

    def test_vfork_exec(self):
        self.run_spawner("vfork")

    def test_fork_then_exec_replaces_the_forked_capture(self):
        sums, pids = self.run_spawner("fork-exec")
        for pid in pids:
            rep = leaks(f"{self.out}.{pid}")
            self.assertNotIn("before_exec", [e["site"]["function"] for e in rep["top"]])

    def test_execl(self):
        self.run_spawner("execl")

    def run_through_shell(self, mode):
        """system() and popen(): the C library starts the shell itself, so
        the parent cannot list it; the shell's capture names the parent,
        and the children the shell starts are listed by it."""
        self.run_follow(["--", prog("spawner"), mode])
        root = summary(self.out)["pid"]
        shells = {}
        for name in os.listdir(self.tmp):
            if name.startswith("out.bin."):
                s = summary(os.path.join(self.tmp, name))
                if s["parent_pid"] == root:
                    shells[s["pid"]] = s
        self.assertEqual(len(shells), 2, shells)
        self.assertEqual(summary(self.out)["children"], [])
        sums = self.check_tree(unlisted=set(shells))
        got = []
        for pid, s in sums.items():
            if pid == root:
                continue
            rep = leaks(f"{self.out}.{pid}")
            sites = {e["site"]["function"]: (e["bytes"], e["count"]) for e in rep["top"]}
            if "child_alloc" in sites:
                got.append(sites["child_alloc"])
                self.assertTrue(pid in shells or s["parent_pid"] in shells)
        self.assertEqual(sorted(got), [(1_000_000, 1), (1_000_001, 1)])

    def test_system(self):
        self.run_through_shell("system")

    def test_popen(self):
        self.run_through_shell("popen")

    def test_without_follow_fork_children_are_not_traced(self):
        cp = subprocess.run([MEMTRACE, "run", "-q", "-o", self.out, "--",
                             prog("spawner"), "posix_spawn"],
                            capture_output=True, text=True, timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(os.listdir(self.tmp), ["out.bin"])
        self.assertEqual(summary(self.out)["children"], [])


def make_cases():
    found = interpreters()
    if not found:
        def setUpClass(cls):
            raise unittest.SkipTest("no Python extension was built")
        globals()["TestNoPython"] = type("TestNoPython", (unittest.TestCase,), {
            "setUpClass": classmethod(setUpClass), "test_none": lambda self: None})
        return
    first = found[0][1]
    system = [p for k, p, _ in found if k == "test"]
    for kind, path, version in found:
        name = "TestWorkers_" + version.replace(".", "_")
        if kind == "test":
            name += "_" + re.sub(r"\W", "_", path)
        if path == first or path in system:
            globals()[name] = type(name, (PythonWorkers, unittest.TestCase),
                                   {"PYTHON": path})
        else:  # the start-up hook on every version: the spawn case
            globals()[name] = type(name, (FollowTest, unittest.TestCase), {
                "PYTHON": path, "run_workers": PythonWorkers.run_workers,
                "check_combined": PythonWorkers.check_combined,
                "test_pool_spawn": PythonWorkers.test_pool_spawn})
    sys.stderr.write("test_workers: all cases on " + ", ".join([first, *system]) +
                     "; the spawn case on the others\n")


make_cases()

if __name__ == "__main__":
    unittest.main()
