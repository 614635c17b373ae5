"""The frame walker (memtrace._memtrace._stack) against the interpreter's
own view of the stack (sys._getframe), for test_python.py: in nested calls,
a method, a call back from C (sorted's key), a generator and a thread.
Prints one JSON object; no tracer needed."""
import json
import sys
import threading

from memtrace import _memtrace

QUAL = sys.version_info >= (3, 11)


def expected(frame):
    out = []
    while frame is not None:
        co = frame.f_code
        out.append([co.co_qualname if QUAL else co.co_name, co.co_filename,
                    frame.f_lineno])
        frame = frame.f_back
    return out


def sample():
    got = _memtrace._stack()
    return [list(x[:3]) for x in got], [x[3] for x in got], expected(sys._getframe(1))


class C:
    def meth(self):
        return sample()


RESULTS = {}


def via_c():
    sorted([1], key=lambda x: RESULTS.__setitem__("via_c", C().meth()))


def gen():
    yield C().meth()


def in_thread():
    RESULTS["thread"] = C().meth()


def main():
    RESULTS["direct"] = C().meth()
    via_c()
    RESULTS["generator"] = next(gen())
    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    print(json.dumps(RESULTS))


main()
