#!/usr/bin/env python3
"""Cost of `with memtrace.stage(...)`, against an empty context manager.

Times, in one process, N entries of each of:
  empty       `with Empty():` where Empty's __enter__/__exit__ do nothing
  stage       `with memtrace.stage("s"):` (one stage object, reused)
  stage-new   `with memtrace.stage("s"):` building the object each time
  decorated   a call of a function decorated with @memtrace.stage("d"),
              beside the plain call of the same function
first with no tracer in the process, then inside a memtrace.Tracker (every
stage then writes two records). Each figure is the fastest of ROUNDS
repetitions (the least disturbed), in ns per entry. Prints a Markdown table.

usage: bench/stage_overhead.py BUILD_DIR [--n N] [--rounds R]
"""
import argparse
import os
import sys
import tempfile
import time


class Empty:
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def per_entry(fn, n, rounds):
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        fn(n)
        best = min(best, time.perf_counter_ns() - t0)
    return best / n


def cases(memtrace):
    st = memtrace.stage("s")
    e = Empty()

    def empty(n):
        for _ in range(n):
            with e:
                pass

    def stage(n):
        for _ in range(n):
            with st:
                pass

    def stage_new(n):
        stage_cls = memtrace.stage
        for _ in range(n):
            with stage_cls("s"):
                pass

    def plain_fn():
        return None

    decorated_fn = memtrace.stage("d")(plain_fn)

    def plain(n):
        for _ in range(n):
            plain_fn()

    def decorated(n):
        for _ in range(n):
            decorated_fn()

    return [("empty context manager", empty), ("stage (reused object)", stage),
            ("stage (new object)", stage_new), ("plain call", plain),
            ("decorated call", decorated)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.abspath(a.build), "python"))
    import memtrace
    memtrace.stage("warm-up").__enter__()  # binds the extension once
    memtrace._stage_leave("warm-up")
    off = {name: per_entry(fn, a.n, a.rounds) for name, fn in cases(memtrace)}
    with tempfile.TemporaryDirectory() as tmp:
        with memtrace.Tracker(os.path.join(tmp, "bench.bin")):
            on = {name: per_entry(fn, a.n, a.rounds) for name, fn in cases(memtrace)}
        size = os.path.getsize(os.path.join(tmp, "bench.bin"))
    print(f"Python {sys.version.split()[0]}, {a.n} entries, fastest of {a.rounds}\n")
    print("| ns per entry | no tracer | tracing (Tracker) |")
    print("|---|---:|---:|")
    for name in off:
        print(f"| {name} | {off[name]:.0f} | {on[name]:.0f} |")
    print(f"\ncapture written while tracing: {size} bytes")


if __name__ == "__main__":
    main()
