"""memtrace's start-up hook for the Python programs that a program traced by
``memtrace run --follow-fork`` starts (multiprocessing's spawn and forkserver
processes, ``subprocess.run([sys.executable, ...])``...).

The tracer puts this directory first on the child's PYTHONPATH; the
interpreter's ``site`` imports this module as ``sitecustomize`` during
start-up. It attaches memtrace's frame walker (so the child's allocations
carry Python stacks), takes its directory off sys.path and the environment
back to what the program passed, and then imports the sitecustomize that
would have run without memtrace, if there is one. It does nothing else, and
a failure only costs the Python stacks (the tracer records native ones).
"""


def _memtrace_start():
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if not (p and os.path.abspath(p) == here)]
    sys.path_importer_cache.pop(here, None)

    env = os.environ
    flags = {f for f in env.pop("MEMTRACE_PY_FLAGS", "").split(",") if f}
    orig = env.pop("MEMTRACE_PY_PATH_ORIG", None)
    if orig is None:
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = orig

    try:
        from importlib.machinery import (EXTENSION_SUFFIXES, ExtensionFileLoader,
                                         ModuleSpec)
        pkg = os.path.join(os.path.dirname(os.path.dirname(here)), "memtrace")
        for suffix in EXTENSION_SUFFIXES:
            path = os.path.join(pkg, "_memtrace" + suffix)
            if os.path.exists(path):
                break
        else:
            raise ImportError(f"no extension for this interpreter in {pkg}")
        # Loaded under its own name, but not left in sys.modules: the
        # program's imports stay as they would be.
        loader = ExtensionFileLoader("memtrace._memtrace", path)
        ext = loader.create_module(ModuleSpec("memtrace._memtrace", loader,
                                              origin=path))
        loader.exec_module(ext)
        sys.modules.pop("memtrace._memtrace", None)  # CPython files it there
        if not ext.active():
            return  # the tracer is not recording this process
        ext.attach(native="native" in flags, pyalloc="pyalloc" in flags)
    except Exception as e:  # noqa: BLE001 -- never break the program
        if "quiet" not in flags:
            sys.stderr.write(f"memtrace: no Python stacks in process {os.getpid()} "
                             f"({sys.version.split()[0]}): {e}\n")
        return
    # The recording ends when the program is done, before the interpreter's
    # shutdown frees module globals (as memtrace run's launcher does).
    import atexit
    atexit.register(ext.finish)


def _chain():
    """Imports the sitecustomize this one stands in front of, as site would
    have; when there is none, this module stays as sitecustomize."""
    import sys
    me = sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # noqa: F401 -- the program's own, found further on sys.path
    except ImportError as exc:
        if exc.name != "sitecustomize":
            raise
        sys.modules["sitecustomize"] = me


_memtrace_start()
_chain()
del _memtrace_start, _chain
