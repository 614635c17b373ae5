#!/usr/bin/env python3
"""Start-up cost of a traced worker process under `memtrace run
--follow-fork`: a multiprocessing worker that returns at once, started and
joined N times in a row inside one program (bench/workloads/
spawn_workers.py), with and without memtrace, interleaved ROUNDS times;
the fastest round of each is kept. Prints a Markdown table of milliseconds
per worker.

usage: bench/spawn_startup.py BUILD_DIR [--python PATH] [--rounds R] [-n N]
                              [--methods spawn,forkserver,fork]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "workloads", "spawn_workers.py")


def per_worker(cmd, env):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return float(out.stdout.split()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--python", default=shutil.which("python3"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--methods", default="spawn,forkserver,fork")
    a = ap.parse_args()
    python = subprocess.run([a.python, "-c", "import sys; print(sys.executable)"],
                            check=True, capture_output=True, text=True).stdout.strip()
    memtrace = os.path.join(a.build, "memtrace")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MEMTRACE_"))}
    tmp = tempfile.mkdtemp(prefix="mt-spawn-bench-")
    best = {}
    try:
        for _ in range(a.rounds):
            for method in a.methods.split(","):
                args = [SCRIPT, str(a.n), method]
                plain = per_worker([python, *args], env)
                out = os.path.join(tmp, "out.bin")
                traced = per_worker([memtrace, "run", "-q", "-f", "-o", out,
                                     "--follow-fork", "--python", python, *args], env)
                for f in os.listdir(tmp):
                    os.unlink(os.path.join(tmp, f))
                for key, v in ((("plain", method), plain), (("traced", method), traced)):
                    best[key] = min(best.get(key, v), v)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"ms per worker (start + join), {a.n} workers in a row, best of "
          f"{a.rounds}; {python}\n")
    print("| start method | plain | memtrace run --follow-fork | added |")
    print("|---|---|---|---|")
    for method in a.methods.split(","):
        p, t = best[("plain", method)], best[("traced", method)]
        print(f"| {method} | {p:.1f} | {t:.1f} | +{t - p:.1f} ({t / p:.2f}x) |")


if __name__ == "__main__":
    sys.exit(main())
