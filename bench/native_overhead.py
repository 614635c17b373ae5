#!/usr/bin/env python3
"""Cost of tracing native malloc/free pairs, measured side by side in one run.

Runs tests/progs/stress (THREADS threads x PAIRS malloc/free pairs) untraced,
under `memtrace run`, under `memtrace run --aggregate` (totals kept in the
process, no events written), and under heaptrack when it is installed, interleaving
the three ROUNDS times and keeping each one's fastest run (machines here are
noisy; the minimum is the least disturbed). Prints a Markdown table with the
added cost per pair and the capture size per pair.

usage: bench/native_overhead.py BUILD_DIR [--pairs N] [--threads T] [--rounds R]
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time


def timed(cmd, env=None):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build")
    ap.add_argument("--pairs", type=int, default=2_000_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()

    build = os.path.abspath(args.build)
    memtrace = os.path.join(build, "memtrace")
    stress = os.path.join(build, "tests", "progs", "stress")
    prog = [stress, str(args.threads), str(args.pairs)]
    tmp = tempfile.mkdtemp(prefix="mt-bench-")
    heaptrack = shutil.which("heaptrack")

    configs = {"untraced": lambda i: prog,
               "memtrace": lambda i: [memtrace, "run", "-q", "-f", "-o",
                                      f"{tmp}/mt.bin", "--"] + prog,
               "memtrace --aggregate": lambda i: [
                   memtrace, "run", "-q", "-f", "-o", f"{tmp}/agg.bin",
                   "--aggregate", "--"] + prog}
    if heaptrack:
        configs["heaptrack"] = lambda i: [heaptrack, "-o", f"{tmp}/ht{i}"] + prog

    best = {name: float("inf") for name in configs}
    for i in range(args.rounds):
        for name, cmd in configs.items():
            best[name] = min(best[name], timed(cmd(i)))

    total = args.pairs * args.threads
    base = best["untraced"]
    sizes = {"memtrace": os.path.getsize(f"{tmp}/mt.bin"),
             "memtrace --aggregate": os.path.getsize(f"{tmp}/agg.bin")}
    if heaptrack:
        ht = sorted(glob.glob(f"{tmp}/ht{args.rounds - 1}*"))
        sizes["heaptrack"] = os.path.getsize(ht[0]) if ht else 0

    print(f"stress {args.threads} thread(s) x {args.pairs} malloc/free pairs, "
          f"fastest of {args.rounds} interleaved runs\n")
    print("| tool | wall s | added per pair | vs untraced | capture bytes/pair |")
    print("|---|---|---|---|---|")
    for name in configs:
        t = best[name]
        added = (t - base) / total * 1e6
        size = f"{sizes[name] / total:.3f}" if name in sizes else "-"
        print(f"| {name} | {t:.3f} | {added:.3f} µs | {t / base:.1f}x | {size} |")
    if heaptrack and "heaptrack" in best:
        print(f"\nmemtrace adds {(best['memtrace'] - base) / (best['heaptrack'] - base):.2f}x "
              f"of heaptrack's added cost")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
