"""The ownership test: exact binomial p-values against a calibrated null rate, the Welch option, the query
count, and the false-positive rate under H0."""
import numpy as np
import pytest
from scipy import stats

from ewe.verify import (Null, binomial_p, innocents_needed, null_rate, queries_for_confidence, query_curve,
                        query_grid, rank_p, verify, verify_predictions, welch_p)


def test_binomial_is_exact_at_every_n():
    p0 = 0.03
    assert binomial_p(2, 2, p0) == pytest.approx(p0 ** 2)          # two hits in two queries: p0^2, not 0
    assert binomial_p(0, 5, p0) == pytest.approx(1.0)                # no hit: no evidence
    assert binomial_p(7, 7, p0) == pytest.approx(p0 ** 7)            # all hits
    for k, n in [(1, 10), (3, 10), (12, 200), (40, 1000)]:
        ref = stats.binomtest(k, n, p0, alternative="greater").pvalue
        assert binomial_p(k, n, p0) == pytest.approx(ref, rel=1e-9)
    assert np.allclose(binomial_p(np.array([0, 1, 2]), 2, p0), [1.0, 1 - (1 - p0) ** 2, p0 ** 2])


def test_false_positive_rate_under_h0_stays_below_alpha():
    """Exactly, for every n from 2 to 1,000: P(p < alpha) when the suspect's true rate is p0."""
    alpha = 0.05
    for p0 in (0.001, 0.02, 0.1, 0.3):
        for n in range(2, 1001):
            k = np.arange(n + 1)
            rejected = binomial_p(k, n, p0) < alpha
            fpr = stats.binom.pmf(k, n, p0)[rejected].sum()
            assert fpr <= alpha + 1e-12, (p0, n, fpr)


def test_calibrated_null_spares_innocents_drawn_like_the_population():
    """Simulation: innocent models' rates vary between models (a beta distribution); p0 is calibrated on
    one population of 12 and tested on fresh innocents with 200 queries each. The false-accusation rate
    stays below alpha, where a single-reference null (one model's rate) accuses far more often."""
    rng = np.random.default_rng(0)
    accused_pop, accused_single, tests = 0, 0, 0
    for trial in range(300):
        a, b = 2.0, 40.0                                              # mean rate ~5 %, sd ~3 points
        cal = rng.binomial(200, rng.beta(a, b, 12)) / 200
        p0 = null_rate(cal, 200)
        single = null_rate(cal[:1], 200)
        for r in rng.beta(a, b, 5):
            k = rng.binomial(200, r)
            accused_pop += binomial_p(k, 200, p0) < 0.05
            accused_single += binomial_p(k, 200, single) < 0.05
            tests += 1
    assert accused_pop / tests <= 0.05
    assert accused_single / tests > accused_pop / tests


def test_null_rate_bounds_the_population():
    rates = [0.0, 0.01, 0.05, 0.02]
    p0 = null_rate(rates, 200)
    assert p0 >= 0.05                                                  # at least the worst innocent
    assert null_rate([0.0] * 20, 200) > 0.0                            # never 0: 0 of 200 is not "never"
    assert null_rate([0.0, 0.3], 200) > null_rate([0.15, 0.15], 200)   # spread between models widens it
    # a skewed population (most models near 0, one kind far out): the bound reaches past its tail
    skewed = np.array([0.0] * 12 + [0.005] * 4 + [0.01, 0.02, 0.03, 0.05, 0.06, 0.08, 0.1, 0.12])
    raw = skewed.mean() + stats.t.ppf(0.99, 23) * skewed.std(ddof=1) * np.sqrt(1 + 1 / 24)
    cp_max = stats.beta.ppf(0.95, 25, 200 - 24)           # the highest model: 24 of 200
    assert null_rate(skewed, 200) > max(raw, cp_max) + 0.05   # the logit-scale bound reaches into the tail
    with pytest.raises(ValueError):
        null_rate([], 200)


