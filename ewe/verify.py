"""Ownership verification (spec section 0): a one-sided Welch t-test of the suspect's per-query indicator
"predicted the target class" on watermarked inputs against a clean reference model's indicators on the
same inputs. H0: the suspect outputs the target no more often than a model trained without the watermark,
plus a margin: ``rate(suspect) <= rate(reference) + margin``.

Why the margin: the t-test's variance is only the per-query sampling noise of one reference model, but
independently trained clean models differ in how often they answer the target on the same triggers (by up
to 13 points on the optimised triggers in this lab's runs, docs/RESULTS.md section 7). Without a margin,
enough queries "prove" such a difference and an innocent model gets accused. The margin is the smallest
excess over the clean reference that counts as evidence of theft.
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


def p_value(suspect_hits, reference_hits, margin: float = 0.0) -> float:
    """One-sided Welch t-test p-value that the suspect hits the target more often than the reference does
    plus ``margin`` (shifting the suspect's sample by a constant leaves its variance unchanged).

    Degenerate case (both samples constant, where scipy returns nan): the t statistic is +inf when the
    suspect's rate is higher (p = 0) and undefined or -inf otherwise (p = 1). (A constant sample shifted by
    the margin can keep a rounding-size variance; t is then huge and p is 0 or 1 all the same.)
    """
    x = np.asarray(suspect_hits, dtype=float) - margin
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
                sizes: list[int] | None = None, margin: float = 0.0) -> dict:
    """Median p-value over ``draws`` random query subsets of each size (the same inputs for both models)."""
    x = np.asarray(suspect_hits, dtype=float) - margin
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
           seed: int = 0, margin: float = 0.0) -> dict:
    """Everything the result needs for one suspect: p on all queries, queries for 1 - alpha, the curve."""
    x = (np.asarray(suspect_pred) == target).astype(float)
    y = (np.asarray(reference_pred) == target).astype(float)
    curve = query_curve(x, y, draws=draws, seed=seed, margin=margin)
    p = p_value(x, y, margin)
    return {"p_value": p, "queries_for_95": queries_for_confidence(curve, alpha),
            "suspect_rate": float(x.mean()), "reference_rate": float(y.mean()), "margin": float(margin),
            "n_queries": int(len(x)), "verified": bool(p < alpha), "curve": curve}


# result key -> (suspect model, trigger set); the reference is always the run's clean model. The innocent
# model is tested on both trigger sets: clean models disagree most on the classic (unoptimised) triggers.
SUSPECTS = {"defended": ("defended", "optimised"), "extracted": ("extracted", "optimised"),
            "plain_extracted": ("plain_extracted", "classic"),
            "ablation_extracted": ("ablation_extracted", "optimised"),
            "clean": ("independent_clean", "optimised"), "clean_classic": ("independent_clean", "classic")}


def verify_predictions(preds: dict, *, alpha: float = 0.05, draws: int = 200, seed: int = 0,
                       margin: float = 0.0) -> dict:
    """Every suspect in ``SUSPECTS`` that a run's predictions.json holds, against its clean model."""
    out = {}
    target = preds["target"]
    for key, (suspect, set_name) in SUSPECTS.items():
        s = preds["sets"].get(set_name, {})
        if suspect in s and "clean" in s:
            out[key] = {**verify(s[suspect], s["clean"], target, alpha=alpha, draws=draws, seed=seed,
                                 margin=margin),
                        "trigger_set": set_name, "reference": "clean"}
    return out


def run_settings(cfg: dict) -> dict:
    """The keyword arguments of ``verify`` a run folder's config.json asks for (runs made before the margin
    existed get today's default)."""
    from .config import RunConfig
    return {"alpha": float(cfg.get("alpha", RunConfig.alpha)),
            "draws": int(cfg.get("query_draws", RunConfig.query_draws)), "seed": int(cfg.get("seed", 0)),
            "margin": float(cfg.get("verify_margin", RunConfig.verify_margin))}
