"""Every path runs on every available device (issue 13, item 3): a tiny pipeline end to end (victims,
triggers, SNNL with learned temperatures, diagnostics, thief, verification, removal attacks) and the speech
models, on the CPU always and on CUDA when present; an asked-for device the machine lacks is one line."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_config
from ewe.experiments import pipeline
from ewe.data import splits
from ewe.experiments import robustness
from ewe.results import runs
from ewe.results import verdicts
from ewe.callbacks import Reporter

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU here"))]


@pytest.mark.parametrize("device", DEVICES)
def test_tiny_pipeline_end_to_end(device, tiny_data_dir, tmp_path):
    from ewe.attacks import removal
    # in-distribution triggers: the patch search and trigger optimisation run on the device too
    cfg = tiny_config(tiny_data_dir, device=device, trigger="in", temperature_mode="learned")
    out = tmp_path / "run"
    events = []
    result = pipeline.run(cfg, out, listeners=[events.append])
    assert result["status"] == "finished", result.get("error")
    assert {"defended", "extracted", "clean", "independent_clean"} <= set(result["models"])
    assert {"extracted", "clean"} <= set(result["verification"])
    assert set(result["diagnostics"]) >= {"before", "defended", "extracted"}
    snnl_epochs = [e for e in events if e["kind"] == "epoch" and "temperature" in e["metrics"]]
    assert snnl_epochs and all(isinstance(t, float) for t in snnl_epochs[-1]["metrics"]["temperature"])
    diag = json.loads((out / "diagnostics.json").read_text())
    assert len(diag["defended"]["projection"]["layers"]) == 3
    # checkpoints and triggers are saved as CPU tensors whatever the device; models load back onto it
    for path in list((out / "models").glob("*.pt")) + [out / "triggers.pt"]:
        assert all(t.device.type == "cpu" for t in torch.load(path, weights_only=True).values()), path
    loaded = runs.Run.open(out).load_models(["defended"])["defended"]
    assert next(loaded.parameters()).device.type == device
    assert verdicts.verify_run(out)["verification"]["extracted"]["p_value"] is not None
    # removal attacks: fine-tuning (victim's and true labels), pruning, pruning + fine-tuning, fine-pruning
    for labels in ("victim", "true"):
        rob = robustness.run_suite(out, dict(victims=["defended"], ratios=[0.5], finetune_ratios=[0.5],
                                          finetune_epochs=1, attacker_size=64, labels=labels))
        assert rob["status"] == "finished"
        assert {r["attack"] for r in rob["records"]} == {"none", *removal.ATTACKS}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["audio_cnn", "lstm"])
def test_speech_models_train_watermark_and_get_attacked_on_the_device(device, name):
    """The speech models' own paths (LSTM, batch norm, 1-D convs) on tiny random log-mels."""
    from ewe.watermarks import triggers as trig
    from ewe.attacks.removal import fine_prune, prune
    from ewe.config import preset
    from ewe.watermarks.diagnostics import layer_geometry, projection
    from ewe.models import build_model
    from ewe.watermarks.snnl import Temperatures
    from ewe.train import predict, train_clean, train_watermark
    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 1, 16, 12, generator=g).to(device)
    y = (torch.arange(160) % 10).to(device)
    model = build_model(name, (1, 16, 12), seed=0).to(device)
    rep = Reporter()
    train_clean(model, x, y, epochs=1, batch_size=16, lr=1e-3, reporter=rep, stage="s", name=name)
    cfg = preset("speech-commands", "quick", model=name, batch_size=16, w_epochs=1, ratio=1.0)
    pool, target = x[y == 1][:8], x[y == 0]
    temps = Temperatures(cfg.temperature, "fixed", device=device)
    loc = trig.locate_patch(model, pool, target, 8, temps, cfg.metric)
    pool = trig.optimise(model, trig.apply_patch(pool, loc, 1.0), target, 0, half=8, maxiter=1, w_lr=0.01,
                         threshold=0.1, temps=temps, metric=cfg.metric, value_range=(-3.0, 3.0))
    _, learned = train_watermark(model, x, y, pool, target, 0, cfg=cfg, reporter=rep, stage="w", name=name,
                                 use_snnl=True)
    assert learned.T.device.type == device and all(t > 0 for t in learned.tau)
    assert predict(model, x).device.type == device
    assert len(layer_geometry(model, pool, target)) == 3
    assert len(projection(model, pool, target)["layers"]) == 3
    assert prune(model, 0.5)[1]["achieved_ratio"] > 0.4
    if name == "audio_cnn":   # the LSTM has no convolution to fine-prune
        fine_prune(model, x, 0.5, finetune=dict(x=x, y=y, epochs=1, batch_size=16))


@pytest.mark.parametrize("device", DEVICES)
def test_speech_features_and_audio_from_device_tensors(device):
    from ewe.data.speech import CLIP_SAMPLES, features_to_audio, logmel
    wave = (0.1 * torch.randn(1, CLIP_SAMPLES, generator=torch.Generator().manual_seed(0))).to(device)
    feats = logmel(wave)
    assert feats.device.type == "cpu" and torch.isfinite(feats).all()
    audio = features_to_audio(feats.to(device), n_iter=2)
    assert audio.shape[-1] == CLIP_SAMPLES and torch.isfinite(audio).all()


def test_check_device():
    assert splits.check_device("cpu") == "cpu"
    for bad in ("tpu", "cuda:x", "gpu"):
        with pytest.raises(pipeline.ConfigError, match="device"):
            splits.check_device(bad)
    n = torch.cuda.device_count() if HAS_CUDA else 0
    with pytest.raises(pipeline.ConfigError, match="CUDA"):
        splits.check_device(f"cuda:{n}")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")
def test_cli_cuda_without_a_gpu_is_one_line_before_any_data(tiny_data_dir, tmp_path, capsys, monkeypatch):
    from ewe import cli

    def no_data(*args, **kwargs):
        raise AssertionError("data were loaded before the device was checked")
    import ewe.data.splits
    monkeypatch.setattr(pipeline, "load_data", no_data)
    monkeypatch.setattr(ewe.data.splits, "load_data", no_data)
    out = tmp_path / "out"
    code = cli.main(["run", "--dataset", "mnist", "--preset", "quick", "--data-dir", str(tiny_data_dir),
                     "--device", "cuda", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "CUDA" in err and "--device cpu" in err
    assert not out.exists()
