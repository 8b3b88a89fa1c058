"""EWE Lab: entangled watermarks (Jia et al., USENIX Security 2021) as a defence against model extraction."""
__version__ = "0.1.0"

# No side effects on import: the allocator tuning (ewe.malloc) is applied by the entry points, not here.
