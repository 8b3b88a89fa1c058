"""Thief variants (spec d): query counting, query budget, soft labels, student architectures, disjoint
attacker data. Tiny data; seconds each."""
from __future__ import annotations

import json
import threading

import pytest
import torch

from ewe.attacks.extraction import (QueryCounter, ThiefConfig, attacker_queries, extract,
                                    label_queries)
from ewe.callbacks import Reporter
from ewe.config import ConfigError
from ewe.models import build_model


def test_query_counter_counts_every_input(trained_convnet, blobs):
    x = blobs[0]
    box = QueryCounter(trained_convnet)
    assert box.queries == 0
    hard = box.hard_labels(x[:10])
    assert box.queries == 10 and hard.shape == (10,) and hard.dtype == torch.int64
    box.soft_labels(x[:5])
    box.soft_labels(x[:7], temperature=3.0)
    assert box.queries == 22


def test_query_budget_is_respected(trained_convnet, blobs):
    x = blobs[0]
    sent = attacker_queries(x, 64, seed=3)
    assert len(sent) == 64
    assert torch.equal(sent, attacker_queries(x, 64, seed=3))          # seeded
    assert not torch.equal(sent, attacker_queries(x, 64, seed=4))
    rows = {tuple(r.flatten().tolist()) for r in x}
    assert all(tuple(r.flatten().tolist()) in rows for r in sent)     # a subset of the attacker's data
    assert attacker_queries(x, None, 0) is x and attacker_queries(x, 10_000, 0) is x
    thief = ThiefConfig(student="conv2_narrow", epochs=1, query_budget=64, batch_size=32)
    student, info = extract(trained_convnet, x, thief, reporter=Reporter(), stage="s", name="s", seed=0)
    assert info["queries"] == 64
    # without a budget every attacker sample is one query
    _, info = extract(trained_convnet, x[:96], ThiefConfig(student="conv2_narrow", epochs=1, batch_size=32),
                      reporter=Reporter(), stage="s", name="s")
    assert info["queries"] == 96


def test_soft_labels_are_probabilities(trained_convnet, blobs):
    x = blobs[0][:40]
    box = QueryCounter(trained_convnet)
    p1 = label_queries(box, x, ThiefConfig(labels="soft", temperature=1.0))
    p5 = label_queries(box, x, ThiefConfig(labels="soft", temperature=5.0))
    for p in (p1, p5):
        assert p.shape == (40, 10) and p.dtype.is_floating_point
        assert (p >= 0).all() and torch.allclose(p.sum(1), torch.ones(40), atol=1e-5)
    entropy = lambda p: -(p * p.clamp_min(1e-12).log()).sum(1).mean()
    assert entropy(p5) > entropy(p1)                                    # a higher temperature is flatter
    assert torch.equal(p1.argmax(1), label_queries(box, x, ThiefConfig(labels="hard")))
    student, info = extract(trained_convnet, x, ThiefConfig(labels="soft", temperature=2.0, epochs=1,
                                                            batch_size=8, student="mlp"),
                            reporter=Reporter(), stage="s", name="s")
    assert info["labels"] == "soft" and info["queries"] == 40
    assert all(torch.isfinite(p).all() for p in student.parameters())


@pytest.mark.parametrize("name,first_width", [("conv2", 32), ("conv2_wide", 64), ("conv2_narrow", 16),
                                              ("mlp", 512)])
def test_student_architectures_build_with_three_hidden_layers(name, first_width, blobs):
    x = blobs[0][:6]
    model = build_model(name, (1, 28, 28))
    logits, hidden = model.features(x)
    assert logits.shape == (6, 10)
    assert len(hidden) == 3 and all(h.shape[0] == 6 for h in hidden)
    assert hidden[0].shape[1] == first_width
    assert torch.equal(model(x), logits)


def test_extract_trains_the_requested_student(trained_convnet, blobs):
    from ewe.models import MLP, ConvNet
    x = blobs[0][:64]
    for name, kind in (("mlp", MLP), ("conv2_wide", ConvNet)):
        student, info = extract(trained_convnet, x, ThiefConfig(student=name, epochs=1, batch_size=32),
                                reporter=Reporter(), stage="s", name="s")
        assert isinstance(student, kind) and info["student"] == name


def test_thief_config_from_run_config():
    from ewe.config import preset
    cfg = preset("digits", "quick", extract_labels="soft", distill_temperature=3.0, student="mlp",
                 query_budget=200, extract_epochs=2)
    t = ThiefConfig.from_run_config(cfg)
    assert (t.labels, t.temperature, t.student, t.query_budget, t.epochs) == ("soft", 3.0, "mlp", 200, 2)
    assert ThiefConfig.from_run_config(preset("digits", "quick")).student == "conv2"   # victim's own


