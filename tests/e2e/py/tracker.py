"""memtrace.Tracker in a Python process that memtrace did not start, for
test_python.py: python tracker.py DIR. Records DIR/one.bin and DIR/two.bin
(two sessions in one process) and prints one JSON object saying how the
API behaved where it must refuse."""
import ctypes
import json
import os
import sys

import memtrace

out = sys.argv[1]
KEEP = []
result = {}


def work():
    # malloc looked up while tracing, as a C extension's dlsym would.
    malloc = ctypes.CDLL(None).malloc
    malloc.restype = ctypes.c_void_p
    malloc.argtypes = [ctypes.c_size_t]
    KEEP.append(malloc(12_345_678))  # @ctypes
    KEEP.append(bytes(23_456_789))  # @bytes


def second():
    KEEP.append(bytes(4_567_890))  # @second


def nested():
    try:
        memtrace.Tracker(os.path.join(out, "nested.bin")).start()
        return "started"
    except memtrace.Error:
        return "Error"


with memtrace.Tracker(os.path.join(out, "one.bin")) as t:
    work()  # @with
    result["nested"] = nested()
    result["active_inside"] = memtrace._memtrace.active()
result["active_after"] = memtrace._memtrace.active()
try:
    memtrace.Tracker(os.path.join(out, "one.bin")).start()
    result["exists"] = "started"
except FileExistsError:
    result["exists"] = "FileExistsError"
with memtrace.Tracker(os.path.join(out, "two.bin")):
    with memtrace.stage("second"):  # not recorded yet: must simply work
        second()  # @with-second
result["report"] = memtrace.report(os.path.join(out, "one.bin"), top=3)
try:
    memtrace.report(os.path.join(out, "missing.bin"))
    result["report_missing"] = "ok"
except memtrace.Error:
    result["report_missing"] = "Error"
print(json.dumps(result))
