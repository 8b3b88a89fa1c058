"""EWE Lab: entangled watermarks (Jia et al., USENIX Security 2021) as a defence against model extraction."""
__version__ = "0.1.0"
