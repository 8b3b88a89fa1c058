"""The innocent population: built once per task, resumable, queried on a run's triggers, used by verdicts."""
import json

import pytest
import torch

from conftest import tiny_config
from ewe.config import ConfigError
from ewe.innocents import (MANIFEST, attach_population, build_population, halves, kind, population_dir,
                           population_key, query_population, recipes)


def test_recipes_vary_seed_architecture_data_and_budget(tiny_data_dir):
    cfg = tiny_config(tiny_data_dir)
    rs = recipes(cfg, 24)
    assert len({r.name for r in rs}) == 24 and len({r.seed for r in rs}) == 24
    assert {"conv2_narrow", "conv2_wide", "mlp", "victim"} <= {r.model for r in rs}
    assert {"all", "half-a", "half-b"} == {r.data for r in rs} and {0.5, 1.0, 2.0} == {r.budget for r in rs}
    # a third are re-runs of the owner's own recipe: the kind a stolen copy is, with the heaviest tail
    assert sum((r.model, r.data, r.budget) == ("victim", "all", 1.0) for r in rs) == 8
    # the calibration / held-out split (bench/verdicts.py) puts every kind with two members in both halves
    info = {r.name: {"model": r.model, "data": r.data, "budget": r.budget} for r in rs}
    a, b = halves(info)
    assert sorted(a + b) == sorted(info) and abs(len(a) - len(b)) <= 1
    kinds = {kind(v) for v in info.values()}
    assert {kind(info[n]) for n in a} == kinds == {kind(info[n]) for n in b}


def test_population_key_ignores_watermark_and_thief(tiny_data_dir):
    cfg = tiny_config(tiny_data_dir)
    assert population_key(cfg) == population_key(cfg.replace(kappa=3.0, temperature=0.5, seed=4, thief_seed=9))
    assert population_key(cfg) != population_key(cfg.replace(epochs=2))
    assert population_key(cfg.replace(w_epochs=1)) == population_key(cfg.replace(w_epochs=1.0))   # one spelling
    assert population_key(cfg) != population_key(cfg.replace(attacker_data="disjoint"))


def test_build_is_cached_and_resumable(tiny_data_dir, tmp_path):
    cfg = tiny_config(tiny_data_dir)
    folder = build_population(cfg, tmp_path / "pop", n=4)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert folder == population_dir(cfg, tmp_path / "pop") and len(manifest["models"]) == 4
    assert manifest["built_from"]["dataset"] == "mnist"
    assert all(0 <= m["accuracy"] <= 1 for m in manifest["models"].values())
    # the task's clean reference and independent clean model, trained with it and kept apart from the innocents
    assert set(manifest["references"]) == {"clean", "independent_clean"}
    assert {m["seed"] for m in manifest["references"].values()}.isdisjoint(m["seed"] for m in manifest["models"].values())
    stamps = {p.name: p.stat().st_mtime_ns for p in (folder / "models").glob("*.pt")}
    events = []
    build_population(cfg, tmp_path / "pop", n=6, listeners=[events.append])   # only the 2 new ones train
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "models").glob("*.pt") if p.name in stamps} == stamps
    assert len(list((folder / "models").glob("*.pt"))) == 6 + 2
    assert {e["stage"] for e in events if e["kind"] == "stage_start"} == {"innocent04", "innocent05"}
    progress = [e["fraction"] for e in events if e["kind"] == "progress"]
    assert progress and progress[-1] == pytest.approx(1.0) and progress == sorted(progress)


def test_query_population_and_run_verdicts(tiny_data_dir, tmp_path):
    from ewe.experiments import pipeline
    from ewe.results import verdicts
    cfg = tiny_config(tiny_data_dir)
    out = tmp_path / "run"
    result = pipeline.run(cfg, out)
    assert result["status"] == "finished"
    inn = json.loads((out / "innocents.json").read_text())
    assert len(inn["sets"]["optimised"]) == 4 and len(inn["sets"]["optimised"]["innocent00"]) == cfg.n_heldout
    # the same population answers the same triggers the same way when queried again
    t = torch.load(out / "triggers.pt", weights_only=True)
    again = query_population(inn["population"], {"optimised": t["heldout"]})
    assert again["sets"]["optimised"] == inn["sets"]["optimised"]
    # thieves.json keeps each copy's answers, so a later test re-judges every thief
    draws = json.loads((out / "thieves.json").read_text())
    assert len(draws[0]["copies"]["extracted"]["predictions"]) == cfg.n_heldout
    welch = verdicts.verify_run(out, test="welch")
    assert welch["verification"]["extracted"]["test"] == "welch"
    draws = json.loads((out / "thieves.json").read_text())
    assert draws[0]["copies"]["extracted"]["test"] == "welch"
    # without innocents.json a later verify attaches the cached population of the task
    (out / "innocents.json").unlink()
    again = verdicts.verify_run(out, test="binomial")
    assert (out / "innocents.json").exists() and again["verification"]["extracted"]["null_models"] == 4


