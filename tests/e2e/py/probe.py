"""What a program sees of how it was started, for test_python.py: run as a
script, with -m probe, or with -c "import probe; probe.main()", it prints
a JSON description to stdout, then ends as sys.argv[1] says (ok, exit3,
exitmsg, raise, kbint). The test compares it under python and under
memtrace run."""
import json
import os
import sys


def describe_main():
    out = {}
    for k, v in sys.modules["__main__"].__dict__.items():
        if isinstance(v, (str, int, type(None))):
            out[k] = v
        else:
            out[k] = type(v).__name__
    return out


def fail():
    raise ValueError("boom")


def main():
    caller = sys._getframe(1)
    info = {
        "argv": sys.argv,
        "path": sys.path,
        "main": describe_main(),
        "main_keys": list(sys.modules["__main__"].__dict__),
        "caller_file": caller.f_code.co_filename,
        "caller_globals_is_main": caller.f_globals is sys.modules["__main__"].__dict__,
        "orig_argv_tail": getattr(sys, "orig_argv", [None])[1:],
        "executable": sys.executable,
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "stdin": sys.stdin.read(),
    }
    print(json.dumps(info, indent=1, sort_keys=True))
    sys.stderr.write("to stderr\n")
    action = sys.argv[1] if len(sys.argv) > 1 else "ok"
    sys.stdout.flush()
    if action == "exit3":
        sys.exit(3)
    if action == "exitmsg":
        sys.exit("bye")
    if action == "raise":
        fail()
    if action == "kbint":
        raise KeyboardInterrupt


if __name__ == "__main__":
    main()
