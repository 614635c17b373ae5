"""Allocations of known sizes at known lines, for test_python.py (which
finds the lines by their "# @name" markers). bytes(n) is one calloc of
n + 33 bytes (the object header and the data in one block, straight to the
system allocator: above pymalloc's 512-byte limit), so every site here
holds exactly one kind of block."""
import os
import sys
import threading

KEEP = []
LEAK = [None] * 1000
THREAD_KEEP = []


def f():
    return bytes(10_000_000)  # @f


def g():
    KEEP.append(f())  # @g-calls-f


class Holder:
    def grow(self):
        KEEP.append(bytes(3_000_000))  # @method


def leak():
    for i in range(1000):
        LEAK[i] = bytes(1000)  # @leak


def worker():
    THREAD_KEEP.append(bytes(7_000_000))  # @thread


def temp():
    t = bytes(50_000_000)  # @temp
    del t


def main():
    g()  # @main-calls-g
    Holder().grow()  # @main-calls-grow
    leak()  # @main-calls-leak
    th = threading.Thread(target=worker, name="worker")
    th.start()
    th.join()
    temp()  # @main-calls-temp


main()  # @module-calls-main
sys.stdout.flush()
# No interpreter shutdown: it would free KEEP, LEAK and THREAD_KEEP, and
# the --leaks view (the heap when tracing ended) must still hold them.
os._exit(0)
