"""N objects made at one line, for test_python.py's
--trace-python-allocators test. Under `memtrace run` it ends without
interpreter shutdown (so the objects are still live when tracing ends);
with --tracemalloc (run it with python -X tracemalloc) it prints
tracemalloc's count and size of the blocks live at that line instead."""
import json
import os
import sys

N = 5000


def make():
    return [bytes(100) for _ in range(N)]  # @objs


KEEP = make()
if "--tracemalloc" in sys.argv:
    import tracemalloc
    line = make.__code__.co_firstlineno + 1
    stats = tracemalloc.take_snapshot().statistics("lineno")
    hits = [s for s in stats if s.traceback[0].filename == __file__
            and s.traceback[0].lineno == line]
    print(json.dumps({"count": sum(s.count for s in hits),
                      "size": sum(s.size for s in hits)}))
    sys.exit(0)
sys.stdout.flush()
os._exit(0)
