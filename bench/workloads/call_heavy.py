"""Benchmark workload (b), call-heavy: recursive Fibonacci, millions of
Python calls that allocate next to nothing (small ints are cached)."""
import sys


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def main(n=30):
    print(fib(n))


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:]])
