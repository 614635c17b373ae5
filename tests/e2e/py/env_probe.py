# What a program and its Python children see of memtrace under
# `memtrace run --follow-fork` (tests/e2e/test_workers.py): their
# environment, sys.path, sitecustomize and imported memtrace modules.
import json
import os
import subprocess
import sys


def probe():
    return {
        "env": {k: v for k, v in os.environ.items()
                if k.startswith("MEMTRACE") or k in ("LD_PRELOAD", "PYTHONPATH")},
        "path": [p for p in sys.path if "memtrace" in p],
        "sitecustomize": getattr(sys.modules.get("sitecustomize"), "__file__", None),
        "memtrace_modules": sorted(m for m in sys.modules if m.startswith("memtrace")),
        "pid": os.getpid(),
    }


def child(env=None, flags=()):
    cp = subprocess.run([sys.executable, *flags, __file__, "child"], env=env,
                        stdout=subprocess.PIPE, check=True)
    return json.loads(cp.stdout)


if __name__ == "__main__":
    if sys.argv[1:] == ["child"]:
        bytearray(2_000_000)
        print(json.dumps(probe()))
    else:
        print(json.dumps({"parent": probe(), "child": child(),
                          "own_env": child(dict(os.environ, PROBE="1")),
                          "no_site": child(flags=["-S"])}))