def test_nulls_cli_builds_and_attaches(tiny_data_dir, tmp_path, capsys):
    from ewe.experiments import pipeline
    from ewe.results import verdicts
    from ewe.cli import main
    out = tmp_path / "run"
    pipeline.run(tiny_config(tiny_data_dir, innocents=0), out)
    assert not (out / "innocents.json").exists()
    weak = verdicts.verify_run(out)["verification"]["extracted"]
    assert weak["null_models"] == 1 and "no innocent population" in weak["null_source"]   # and it says so
    assert main(["nulls", str(out), "--innocents", "4", "--threads", "1", "--device", "cpu"]) == 0
    assert "4 innocent models in" in capsys.readouterr().out
    assert json.loads((out / "result.json").read_text())["verification"]["extracted"]["null_models"] == 4
    assert main(["nulls", str(out), "--innocents", "2"]) == 2
    assert "at least 4" in capsys.readouterr().err


def test_population_size_is_validated(tiny_data_dir):
    with pytest.raises(ConfigError, match="innocents"):
        tiny_config(tiny_data_dir, innocents=2)


def test_two_builders_of_one_population_train_each_model_once(tiny_data_dir, tmp_path):
    import threading
    cfg = tiny_config(tiny_data_dir)
    started = []
    def build():
        build_population(cfg, tmp_path / "pop", n=4,
                         listeners=[lambda e: e["kind"] == "stage_start" and started.append(e["stage"])])
    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(started) == ["clean", "independent_clean", "innocent00", "innocent01", "innocent02",
                               "innocent03"]   # none twice


def test_population_precision_is_recorded_and_can_be_forced(tiny_data_dir, tmp_path, monkeypatch):
    """bf16 autocast (where the hardware has it) or fp32, as EWE_INNOCENTS_PRECISION says; each manifest entry
    records which, and a bad value is one clear error before anything trains."""
    from ewe.innocents import precision
    cfg = tiny_config(tiny_data_dir)
    monkeypatch.setenv("EWE_INNOCENTS_PRECISION", "bf16")
    manifest = json.loads((build_population(cfg, tmp_path / "b", n=4) / MANIFEST).read_text())
    assert {m["precision"] for m in manifest["models"].values()} == {"bf16"}
    monkeypatch.setenv("EWE_INNOCENTS_PRECISION", "fp32")
    manifest = json.loads((build_population(cfg, tmp_path / "f", n=4) / MANIFEST).read_text())
    assert {m["precision"] for m in manifest["models"].values()} == {"fp32"}
    monkeypatch.setenv("EWE_INNOCENTS_PRECISION", "fp8")
    with pytest.raises(ValueError, match="EWE_INNOCENTS_PRECISION is one of fp32, bf16"):
        precision()
    monkeypatch.delenv("EWE_INNOCENTS_PRECISION")
    assert precision() in ("fp32", "bf16")


def test_the_default_demos_population_ships():
    """A fresh clone's default demo (digits, quick) needs no innocent training: its population ships in the
    package (12 MB; the other presets' would add 24 MB to every clone, so they are built on first use), complete,
    with every file matching its sha256 and built from this machine's digits data. Fails when a change to the
    recipes, the preset or the data moves the key: rebuild with `make populations`."""
    from ewe.config import preset
    from ewe.innocents import (REFERENCES, SHIPPED_ROOT, ready_population, shipped_problem, trained_models,
                               trained_references)
    for name in ("quick",):
        cfg = preset("digits", name)
        folder = SHIPPED_ROOT / population_key(cfg)
        assert set(trained_models(folder)) == {r.name for r in recipes(cfg, cfg.innocents)}, name
        assert set(trained_references(folder)) == set(REFERENCES), name
        assert shipped_problem(folder, cfg) is None
        assert ready_population(cfg) == folder   # the test session's cache is empty


