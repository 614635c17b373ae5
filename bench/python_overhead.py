#!/usr/bin/env python3
"""Cost of tracing Python programs, measured side by side in one run.

Runs each workload of bench/workloads/ as a whole process (start-up counts)
under plain python, `memtrace run` (default, --trace-python-allocators,
--native, --trace-python-allocators --aggregate), `python -X tracemalloc=1`
and `=25`, and memray (default,
--trace-python-allocators, --native) when `python -m memray` works,
interleaving everything ROUNDS times and keeping each one's fastest run
(machines here are noisy; the minimum is the least disturbed). Prints
Markdown tables: wall seconds and ratio to plain python per workload and
mode, memtrace's capture sizes, and the start-up cost (`memtrace run -c
pass` against `python -c pass`).

The interpreter is `python3` on PATH unless --python says otherwise; a
wrapper such as pyenv's shim is resolved to the real interpreter first, so
that every mode runs the same binary (memtrace run resolves it the same way).

usage: bench/python_overhead.py BUILD_DIR [--python PATH] [--rounds R]
                                [--workloads NAME,...]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = {  # name -> (script, what it is)
    "alloc-heavy": ("alloc_heavy.py", "millions of small objects built and dropped"),
    "call-heavy": ("call_heavy.py", "recursive fib(30), allocates next to nothing"),
    "mixed": ("mixed.py", "JSON round trips and string building"),
}


def timed(cmd):
    """Wall seconds of one run of cmd, or raises CalledProcessError."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, stderr=proc.stderr)
    return elapsed


def real_python(want):
    """The interpreter binary behind `want` (a name on PATH or a path)."""
    found = shutil.which(want)
    if not found:
        sys.exit(f"python_overhead: no interpreter {want!r} (use --python PATH)")
    out = subprocess.run([found, "-c", "import sys, platform; "
                          "print(sys.executable); print(platform.python_version())"],
                         check=True, capture_output=True, text=True).stdout.split("\n")
    return out[0], out[1]


