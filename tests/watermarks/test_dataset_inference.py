"""Dataset inference (ewe.watermarks.dataset_inference): the label-only blind walk, the owner's scorer and
one-sided t-test, and the scheme in a tiny run (its own verdicts, the innocents' false-accusation rate, a copy
re-judged from thieves.json, any checkpoint judged on its key)."""
import json

import numpy as np
import pytest
import torch

from ewe.cli import main
from ewe.config import ConfigError, tiny
from ewe.watermarks import dataset_inference as di
from ewe.watermarks.schemes import SCHEMES


class Threshold(torch.nn.Module):
    """Class 1 once the image's mean brightness passes ``t``, else class 0: its margin around a black image grows
    with ``t``."""

    def __init__(self, t: float):
        super().__init__()
        self.t = t
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True)
        return torch.cat([self.t - m, m - self.t], 1)


def test_the_blind_walk_measures_a_larger_margin_farther_and_needs_labels_only():
    x, y = torch.zeros(6, 1, 4, 4), torch.zeros(6, dtype=torch.int64)
    near, near_q = di.blind_walk(Threshold(0.05), x, y, walks=3, seed=1)
    far, _ = di.blind_walk(Threshold(0.2), x, y, walks=3, seed=1)
    again, again_q = di.blind_walk(Threshold(0.05), x, y, walks=3, seed=1)
    assert near.shape == (6, len(di.NORMS), 3) and torch.equal(near, again) and near_q == again_q > len(x)
    assert (far >= near).all() and (far > near).float().mean() > 0.5     # the same directions, farther boundary
    assert (near > 0).all()


def test_the_walk_stays_in_the_datas_range_and_scales_with_it():
    """Speech's z-normalised log-mels are not in [0, 1]: the same walk on the same points stretched to [-5, 5]
    (and a boundary moved with them) finds distances ten times as long, where clipping to [0, 1] would move every
    point before the first step."""
    x, y = torch.zeros(6, 1, 4, 4), torch.zeros(6, dtype=torch.int64)
    unit, unit_q = di.blind_walk(Threshold(0.05), x, y, walks=3, seed=1)
    wide, wide_q = di.blind_walk(Threshold(-5 + 10 * 0.05), x * 10 - 5, y, walks=3, seed=1, value_range=(-5.0, 5.0))
    assert wide_q == unit_q and torch.allclose(wide, unit * 10, rtol=1e-4)
    clipped, _ = di.blind_walk(Threshold(-5 + 10 * 0.05), x * 10 - 5, y, walks=3, seed=1)
    assert (clipped >= 5).all()                 # the first step jumps into [0, 1]: the margin is lost


def test_a_point_the_model_already_gets_wrong_is_at_distance_zero():
    x, y = torch.zeros(4, 1, 4, 4), torch.tensor([0, 1, 0, 1])           # the model answers 0 on a black image
    dist, _ = di.blind_walk(Threshold(0.1), x, y, walks=2, seed=0)
    assert (dist[y == 1] == 0).all() and (dist[y == 0] > 0).all()


def _evidence(rng, private_shift: float, n: int = 40):
    """Made-up distances: the private points' boundaries ``private_shift`` farther than the public ones'."""
    def dists(shift, k):
        return (rng.gamma(4.0, 0.05, size=(k, len(di.NORMS), di.WALKS)) + shift).tolist()
    return {"fit_private": dists(0.1, 150), "fit_public": dists(0.0, 150),
            "test_private": dists(private_shift, n), "test_public": dists(0.0, n)}


def test_the_test_proves_a_suspect_with_the_owners_margins_and_not_one_without():
    rng = np.random.default_rng(0)
    owner = _evidence(rng, 0.1)
    copy, innocent = _evidence(rng, 0.1), _evidence(rng, 0.0)
    v = di.judge(owner, copy, alpha=0.05)
    assert v["proven"] and v["p_value"] < 1e-3 and v["test"] == "dataset_inference" and v["n_queries"] == 40
    assert v["queries_for_95"] is not None and v["queries_for_95"] <= 40
    ps = [di.judge(owner, _evidence(np.random.default_rng(s), 0.0), draws=1)["p_value"] for s in range(1, 41)]
    assert 0 < sum(p < 0.05 for p in ps) <= 8          # about alpha of the same-margin suspects, no more
    assert not di.judge(owner, innocent, alpha=0.05)["proven"]