def test_shipped_population_is_used_checked_and_rebuilt_by_one_command(tiny_data_dir, tmp_path, monkeypatch,
                                                                        capsys):
    import ewe.innocents as innocents
    from ewe.cli import main
    from ewe.experiments import pipeline
    cfg = tiny_config(tiny_data_dir)
    run = tmp_path / "run"
    pipeline.run(cfg.replace(innocents=0), run)
    # the rebuild command, on tiny data: `nulls RUN --ship FOLDER` (make populations runs it per digits preset)
    assert main(["nulls", str(run), "--innocents", "4", "--threads", "1", "--ship", str(tmp_path / "ship")]) == 0
    shipped = tmp_path / "ship" / population_key(cfg)
    manifest = json.loads((shipped / MANIFEST).read_text())
    assert set(manifest["sha256"]) == {"innocent00", "innocent01", "innocent02", "innocent03", "clean",
                                       "independent_clean"}
    state = torch.load(shipped / "models" / "innocent00.pt", weights_only=True)
    assert {v.dtype for k, v in state.items() if k.endswith(".weight")} == {torch.int8}   # a quarter of the bytes
    # an empty cache and a shipped population: a run trains no innocent and its verdict uses the shipped one
    monkeypatch.setattr(innocents, "SHIPPED_ROOT", tmp_path / "ship")
    monkeypatch.setenv("EWE_CACHE_DIR", str(tmp_path / "empty-cache"))
    assert innocents.missing_recipes(cfg) == []
    events = []
    result = pipeline.run(cfg, tmp_path / "run2", listeners=[events.append])
    assert not [e for e in events if e["kind"] == "stage_start" and e["stage"].startswith("innocent")]
    # nor its clean reference and independent clean model: the shipped population's, loaded
    assert not [e for e in events if e["kind"] == "stage_start" and e["stage"] in innocents.REFERENCES]
    assert result["references"]["population"] == shipped.name
    assert json.loads((tmp_path / "run2" / "innocents.json").read_text())["population"] == str(shipped)
    assert result["verification"]["extracted"]["null_models"] == 4
    assert not (tmp_path / "empty-cache" / "innocents").exists()
    # a shipped file that fails its hash is refused (the run would build its own, in the cache)
    path = shipped / "models" / "innocent02.pt"
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    assert "innocent02.pt fails its sha256 check" in innocents.shipped_problem(shipped, cfg)
    assert innocents.ready_population(cfg) is None and len(innocents.missing_recipes(cfg)) == 4 + 2
    # and so is one built from other data than this machine's
    path.write_bytes(original)
    assert innocents.ready_population(cfg) == shipped
    (shipped / MANIFEST).write_text(json.dumps({**manifest, "data_sha256": "0" * 64}))
    assert "other training data" in innocents.shipped_problem(shipped, cfg)
    assert innocents.ready_population(cfg) is None


def test_a_run_waiting_for_another_builder_follows_its_progress(tmp_path):
    """Two runs of one task: the second waits for the first's population build; its bar moves with each member
    the other writes (not frozen), it says what it waits for, and a Cancel stops the wait."""
    import threading
    from ewe.callbacks import Reporter, Stopped
    from ewe.innocents import _exclusive, _Follower
    folder = tmp_path / "pop"
    (folder / "models").mkdir(parents=True)
    names = ["innocent00", "innocent01"]
    events = []
    rep = Reporter([events.append])
    rep.set_plan({"clean": 1.0, **{n: 1.0 for n in names}})
    release = threading.Event()

    def other_builder():
        with _exclusive(folder):
            for i, name in enumerate(names):
                models = {n: {} for n in names[: i + 1]}
                (folder / MANIFEST).write_text(json.dumps({"models": models}))
                release.wait(0.3)
    t = threading.Thread(target=other_builder)
    t.start()
    release.wait(0.1)
    with _exclusive(folder, _Follower(folder, names, rep), poll=0.05):
        pass
    t.join()
    assert rep.done == {"clean": 0.0, "innocent00": 1.0, "innocent01": 1.0}
    assert any("Waiting for the innocent population" in e.get("text", "") for e in events)
    # a Cancel while waiting ends the wait at once
    stop = threading.Event()
    stop.set()
    held = threading.Event()

    def holder():
        with _exclusive(folder):
            held.set()
            release.wait(2)
    h = threading.Thread(target=holder)
    h.start()
    held.wait(2)
    with pytest.raises(Stopped):
        with _exclusive(folder, _Follower(folder, names, Reporter([], stop)), poll=0.05):
            pass
    release.set()
    h.join()


def test_a_build_loads_the_dataset_once_and_draws_each_members_subset_from_it(tiny_data_dir, tmp_path, monkeypatch):
    """With a training subset (train_size) every member draws its own seeded subset: from one load of the dataset
    per build, not one per member (each load is a fresh float copy of the whole set: 0.35 s and 190 MB for MNIST)."""
    from ewe.data import splits
    loads = []
    real = splits.load_source
    monkeypatch.setattr(splits, "load_source", lambda cfg, raw=False: loads.append(raw) or real(cfg, raw))
    cfg = tiny_config(tiny_data_dir, train_size=100)
    manifest = json.loads((build_population(cfg, tmp_path / "pop", n=4) / MANIFEST).read_text())
    assert loads == [True]    # once, as the uint8 pixels: only each member's draw becomes floats
    sizes = {n: m["n_train"] for n, m in {**manifest["models"], **manifest["references"]}.items()}
    assert sizes == {"clean": 100, "independent_clean": 100, "innocent00": 100, "innocent01": 100,
                     "innocent02": 100, "innocent03": 100}