def test_combined_test_spares_fresh_innocents_whatever_their_law():
    """Simulation: a fresh innocent drawn from the same law as a population of 24 is accused at most
    1/25 of the time, for skewed and heavy-tailed laws (most rates near 0 and a few far out, as on quick
    MNIST and Fashion-MNIST), with all 300 queries and with 5; and a copy is proven only where both parts
    reject."""
    rng = np.random.default_rng(5)
    laws = {"heavy tail": lambda m: np.where(rng.random(m) < 1 / 12, rng.uniform(0.05, 0.55, m),
                                             rng.beta(0.3, 100, m)),
            "log-normal": lambda m: np.minimum(0.9, rng.lognormal(-4.0, 1.5, m)),
            "broad": lambda m: rng.beta(1, 3, m)}
    trials = 800
    for law in laws.values():
        for n in (300, 5):
            accused = 0
            for _ in range(trials):
                hits = (rng.random((25, n)) < law(25)[:, None]).astype(int)
                suspect, population = hits[0], hits[1:]
                null = Null(null_rate(population.mean(axis=1), n), 24, "sim", hits=population)
                v = verify(np.where(suspect > 0, 7, 1), 7, null=null, draws=3)
                assert v["proven"] == (v["binomial_p"] < 0.05 and v["rank_p"] < 0.05)
                accused += v["proven"]
            assert accused / trials <= 1 / 25 + 2 * np.sqrt(1 / 25 / trials)


def test_rank_p_counts_ties_against_the_suspect_and_needs_enough_innocents():
    assert rank_p(3, [0, 1, 2, 3]) == pytest.approx(2 / 5)            # the tie counts
    assert rank_p(4, [0, 1, 2, 3]) == pytest.approx(1 / 5)
    assert np.allclose(rank_p(np.array([1, 5]), np.array([[0, 0], [2, 2]])), [2 / 3, 1 / 3])
    few = Null(0.01, 4, "t", hits=np.zeros((4, 50), dtype=int))
    v = verify([7] * 50, 7, null=few, draws=5)                         # every query hit, no innocent did
    assert v["binomial_p"] < 1e-50 and v["rank_p"] == pytest.approx(1 / 5) and not v["proven"]
    assert v["smallest_p"] == pytest.approx(1 / 5)
    # the boundary: 1 / (m + 1) must be below alpha, so 19 innocents cannot prove at 0.05 and 20 can
    assert innocents_needed(0.05) == 20 and innocents_needed(0.01) == 100
    for m in (19, 20):
        v = verify([7] * 50, 7, null=Null(0.01, m, "t", hits=np.zeros((m, 50), dtype=int)), draws=5)
        assert v["proven"] == (m >= innocents_needed(0.05))
    enough = Null(0.01, 24, "t", hits=np.zeros((24, 50), dtype=int))
    assert verify([7] * 50, 7, null=enough, draws=5)["proven"]
    with pytest.raises(ValueError, match="same inputs"):
        verify([7] * 49, 7, null=enough, draws=5)


def test_query_grid():
    g = query_grid(1000)
    assert g[:3] == [2, 3, 4] and g[-1] == 1000 and g == sorted(set(g))
    assert query_grid(5) == [2, 3, 4, 5]


def test_queries_for_95_is_where_the_curve_stays_below_alpha():
    curve = {"queries": [2, 3, 4, 5, 6], "p_median": [0.01, 0.12, 0.04, 0.03, 0.02]}
    assert queries_for_confidence(curve) == 4                          # the dip at 2 does not count
    assert queries_for_confidence({"queries": [2, 3], "p_median": [0.01, 0.2]}) is None


def test_strong_copy_proven_fast_and_weak_one_not():
    rng = np.random.default_rng(1)
    null = Null(0.02, 20, "test")
    strong = verify(np.where(rng.random(300) < 0.6, 7, 1), 7, null=null, draws=100)
    assert strong["proven"] and strong["verified"] and strong["queries_for_95"] <= 6
    med = strong["curve"]["p_median"]
    q = strong["queries_for_95"]
    assert all(p < 0.05 for n, p in zip(strong["curve"]["queries"], med) if n >= q)
    weak = verify(np.where(rng.random(300) < 0.02, 7, 1), 7, null=null, draws=100)
    assert not weak["proven"] and weak["queries_for_95"] is None and weak["p_value"] > 0.05


def test_proven_means_p_on_every_query_below_alpha():
    rng = np.random.default_rng(3)
    null = Null(0.05, 20, "test")
    for rate in (0.05, 0.08, 0.1, 0.2):
        v = verify(np.where(rng.random(200) < rate, 3, 0), 3, null=null, draws=50)
        assert v["proven"] == (v["p_value"] < 0.05) == (v["queries_for_95"] is not None)


