"""kapitan_like's compiler: a small stand-in for `kapitan compile`, written
with the standard library only, for profiling with memtrace.

It has one deliberate leak (compile._RENDER_CACHE) and one deliberate peak
(inventory.inventory_digest); see examples/README.md.
"""
__version__ = "1.0"
