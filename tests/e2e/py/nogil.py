"""Allocations made while the GIL is released, as numpy, zlib and others
make their big buffers: ctypes calls foreign functions without the GIL.
The function below allocates nothing with the GIL held, so its code
object is first seen (and named) from a thread that does not hold it."""
import ctypes

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]


def grab(n):
    return libc.malloc(n)  # @grab


def grab_twice(n):
    grab(n)  # @twice-calls-grab
    return grab(n)  # @twice-calls-grab-again


KEEP = [grab(12_345_678)]  # @module-calls-grab
KEEP.append(grab_twice(1_000_000))  # @module-calls-twice
