"""Ownership verification (spec section 0): a one-sided Welch t-test of the suspect's per-query indicator
"predicted the target class" on watermarked inputs against a clean reference model's indicators on the
same inputs. H0: the suspect outputs the target no more often than a model trained without the watermark.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import stats


def _ttest(x, y, **kw):
    # scipy warns about "catastrophic cancellation" when a sample is (nearly) constant, which 0/1 hit
    # vectors often are; the degenerate cases are handled explicitly below.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.ttest_ind(x, y, equal_var=False, alternative="greater", **kw).pvalue


def p_value(suspect_hits, reference_hits) -> float:
    """One-sided Welch t-test p-value that the suspect hits the target more often than the reference.

    Degenerate case (both samples constant, where scipy returns nan): the t statistic is +inf when the
    suspect's rate is higher (p = 0) and undefined or -inf otherwise (p = 1).
    """
    x = np.asarray(suspect_hits, dtype=float)
    y = np.asarray(reference_hits, dtype=float)
    p = _ttest(x, y)
    if np.isnan(p):
        return 0.0 if x.mean() > y.mean() else 1.0
    return float(p)


def _p_values_batched(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """p-values for each row of x [draws, n] against the same rows of y (same query subsets)."""
    p = _ttest(x, y, axis=1)
    bad = np.isnan(p)
    p[bad] = np.where(x[bad].mean(1) > y[bad].mean(1), 0.0, 1.0)
    return p


def query_grid(n_max: int) -> list[int]:
    """Every size from 2 to 30, then steps of about 10 % up to n_max."""
    sizes = list(range(2, min(n_max, 30) + 1))
    n = 30
    while n < n_max:
        n = min(n_max, max(n + 1, int(n * 1.1)))
        sizes.append(n)
    return sizes


def query_curve(suspect_hits, reference_hits, *, draws: int = 200, seed: int = 0,
                sizes: list[int] | None = None) -> dict:
    """Median p-value over ``draws`` random query subsets of each size (the same inputs for both models)."""
    x = np.asarray(suspect_hits, dtype=float)
    y = np.asarray(reference_hits, dtype=float)
    if len(x) != len(y):
        raise ValueError("suspect and reference must be queried on the same inputs")
    rng = np.random.default_rng(seed)
    sizes = sizes or query_grid(len(x))
    # one random query order per draw; a subset of size n is its first n queries
    orders = np.argsort(rng.random((draws, len(x))), axis=1)
    medians = []
    for n in sizes:
        idx = orders[:, :n]
        medians.append(float(np.median(_p_values_batched(x[idx], y[idx]))))
    return {"queries": sizes, "p_median": medians}


def queries_for_confidence(curve: dict, alpha: float = 0.05) -> int | None:
    """Smallest number of queries whose median p-value is below ``alpha`` (None if never)."""
    for n, p in zip(curve["queries"], curve["p_median"]):
        if p < alpha:
            return n
    return None


def verify(suspect_pred, reference_pred, target: int, *, alpha: float = 0.05, draws: int = 200,
           seed: int = 0) -> dict:
    """Everything the result needs for one suspect: p on all queries, queries for 1 - alpha, the curve."""
    x = (np.asarray(suspect_pred) == target).astype(float)
    y = (np.asarray(reference_pred) == target).astype(float)
    curve = query_curve(x, y, draws=draws, seed=seed)
    return {"p_value": p_value(x, y), "queries_for_95": queries_for_confidence(curve, alpha),
            "suspect_rate": float(x.mean()), "reference_rate": float(y.mean()),
            "n_queries": int(len(x)), "verified": bool(p_value(x, y) < alpha), "curve": curve}
