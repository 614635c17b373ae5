"""memtrace._launch: how `memtrace run` starts a Python program.

`memtrace run` (cli/run.c) executes, with the tracer preloaded::

    python -m memtrace._launch --module MOD ARGS...
    python -m memtrace._launch --code CODE ARGS...
    python -m memtrace._launch --script PATH ARGS...

This attaches the Python frame walker to the tracer, puts back the
environment and sys.path the program would have had without memtrace, and
runs the program exactly as ``python -m MOD`` / ``python -c CODE`` /
``python PATH`` would: same sys.argv, sys.path[0], __main__ module,
tracebacks, exit status. Allocations are recorded with the program's own
stack: the walker stops at _execute(), hiding memtrace's frames.
"""
import os
import sys

_ENV_FLAGS = "MEMTRACE_PY_FLAGS"
_ENV_PATH = "MEMTRACE_PY_PATH_ORIG"
_MODES = ("--module", "--code", "--script")


def _restore_environment():
    """Takes back what `memtrace run` added to the environment (so that the
    program and its children see the environment they would have seen) and
    returns (flags, original PYTHONPATH or None)."""
    if _ENV_FLAGS not in os.environ:
        return set(), os.environ.get("PYTHONPATH")  # not started by memtrace run
    flags = {f for f in os.environ.pop(_ENV_FLAGS).split(",") if f}
    orig = os.environ.pop(_ENV_PATH, None)
    if orig is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = orig
    return flags, orig


def _fix_sys_path(path0, orig_pythonpath):
    """sys.path as python would have set it: path0 first (unless -P /
    PYTHONSAFEPATH, 3.11+, which add nothing), and without memtrace's own
    directory, which `memtrace run` put first on PYTHONPATH."""
    safe = getattr(sys.flags, "safe_path", False)
    if not safe:
        sys.path[0] = path0
    ours = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    theirs = [os.path.abspath(p) for p in (orig_pythonpath or "").split(os.pathsep) if p]
    if ours in theirs:
        return
    for i in range(0 if safe else 1, len(sys.path)):
        if sys.path[i] and os.path.abspath(sys.path[i]) == ours:
            del sys.path[i]
            break


def _fresh_main():
    """A new __main__ module, as the interpreter makes it at start-up.
    (`python -m memtrace._launch` ran this launcher in the original one.)"""
    import builtins
    from importlib.machinery import BuiltinImporter
    main = type(sys)("__main__")
    main.__annotations__ = {}
    main.__builtins__ = builtins
    main.__loader__ = BuiltinImporter
    sys.modules["__main__"] = main
    return main


def _fix_orig_argv(tail):
    """sys.orig_argv (3.10+): the interpreter's command line as if the
    program had been run directly."""
    orig = getattr(sys, "orig_argv", None)
    if not orig:
        return
    for i in range(len(orig) - 1):
        if orig[i] == "-m" and orig[i + 1] == "memtrace._launch":
            sys.orig_argv = orig[:i] + tail
            return


def _execute(mode, target, main):
    """Runs the program: target is the module name, the code string, or
    the script's compiled code. The frame walker stops at this function's
    frame: stacks start at the program's first frame (for -m at runpy's,
    as under python -m)."""
    if mode == "--module":
        import runpy
        # What `python -m` itself calls; it runs the module in the
        # __main__ module's namespace and sets sys.argv[0].
        runpy._run_module_as_main(target, True)
    elif mode == "--code":
        code = compile(target, "<string>", "exec", dont_inherit=True)
        if sys.version_info >= (3, 13):
            # 3.13's -c keeps the source for tracebacks, as its REPL does.
            import linecache
            register = getattr(linecache, "_register_code", None)
            if register:
                register("<string>", target, "<string>")
        exec(code, main.__dict__)
    else:
        try:
            exec(target, main.__dict__)
        finally:
            # As the interpreter does once the script is done.
            main.__dict__.pop("__file__", None)
            main.__dict__.pop("__cached__", None)


