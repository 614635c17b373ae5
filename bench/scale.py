#!/usr/bin/env python3
"""How memtrace scales with the length of a run.

Records captures of 1M, 10M and 100M events (malloc/free pairs of
tests/progs/stress, THREADS threads; a pair is two events), then measures
for each: the capture's size and bytes per allocation+free pair, and the
wall time and peak RSS of `memtrace summary` and `memtrace flamegraph`
(fastest of ROUNDS; the peak RSS is the child's own, from wait4), and the
size of the flame graph page. Prints a Markdown table.

--billion also records 1,000,000,000 events and times `memtrace summary`
on it (one round); it needs a few minutes and a little disk.

usage: bench/scale.py BUILD_DIR [--events N,N,...] [--threads T]
                      [--rounds R] [--billion] [--keep DIR]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def measured(cmd):
    """Runs cmd; returns (wall seconds, peak RSS bytes, CPU seconds: user
    + system) of that child. On a shared machine the CPU time says more
    than the wall time, which includes waiting for a core."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {err}")
    return wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def record(memtrace, stress, threads, events, path):
    pairs = events // 2 // threads
    start = time.perf_counter()
    subprocess.run([memtrace, "run", "-q", "-f", "-o", path, "--", stress,
                    str(threads), str(pairs)], check=True,
                   stdout=subprocess.DEVNULL)
    return pairs * threads, time.perf_counter() - start


def fmt_size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build")
    ap.add_argument("--events", default="1000000,10000000,100000000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--billion", action="store_true")
    ap.add_argument("--keep", help="directory for the captures (kept)")
    args = ap.parse_args()

    build = os.path.abspath(args.build)
    memtrace = os.path.join(build, "memtrace")
    stress = os.path.join(build, "tests", "progs", "stress")
    tmp = args.keep or tempfile.mkdtemp(prefix="mt-scale-")
    os.makedirs(tmp, exist_ok=True)
    sizes = [int(float(e)) for e in args.events.split(",") if e]

    rows = []
    for events in sizes:
        cap = os.path.join(tmp, f"stress-{events}.bin")
        html = os.path.join(tmp, f"stress-{events}.html")
        pairs, rec_s = record(memtrace, stress, args.threads, events, cap)
        size = os.path.getsize(cap)
        best = {}
        for _ in range(args.rounds):
            for name, cmd in (
                    ("summary", [memtrace, "summary", cap]),
                    ("flamegraph", [memtrace, "flamegraph", "-f", "-o", html,
                                    cap])):
                res = measured(cmd)
                old = best.get(name)
                if old is None or res[0] < old[0]:
                    best[name] = res
        rows.append((events, pairs, rec_s, size, best,
                     os.path.getsize(html)))

    print(f"tests/progs/stress, {args.threads} threads of malloc(32)/free "
          f"pairs; fastest of {args.rounds} by wall time; peak RSS and CPU "
          f"time (user + system) of the reading process\n")
    print("| events | record s | capture | bytes/pair | summary wall s | "
          "summary CPU s | summary peak RSS | flamegraph wall s | flamegraph "
          "CPU s | flamegraph peak RSS | HTML |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for events, pairs, rec_s, size, best, html in rows:
        s_wall, s_rss, s_cpu = best["summary"]
        f_wall, f_rss, f_cpu = best["flamegraph"]
        print(f"| {events:,} | {rec_s:.2f} | {fmt_size(size)} | "
              f"{size / pairs:.4f} | {s_wall:.3f} | {s_cpu:.3f} | "
              f"{fmt_size(s_rss)} | {f_wall:.3f} | {f_cpu:.3f} | "
              f"{fmt_size(f_rss)} | {fmt_size(html)} |")

    # Distinct stacks rather than events: the fixture of a million stacks.
    fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                           "tests", "fixtures", "million-stacks.bin")
    if os.path.exists(fixture):
        html = os.path.join(tmp, "million-stacks.html")
        best = {}
        for _ in range(args.rounds):
            for name, cmd in (
                    ("summary", [memtrace, "summary", fixture]),
                    ("flamegraph", [memtrace, "flamegraph", "-f", "-o", html,
                                    fixture])):
                res = measured(cmd)
                if name not in best or res[0] < best[name][0]:
                    best[name] = res
        s, f = best["summary"], best["flamegraph"]
        print(f"\ntests/fixtures/million-stacks.bin (1,000,000 distinct "
              f"stacks, one malloc each): summary {s[0]:.3f} s wall, "
              f"{s[2]:.3f} s CPU, peak RSS {fmt_size(s[1])}; flamegraph "
              f"{f[0]:.3f} s wall, {f[2]:.3f} s CPU, peak RSS "
              f"{fmt_size(f[1])}, HTML {fmt_size(os.path.getsize(html))}")

    if args.billion:
        events = 1_000_000_000
        cap = os.path.join(tmp, "stress-1e9.bin")
        pairs, rec_s = record(memtrace, stress, args.threads, events, cap)
        wall, rss, cpu = measured([memtrace, "summary", cap])
        print(f"\n1,000,000,000 events: recorded in {rec_s:.1f} s, capture "
              f"{fmt_size(os.path.getsize(cap))}; `memtrace summary` "
              f"{wall:.1f} s wall ({events / wall / 1e6:.1f} M events/s), "
              f"{cpu:.1f} s CPU, peak RSS {fmt_size(rss)}")
        os.unlink(cap)

    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
