# A multiprocessing Pool of 4 fork workers, each allocating 1000 x 1000 bytes
# per task: the --follow-fork regression test (tests/e2e/test_trust.py).
import multiprocessing as mp
def work(n):
    data = [bytearray(1000) for _ in range(n)]
    return len(data)
if __name__ == "__main__":
    mp.set_start_method("fork")
    with mp.Pool(4) as p:
        print(sum(p.map(work, [1000] * 16)))
