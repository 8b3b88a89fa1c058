"""Ownership verification (spec section 0): is the suspect's rate of "predicted the target class" on the
owner's held-out watermark inputs higher than an innocent model's could be?

Default test (``binomial``), two parts; the copy is judged by the larger of their p-values, so each
must reject (an intersection test: its false-positive rate is at most either part's):

1. **Exact binomial.** The suspect's k hits in n queries against a null rate p0 calibrated from a
   population of innocent models (``ewe.innocents``: models that never saw the watermark) queried on the
   *same* trigger set: P(X >= k | n, p0). Two hits in two queries give p0 squared, never 0.
2. **Rank among the innocents** (a conformal p-value): (1 + innocents with at least the suspect's hits on
   the same queries) / (m + 1). It needs no model of how innocent rates are distributed, only that an
   innocent suspect would be one more draw from the population, so it holds where the binomial's p0
   cannot: innocent rates are heavy-tailed. On quick MNIST one conv2 seed of 24 answers the target on
   5-14 % of the triggers where the median innocent answers 0 %, a run's own clean reference on 20-23 %,
   and on Fashion-MNIST's classic triggers one longer-trained CNN on 55 %; a new innocent beyond every
   bound fitted to the others is then no rare event, and the binomial part alone accused 9 of 288 held-out
   innocents (bench/verdicts.py, docs/RESULTS.md §4). Its price: p is never below 1 / (m + 1), so proving at
   alpha = 0.05 needs at least 20 innocents (``innocents_needed``), and a copy must out-answer every one of them.

The null rate p0 is an upper bound for the rate of an innocent model not in the population
(``null_rate``): innocent models disagree with each other far more than one model's sampling noise
(0-47 % of the optimised MNIST triggers, docs/history/2026-11-28-removal-and-thief-variants.md), so a single
clean reference is not a null distribution. It is the largest of
  - the highest 95 % Clopper-Pearson upper bound of any one innocent's rate (each rate is measured on a
    finite trigger set: a model seen to hit 0 of 200 triggers may well hit 1 %),
  - a one-sided 99 % normal prediction bound for a new innocent's rate, which widens with the spread
    between models: mean + t(0.99, m-1) * sd * sqrt(1 + 1/m), and
  - the same bound on the logit scale (rates with a continuity correction), because innocent rates are
    skewed: most models answer the target on almost no trigger and a few kinds on many (on the digits
    photo triggers CNNs 0-3 %, MLPs 7-48 %); on the raw scale that tail is under-covered.
Without a population (the run's clean reference + margin, one model) only the binomial part applies, and
the verdict says it rests on one model.

The paper's test (``welch``) stays as an option: a one-sided Welch t-test of the suspect's per-query
indicators against the run's clean reference on the same queries, with the margin ``verify_margin``
(H0: rate(suspect) <= rate(reference) + margin). With constant samples its t statistic is undefined; it
then reports p = 1 (no evidence) rather than 0.

Shown apart (spec section 0): the query curve's ``binomial_median`` is the part that falls with the number of
queries (what the chart draws); the rank part is one yes/no on the whole set, ``outranks_innocents`` (the
card's own line: "answered the watermark class more often than all 24 innocent models").

"Proven" means one thing everywhere: the p-value on every held-out query is below alpha. The number of
queries it takes (``queries_for_95``) is the smallest n of the grid from which the median p over random
query subsets stays below alpha at every larger n.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from .querycurve import queries_for_confidence, query_grid  # noqa: F401  (verify's names too)

TESTS = ("binomial", "welch")
PREDICTION_LEVEL = 0.99   # the null rate bounds a new innocent model's rate at this level
MODEL_LEVEL = 0.95        # the Clopper-Pearson level of each innocent model's own rate


@dataclass
class Null:
    """What the binomial test compares a suspect with."""
    rate: float                  # p0
    n_models: int                # innocent models behind it
    source: str                  # where they came from (a population folder, or the run's clean model)
    rates: list[float] | None = None   # each innocent model's rate on this trigger set
    hits: np.ndarray | None = None     # (models, triggers): which trigger each innocent answered as the target

    @property
    def smallest_rank_p(self) -> float | None:
        """The smallest p the rank part can give: 1 / (innocents + 1)."""
        return None if self.hits is None else 1.0 / (len(self.hits) + 1)


def innocents_needed(alpha: float = 0.05) -> int:
    """The smallest population whose rank part can reject at ``alpha``: 1 / (m + 1) < alpha (20 at 0.05)."""
    return int(np.floor(1 / alpha + 1e-9))


def rank_p(suspect_hits, innocent_hits):
    """Conformal (rank) p-value: (1 + number of innocents with at least the suspect's hits) / (m + 1),
    on the same queries. Valid for any distribution of innocent rates if the suspect, were it innocent,
    would be one more draw from the population (exchangeable); ties count against the suspect.
    ``suspect_hits``: hit counts, any shape; ``innocent_hits``: shape (m, *suspect shape)."""
    inn = np.asarray(innocent_hits)
    p = (1 + (inn >= np.asarray(suspect_hits)).sum(axis=0)) / (len(inn) + 1)
    return float(p) if np.ndim(p) == 0 else p


def null_rate(innocent_rates, n_triggers: int) -> float:
    """p0 from the innocent models' target rates on one trigger set of ``n_triggers`` inputs (see the
    module docstring for why each term)."""
    r = np.asarray(innocent_rates, dtype=float)
    if r.size == 0:
        raise ValueError("no innocent model rates to calibrate the null rate from")
    m = r.size
    k_max = int(round(float(r.max()) * n_triggers))
    bounds = [1.0 if k_max >= n_triggers else float(stats.beta.ppf(MODEL_LEVEL, k_max + 1, n_triggers - k_max))]
    if m >= 2:
        widen = stats.t.ppf(PREDICTION_LEVEL, m - 1) * np.sqrt(1 + 1 / m)
        bounds.append(float(r.mean() + widen * r.std(ddof=1)))
        z = special.logit((np.round(r * n_triggers) + 0.5) / (n_triggers + 1))
        bounds.append(float(special.expit(z.mean() + widen * z.std(ddof=1))))
    return float(min(max(bounds), 0.999))


def binomial_p(hits, n, p0: float):
    """Exact one-sided binomial p-value P(X >= hits), X ~ Binomial(n, p0); vectorised over ``hits``."""
    p = stats.binom.sf(np.asarray(hits) - 1, n, p0)
    return float(p) if np.ndim(p) == 0 else p


def _welch(x, y, **kw):
    # scipy warns about "catastrophic cancellation" for (nearly) constant samples, which 0/1 hit vectors
    # often are; those cases get p = 1 below
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.ttest_ind(x, y, equal_var=False, alternative="greater", **kw).pvalue


def welch_p(suspect_hits, reference_hits, margin: float = 0.0) -> float:
    """The paper's one-sided Welch t-test of the suspect's hits against the reference's plus ``margin``
    (shifting a sample by a constant keeps its variance). Undefined t (both samples constant): p = 1."""
    x = np.asarray(suspect_hits, dtype=float) - margin
    y = np.asarray(reference_hits, dtype=float)
    return float(_welch_defined(_welch(x, y), x, y))


def _welch_defined(p, x, y):
    """p = 1 where the t statistic is undefined: both samples constant (scipy then gives nan, or 0 for an
    infinite t, which would "prove" a copy from two queries)."""
    const = (np.ptp(x, axis=-1) == 0) & (np.ptp(y, axis=-1) == 0)
    return np.where(const | np.isnan(p), 1.0, p)


def _subset_orders(n: int, draws: int, seed: int) -> np.ndarray:
    """One random query order per draw; a subset of size k is an order's first k queries."""
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((draws, n)), axis=1)