def _load_script(path, main):
    """Reads and compiles the script the way python does and returns its
    code, with main's __file__ and __loader__ set; exits with status 2, as
    python does, when it cannot be read."""
    # 3.9+: __file__ and the code's file name are absolute.
    name = os.path.abspath(path) if sys.version_info >= (3, 9) else path
    try:
        import io
        with io.open_code(name) as f:
            source = f.read()
    except OSError as e:
        prog = (getattr(sys, "orig_argv", None) or [sys.executable])[0]
        sys.stderr.write(f"{prog}: can't open file '{name}': "
                         f"[Errno {e.errno}] {e.strerror}\n")
        sys.exit(2)
    from importlib.machinery import SourceFileLoader
    main.__loader__ = SourceFileLoader("__main__", name)
    main.__file__ = name
    main.__cached__ = None
    return compile(source, name, "exec", dont_inherit=True)


def _uncaught(exc):
    """Prints an exception that escaped the program as python would, without
    the launcher's frames, then exits like python: status 1, or for
    KeyboardInterrupt by SIGINT (re-raised, to be reported silently)."""
    tb = exc.__traceback__
    here = _execute.__code__.co_filename
    while tb is not None and tb.tb_frame.f_code.co_filename == here:
        tb = tb.tb_next
    exc.__traceback__ = tb
    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, tb
    if sys.version_info >= (3, 12):
        sys.last_exc = exc
    try:
        sys.excepthook(type(exc), exc, tb)
    except BaseException as hook_exc:
        sys.stderr.write("Error in sys.excepthook:\n")
        sys.__excepthook__(type(hook_exc), hook_exc, hook_exc.__traceback__)
        sys.stderr.write("\nOriginal exception was:\n")
        sys.__excepthook__(type(exc), exc, tb)
    if isinstance(exc, KeyboardInterrupt):
        # The interpreter ends by SIGINT when a KeyboardInterrupt reaches
        # the top; it has been printed already.
        sys.excepthook = lambda *args: None
        raise exc
    raise SystemExit(1) from None


def _attach(flags):
    """Attaches the frame walker; warns and goes on without Python stacks
    when this interpreter has no extension."""
    try:
        from memtrace import _memtrace
    except ImportError as e:
        sys.stderr.write(f"memtrace: no Python support for this interpreter "
                         f"({sys.version.split()[0]}: {e}); recording native "
                         f"stacks only\n")
        return
    native = "native" in flags
    # With --native every frame stays: the tracer pairs Python frames with
    # the eval loop's C frames, all of them.
    _memtrace.attach(native=native, pyalloc="pyalloc" in flags,
                     root=None if native else _execute.__code__)


def _finish():
    """Ends the recording when the program is done (see _memtrace.finish)."""
    try:
        from memtrace import _memtrace
    except ImportError:
        return
    _memtrace.finish()


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in _MODES:
        sys.stderr.write("usage: python -m memtrace._launch "
                         "(--module MOD | --code CODE | --script PATH) [ARGS...]\n")
        sys.exit(2)
    mode, target, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    flags, orig_pythonpath = _restore_environment()
    _attach(flags)
    main_mod = _fresh_main()
    if mode == "--module":
        _fix_sys_path(os.getcwd(), orig_pythonpath)
        sys.argv = ["-m", *args]  # python -m's argv[0] while it finds the module
        _fix_orig_argv(["-m", target, *args])
    elif mode == "--code":
        _fix_sys_path("", orig_pythonpath)
        sys.argv = ["-c", *args]
        _fix_orig_argv(["-c", target, *args])
    else:
        _fix_sys_path(os.path.dirname(os.path.realpath(target)), orig_pythonpath)
        sys.argv = [target, *args]
        _fix_orig_argv([target, *args])
    try:
        try:
            if mode == "--script":
                target = _load_script(target, main_mod)
            _execute(mode, target, main_mod)
        finally:
            # The program is done: what is live now is what it leaked.
            # The interpreter's shutdown, which frees module globals, is
            # not recorded (as with memray).
            _finish()
    except SystemExit:
        raise
    except BaseException as exc:
        _uncaught(exc)


if __name__ == "__main__":
    main()
