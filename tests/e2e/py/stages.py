"""Stages with known allocations, for test_stages.py. Every stage allocates
bytearrays (n + 1 bytes each, straight from malloc) and nothing else that
reaches malloc. argv[1]: "all" (the default) or "exit" (os._exit inside a
stage)."""
import os
import sys
import threading

import memtrace

keep = []
mode = sys.argv[1] if len(sys.argv) > 1 else "all"

if mode == "exit":
    with memtrace.stage("dying"):
        with memtrace.stage("inner"):
            keep.append(bytearray(40_000))
            sys.stdout.flush()
            os._exit(5)

with memtrace.stage("load"):
    keep.append(bytearray(1_000_000))

for _ in range(3):
    with memtrace.stage("work"):
        with memtrace.stage("step"):
            tmp = bytearray(2_000_000)
            del tmp
        keep.append(bytearray(500_000))


@memtrace.stage("deco")
def make(n):
    return bytearray(n)


keep.append(make(300_000))
keep.append(make(300_000))


def worker(n):
    with memtrace.stage("worker"):
        keep.append(bytearray(n))


threads = [threading.Thread(target=worker, args=(100_000 * (i + 1),))
           for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()

try:
    with memtrace.stage("fails"):
        keep.append(bytearray(70_000))
        raise ValueError("the stage ends all the same")
except ValueError:
    pass

from memtrace import _memtrace  # noqa: E402
print("recorded" if _memtrace.stage_enter("probe") else "not recorded")
_memtrace.stage_leave("probe")
