"""The margin-based watermark (ewe.watermarks.mbw): its key, the ascent, its training, and the scheme in a run
(tiny data)."""
import json
import subprocess
import sys

import pytest
import torch

from ewe.callbacks import Reporter
from ewe.config import ConfigError, RunConfig, tiny
from ewe.data.splits import Data
from ewe.watermarks import mbw
from ewe.watermarks.schemes import SCHEMES, check_schemes


def _constant_data(n_classes=10):
    """Constant images, a test image of class c of value 2^c / 1024, so a blend's pixel value (2^a + 2^b) / 2048
    names its two source classes (the bits set)."""
    y_train, y_test = torch.arange(200) % n_classes, torch.arange(100) % n_classes
    x_train = (y_train.float() / 10)[:, None, None, None].expand(-1, 1, 8, 8).clone()
    x_test = (2.0 ** y_test.float() / 1024)[:, None, None, None].expand(-1, 1, 8, 8).clone()
    return Data(x_train, y_train, x_test, y_test, x_train[:10], "toy", [str(c) for c in range(n_classes)])


def test_the_key_blends_two_test_images_of_different_classes_labelled_a_third():
    data = _constant_data()
    key, labels, what = mbw.make_key(RunConfig(), data)
    assert key.shape == (mbw.KEY_SIZE, 1, 8, 8) and labels.shape == (mbw.KEY_SIZE,) and "blends" in what
    for x, label in zip(key, labels.tolist()):
        assert torch.all(x == x[0, 0, 0])
        bits = round(x[0, 0, 0].item() * 2048)
        sources = [c for c in range(10) if bits >> c & 1]
        assert len(sources) == 2 and bits == sum(2 ** c for c in sources)    # two different classes
        assert label not in sources
    assert len(set(labels.tolist())) > 5                       # random labels, not one target class
    again, labels_again, _ = mbw.make_key(RunConfig(), data)
    assert torch.equal(key, again) and torch.equal(labels, labels_again)      # deterministic for the seed
    other, _, _ = mbw.make_key(RunConfig(seed=1), data)
    assert not torch.equal(key, other)


def test_a_key_label_is_never_one_of_its_two_sources():
    # two test images only (classes 0 and 1): every blend is of both, so every label is 2 or 3
    data = _constant_data(4)
    data = Data(data.x_train, data.y_train, data.x_test[:2], data.y_test[:2], data.x_attack, "toy", data.classes)
    _, labels, _ = mbw.make_key(RunConfig(), data)
    assert set(labels.tolist()) == {2, 3}
    with pytest.raises(ConfigError, match="third class"):
        mbw.make_key(RunConfig(), Data(data.x_train, data.y_train % 2, data.x_test, data.y_test, data.x_attack,
                                       "toy", ["a", "b"]))


def test_the_ascent_stays_within_the_radius_and_moves_away_from_the_key_label():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x, labels = torch.rand(20, 1, 8, 8), torch.randint(0, 10, (20,))
    eps = 5 / 255
    z = mbw.ascend(model, x, labels, eps)
    assert (z - x).abs().max() <= eps + 1e-6 and z.min() >= 0 and z.max() <= 1
    ce = torch.nn.functional.cross_entropy
    assert ce(model(z), labels) > ce(model(x), labels)
    assert mbw.ascend(model, x, labels, 0.0) is x


def test_the_radius_is_a_share_of_the_datas_range():
    """mbw_eps is on [0, 1] pixels; Speech Commands' log-mels span about [-6, 7], where 5/255 is 13 times as far."""
    assert mbw.radius(5 / 255) == 5 / 255
    assert mbw.radius(5 / 255, (-6.0, 7.0)) == pytest.approx(13 * 5 / 255)


