"""Ownership test against scipy on fixed vectors; the query count."""
import numpy as np
import pytest
from scipy import stats

from ewe.config import RunConfig
from ewe.verify import p_value, queries_for_confidence, query_curve, query_grid, verify


def test_p_value_matches_scipy_welch_one_sided():
    x = np.array([1, 1, 0, 1, 0, 1, 1, 0, 1, 1], dtype=float)
    y = np.array([0, 0, 0, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    ref = stats.ttest_ind(x, y, equal_var=False, alternative="greater").pvalue
    assert p_value(x, y) == pytest.approx(ref)
    assert p_value(y, x) == pytest.approx(stats.ttest_ind(y, x, equal_var=False, alternative="greater").pvalue)


def test_degenerate_constant_samples():
    assert p_value([1, 1, 1], [0, 0, 0]) == 0.0   # t = +inf
    assert p_value([0, 0, 0], [0, 0, 0]) == 1.0   # no evidence
    assert p_value([0, 0, 0], [1, 1, 1]) == 1.0


def test_query_grid():
    g = query_grid(1000)
    assert g[:3] == [2, 3, 4] and g[-1] == 1000 and g == sorted(set(g))
    assert query_grid(5) == [2, 3, 4, 5]


def test_queries_for_confidence_against_closed_form():
    """s = 0.3 vs b = 0.01: the spec's normal approximation gives N ~ 7; the t-test needs a few more."""
    rng = np.random.default_rng(0)
    n = 2000
    x = (rng.random(n) < 0.3).astype(float)
    y = (rng.random(n) < 0.01).astype(float)
    q = queries_for_confidence(query_curve(x, y, draws=300, seed=0))
    z = 1.645
    approx = z ** 2 * (0.3 * 0.7 + 0.01 * 0.99) / 0.29 ** 2
    assert approx < 8 and 4 <= q <= 20


def test_curve_monotone_enough_and_independent_model_not_claimed():
    rng = np.random.default_rng(1)
    same = (rng.random(500) < 0.02).astype(float)
    other = (rng.random(500) < 0.02).astype(float)
    res = verify(np.where(same, 7, 3), np.where(other, 7, 3), target=7, draws=50)
    assert res["p_value"] > 0.05 and res["queries_for_95"] is None and res["verified"] is False
    strong = verify(np.full(300, 7), np.where(rng.random(300) < 0.02, 7, 1), target=7, draws=50)
    assert strong["queries_for_95"] is not None and strong["queries_for_95"] <= 5
    assert strong["curve"]["p_median"][-1] < 1e-10


def test_mismatched_lengths_rejected():
    with pytest.raises(ValueError):
        query_curve([1, 0], [1, 0, 1])


def test_margin_is_welch_on_the_shifted_suspect():
    """H0: rate(suspect) <= rate(reference) + margin, i.e. Welch on (x - margin) vs y."""
    rng = np.random.default_rng(2)
    x = (rng.random(400) < 0.3).astype(float)
    y = (rng.random(400) < 0.1).astype(float)
    for margin in (0.0, 0.05, 0.15):
        ref = stats.ttest_ind(x - margin, y, equal_var=False, alternative="greater").pvalue
        assert p_value(x, y, margin) == pytest.approx(ref)
    assert p_value(x, y, 0.05) > p_value(x, y, 0.0)
    assert p_value([1, 1, 1], [0, 0, 0], 0.05) < 1e-10    # constant samples, rates still 0.95 apart
    assert p_value([1, 1, 1], [1, 1, 1], 0.05) == 1.0


def test_margin_spares_an_innocent_model_that_differs_a_little():
    """The lab's false claim (Fashion-MNIST paper seed 2): an independent clean model answered the target
    on 12 of 974 triggers, the reference on 2. Enough queries make that 'significant' without a margin."""
    target, n = 0, 974
    innocent = np.where(np.arange(n) < 12, target, 5)
    reference = np.where(np.arange(n) < 2, target, 5)
    assert verify(innocent, reference, target, draws=50)["verified"] is True
    margin = RunConfig.verify_margin          # the shipped default
    spared = verify(innocent, reference, target, draws=50, margin=margin)
    assert spared["verified"] is False and spared["queries_for_95"] is None and spared["margin"] == margin
    # a stolen copy at 0.3 is still caught within a few dozen queries
    stolen = np.where(np.arange(n) % 10 < 3, target, 5)
    assert verify(stolen, reference, target, draws=50, margin=margin)["queries_for_95"] <= 40
