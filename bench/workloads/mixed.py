"""Benchmark workload (c), mixed: JSON round trips of small documents and
building text out of pieces, as a typical service or build tool does."""
import json
import sys


def document(i):
    return {"id": i, "name": f"item-{i:06d}", "tags": ["a", "b", str(i % 7)],
            "price": i * 0.25, "attrs": {"color": "red" if i % 2 else "blue",
                                         "size": i % 13, "ok": True}}


def main(n=25_000):
    lines = []
    checksum = 0
    for i in range(n):
        text = json.dumps(document(i), sort_keys=True)
        back = json.loads(text)
        checksum += back["attrs"]["size"]
        lines.append(f"{back['name']}\t{len(text)}\t{back['price']:.2f}")
        if len(lines) == 1000:
            report = "\n".join(lines).upper()
            checksum += report.count("ITEM")
            lines = []
    print(checksum)


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