def _unique_dataset(monkeypatch, n_train=200, n_test=40):
    """Replace the dataset loader with one whose every image is distinct (row identity = sample)."""
    import ewe.data as data_mod
    import ewe.data.registry
    g = torch.Generator().manual_seed(0)
    xtr, xte = torch.rand(n_train, 1, 28, 28, generator=g), torch.rand(n_test, 1, 28, 28, generator=g)
    ytr, yte = torch.arange(n_train) % 10, torch.arange(n_test) % 10
    ds = data_mod.Dataset("digits", data_mod.Split(xtr, ytr), data_mod.Split(xte, yte),
                          [str(i) for i in range(10)], "test data")
    monkeypatch.setattr(ewe.data.registry, "load_dataset", lambda *a, **k: ds)
    return xtr, ytr


def test_disjoint_attacker_data_is_really_disjoint(monkeypatch):
    from ewe.config import preset
    from ewe.experiments.pipeline import load_data
    xtr, ytr = _unique_dataset(monkeypatch)
    key = lambda r: r.flatten().numpy().tobytes()
    labels = {key(r): int(c) for r, c in zip(xtr, ytr)}
    cfg = preset("digits", "quick", attacker_data="disjoint", train_size=None, batch_size=32, seed=5)
    d = load_data(cfg)
    train, attack = {key(r) for r in d.x_train}, {key(r) for r in d.x_attack}
    assert len(train) == len(d.x_train) == 100 and len(attack) == len(d.x_attack) == 100
    assert not train & attack                                  # no sample on both sides
    assert train | attack == set(labels)                       # together: the whole training set
    assert all(labels[key(r)] == int(c) for r, c in zip(d.x_train, d.y_train))   # labels follow images
    d2 = load_data(cfg)
    assert torch.equal(d.x_attack, d2.x_attack)                 # the split is fixed by the seed
    same = load_data(cfg.replace(attacker_data="same"))
    assert torch.equal(same.x_attack, same.x_train) and len(same.x_train) == 200


@pytest.mark.parametrize("attacker_data", ["disjoint", "same"])
def test_true_labels_of_the_attacker_set(monkeypatch, attacker_data):
    """Data.y_attack (the removal suite's 'true labels' option) holds the labels of the thief's inputs."""
    from ewe.config import preset
    from ewe.experiments.pipeline import load_data
    xtr, ytr = _unique_dataset(monkeypatch)
    labels = {r.flatten().numpy().tobytes(): int(c) for r, c in zip(xtr, ytr)}
    cfg = preset("digits", "quick", attacker_data=attacker_data, train_size=None, batch_size=32, seed=1)
    d = load_data(cfg)
    assert [labels[r.flatten().numpy().tobytes()] for r in d.x_attack] == d.y_attack.tolist()


def test_steal_with_thief_variants(tiny_run):
    """pipeline.steal with a query budget, soft labels and another student: queries and settings recorded."""
    from ewe.experiments import pipeline
    result = pipeline.steal(tiny_run, thief={"query_budget": 64, "extract_labels": "soft",
                                             "distill_temperature": 2.0, "student": "conv2_narrow"})
    assert result["status"] == "finished"
    seed = json.loads((tiny_run / "config.json").read_text())["seed"]
    assert result["thief"] == {"labels": "soft", "student": "conv2_narrow", "epochs": 1, "query_budget": 64,
                               "attacker_data": "same", "distill_temperature": 2.0, "seed": seed + 20_000}
    for name in ("extracted", "plain_extracted", "ablation_extracted"):
        assert result["models"][name]["queries"] == 64
    state = torch.load(tiny_run / "models" / "extracted.pt", weights_only=True)
    assert state["conv1.weight"].shape[0] == 16                 # the narrow student was saved
    assert "extracted" in json.loads((tiny_run / "result.json").read_text())["verification"]


def test_thief_seed_draws_another_thief_and_repeats_exactly(tiny_run):
    """The thief's seed alone changes the stolen copy (initialisation, order); the same seed gives it again."""
    from ewe.experiments import pipeline

    def stolen(seed):
        result = pipeline.steal(tiny_run, thief={"thief_seed": seed})
        assert result["thief"]["seed"] == seed
        return torch.load(tiny_run / "models" / "extracted.pt", weights_only=True)

    first, again, other = stolen(7), stolen(7), stolen(8)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["conv1.weight"], other["conv1.weight"])


