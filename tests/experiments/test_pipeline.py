"""The whole pipeline on tiny generated data: run folder contract, recomputable verification, stop keeps
what finished, same seed gives the same numbers."""
import json
import threading
import time

import pytest
import torch

from conftest import tiny_config
from ewe.experiments import pipeline
from ewe.data import splits
from ewe.results import runs
from ewe.verify import run_settings, verify_predictions
from ewe.models import load_state, build_model

MODELS = {"clean", "defended", "extracted", "plain_watermark", "plain_extracted", "ablation_no_snnl",
          "ablation_extracted", "independent_clean"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("run")
    from idx_files import write_idx_dataset
    import ewe.data.idx
    write_idx_dataset(tmp / "data", "mnist", n_train=240, n_test=80, seed=0)
    write_idx_dataset(tmp / "data", "fashion-mnist", n_train=240, n_test=80, seed=1)
    mp.setenv("EWE_CACHE_DIR", str(tmp / "cache"))
    mp.setattr(ewe.data.idx, "_download", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    events = []

    def hold_at_start(event):
        # the ETA is withheld for a run's first 2 s (too little measured, ewe.callbacks.Reporter.eta): hold this
        # tiny run there, so that whether its events carry an ETA does not depend on the machine's speed
        if event["kind"] == "run_start":
            time.sleep(2.0)
    result = pipeline.run(tiny_config(tmp / "data"), tmp / "out", [events.append, hold_at_start])
    yield tmp / "out", result, events
    mp.undo()


def test_result_contract(finished_run):
    out, result, _ = finished_run
    on_disk = json.loads((out / "result.json").read_text())
    assert on_disk == result and result["status"] == "finished"
    assert result["dataset"] == "mnist" and result["preset"] == "quick" and result["seed"] == 0
    assert MODELS <= set(result["models"])
    for m in result["models"].values():
        assert 0 <= m["accuracy"] <= 1 and 0 <= m["watermark_success"] <= 1
    for key in ("extracted", "plain_extracted", "clean"):
        v = result["verification"][key]
        assert 0 <= v["p_value"] <= 1
        assert v["queries_for_95"] is None or isinstance(v["queries_for_95"], int)
    assert result["seconds"]["total"] > 0
    assert result["n_attack"] == result["n_train"]          # the thief queries the defender's data
    innocent = result["verification"]["clean_classic"]          # the innocent model on the classic triggers
    assert innocent["trigger_set"] == "classic" and innocent["test"] == "binomial"
    # every verdict rests on the innocent population the run queried (innocents.json), and says so
    inn = json.loads((out / "innocents.json").read_text())
    assert set(inn["sets"]) == {"optimised", "classic"} and len(inn["sets"]["optimised"]) == 4
    assert all(v["null_models"] == 4 and v["null_source"] == inn["source"] for v in result["verification"].values())
    assert all(v["proven"] == (v["p_value"] < 0.05) for v in result["verification"].values())
    for name in ("config.json", "history.json", "predictions.json", "triggers.png", "triggers.pt"):
        assert (out / name).exists(), name


def test_predictions_recompute_verification(finished_run):
    out, result, _ = finished_run
    preds = json.loads((out / "predictions.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    innocents = json.loads((out / "innocents.json").read_text())
    again = verify_predictions(preds, innocents, **run_settings(cfg))
    assert again == result["verification"]
    assert len(preds["sets"]["optimised"]["extracted"]) == cfg["n_heldout"]


def test_checkpoints_are_plain_state_dicts(finished_run):
    out, result, _ = finished_run
    for name in MODELS:
        model = load_state(build_model("conv2", result["input_shape"]), out / "models" / f"{name}.pt")
        assert isinstance(model, torch.nn.Module)


def test_events_cover_every_stage_with_eta(finished_run):
    _, _, events = finished_run
    kinds = {e["kind"] for e in events}
    assert {"run_start", "stage_start", "epoch", "stage_end", "progress", "run_end"} <= kinds
    stages = {e["stage"] for e in events if e["kind"] == "stage_end"}
    assert {"pretrain", "triggers", "defended", "clean", "steal_defended"} <= stages
    wm = [e for e in events if e["kind"] == "epoch" and e["stage"] == "defended"]
    assert wm and len(wm[-1]["metrics"]["snnl"]) == 3 and len(wm[-1]["metrics"]["temperature"]) == 3
    assert events[-1]["kind"] == "run_end" and events[-1]["status"] == "finished"
    assert any(e["eta"] is not None for e in events if e["kind"] == "progress")


def test_stop_keeps_what_finished(tiny_data_dir, tmp_path):
    stop = threading.Event()

    def stop_after_defended(e):
        if e["kind"] == "stage_end" and e["stage"] == "defended":
            stop.set()
    result = pipeline.run(tiny_config(tiny_data_dir), tmp_path / "out", [stop_after_defended], stop)
    assert result["status"] == "stopped"
    assert "defended" in result["models"] and "independent_clean" not in result["models"]
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["status"] == "stopped" and "defended" in saved["models"]
    assert (tmp_path / "out" / "models" / "defended.pt").exists()


def test_same_seed_same_numbers(tiny_data_dir, tmp_path):
    cfg = tiny_config(tiny_data_dir, train_baselines=False)
    a = pipeline.train_victims(cfg, tmp_path / "a")
    b = pipeline.train_victims(cfg, tmp_path / "b")
    assert a["models"] == b["models"]
    pa = json.loads((tmp_path / "a" / "predictions.json").read_text())
    pb = json.loads((tmp_path / "b" / "predictions.json").read_text())
    assert pa == pb


def test_runs_of_one_task_share_its_clean_reference_models(finished_run):
    """The clean reference and the independent clean model are the task's (trained once with its innocent
    population): a second seed trains neither, gets the same weights, and the innocent suspect is judged
    against the 4 innocents, none of which is itself."""
    out, result, _ = finished_run
    assert result["references"]["population"] == json.loads((out / "innocents.json").read_text())["key"]
    events = []
    other = pipeline.train_victims(tiny_config(out.parent / "data", seed=1), out.parent / "seed1",
                                   listeners=[events.append])
    assert other["status"] == "trained"
    assert not [e for e in events if e["kind"] == "stage_start" and e["stage"] in ("clean", "independent_clean")]
    for name in ("clean", "independent_clean"):
        a, b = (torch.load(d / "models" / f"{name}.pt", weights_only=True) for d in (out, out.parent / "seed1"))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert "independent_clean" not in json.loads((out / "innocents.json").read_text())["models"]
    assert result["verification"]["clean"]["null_models"] == 4


def test_diagnostics_written(finished_run):
    out, result, _ = finished_run
    geo = result["diagnostics"]["defended"]["geometry"]
    assert len(geo) == 3 and {"within_triggers", "within_target", "between", "gap"} <= set(geo[0])
    diag = json.loads((out / "diagnostics.json").read_text())
    proj = diag["defended"]["projection"]
    assert len(proj["layers"]) == 3 and len(proj["layers"][0]) == len(proj["group"])
    assert (out / "projection_defended.png").exists()


def test_stolen_copies_get_the_same_geometry_as_a_direct_computation(finished_run):
    out, result, _ = finished_run
    from ewe.watermarks.diagnostics import layer_geometry
    student = runs.Run.open(out).load_models(["extracted"])["extracted"]
    triggers = torch.load(out / "triggers.pt", weights_only=True)["heldout"]
    from ewe.config import saved_config
    cfg = saved_config(json.loads((out / "config.json").read_text()))
    data = splits.load_data(cfg)
    direct = layer_geometry(student, triggers, data.x_test[data.y_test == cfg.target])
    stored = result["diagnostics"]["extracted"]
    assert stored["trigger_set"] == "optimised" and len(stored["geometry"]) == len(direct) == 3
    for got, want in zip(stored["geometry"], direct):
        assert got == pytest.approx(want)


def test_fresh_thief_queries_data_the_owner_never_saw(tiny_data_dir):
    from ewe.config import ConfigError
    from ewe.experiments.pipeline import load_data
    cfg = tiny_config(tiny_data_dir, train_size=100, attacker_data="fresh")
    data = load_data(cfg)
    same = load_data(cfg.replace(attacker_data="same"))
    assert torch.equal(data.x_train, same.x_train)              # the owner trains on the same data
    assert len(data.x_attack) == 100
    flat = lambda x: {tuple(r.flatten().tolist()) for r in x}   # noqa: E731
    assert not flat(data.x_attack) & flat(data.x_train)          # and the thief never queries it
    assert torch.equal(data.y_attack, load_data(cfg).y_attack)   # seeded
    with pytest.raises(ConfigError, match="fresh"):
        load_data(tiny_config(tiny_data_dir, train_size=200, attacker_data="fresh"))


def test_fresh_thief_steals_victims_trained_for_the_same_thief(tiny_data_dir, tmp_path):
    from ewe.config import ConfigError
    out = tmp_path / "run"
    pipeline.train_victims(tiny_config(tiny_data_dir, train_size=120, batch_size=16, n_triggers=16), out)
    res = pipeline.steal(out, {"attacker_data": "fresh", "extract_epochs": 1})
    assert res["thief"]["attacker_data"] == "fresh" and res["status"] == "finished"
    with pytest.raises(ConfigError, match="disjoint"):
        pipeline.steal(out, {"attacker_data": "disjoint"})
