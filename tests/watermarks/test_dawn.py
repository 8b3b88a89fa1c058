"""DAWN (ewe.watermarks.dawn): keyed, stable flips at the API, the owner's register, and the scheme in a run."""
import json

import numpy as np
import pytest
import torch

from ewe.config import ConfigError, from_dict, tiny
from ewe.train import predict, predict_proba
from ewe.verify import population_null, verify
from ewe.watermarks import dawn
from ewe.watermarks.schemes import SCHEMES

KEY, OTHER_KEY = dawn.lab_key("digits", 0), dawn.lab_key("digits", 1)


def _model():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()


def _inputs(n, seed=0):
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


def test_answers_are_stable_per_input_and_key_whatever_the_batch():
    model, x = _model(), _inputs(4000)
    first = dawn.DawnApi(model, KEY, rate=0.05).hard_labels(x)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    again = dawn.DawnApi(model, KEY, rate=0.05)
    shuffled = torch.cat([again.hard_labels(x[order][i:i + 7]) for i in range(0, len(x), 7)])  # other batches
    assert torch.equal(shuffled, first[order])
    assert torch.equal(again.hard_labels(x), first)                       # asked twice: the same answers
    other = dawn.DawnApi(model, OTHER_KEY, rate=0.05).hard_labels(x)
    own = predict(model, x)
    flipped, flipped_other = first != own, other != own
    assert flipped.any() and flipped_other.any() and not torch.equal(flipped, flipped_other)   # the key decides


def test_the_flipped_share_is_the_rate_and_the_wrong_label_is_never_the_models():
    model, x = _model(), _inputs(20000, seed=2)
    own = predict(model, x)
    answers = dawn.DawnApi(model, KEY, rate=0.005).hard_labels(x)
    flipped = answers != own
    sd = np.sqrt(0.005 * 0.995 / len(x))
    assert abs(flipped.float().mean().item() - 0.005) < 4 * sd
    mask, wrong = dawn.flips(x, own, KEY, 0.2, 10)
    assert not (wrong == own).any()                                        # a flip is always a wrong answer
    shift = ((wrong - own) % 10)[mask]
    assert set(shift.tolist()) == set(range(1, 10))                        # spread over the other classes


def test_soft_answers_swap_the_top_class_with_the_wrong_label():
    model, x = _model(), _inputs(3000, seed=3)
    api = dawn.DawnApi(model, KEY, rate=0.1)
    soft, hard = api.soft_labels(x, temperature=5.0), dawn.DawnApi(model, KEY, rate=0.1).hard_labels(x)
    proba = predict_proba(model, x, 5.0)
    assert torch.equal(soft.argmax(1), hard)
    assert torch.allclose(soft.sum(1), torch.ones(len(x)))
    same = hard == proba.argmax(1)
    assert torch.equal(soft[same], proba[same]) and (~same).sum() > 100
    assert torch.allclose(soft[~same].sort(1).values, proba[~same].sort(1).values)   # only swapped


def test_the_register_holds_each_flipped_query_once_with_its_answer():
    model, x = _model(), _inputs(2000, seed=4)
    api = dawn.DawnApi(model, KEY, rate=0.05)
    answers = api.hard_labels(torch.cat([x, x[:500]]))                   # 500 queries sent twice
    reg_x, reg_y = api.register()
    flipped = (answers[:2000] != predict(model, x))
    assert len(reg_x) == int(flipped.sum()) == api.flipped - int(flipped[:500].sum())
    assert torch.equal(reg_x, x[flipped]) and torch.equal(reg_y, answers[:2000][flipped])
    assert api.queries == 2500


def test_honest_users_pay_the_flip_rate():
    model, x = _model(), _inputs(5000, seed=5)
    y = predict(model, x)                                                  # a model right on every input
    fig = dawn.api_figures(model, KEY, 0.02, x, y)
    assert fig["model_accuracy"] == 1.0 and fig["accuracy"] == pytest.approx(1 - fig["flip_rate"])
    assert 0.01 < fig["flip_rate"] < 0.03 and fig["key_id"] == dawn.key_id(KEY) != dawn.key_id(OTHER_KEY)


def test_a_copy_that_learnt_the_flips_is_proven_and_an_innocent_is_not():
    """Per-input labels in the exact test: hits are answers equal to the register's labels."""
    rng = np.random.default_rng(0)
    n, truth = 40, rng.integers(0, 10, 40)
    labels = (truth + rng.integers(1, 10, n)) % 10                        # wrong labels, as the API gives
    innocents = [np.where(rng.random(n) < 0.03, labels, truth) for _ in range(24)]   # rare coincidences
    null = population_null(innocents, labels, "test")
    copy = np.where(rng.random(n) < 0.5, labels, truth)                    # learnt half of the flips
    assert verify(copy, labels, null=null)["proven"]
    assert not verify(truth, labels, null=null)["proven"]                  # answers the true labels
    with pytest.raises(ValueError, match="same inputs"):
        verify(copy[:10], labels, null=null)


