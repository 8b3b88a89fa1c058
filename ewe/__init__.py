"""EWE Lab: entangled watermarks (Jia et al., USENIX Security 2021) as a defence against model extraction."""
from .malloc import reuse_freed_memory

__version__ = "0.1.0"

# every entry point (CLI, app, benchmarks, notebooks) trains in this process: stop the page-fault churn first
reuse_freed_memory()