def has_memray(python):
    return subprocess.run([python, "-m", "memray", "--version"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def modes(python, memtrace, memray):
    """Mode name -> function(script args, capture path) -> command line."""
    mt = [memtrace, "run", "-q", "-f", "--python", python]
    out = {
        "python": lambda s, cap: [python] + s,
        "memtrace run": lambda s, cap: mt + ["-o", cap] + s,
        "memtrace run --trace-python-allocators":
            lambda s, cap: mt + ["--trace-python-allocators", "-o", cap] + s,
        "memtrace run --native": lambda s, cap: mt + ["--native", "-o", cap] + s,
        "memtrace run --trace-python-allocators --aggregate":
            lambda s, cap: mt + ["--trace-python-allocators", "--aggregate",
                                 "-o", cap] + s,
        "python -X tracemalloc=1": lambda s, cap: [python, "-X", "tracemalloc=1"] + s,
        "python -X tracemalloc=25": lambda s, cap: [python, "-X", "tracemalloc=25"] + s,
    }
    if memray:
        mr = [python, "-m", "memray", "run", "-q", "-f"]
        out["memray run"] = lambda s, cap: mr + ["-o", cap] + s
        out["memray run --trace-python-allocators"] = \
            lambda s, cap: mr + ["--trace-python-allocators", "-o", cap] + s
        out["memray run --native"] = lambda s, cap: mr + ["--native", "-o", cap] + s
    return out


def capture_cell(memtrace, path):
    """'size, events' of one capture (from `memtrace summary --json`)."""
    if not os.path.exists(path):
        return "-"
    size = os.path.getsize(path)
    proc = subprocess.run([memtrace, "summary", path, "--json"], capture_output=True, text=True)
    try:
        s = json.loads(proc.stdout)
        events = s["total_allocations"] + s["total_frees"]
    except (ValueError, KeyError):
        return f"{size / 1024:.0f} KiB"
    per = f", {size / events:.2f} B/event" if events else ""
    return f"{size / 1024:,.0f} KiB, {events:,} events{per}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build")
    ap.add_argument("--python", default="python3",
                    help="interpreter to run (default: python3 on PATH)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="comma-separated subset of " + ", ".join(WORKLOADS))
    args = ap.parse_args()

    began = time.perf_counter()
    memtrace = os.path.join(os.path.abspath(args.build), "memtrace")
    python, version = real_python(args.python)
    memray = has_memray(python)
    workloads = [w for w in args.workloads.split(",") if w]
    for w in workloads:
        if w not in WORKLOADS:
            sys.exit(f"python_overhead: unknown workload {w!r}")
    tmp = tempfile.mkdtemp(prefix="mt-pybench-")
    table = modes(python, memtrace, memray)
    script = {w: [os.path.join(HERE, "workloads", WORKLOADS[w][0])] for w in workloads}
    capture = {(m, w): os.path.join(tmp, f"{m.replace(' ', '_')}.{w}.bin")
               for m in table for w in workloads}

    try:
        timed([memtrace, "run", "-q", "-f", "--python", python, "-o",
               os.path.join(tmp, "probe.bin"), "-c", "pass"])
    except subprocess.CalledProcessError as e:
        sys.exit("python_overhead: `memtrace run -c pass` fails; is the Python "
                 "extension built?\n" + e.stderr.decode(errors="replace"))

    best = {key: float("inf") for key in capture}
    failed = {}
    start_cmds = {"python -c pass": [python, "-c", "pass"],
                  "memtrace run -c pass": table["memtrace run"](
                      ["-c", "pass"], os.path.join(tmp, "pass.bin")),
                  "memtrace run --native -c pass": table["memtrace run --native"](
                      ["-c", "pass"], os.path.join(tmp, "pass-native.bin"))}
    start_best = {name: float("inf") for name in start_cmds}
    for _ in range(args.rounds):
        for w in workloads:
            for m, cmd in table.items():
                if (m, w) in failed:
                    continue
                try:
                    best[m, w] = min(best[m, w], timed(cmd(script[w], capture[m, w])))
                except subprocess.CalledProcessError as e:
                    failed[m, w] = e.stderr.decode(errors="replace").strip()[-300:]
        for _ in range(3):  # start-up is short and noisy: more samples
            for name, cmd in start_cmds.items():
                start_best[name] = min(start_best[name], timed(cmd))

    print(f"Python {version} ({python}); fastest of {args.rounds} interleaved runs; "
          "whole processes, start-up included\n")
    for w in workloads:
        print(f"- {w}: bench/workloads/{WORKLOADS[w][0]}, {WORKLOADS[w][1]}")
    print("\n| mode | " + " | ".join(workloads) + " |")
    print("|---|" + "---|" * len(workloads))
    for m in table:
        cells = []
        for w in workloads:
            if (m, w) in failed:
                cells.append("failed")
            elif m == "python":
                cells.append(f"{best[m, w]:.3f} s")
            else:
                cells.append(f"{best[m, w]:.3f} s ({best[m, w] / best['python', w]:.2f}x)")
        print(f"| {m} | " + " | ".join(cells) + " |")
    if not memray:
        print(f"\nmemray: not measured (`{python} -m memray` is not installed).")

    print("\nCapture size (last run):\n")
    print("| mode | " + " | ".join(workloads) + " |")
    print("|---|" + "---|" * len(workloads))
    for m in table:
        if m.startswith("memtrace"):
            print(f"| {m} | " + " | ".join(capture_cell(memtrace, capture[m, w])
                                          for w in workloads) + " |")

    print(f"\nStart-up, fastest of {3 * args.rounds}:\n")
    print("| command | wall ms | added |")
    print("|---|---|---|")
    base = start_best["python -c pass"]
    for name, t in start_best.items():
        added = "-" if name.startswith("python") else f"+{(t - base) * 1e3:.1f} ms"
        print(f"| {name} | {t * 1e3:.1f} | {added} |")

    for (m, w), err in failed.items():
        print(f"\n{m} on {w} failed: {err}")
    print(f"\n(benchmark took {time.perf_counter() - began:.0f} s)")
    shutil.rmtree(tmp)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