def test_the_rate_is_checked():
    assert from_dict({"dawn_rate": 0.01}).dawn_rate == 0.01
    for bad in (0, -0.1, 0.6):
        with pytest.raises(ConfigError, match="dawn_rate"):
            from_dict({"dawn_rate": bad})
    with pytest.raises(ValueError, match="flip rate"):
        dawn.DawnApi(_model(), KEY, rate=0)


def test_a_run_with_dawn_steals_through_the_api_and_judges_the_copy_on_its_register(tmp_path):
    from ewe.experiments import pipeline
    from ewe.results.verdicts import verify_run
    assert SCHEMES["dawn_api"].serves_api and not SCHEMES["dawn_api"].default
    run = tmp_path / "run"
    cfg = tiny("digits", innocents=4, threads=1, schemes=["defended", "dawn_api"], dawn_rate=0.2)
    result = pipeline.run(cfg, run)
    assert result["status"] == "finished"
    assert set(result["models"]) == {"defended", "dawn_api", "clean", "independent_clean", "extracted",
                                     "dawn_extracted"}
    api = result["models"]["dawn_api"]
    assert api["model_accuracy"] == result["models"]["clean"]["accuracy"]
    assert 0.1 < api["flip_rate"] < 0.3 and api["accuracy"] < api["model_accuracy"]
    assert not (run / "models" / "dawn_api.pt").exists()                   # nothing trained: the clean model
    preds = json.loads((run / "predictions.json").read_text())
    labels = preds["set_targets"]["dawn"]
    n_queries = result["models"]["dawn_extracted"]["queries"]
    assert 0.1 * n_queries < len(labels) == result["models"]["dawn_extracted"]["register"] < 0.3 * n_queries
    tensors = torch.load(run / "triggers.pt", weights_only=True)
    assert len(tensors["dawn_heldout"]) == len(labels)
    copy_preds = preds["sets"]["dawn"]["dawn_extracted"]
    kept = float(np.mean(np.asarray(copy_preds) == np.asarray(labels)))
    assert result["models"]["dawn_extracted"]["watermark_success"] == pytest.approx(kept)
    innocents = json.loads((run / "innocents.json").read_text())
    assert all(len(p) == len(labels) for p in innocents["sets"]["dawn"].values())
    v = result["verification"]["dawn_extracted"]
    assert v["trigger_set"] == "dawn" and v["n_queries"] == len(labels) and v["suspect_rate"] == pytest.approx(kept)
    assert result["verification"]["clean_dawn"]["trigger_set"] == "dawn"   # the innocent suspect, judged too
    thieves = json.loads((run / "thieves.json").read_text())
    assert thieves[0]["copies"]["dawn_extracted"]["register"]["labels"] == labels
    assert thieves[0]["innocent_verdicts"] == {"clean_dawn": result["verification"]["clean_dawn"]["proven"]}
    assert verify_run(run)["verification"]["dawn_extracted"]["p_value"] == v["p_value"]   # recomputable

    # a second thief with a query budget: its own register; the first thief is still judged on its own
    second = pipeline.steal(run, {"thief_seed": 9, "query_budget": 150})
    assert second["status"] == "finished" and second["models"]["dawn_extracted"]["queries"] == 150
    new_labels = json.loads((run / "predictions.json").read_text())["set_targets"]["dawn"]
    assert len(new_labels) < len(labels)
    thieves = json.loads((run / "thieves.json").read_text())
    first = next(t for t in thieves if t["thief"]["seed"] != 9)["copies"]["dawn_extracted"]
    assert first["n_queries"] == len(labels) and first["p_value"] == v["p_value"]


def test_only_the_listed_schemes_are_stolen_and_recorded(tmp_path):
    """A thief told to steal only through the API leaves the other copies' records alone."""
    from ewe.experiments import pipeline
    run = tmp_path / "run"
    pipeline.run(tiny("digits", innocents=4, threads=1, schemes=["defended", "dawn_api"], dawn_rate=0.2), run)
    result = pipeline.steal(run, {"thief_seed": 3, "schemes": ["dawn_api"]})
    assert result["stolen"] == ["dawn_extracted"]
    entry = next(t for t in json.loads((run / "thieves.json").read_text()) if t["thief"]["seed"] == 3)
    assert set(entry["copies"]) == {"dawn_extracted"}


def test_a_thief_that_got_no_flipped_answer_is_told_why_nothing_was_stolen(tiny_run):
    from ewe.experiments import pipeline
    with pytest.raises(ConfigError, match="flipped none of this thief's 20 answers"):
        pipeline.steal(tiny_run, {"schemes": ["dawn_api"], "query_budget": 20, "dawn_rate": 0.0001})
    assert "dawn" not in json.loads((tiny_run / "predictions.json").read_text())["sets"]