def test_welch_option_reproduces_scipy():
    x = np.array([1, 1, 0, 1, 0, 1, 1, 0, 1, 1], dtype=float)
    y = np.array([0, 0, 0, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    for margin in (0.0, 0.1):
        ref = stats.ttest_ind(x - margin, y, equal_var=False, alternative="greater").pvalue
        assert welch_p(x, y, margin) == pytest.approx(ref)
    assert welch_p([1, 1, 1], [0, 0, 0]) == 1.0      # undefined t: no evidence, never p = 0
    v = verify(np.where(x > 0, 7, 1), 7, reference_pred=np.where(y > 0, 7, 1), test="welch", draws=20)
    assert v["test"] == "welch" and v["p_value"] == pytest.approx(welch_p(x, y))


def test_mismatched_lengths_rejected_by_welch():
    with pytest.raises(ValueError):
        query_curve([1, 0], reference_hits=[1, 0, 1], test="welch")


def test_verify_predictions_uses_the_population_and_says_so():
    rng = np.random.default_rng(4)
    n = 100
    stolen = np.where(rng.random(n) < 0.4, 7, 1).tolist()
    clean = np.where(rng.random(n) < 0.02, 7, 1).tolist()
    preds = {"target": 7, "sets": {"optimised": {"extracted": stolen, "clean": clean,
                                                 "independent_clean": clean}}}
    innocents = {"source": "20 innocent models (t)",
                 "sets": {"optimised": {f"m{i}": np.where(rng.random(n) < 0.03, 7, 1).tolist()
                                        for i in range(20)}}}
    out = verify_predictions(preds, innocents, draws=20)
    assert out["extracted"]["proven"] and out["extracted"]["null_models"] == 20
    assert out["extracted"]["null_source"] == "20 innocent models (t)"
    assert not out["clean"]["proven"]
    # without a population: the clean reference + margin, and the verdict says it rests on one model
    weak = verify_predictions(preds, None, draws=20, margin=0.1)
    assert weak["extracted"]["null_models"] == 1 and "no innocent population" in weak["extracted"]["null_source"]


def test_the_chart_gets_the_binomial_part_and_the_card_the_rank_condition():
    """The decision is the larger p of the two parts (unchanged); the curve also carries the binomial part alone,
    which falls with the queries where the rank part sits at its floor 1 / (m + 1), and the verdict says whether
    the suspect out-answered every innocent model."""
    rng = np.random.default_rng(5)
    m = 24
    hits = (rng.random((m, 200)) < 0.03).astype(int)
    null = Null(0.06, m, "t", hits=hits)
    strong = verify(np.where(rng.random(200) < 0.7, 7, 1), 7, null=null, draws=50)
    curve = strong["curve"]
    assert strong["proven"] and strong["outranks_innocents"] and strong["innocents_at_least"] == 0
    assert strong["p_value"] == pytest.approx(max(strong["binomial_p"], strong["rank_p"]))
    assert min(curve["p_median"][-20:]) == pytest.approx(1 / (m + 1))          # the decision's p: flat
    binom = curve["binomial_median"]
    assert binom[-1] < 1e-30 and binom[-1] < binom[10] < binom[0]              # what falls with the queries
    assert all(b <= p for b, p in zip(binom, curve["p_median"]))
    # a suspect some innocent out-answers: the binomial part alone would pass, the rank condition does not
    best = int(hits.sum(1).max())
    tied = np.where(np.arange(200) < best, 7, 1)
    v = verify(tied, 7, null=Null(0.0001, m, "t", hits=hits), draws=20)
    assert v["binomial_p"] < 0.05 and not v["outranks_innocents"] and not v["proven"]
    assert v["innocents_at_least"] >= 1 and v["queries_for_95"] is None


def test_welch_says_when_its_t_is_undefined():
    owner = verify([7] * 50, 7, reference_pred=[1] * 50, test="welch", draws=5)   # 100 % against 0 %
    assert owner["t_undefined"] and owner["p_value"] == 1.0
    mixed = verify([7] * 40 + [1] * 10, 7, reference_pred=[1] * 49 + [7], test="welch", draws=5)
    assert not mixed["t_undefined"] and mixed["proven"]
