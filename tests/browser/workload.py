"""workload.py: a small program with a heap that grows and shrinks over a
few hundred milliseconds, for the flame graph's screenshot in the browser
test (tests/browser/flamegraph.test.mjs)."""
import json
import time


def parse_records(n):
    text = json.dumps([{"id": i, "name": "item%d" % i, "tags": ["a", "b"]}
                       for i in range(n)])
    return json.loads(text)


def build_index(records):
    return {r["name"]: r for r in records}


def render_rows(records):
    return ["%(id)08d %(name)s" % r for r in records]


def main():
    kept = []
    for step in range(6):
        records = parse_records(4000 + 2000 * step)
        index = build_index(records)
        rows = render_rows(records)
        kept.append(bytearray(256 * 1024))
        time.sleep(0.02)
        del records, index, rows
    buffer = bytearray(6 << 20)
    time.sleep(0.03)
    del buffer
    return kept


if __name__ == "__main__":
    main()
