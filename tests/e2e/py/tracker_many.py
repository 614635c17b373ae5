"""Many memtrace.Tracker sessions in one process, as the pytest plugin
records one per test, for test_python.py: python tracker_many.py DIR N.
Session i writes DIR/s<i>.bin and keeps 1_000_000 + i bytes allocated at
the @keep line, while a thread started before the first session allocates
all along. Prints the process's open descriptors after the first and the
last session, and its RSS then, as JSON."""
import json
import os
import sys
import threading

import memtrace

out, n = sys.argv[1], int(sys.argv[2])
KEEP = [None] * n  # no list growth at the @keep line


def fds():
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[name] = os.readlink(os.path.join("/proc/self/fd", name))
        except OSError:
            pass  # the directory listing's own descriptor
    return found


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


stop = threading.Event()


def churn():
    while not stop.is_set():
        junk = [bytearray(2000) for _ in range(50)]
        del junk
        stop.wait(0.0005)


t = threading.Thread(target=churn)
t.start()
result = {}
for i in range(n):
    with memtrace.Tracker(os.path.join(out, f"s{i}.bin")):
        KEEP[i] = bytearray(1_000_000 + i)  # @keep
    if i == 0:
        result["fds_first"] = fds()
        result["rss_first"] = rss()
stop.set()
t.join()
result["fds_last"] = fds()
result["rss_last"] = rss()
print(json.dumps(result))