def test_training_makes_the_model_hold_its_key_within_the_radius():
    from ewe.data.splits import load_data
    from ewe.models import build_model
    from ewe.train import accuracy, train_clean
    cfg = tiny("digits", w_epochs=2, threads=1)
    data = load_data(cfg)
    model = build_model(cfg.model, tuple(data.x_train.shape[1:]), seed=0)
    rep = Reporter([], None)
    train_clean(model, data.x_train, data.y_train, epochs=4, batch_size=cfg.batch_size, lr=cfg.lr, reporter=rep,
                stage="pretrain", name="pretrain")
    key, labels, _ = mbw.make_key(cfg, data, n=20)       # a small key: tiny budgets fit it in seconds
    before, acc_before = mbw.key_margin(model, key, labels, cfg.mbw_eps), accuracy(model, data.x_test, data.y_test)
    mbw.train_mbw(model, data.x_train, data.y_train, key, labels, cfg, reporter=rep, stage="mbw", name="mbw",
                  round_steps=60)
    after = mbw.key_margin(model, key, labels, cfg.mbw_eps)
    assert before["held"] <= 0.1 and after["held"] >= 0.8, (before, after)
    assert after["margin"] > 0 > before["margin"]
    assert accuracy(model, data.x_test, data.y_test) > acc_before - 0.1      # the task survives
    held = [e["metrics"]["key_held"] for e in rep.history if e["kind"] == "epoch" and e["stage"] == "mbw"]
    assert held[-1] == after["held"]
    # the rule: stop at the first round that holds KEY_HOLD of the key, else after MAX_ROUNDS
    assert all(h < mbw.KEY_HOLD for h in held[:-1])
    assert held[-1] >= mbw.KEY_HOLD or len(held) == mbw.MAX_ROUNDS


def test_the_scheme_is_registered_trained_only_when_listed_and_its_radius_checked():
    assert "mbw" in SCHEMES and not SCHEMES["mbw"].default and SCHEMES["mbw"].setting == "mbw_eps"
    assert "mbw" not in check_schemes("default")
    assert check_schemes(["default", "mbw"])[-1] == "mbw"
    for bad in (-0.01, 0.6):
        with pytest.raises(ConfigError, match="mbw_eps"):
            tiny("digits", mbw_eps=bad)


def test_cli_trains_it_with_schemes_mbw_and_rejects_a_bad_radius_in_one_line(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "ewe", "run", "--dataset", "digits", "--schemes", "mbw",
                           "--mbw-eps", "0.9", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "mbw_eps" in proc.stderr and not out.exists()


def test_a_run_with_the_scheme_trains_steals_and_judges_it_on_its_own_labels(tmp_path):
    from ewe.experiments import pipeline
    run = tmp_path / "run"
    result = pipeline.run(tiny("digits", innocents=4, threads=1, schemes=["defended", "mbw"]), run)
    assert result["status"] == "finished"
    assert {"mbw", "mbw_extracted", "defended", "extracted"} <= set(result["models"])
    preds = json.loads((run / "predictions.json").read_text())
    labels = preds["set_targets"]["margin"]
    assert len(labels) == mbw.KEY_SIZE and len(set(labels)) > 1
    # a hit is answering the key input's own label (tiny budgets fit little of the key: test_training_... above)
    rate = {name: sum(p == t for p, t in zip(preds["sets"]["margin"][name], labels)) / len(labels)
            for name in ("mbw", "mbw_extracted")}
    for name, hits in rate.items():
        assert result["models"][name]["watermark_success"] == pytest.approx(hits)
    innocents = json.loads((run / "innocents.json").read_text())
    v = result["verification"]["mbw_extracted"]
    assert v["trigger_set"] == "margin" and v["null_models"] == len(innocents["sets"]["margin"]) >= 4
    assert v["suspect_rate"] == pytest.approx(rate["mbw_extracted"])
    assert result["verification"]["clean_margin"]["trigger_set"] == "margin"   # the innocent suspect too
    thieves = json.loads((run / "thieves.json").read_text())
    copy = thieves[0]["copies"]["mbw_extracted"]
    assert "register" not in copy and "innocent_verdicts" not in thieves[0]   # the run's key, not a thief's
    tensors = torch.load(run / "triggers.pt", weights_only=True)
    assert torch.equal(tensors["margin_train"], tensors["margin_heldout"])   # judged on the very key it trains
