"""The query-size curve of a verdict: at which sizes the median p over random subsets is taken, and from
which size on it stays below alpha (``queries_for_95``). Shared by the trigger tests (ewe.verify) and dataset
inference (ewe.watermarks.dataset_inference), which ewe.verify's imports would otherwise put in a circle."""
from __future__ import annotations


def query_grid(n_max: int) -> list[int]:
    """Every size from 2 to 30, then steps of about 10 % up to n_max."""
    sizes = list(range(2, min(n_max, 30) + 1))
    n = 30
    while n < n_max:
        n = min(n_max, max(n + 1, int(n * 1.1)))
        sizes.append(n)
    return sizes


def queries_for_confidence(curve: dict, alpha: float = 0.05) -> int | None:
    """Smallest n of the curve from which the median p stays below ``alpha`` at every larger n (None if
    it is not below alpha at the largest n)."""
    found = None
    for n, p in zip(reversed(curve["queries"]), reversed(curve["p_median"])):
        if p >= alpha:
            break
        found = n
    return found
