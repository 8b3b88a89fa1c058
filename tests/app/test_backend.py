"""The app's modules over the library (ui/presets, workspaces, uploads, work, warmup, naming): preset defaults,
config errors, run folders, jobs, the warm-up, labels."""
from __future__ import annotations

import pytest

from ewe.config import DATASETS, PRESETS, ConfigError, preset, tiny
from ui import presets, uploads, warmup, work, workspaces


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("name", PRESETS + ("tiny",))
def test_preset_defaults_are_the_validated_preset(dataset, name):
    """The widgets' values, read from the preset tables without building a config (no torch on the first page),
    are the validated preset's (ewe.config.preset; "tiny": ewe.config.tiny)."""
    cfg = tiny(dataset) if name == "tiny" else preset(dataset, name)
    assert presets.preset_defaults(dataset, name) == pytest.approx({
        "tau": cfg.temperature[0], "kappa": cfg.kappa[0], "ratio": cfg.ratio, "trigger": cfg.trigger,
        "source": cfg.source, "target": cfg.target, "epochs": cfg.epochs, "w_epochs": cfg.w_epochs,
        "attacker_data": cfg.attacker_data, "clean_schedule": cfg.clean_schedule})


def test_make_config_says_what_to_change():
    with pytest.raises(ConfigError, match="ratio"):
        presets.make_config("digits", "quick", ratio=0.0)
    with pytest.raises(ConfigError, match="temperature must be positive"):
        presets.make_config("digits", "quick", temperature=[-1.0] * 3)


def test_unzip_refuses_what_is_not_a_run_folder(tmp_path):
    with pytest.raises(uploads.UploadError):
        uploads.unzip_run(b"plain text", tmp_path / "x")
    assert list(tmp_path.iterdir()) == []        # the folder claimed for it is gone again


def test_run_folders_are_never_reused(tmp_path, monkeypatch):
    """Two runs (or two uploads) started in the same second with the same settings get two folders."""
    monkeypatch.setenv("EWE_APP_RUNS_DIR", str(tmp_path))
    monkeypatch.setattr(workspaces, "stamp_now", lambda: "20260101-000000.000")   # the same millisecond
    cfg = presets.make_config("digits", "quick")
    first, second = workspaces.new_run_dir("me", cfg), workspaces.new_run_dir("me", cfg)
    assert first != second and first.is_dir() and second.is_dir()
    assert second.name == first.name + "-2"
    (tmp_path / "me" / "taken-3").mkdir()      # an older folder that happens to own the next name
    from ewe.results.runs import claim_new_dir
    claimed = [claim_new_dir(tmp_path / "me" / "taken") for _ in range(2)]
    assert [p.name for p in claimed] == ["taken", "taken-2"]


def test_an_upload_goes_to_a_new_folder_when_its_name_is_taken(tmp_path):
    import io
    import json
    import zipfile

    from ewe.results.runs import load_run
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("config.json", json.dumps({"dataset": "digits"}))
        zf.writestr("result.json", json.dumps({"models": {}}))
    data = buf.getvalue()
    dest = tmp_path / "uploaded"
    first = uploads.unzip_run(data, dest)
    (first / "result.json").write_text((first / "result.json").read_text())   # touched: must survive
    before = {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()}
    second = uploads.unzip_run(data, dest)
    assert first == dest and second == tmp_path / "uploaded-2"
    assert {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()} == before
    assert load_run(second)["result"] == {"models": {}}



def test_sweep_points_report_as_parts_of_one_job(app_env, tmp_path):
    """The sweep passes each grid point's events through ewe.callbacks.part_of (tested there): they carry
    the point's index, and the job ends at 100 % with every point's summary. It is the grid runner's
    (ewe.experiments.sweep): its folder layout and summary, and the workspace lists its points."""
    from ewe.experiments.sweep import load_sweep
    spec = work.sweep_spec("digits", "tiny", {"seed": 3}, [1.0, 2.0], [1.0])
    job = app_env["registry"].submit("me", "sweep", work.sweep_job(spec, tmp_path / "grid"))
    assert job.status == "finished" and len(job.data["points"]) == 2
    assert {e.get("part") for e in job.events if e.get("kind") == "epoch"} == {0, 1}
    assert job.progress["fraction"] == 1.0
    assert [p["tau"] for p in job.data["points"]] == [1.0, 2.0]
    summary = load_sweep(tmp_path / "grid")
    assert summary["status"] == "finished" and [p["key"] for p in summary["points"]] == \
        ["temperature=1,ratio=1", "temperature=2,ratio=1"]
    assert all(p["finished_seeds"] == [3] for p in summary["points"])
    assert (tmp_path / "grid" / "points" / "temperature=2,ratio=1" / "s3" / "result.json").exists()


