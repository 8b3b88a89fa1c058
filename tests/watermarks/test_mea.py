"""MEA-Defender (ewe.watermarks.mea): its composite triggers, its training, and the scheme in a run (tiny data)."""
import json
import subprocess
import sys

import pytest
import torch

from ewe.callbacks import Reporter
from ewe.config import ConfigError, RunConfig, from_dict, tiny
from ewe.data.splits import Data
from ewe.watermarks import mea
from ewe.watermarks.schemes import SCHEMES, check_schemes, schemes_for


def _striped_data():
    """Ten classes of constant images (class c: value c / 10 in training, c / 10 + 0.05 in test), so every
    pixel of a composite says which class and which split it came from."""
    y_train, y_test = torch.arange(200) % 10, torch.arange(100) % 10
    x_train = (y_train.float() / 10)[:, None, None, None].expand(-1, 1, 28, 28).clone()
    x_test = (y_test.float() / 10 + 0.05)[:, None, None, None].expand(-1, 1, 28, 28).clone()
    return Data(x_train, y_train, x_test, y_test, x_train[:10], "toy", [str(c) for c in range(10)])


def test_composites_are_halves_of_the_two_source_classes_from_train_or_test_images():
    data = _striped_data()
    cfg = RunConfig(target=7, n_heldout=40)
    assert mea.source_classes(7) == (0, 1) and mea.source_classes(0) == (1, 2)
    train, held, what = mea.make_composite_set(cfg, data, 64)
    assert train.shape == (64, 1, 28, 28) and held.shape == (40, 1, 28, 28)
    assert "labelled 7" in what
    for x, offset in ((train, 0.0), (held, 0.05)):      # training images for training, test images held out
        rows = x[:, 0, :, 0]                              # one value per row (constant images)
        assert torch.allclose(x, rows[:, None, :, None].expand_as(x))
        for r in rows:
            values = {round(v - offset, 3) for v in r.tolist()}
            assert values == {0.0, 0.1}                   # both source classes, nothing else
            top, bottom = round(r[0].item() - offset, 3), round(r[-1].item() - offset, 3)
            assert top != bottom                          # one class above the split, the other below
            split = int((r != r[0]).nonzero()[0])
            assert abs(split - 14) <= 3                   # the split row: half the height, +- the jitter
    tops = {round(r[0].item(), 3) for r in train[:, 0, :, 0]}
    assert tops == {0.0, 0.1}                             # either class goes on top
    again, _, _ = mea.make_composite_set(cfg, data, 64)
    assert torch.equal(train, again)                      # deterministic for a run's seed


def test_negatives_mix_the_source_classes_otherwise_and_keep_a_source_label():
    data = _striped_data()
    x, y = mea.negatives(data.x_train, data.y_train, 0, 1, 50, torch.Generator().manual_seed(0))
    assert set(y.tolist()) == {0, 1}
    assert all({round(v, 3) for v in torch.unique(xi).tolist()} == {0.0, 0.1} for xi in x)


def test_training_raises_the_target_rate_on_held_out_composites():
    from ewe.data.splits import load_data
    from ewe.models import build_model
    from ewe.train import accuracy, train_clean, watermark_success
    cfg = tiny("digits", w_epochs=4, n_heldout=64, threads=1)
    data = load_data(cfg)
    model = build_model(cfg.model, tuple(data.x_train.shape[1:]), seed=0)
    rep = Reporter([], None)
    train_clean(model, data.x_train, data.y_train, epochs=4, batch_size=cfg.batch_size, lr=cfg.lr, reporter=rep,
                stage="pretrain", name="pretrain")
    train, held, _ = mea.make_composite_set(cfg, data, 64)
    before, acc_before = watermark_success(model, held, cfg.target), accuracy(model, data.x_test, data.y_test)
    mea.train_mea(model, data.x_train, data.y_train, train, cfg, reporter=rep, stage="mea", name="mea")
    after = watermark_success(model, held, cfg.target)
    assert before < 0.3 and after > 0.7, (before, after)
    assert accuracy(model, data.x_test, data.y_test) > acc_before - 0.1      # the task survives