def query_curve(suspect_hits, *, null: Null | None = None, reference_hits=None, test: str = "binomial",
                draws: int = 200, seed: int = 0, sizes: list[int] | None = None,
                margin: float = 0.0) -> dict:
    """Median p-value over ``draws`` random query subsets of each size: ``p_median``, the decision's p (the
    larger of the binomial and rank parts), from which ``queries_for_95`` is read; for the binomial test also
    ``binomial_median``, its binomial part alone, which is what falls with the number of queries (the rank
    part cannot go below 1 / (innocents + 1): 0.04 with 24, a flat line), and so what the chart draws."""
    x = np.asarray(suspect_hits, dtype=float)
    orders = _subset_orders(len(x), draws, seed)
    sizes = sizes or query_grid(len(x))
    medians = []
    if test == "binomial":
        cum = np.cumsum(x[orders], axis=1)          # hits among each order's first k queries
        # each innocent's hits on the same queries: (models, draws, k)
        inn_cum = None if null.hits is None else np.cumsum(np.asarray(null.hits, dtype=np.int32)[:, orders], axis=2)
        binomial_medians = []
        for n in sizes:
            p = binomial_p(cum[:, n - 1], n, null.rate)
            binomial_medians.append(float(np.median(p)))
            if inn_cum is not None:
                p = np.maximum(p, rank_p(cum[:, n - 1], inn_cum[:, :, n - 1]))
            medians.append(float(np.median(p)))
        return {"queries": list(sizes), "p_median": medians, "binomial_median": binomial_medians}
    else:
        y = np.asarray(reference_hits, dtype=float)
        if len(x) != len(y):
            raise ValueError("suspect and reference must be queried on the same inputs")
        for n in sizes:
            idx = orders[:, :n]
            xs, ys = x[idx] - margin, y[idx]
            medians.append(float(np.median(_welch_defined(_welch(xs, ys, axis=1), xs, ys))))
    return {"queries": list(sizes), "p_median": medians}