def test_the_population_rate_counts_accused_innocents_with_an_exact_interval():
    rng = np.random.default_rng(1)
    stored = {"owner": _evidence(rng, 0.1),
              "innocents": {"a": _evidence(rng, 0.1), "b": _evidence(rng, 0.1), "c": _evidence(rng, -0.05)}}
    rate = di.population_rate(stored, 0.05, di.fit_scorer(stored["owner"]))
    assert rate["innocents_accused"] == 2 and rate["innocents_judged"] == 3
    lo, hi = rate["innocents_accused_ci"]
    assert lo < 2 / 3 < hi and (lo, hi) == pytest.approx(di.clopper_pearson(2, 3))
    assert set(rate["innocent_p"]) == {"a", "b", "c"}


def test_too_few_points_for_m_is_a_config_error():
    x = torch.rand(30, 1, 4, 4)
    y = torch.zeros(30, dtype=torch.int64)
    with pytest.raises(ConfigError, match="di_samples 25"):
        di.owner_points(x, y, x, y, samples=25, seed=0)
    with pytest.raises(ConfigError, match="at least 2"):
        tiny("digits", di_samples=1)
    pts = di.owner_points(x, y, x[:20], y[:20], samples=5, seed=0)
    assert len(pts["test_private"][0]) == len(pts["test_public"][0]) == 5 and len(pts["fit_public"][0]) == 15


@pytest.fixture(scope="module")
def di_run(tmp_path_factory):
    """A tiny digits run of dataset inference alone: trained, stolen (distilling) and judged."""
    from ewe.experiments import pipeline
    out = tmp_path_factory.mktemp("di") / "run"
    result = pipeline.run(tiny("digits", schemes=["dataset_inference"], di_samples=20, threads=1), out)
    assert result["status"] == "finished", result
    return out


def test_the_scheme_judges_its_copy_and_the_innocents_with_its_own_test(di_run):
    result = json.loads((di_run / "result.json").read_text())
    assert SCHEMES["dataset_inference"].own_test
    ver = result["verification"]
    copy, clean = ver["di_extracted"], ver["clean_dataset_inference"]
    # the population, each alone: the run's 4, or digits' shipped 24 where the package has them
    n = len(json.loads((di_run / "innocents.json").read_text())["models"])
    assert n >= 4
    for v in (copy, clean):
        assert v["test"] == "dataset_inference" and v["n_queries"] == 20 and 0 <= v["p_value"] <= 1
        assert v["innocents_judged"] == n and 0 <= v["innocents_accused"] <= n
        lo, hi = v["innocents_accused_ci"]
        assert 0 <= lo <= v["innocents_accused"] / n <= hi <= 1
    # nothing is watermarked: the victim costs nothing against its clean model beyond training noise
    assert abs(result["models"]["dataset_inference"]["accuracy"] - result["models"]["clean"]["accuracy"]) < 0.3
    stored = json.loads((di_run / di.EVIDENCE_FILE).read_text())
    assert {"owner", "models", "innocents"} <= set(stored) and len(stored["innocents"]) == n
    assert stored["value_range"] == [0.0, 1.0]            # what an uploaded suspect will be walked in
    assert {"clean", "independent_clean", "di_extracted"} <= set(stored["models"])


def test_a_copy_is_rejudged_from_its_record_in_thieves_json(di_run):
    from ewe.results.verdicts import verify_run
    draws = json.loads((di_run / "thieves.json").read_text())
    rec = draws[-1]["copies"]["di_extracted"]
    assert rec["evidence"] and rec["test"] == "dataset_inference"
    before = rec["p_value"]
    verify_run(di_run)
    after = json.loads((di_run / "thieves.json").read_text())[-1]["copies"]["di_extracted"]
    assert after["p_value"] == pytest.approx(before) and after["test"] == "dataset_inference"


def test_any_checkpoint_is_judged_on_the_dataset_inference_key(di_run):
    from ewe.results.verdicts import judge_checkpoint
    v = judge_checkpoint(di_run, di_run / "models" / "di_extracted.pt", "conv2", "dataset_inference")
    stored = json.loads((di_run / "result.json").read_text())["verification"]["di_extracted"]
    assert v["test"] == "dataset_inference" and v["p_value"] == pytest.approx(stored["p_value"])


def test_the_cli_trains_it_by_name_and_rejects_a_bad_m(tmp_path, capsys):
    assert main(["run", "--dataset", "digits", "--schemes", "dataset_inference", "--di-samples", "1",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "di_samples" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
