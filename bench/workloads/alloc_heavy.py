"""Benchmark workload (a), allocation-heavy: millions of small objects
(tuples, short strings, one-key dicts, lists) built and dropped."""
import sys


def batch(n):
    rows = [(i, str(i), {"id": i}) for i in range(n)]
    names = [name for _, name, _ in rows if name[-1] != "7"]
    return len(rows) + len(names)


def main(rounds=12, n=50_000):
    total = 0
    for _ in range(rounds):
        total += batch(n)
    print(total)


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
