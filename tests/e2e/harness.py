"""Shared helpers for the end-to-end tests: run `memtrace` from the build
tree (MT_BUILD), run programs under `memtrace run`, and read JSON reports."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

BUILD = os.environ.get("MT_BUILD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
SOURCE = os.environ.get("MT_SOURCE") or os.path.join(
    os.path.dirname(__file__), "..", "..")
MEMTRACE = os.path.join(BUILD, "memtrace")
PROGS = os.path.join(BUILD, "tests", "progs")


def prog(name):
    """Path of a test program built from tests/progs/NAME.c."""
    return os.path.join(PROGS, name)


def memtrace(*args, check=True, timeout=120, **kw):
    """Runs memtrace with args; returns the CompletedProcess (text)."""
    cp = subprocess.run([MEMTRACE, *args], capture_output=True, text=True,
                        timeout=timeout, **kw)
    if check and cp.returncode != 0:
        raise AssertionError(
            f"memtrace {' '.join(args)} exited {cp.returncode}\n"
            f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
    return cp


def report_json(*args):
    """Parses the JSON printed by `memtrace <args> --json`."""
    cp = memtrace(*args, "--json")
    return json.loads(cp.stdout)


class CaptureTest(unittest.TestCase):
    """A test case with a scratch directory for captures."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mt-e2e-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def record(self, argv, name="out.bin", extra=(), expect_status=0, **kw):
        """Runs argv under `memtrace run -o <tmp>/name`; returns
        (capture path, CompletedProcess)."""
        out = self.path(name)
        cp = memtrace("run", "-o", out, *extra, "--", *argv, check=False, **kw)
        self.assertEqual(cp.returncode, expect_status,
                         f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
        return out, cp


def sites_by_function(report):
    """{function: {"bytes", "count", "site", "stack"}} from a report's "top"
    list, summing the sites (lines) of each function; "site" and "stack" are
    those of the function's largest site."""
    out = {}
    for e in report["top"]:
        fn = e["site"]["function"]
        if fn not in out:
            out[fn] = dict(e)
        else:
            out[fn]["bytes"] += e["bytes"]
            out[fn]["count"] += e["count"]
    return out
