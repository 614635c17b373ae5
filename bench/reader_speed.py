#!/usr/bin/env python3
"""How fast captures are read, side by side with heaptrack_print.

Records THREADS x PAIRS malloc/free pairs of tests/progs/stress once with
memtrace and once with heaptrack, then times (fastest of ROUNDS, interleaved)
`memtrace summary`, `memtrace flamegraph` and `heaptrack_print` on them.
Prints a Markdown table with events per second (a pair is two events).

usage: bench/reader_speed.py BUILD_DIR [--pairs N] [--threads T] [--rounds R]
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time


def timed(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build")
    ap.add_argument("--pairs", type=int, default=5_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    build = os.path.abspath(args.build)
    memtrace = os.path.join(build, "memtrace")
    prog = [os.path.join(build, "tests", "progs", "stress"),
            str(args.threads), str(args.pairs)]
    tmp = tempfile.mkdtemp(prefix="mt-readbench-")
    capture = os.path.join(tmp, "stress.bin")
    subprocess.run([memtrace, "run", "-q", "-o", capture, "--"] + prog,
                   check=True, stdout=subprocess.DEVNULL)
    events = args.pairs * args.threads * 2

    commands = {
        "memtrace summary": [memtrace, "summary", capture],
        "memtrace flamegraph": [memtrace, "flamegraph", "-f", "-o",
                                os.path.join(tmp, "fg.html"), capture],
    }
    heaptrack = shutil.which("heaptrack")
    heaptrack_print = shutil.which("heaptrack_print")
    if heaptrack and heaptrack_print:
        subprocess.run([heaptrack, "-o", os.path.join(tmp, "ht")] + prog,
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        ht = sorted(glob.glob(os.path.join(tmp, "ht*")))[0]
        commands["heaptrack_print"] = [heaptrack_print, ht]

    best = {name: float("inf") for name in commands}
    for _ in range(args.rounds):
        for name, cmd in commands.items():
            best[name] = min(best[name], timed(cmd))

    print(f"reading a capture of {args.threads} x {args.pairs} malloc/free "
          f"pairs ({events:,} events, memtrace capture "
          f"{os.path.getsize(capture) / 1e6:.1f} MB), fastest of "
          f"{args.rounds} interleaved runs\n")
    print("| command | wall s | million events/s | vs memtrace summary |")
    print("|---|---|---|---|")
    base = best["memtrace summary"]
    for name, t in best.items():
        print(f"| {name} | {t:.2f} | {events / t / 1e6:.1f} | {t / base:.2f}x |")
    if "heaptrack_print" not in best:
        print("\nheaptrack is not installed: no side-by-side row.")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