def test_several_thieves_are_recorded_one_entry_each(tiny_run):
    """steal_several: one thieves.json entry per seed (seed, seed + 1), progress over the whole job, the last
    thief's copies in the run folder; stealing again with a recorded thief replaces its entry."""
    from ewe.experiments import pipeline
    from ewe.results.runs import load_run, same_thief
    thieves = json.loads((tiny_run / "thieves.json").read_text())
    assert len(thieves) == 1 and thieves[0]["thief"]["seed"] == 20_000 + json.loads(
        (tiny_run / "config.json").read_text())["seed"]                    # the run's own thief, recorded by run()
    events = []
    result = pipeline.steal_several(tiny_run, {"thief_seed": 40}, thieves=2, listeners=[events.append])
    assert result["status"] == "finished" and result["thief"]["seed"] == 41
    draws = load_run(tiny_run)["thieves"]
    assert [d["thief"]["seed"] for d in draws] == [thieves[0]["thief"]["seed"], 40, 41]
    last = draws[-1]["copies"]
    assert set(last) == {"extracted", "ablation_extracted", "plain_extracted"}
    for name, copy in last.items():           # the entry is the run folder's result for that thief
        assert copy["watermark_success"] == result["models"][name]["watermark_success"]
        assert copy["verified"] == result["verification"][name]["verified"]
    fractions = [e["fraction"] for e in events if e["kind"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and max(f for f in fractions if f < 0.5) > 0.3
    assert {e["part"] for e in events} == {0, 1}
    pipeline.steal_several(tiny_run, {"thief_seed": 41})                    # the same thief again: replaced
    assert [d["thief"]["seed"] for d in load_run(tiny_run)["thieves"]] == [thieves[0]["thief"]["seed"], 40, 41]
    own = json.loads((tiny_run / "config.json").read_text()).get("extract_labels", "hard")
    pipeline.steal(tiny_run, {"thief_seed": 40, "extract_labels": "hard" if own == "soft" else "soft"})  # another kind
    draws = load_run(tiny_run)["thieves"]
    assert len(draws) == 4 and [d["thief"]["seed"] for d in same_thief(draws, draws[-1]["thief"])] == [40]
    assert len(same_thief(draws, draws[0]["thief"])) == 3
    with pytest.raises(ConfigError, match="at least 1"):
        pipeline.steal_several(tiny_run, thieves=0)


def test_several_thieves_start_from_the_runs_own_thief(tiny_run):
    """A run made with --thief-seed keeps that thief as its own: several thieves start there."""
    from ewe.experiments import pipeline
    cfg = json.loads((tiny_run / "config.json").read_text())
    (tiny_run / "config.json").write_text(json.dumps({**cfg, "thief_seed": 70}))
    pipeline.steal_several(tiny_run, thieves=2)
    seeds = [d["thief"]["seed"] for d in json.loads((tiny_run / "thieves.json").read_text())]
    assert seeds[-2:] == [70, 71]


def test_several_thieves_stop_after_a_stop_request(tiny_run):
    from ewe.experiments import pipeline
    stop = threading.Event()
    stop.set()
    result = pipeline.steal_several(tiny_run, {"thief_seed": 3}, thieves=3, stop=stop)
    assert result["status"] == "stopped"
    before = json.loads((tiny_run / "thieves.json").read_text())
    assert len(before) == 1 and before[0]["thief"]["seed"] != 3           # only the run's own thief


def test_disjoint_thief_refused_on_victims_trained_on_all_the_data(tiny_run):
    """Its 'disjoint' half would be data the victims were trained on: refused, the run folder untouched."""
    from ewe.experiments import pipeline
    from ewe.config import ConfigError
    before = (tiny_run / "result.json").read_bytes()
    with pytest.raises(ConfigError, match="--attacker-data disjoint"):
        pipeline.steal(tiny_run, thief={"attacker_data": "disjoint"})
    assert (tiny_run / "result.json").read_bytes() == before
    # and the other way round: victims trained for a disjoint thief cannot be stolen with all the data
    cfg = json.loads((tiny_run / "config.json").read_text())
    (tiny_run / "config.json").write_text(json.dumps({**cfg, "attacker_data": "disjoint"}))
    try:
        with pytest.raises(ConfigError, match="--attacker-data same"):
            pipeline.steal(tiny_run, thief={"attacker_data": "same"})
    finally:
        (tiny_run / "config.json").write_text(json.dumps(cfg))


def test_two_kinds_of_thief_steal_seed_by_seed_and_are_recorded_apart(tiny_run):
    """A contrast (ewe.experiments.pipeline.thief_seeds): the i-th thief of each kind has the same seed, the
    kinds alternate, each steal is its own thieves.json entry; the run's own thief's seed by default."""
    from ewe.experiments import pipeline
    hard, soft = {"extract_labels": "hard"}, {"extract_labels": "soft", "distill_temperature": 5.0}
    planned = pipeline.thief_seeds(tiny_run, [hard, {**soft, "thief_seed": 60}], 2)
    assert [(t["extract_labels"], t["thief_seed"]) for t in planned] == [
        ("hard", 60), ("soft", 60), ("hard", 61), ("soft", 61)]
    own = json.loads((tiny_run / "config.json").read_text())
    assert pipeline.thief_seeds(tiny_run, [hard, soft])[0]["thief_seed"] == pipeline.run_thief_seed(
        own["seed"], own.get("thief_seed"))
    events = []
    result = pipeline.steal_each(tiny_run, planned[:2], listeners=[events.append])
    assert result["status"] == "finished" and result["thief"]["labels"] == "soft"    # the last steal's
    draws = [d for d in json.loads((tiny_run / "thieves.json").read_text()) if d["thief"]["seed"] == 60]
    assert sorted(d["thief"]["labels"] for d in draws) == ["hard", "soft"]
    fractions = [e["fraction"] for e in events if e.get("kind") == "progress"]
    assert fractions == sorted(fractions) and max(fractions) <= 1.0                   # over both steals
    with pytest.raises(ConfigError, match="at least 1"):
        pipeline.thief_seeds(tiny_run, [hard], 0)
