# grow.py N: keeps N bytearrays of 1000 bytes (line marked "grow"), plus a
# block only the small run makes ("old") and one only the big run makes
# ("new"): the test of `memtrace diff` (tests/e2e/test_export.py).
import sys

N = int(sys.argv[1])
keep = [None] * N
for i in range(N):
    keep[i] = bytearray(1000)  # grow
if N < 2000:
    old = bytearray(500_000)  # old
else:
    new = bytearray(700_000)  # new