def verify(suspect_pred, target, *, null: Null | None = None, reference_pred=None,
           test: str = "binomial", alpha: float = 0.05, draws: int = 200, seed: int = 0,
           margin: float = 0.0) -> dict:
    """Everything a verdict needs for one suspect: p on all queries, queries for 1 - alpha, the curve.
    ``target``: the class every query should get, or one label per query (DAWN's register)."""
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")
    if np.ndim(target) and np.shape(target) != np.shape(suspect_pred):
        raise ValueError("the suspect and the per-query labels must cover the same inputs")
    x = (np.asarray(suspect_pred) == np.asarray(target)).astype(float)
    out = {"test": test, "suspect_rate": float(x.mean()), "n_queries": int(len(x))}
    if test == "binomial":
        if null is None:
            raise ValueError("the binomial test needs a null rate (a population of innocent models)")
        k = int(x.sum())
        p = p_binomial = binomial_p(k, len(x), null.rate)
        out.update(null_rate=null.rate, null_models=null.n_models, null_source=null.source,
                   binomial_p=p_binomial)
        if null.hits is not None:
            if null.hits.shape[1] != len(x):
                raise ValueError("the suspect and the innocent models must be queried on the same inputs")
            innocent_k = null.hits.sum(axis=1)
            p_rank = rank_p(k, innocent_k)
            p = max(p_binomial, p_rank)
            # the rank part in words: did the suspect out-answer the population (what the card states)
            out.update(rank_p=p_rank, innocents_at_least=int((innocent_k >= k).sum()),
                       smallest_p=null.smallest_rank_p, outranks_innocents=bool(p_rank < alpha))
        curve = query_curve(x, null=null, draws=draws, seed=seed)
    else:
        y = (np.asarray(reference_pred) == target).astype(float)
        p = welch_p(x, y, margin)
        curve = query_curve(x, reference_hits=y, test="welch", draws=draws, seed=seed, margin=margin)
        # both models answered every query alike (the owner's own model against a clean one: 100 % and 0 %):
        # Welch's t is undefined, p = 1 says "no verdict", which a page must not show as "not proven"
        out.update(reference_rate=float(y.mean()), margin=float(margin),
                   t_undefined=bool(np.ptp(x) == 0 and np.ptp(y) == 0))
    proven = bool(p < alpha)
    return {**out, "p_value": float(p), "queries_for_95": queries_for_confidence(curve, alpha),
            "proven": proven, "verified": proven, "alpha": alpha, "curve": curve}


