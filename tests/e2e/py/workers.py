# Workers for tests/e2e/test_workers.py (memtrace run --follow-fork): task i
# keeps bytearray(3_000_000 + i) alive until its process ends, at the line
# marked @alloc, in a worker started the way argv[1] says. Prints
# [[worker pid, task], ...] as JSON.
import json
import os
import subprocess
import sys

KEEP = []


def work(i):
    KEEP.append(bytearray(3_000_000 + i))  # @alloc
    return os.getpid(), i


def pool(method):
    import multiprocessing as mp
    ctx = mp.get_context(method)
    p = ctx.Pool(4)
    try:
        return p.map(work, range(4), chunksize=1)
    finally:
        # close + join: the workers end cleanly (terminate() would kill them
        # before their captures are complete).
        p.close()
        p.join()


def executor(method):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    ctx = mp.get_context(method) if method != "default" else None
    with ProcessPoolExecutor(4, mp_context=ctx) as ex:
        return list(ex.map(work, range(4)))


def with_pool(method):
    import multiprocessing as mp
    # `with Pool() as p:` ends with terminate(): the workers get SIGTERM.
    with mp.get_context(method).Pool(4) as p:
        return p.map(work, range(4), chunksize=1)


def run_python(_):
    out = []
    for i in range(4):
        cp = subprocess.run([sys.executable, __file__, "task", str(i)],
                            stdout=subprocess.PIPE, check=True)
        out.append(json.loads(cp.stdout)[0])
    return out


def threads_then_fork(_):
    # Threads allocating while the pool forks its workers: a fork may land
    # while another thread holds a tracer lock.
    import threading
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            [bytearray(100) for _ in range(100)]
    ts = [threading.Thread(target=churn) for _ in range(3)]
    for t in ts:
        t.start()
    try:
        return pool("fork")
    finally:
        stop.set()
        for t in ts:
            t.join()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "task":
        result = [work(int(sys.argv[2]))]
    elif mode.startswith("executor-"):
        result = executor(mode[len("executor-"):])
    elif mode == "subprocess":
        result = run_python(None)
    elif mode == "threads-fork":
        result = threads_then_fork(None)
    elif mode.startswith("with-"):
        result = with_pool(mode[len("with-"):])
    else:
        result = pool(mode)
    print(json.dumps(result))
