"""The removal-attack suite over a run folder (ewe.experiments.robustness): robustness.json, stop, labels,
victims without convolutions. Uses the tiny real run of tests/conftest.py."""
from __future__ import annotations

import json
import threading

import pytest

from ewe.experiments import robustness


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        robustness.RemovalConfig.from_dict({"attacks": ["nope"]})
    with pytest.raises(ValueError):
        robustness.RemovalConfig.from_dict({"ratios": [1.0]})
    with pytest.raises(ValueError, match="unknown"):
        robustness.RemovalConfig.from_dict({"ratio": [0.5]})


SMALL = dict(ratios=[0.3, 0.6], finetune_ratios=[0.5], finetune_epochs=1, attacker_size=96)


def test_suite_writes_robustness_json(tiny_run):
    events = []
    out = robustness.run_suite(tiny_run, SMALL, listeners=[events.append])
    assert out["status"] == "finished"
    saved = json.loads((tiny_run / "robustness.json").read_text())
    assert saved["status"] == "finished" and len(saved["records"]) == len(out["records"])
    assert saved["verify_margin"] == json.loads((tiny_run / "config.json").read_text())["verify_margin"]
    result = json.loads((tiny_run / "result.json").read_text())
    for victim in ("defended", "plain_watermark"):
        recs = [r for r in saved["records"] if r["victim"] == victim]
        kinds = [r["attack"] for r in recs]
        assert kinds.count("prune") == 2 and kinds.count("fine_prune") == 1
        assert {"none", "fine_tune_last", "fine_tune_all", "prune_finetune"} <= set(kinds)
        base = next(r for r in recs if r["attack"] == "none")
        # the untouched victim measures as the pipeline measured it
        assert base["accuracy"] == pytest.approx(result["models"][victim]["accuracy"])
        assert base["watermark_success"] == pytest.approx(result["models"][victim]["watermark_success"])
        for r in recs:
            assert {"accuracy", "watermark_success", "p_value", "queries_for_95"} <= set(r)
            if r["attack"] in ("prune", "prune_finetune"):
                assert abs(r["achieved_ratio"] - r["ratio"]) < 1e-3
            if r["attack"] in ("fine_tune_last", "fine_tune_all", "prune_finetune", "fine_prune"):
                assert r["victim_queries"] == 96                  # the attacker labelled its data
        xs, ys = robustness.curve(saved, "prune", victim)
        assert xs == [0.0, 0.3, 0.6] and len(ys) == 3
        xs, _ = robustness.curve(saved, "fine_tune_all", victim, "accuracy")
        assert xs == [0.0, 1.0]
    kinds = {e["kind"] for e in events}
    assert {"run_start", "stage_start", "stage_end", "epoch", "progress", "run_end"} <= kinds
    assert events[-1]["kind"] == "run_end" and events[-1]["status"] == "finished"
    assert "prune" in robustness.format_table(saved)


def test_suite_honours_the_stop_flag(tiny_run):
    stop = threading.Event()

    def listener(event):
        if event["kind"] == "stage_end":
            stop.set()
    out = robustness.run_suite(tiny_run, SMALL, listeners=[listener], stop=stop)
    assert out["status"] == "stopped"
    saved = json.loads((tiny_run / "robustness.json").read_text())
    assert saved["status"] == "stopped" and 1 <= len(saved["records"]) <= 2


def test_suite_with_true_labels_and_one_victim(tiny_run):
    out = robustness.run_suite(tiny_run, dict(victims=["defended"], attacks=["fine_tune_last"], labels="true",
                                           finetune_epochs=1, attacker_size=64))
    assert {r["victim"] for r in out["records"]} == {"defended"}
    ft = [r for r in out["records"] if r["attack"] == "fine_tune_last"]
    assert len(ft) == 1 and ft[0]["victim_queries"] == 0          # true labels: no queries to the victim


def test_suite_skips_fine_pruning_without_conv_layers(tiny_run, monkeypatch):
    """A victim without convolutions (e.g. the speech LSTM) gets every attack but fine-pruning."""
    from ewe.models import build_model
    from ewe.results.runs import Run
    real = Run.load_models
    monkeypatch.setattr(Run, "load_models",
                        lambda run, names: {n: build_model("mlp", (1, 28, 28)) for n in real(run, names)})
    events = []
    out = robustness.run_suite(tiny_run, dict(SMALL, victims=["defended"], attacks=["prune", "fine_prune"]),
                            listeners=[events.append])
    assert out["status"] == "finished"
    assert {r["attack"] for r in out["records"]} == {"none", "prune"}
    assert any("fine-pruning skipped" in e.get("text", "") for e in events)
