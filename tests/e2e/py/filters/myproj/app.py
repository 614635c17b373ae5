"""For test_filters.py: allocations at known sites in two files of a
project (myproj/app.py, myproj/store.py) and in a library installed in a
site-packages directory (extlib), which also calls back into the project.
bytes(n) is one block of n + 33 bytes from the system allocator. Every
block stays live until the end (the leaks view)."""
import extlib
from myproj import store

KEEP = []


def main():
    KEEP.append(bytes(1_000_000))         # @app
    store.save(KEEP)                       # 2_000_000 in store.py
    KEEP.append(extlib.make())             # 4_000_000 in extlib
    extlib.run(store.callback, KEEP)       # 8_000_000 in store.py


main()