def test_a_failed_sweep_point_is_reported_and_the_grid_goes_on(app_env, tmp_path, monkeypatch):
    spec = work.sweep_spec("digits", "tiny", {"seed": 0}, [1.0, 2.0], [1.0])
    fake, real = app_env["pipeline"], app_env["pipeline"].run

    def run(cfg, out_dir, listeners=(), stop=None):
        if cfg.temperature[0] == 1.0:
            raise RuntimeError("out of memory")
        return real(cfg, out_dir, listeners, stop)
    monkeypatch.setattr(fake, "run", run)
    job = app_env["registry"].submit("me", "sweep", work.sweep_job(spec, tmp_path / "grid"))
    assert [p["tau"] for p in job.data["points"]] == [2.0]
    assert job.data["failures"] == {"temperature=1,ratio=1/s0": "RuntimeError: out of memory"}
    assert job.result["status"] == "incomplete"


def test_old_and_new_sweep_folders_are_listed(app_env):
    """A workspace lists the points of the grid runner's sweeps and of the sweeps the app wrote before
    (pointNN-tau..-r.. folders), each as a run."""
    from ui import workspaces
    base = workspaces.workspace_dir("ws")
    for folder in (base / "old-sweep1" / "point01-tau1-r1", base / "new-sweep2" / "points" / "ratio=1" / "s0"):
        folder.mkdir(parents=True)
        (folder / "result.json").write_text("{}")
    (base / "new-sweep2" / "sweep_spec.json").write_text("{}")
    listed = {r["key"]: r["origin"] for r in workspaces.workspace_runs("ws")}
    assert listed == {"old-sweep1/point01-tau1-r1": "trade-off sweep", "new-sweep2/points/ratio=1/s0": "trade-off sweep"}


def test_first_start_trains_the_demo_innocents_in_the_background_once(tmp_path, monkeypatch):
    """The warm-up trains the digits demo's innocent population when it is missing, says how far it is
    while it trains, and does nothing when the population is complete or the switch is off."""
    import ewe.innocents
    from ewe.config import tiny
    monkeypatch.setenv("EWE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EWE_DATA_DIR", raising=False)
    monkeypatch.setattr(presets, "make_config", lambda dataset, name: tiny(dataset, innocents=4))
    monkeypatch.setattr(warmup, "_warm_innocents", {})
    seen, real = [], ewe.innocents.build_population

    def build(cfg, **kw):
        seen.append(warmup.innocents_warm_status())
        return real(cfg, **kw)
    monkeypatch.setattr(ewe.innocents, "build_population", build)
    monkeypatch.setenv("EWE_APP_WARM_INNOCENTS", "0")
    warmup.warm_innocents()
    assert seen == []                                            # switched off
    monkeypatch.setenv("EWE_APP_WARM_INNOCENTS", "1")
    warmup.warm_innocents()
    assert seen == [{"done": 0, "total": 4}] and warmup.innocents_warm_status() is None
    folder = ewe.innocents.population_dir(tiny("digits", innocents=4))
    assert len(ewe.innocents.load_population(folder)[1]) == 4
    warmup.warm_innocents()
    assert len(seen) == 1                                        # complete: not trained again


def test_a_run_is_labelled_in_the_same_words_everywhere():
    from ewe.config import preset, tiny
    from ui.naming import run_label
    digits = run_label(tiny("digits", target=6).to_dict())
    assert "ood photos→6" in digits and "seed 0" in digits
    assert "ood fashion 1→7" in run_label(preset("mnist", "quick").to_dict())   # class 1 of the other dataset
    patch = run_label(preset("mnist", "quick", trigger="in", source=3, target=7).to_dict())
    assert "in 3→7" in patch
    chosen = run_label(tiny("digits", schemes=["defended", "mea_defender"]).to_dict())
    assert chosen.endswith(" · schemes: EWE (defended), MEA-Defender")


def test_the_contrasting_thief_gets_the_other_kind_of_answer_and_nothing_else_changes():
    from ui.naming import thief_words
    from ui.work import contrast_thief
    distiller = {"extract_labels": "soft", "distill_temperature": 5.0, "extract_epochs": 7, "thief_seed": 3}
    paper = contrast_thief(distiller)
    assert paper == {"extract_labels": "hard", "extract_epochs": 7, "thief_seed": 3}
    assert contrast_thief(paper) == {**paper, "extract_labels": "soft", "distill_temperature": 5.0}
    assert thief_words(paper) == "the top class only" and thief_words(distiller) == "probabilities (T = 5)"