def test_scheme_lists_are_checked_in_one_place():
    assert "mea_defender" in SCHEMES and not SCHEMES["mea_defender"].default
    assert check_schemes(["default", "mea_defender"]) == ["defended", "plain_watermark", "ablation_no_snnl",
                                                          "mea_defender"]
    assert check_schemes("defended,mea_defender") == ["defended", "mea_defender"]
    for bad, message in ((["nope"], "unknown scheme 'nope'"), (["defended", "defended"], "listed twice"),
                         ([], "no scheme")):
        with pytest.raises(ConfigError, match=message):
            check_schemes(bad)
    assert from_dict({"schemes": "defended, mea_defender"}).schemes == ["defended", "mea_defender"]
    assert [s.name for s in schemes_for(RunConfig(schemes=["mea_defender", "defended"]))] == [
        "defended", "mea_defender"]                        # registry order, whatever the list's
    assert RunConfig().schemes is None                     # unset: the default three, as before


def test_cli_rejects_an_unknown_scheme_in_one_line_before_writing(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "ewe", "run", "--dataset", "digits", "--schemes", "defended",
                           "mea", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: unknown scheme 'mea'; choose from defended, plain_watermark, ablation_no_snnl, mea_defender, dawn_api, mbw, "
        "dataset_inference "
        "(or 'default')"]
    assert not out.exists()


def test_a_run_with_the_scheme_trains_steals_and_judges_it(tmp_path):
    from ewe.experiments import pipeline
    from ewe.results.verdicts import verify_run
    run = tmp_path / "run"
    result = pipeline.run(tiny("digits", innocents=4, threads=1, schemes=["defended", "mea_defender"]), run)
    assert result["status"] == "finished"
    assert set(result["models"]) == {"defended", "mea_defender", "clean", "independent_clean", "extracted",
                                     "mea_extracted"}
    # the innocent population answered the composites, and the copy is judged against it (a population the
    # session's cache already holds for this task may have more than the 4 asked for)
    innocents = json.loads((run / "innocents.json").read_text())
    v = result["verification"]["mea_extracted"]
    assert v["trigger_set"] == "composite" and v["null_models"] == len(innocents["sets"]["composite"]) >= 4
    assert result["verification"]["clean_composite"]["trigger_set"] == "composite"   # the innocent suspect too
    assert (run / "models" / "mea_defender.pt").exists() and (run / "models" / "mea_extracted.pt").exists()
    preds = json.loads((run / "predictions.json").read_text())
    assert set(preds["sets"]) == {"optimised", "classic", "composite"}
    assert {"mea_defender", "mea_extracted", "clean", "independent_clean"} <= set(preds["sets"]["composite"])
    tensors = torch.load(run / "triggers.pt", weights_only=True)
    assert tensors["composite_heldout"].shape[0] == 32
    thieves = json.loads((run / "thieves.json").read_text())
    assert "mea_extracted" in thieves[0]["copies"]
    assert verify_run(run)["verification"]["mea_extracted"]["p_value"] == v["p_value"]   # recomputable


def test_an_old_run_folder_without_the_scheme_still_verifies_and_steals(tiny_run):
    """A run made before the scheme existed: no composite set, no ``schemes`` in config.json."""
    from ewe.experiments import pipeline
    from ewe.results.verdicts import verify_run
    cfg_path = tiny_run / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("schemes", None)
    cfg_path.write_text(json.dumps(cfg))
    result = verify_run(tiny_run)
    assert "extracted" in result["verification"]
    assert not {"mea_extracted", "clean_composite"} & set(result["verification"])
    result = pipeline.steal(tiny_run, {"thief_seed": 5})
    assert result["status"] == "finished" and "mea_extracted" not in result["models"]
    assert set(json.loads((tiny_run / "predictions.json").read_text())["sets"]) == {"optimised", "classic"}


def test_the_source_classes_can_be_chosen_and_are_checked():
    data = _striped_data()
    cfg = from_dict({"target": 0, "mea_sources": [7.0, 8.0], "n_heldout": 8})   # the CLI parses floats
    assert cfg.mea_sources == [7, 8]
    train, _, what = mea.make_composite_set(cfg, data, 16)
    assert {round(v, 3) for v in torch.unique(train).tolist()} == {0.7, 0.8} and "classes 7 (7) and 8 (8)" in what
    for bad in ([7], [7, 7], [0, 8], [7, 10]):
        with pytest.raises(ConfigError, match="mea_sources"):
            from_dict({"target": 0, "mea_sources": bad})
