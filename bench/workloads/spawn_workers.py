# Starts N multiprocessing workers (start method argv[2]) one after the
# other, each returning at once, and prints the mean milliseconds from
# start() to join() (bench/spawn_startup.py).
import multiprocessing as mp
import sys
import time


def nothing():
    pass


if __name__ == "__main__":
    n, method = int(sys.argv[1]), sys.argv[2]
    ctx = mp.get_context(method)
    t0 = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=nothing)
        p.start()
        p.join()
    print((time.perf_counter() - t0) * 1000 / n)