def population_null(innocent_preds, target, source: str) -> Null:
    """The null of one trigger set from innocent models' answers on it (a list of prediction lists)."""
    hits = np.array([np.asarray(p) == np.asarray(target) for p in innocent_preds])
    rates = hits.mean(axis=1).tolist()
    return Null(null_rate(rates, hits.shape[1]), len(rates), source, rates, hits)


def set_target(preds: dict, set_name: str):
    """What a hit is on ``set_name``: the run's target class, or for a set with a label per input (DAWN's
    register, predictions.json "set_targets") that array."""
    labels = (preds.get("set_targets") or {}).get(set_name)
    return preds["target"] if labels is None else np.asarray(labels)


def nulls_for_run(preds: dict, innocents: dict | None, margin: float) -> dict[str, Null]:
    """The null of each trigger set: the innocent population's rates when the run has them
    (innocents.json), else the run's own clean reference plus ``margin`` (one model: weak, and said so).
    An empty set (a DAWN register with no flipped query) has none."""
    out = {}
    for set_name, models in preds["sets"].items():
        target = set_target(preds, set_name)
        inn = ((innocents or {}).get("sets") or {}).get(set_name) or {}
        if np.ndim(target) and len(target) == 0:
            continue
        if inn:
            out[set_name] = population_null(inn.values(), target, innocents.get("source", "innocent population"))
        elif "clean" in models:
            ref = np.asarray(models["clean"]) == target
            rate = min(0.999, null_rate([ref.mean()], len(ref)) + margin)
            out[set_name] = Null(rate, 1, f"the run's clean reference model + margin {margin:g} "
                                 "(no innocent population: build one with `python -m ewe nulls`)",
                                 [float(ref.mean())])
    return out


def judge(suspect_pred, preds: dict, set_name: str, nulls: dict[str, Null], *, test: str = "binomial",
          **settings) -> dict | None:
    """One suspect's verdict on one of a run's held-out trigger sets (None when the set has no null, or no
    clean reference for the Welch test)."""
    reference = preds["sets"].get(set_name, {}).get("clean")
    if set_name not in nulls or (test == "welch" and reference is None):
        return None
    return {**verify(suspect_pred, set_target(preds, set_name), null=nulls[set_name], reference_pred=reference, test=test,
                     **settings), "trigger_set": set_name}


def verify_predictions(preds: dict, innocents: dict | None = None, *, margin: float = 0.0, **settings) -> dict:
    """Every suspect of ``ewe.results.schema.suspects()`` that a run's predictions.json holds."""
    from .results.schema import suspects
    nulls = nulls_for_run(preds, innocents, margin)
    out = {}
    for key, (suspect, set_name) in suspects().items():
        pred = preds["sets"].get(set_name, {}).get(suspect)
        verdict = None if pred is None else judge(pred, preds, set_name, nulls, margin=margin, **settings)
        if verdict:
            out[key] = verdict
    return out


def run_settings(cfg: dict) -> dict:
    """The keyword arguments of ``verify_predictions`` a run folder's config.json asks for (runs made
    before a setting existed get today's default)."""
    from .config import RunConfig
    return {"test": str(cfg.get("test", RunConfig.test)), "alpha": float(cfg.get("alpha", RunConfig.alpha)),
            "draws": int(cfg.get("query_draws", RunConfig.query_draws)), "seed": int(cfg.get("seed", 0)),
            "margin": float(cfg.get("verify_margin", RunConfig.verify_margin))}
