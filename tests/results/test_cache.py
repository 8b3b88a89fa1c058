"""The run cache (ewe.results.cache): keys, a reused run equal to a fresh one, one complete entry when two
writers race, the LRU bound, and cached files never changed by a later steal in a workspace."""
from __future__ import annotations

import json
import threading
from pathlib import Path

from ewe.config import tiny
from ewe.results import cache as rc

TINY = dict(train_size=256, test_size=128, n_triggers=64, n_heldout=32, threads=1, innocents=4)


def _cfg(**overrides):
    return tiny("digits", **{**TINY, **overrides})


def test_every_knob_changes_the_key_and_one_value_has_one_spelling():
    base = rc.run_key(_cfg())
    assert rc.run_key(_cfg()) == base                                     # the same request, the same key
    for change in ({"seed": 1}, {"kappa": [0.5] * 3}, {"temperature": [50.0] * 3}, {"ratio": 2.0},
                   {"schemes": ["defended", "mea_defender"]}, {"epochs": 2}, {"attacker_data": "disjoint"},
                   {"trigger": "in", "source": 3}, {"threads": 2}, {"innocents": 0}, {"distill_temperature": 3.0}):
        assert rc.run_key(_cfg(**change)) != base, change
    assert rc.run_key(_cfg(w_epochs=1)) == rc.run_key(_cfg(w_epochs=1.0))   # a preset's 1 and a form's 1.0
    assert rc.run_key(_cfg(threads=None), threads=1) == base                 # the threads it will train with
    assert rc.run_key(_cfg(threads=None), threads=2) != base


def test_the_key_holds_the_data_and_the_code(monkeypatch, tiny_data_dir):
    from ewe.data import splits
    cfg = _cfg().replace(dataset="mnist", data_dir=str(tiny_data_dir), train_size=None, test_size=None,
                         source=1, target=7)
    key = rc.run_key(cfg)
    assert rc.environment(cfg)["code"] == rc.code_version() and len(rc.code_version()) == 64
    # other numbers in the same folder: the fingerprint (hence the key) follows the data, not the path
    from idx_files import write_idx_dataset
    write_idx_dataset(tiny_data_dir, "mnist", n_train=240, n_test=80, seed=5)
    monkeypatch.setattr(splits, "_FINGERPRINTS", {})
    import ewe.data.idx
    ewe.data.idx._parse_folder.cache_clear()
    new_data = rc.run_key(cfg)
    assert new_data != key
    monkeypatch.setattr(rc, "_CODE_VERSION", "another version of ewe/")   # an edited training module
    assert rc.run_key(cfg) != new_data


def test_a_reused_run_equals_a_fresh_computation_of_its_key(tmp_path):
    """The pipeline is deterministic on CPU with a fixed thread count: a run checked out of the cache holds
    what training the same key again gives (models, verdicts, every stored answer)."""
    from ewe.experiments import pipeline
    cfg = _cfg()
    first = tmp_path / "first"
    assert pipeline.train_victims(cfg, first)["status"] == "trained"
    cache = rc.RunCache(tmp_path / "cache", 10**9)
    key = rc.run_key(cfg)
    cache.publish(key, first, {"source": first.name, "started": 0.0})
    reused = cache.checkout(key, tmp_path / "workspace" / "reused", reused_from={"run": "first", "started": 0.0})
    fresh = tmp_path / "fresh"
    pipeline.train_victims(cfg, fresh)
    for name in ("predictions.json", "innocents.json", "diagnostics.json"):
        assert json.loads((reused / name).read_text()) == json.loads((fresh / name).read_text()), name
    a, b = (json.loads((d / "result.json").read_text()) for d in (reused, fresh))
    a.pop("seconds"), b.pop("seconds")
    assert a == b and a["models"]["defended"]["accuracy"] > 0
    import torch
    for ckpt in sorted((fresh / "models").glob("*.pt")):
        x, y = (torch.load(d / "models" / ckpt.name, weights_only=True) for d in (reused, fresh))
        assert all(torch.equal(x[k], y[k]) for k in y), ckpt.name
    assert rc.read_state(reused)["reused_from"] == {"run": "first", "started": 0.0}

    # a steal in the reused folder replaces files: the cache's own files (hard links) stay as they were
    entry = cache.get(key)
    before = {p.name: p.read_bytes() for p in (entry / "models").glob("*.pt")}
    pipeline.steal(reused, {"extract_epochs": 1})
    assert {p.name: p.read_bytes() for p in (entry / "models").glob("*.pt")} == before
    assert not list((entry / "models").glob("*extracted*")) and (reused / "models" / "extracted.pt").exists()
    assert rc.read_state(reused) is None       # the folder changed: it no longer stands for the key


def _folder(root: Path, tag: str, files: int = 40) -> Path:
    root.mkdir(parents=True)
    for i in range(files):
        (root / f"part{i:02d}.bin").write_text(tag * 100)
    (root / "result.json").write_text(json.dumps({"writer": tag}))
    return root


def test_two_writers_finishing_one_key_leave_one_complete_entry(tmp_path):
    cache = rc.RunCache(tmp_path / "cache", 10**9)
    for round_ in range(10):
        key = f"k{round_}"
        sources = [_folder(tmp_path / f"src{round_}-{w}", w) for w in "ab"]
        gate = threading.Barrier(2)
        errors = []

        def write(src):
            try:
                gate.wait()
                cache.publish(key, src, {"writer": src.name})
            except Exception as exc:  # noqa: BLE001 - the test reports any writer's failure
                errors.append(exc)
        threads = [threading.Thread(target=write, args=(s,)) for s in sources]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert not errors
        entry = cache.get(key)
        writer = json.loads((entry / "result.json").read_text())["writer"]
        assert {(entry / f"part{i:02d}.bin").read_text() for i in range(40)} == {writer * 100}   # never mixed
        assert sorted(p.name for p in entry.iterdir()) == sorted(
            [f"part{i:02d}.bin" for i in range(40)] + ["result.json", rc.ENTRY_FILE, rc.ACCESS_FILE])
    assert not any((tmp_path / "cache" / "staging").iterdir())      # the losers' copies are gone


def test_least_recently_used_entries_go_first_and_the_bound_holds(tmp_path):
    import os
    cache = rc.RunCache(tmp_path / "cache", max_bytes=3 * 4200 + 1000)    # three entries (parts + their JSON), not four
    for i in range(3):
        cache.publish(f"k{i}", _folder(tmp_path / f"s{i}", str(i), files=42))      # 4,200 bytes of parts each
        os.utime(cache.entries_dir / f"k{i}" / rc.ACCESS_FILE, (1000 + i, 1000 + i))   # used in turn
    assert cache.get("k0") is not None               # k0 used again: now k1 is the least recently used
    cache.publish("k3", _folder(tmp_path / "s3", "3", files=42))
    assert cache.get("k1") is None and all(cache.get(k) for k in ("k0", "k2", "k3"))
    assert cache.size() <= cache.max_bytes
    cache.publish("k4", _folder(tmp_path / "s4", "4", files=42))
    assert cache.size() <= cache.max_bytes and cache.get("k4") is not None
    assert not any((tmp_path / "cache" / "trash").iterdir())


def test_a_verdict_is_stored_once_per_key(tmp_path):
    cache = rc.RunCache(tmp_path / "cache", 10**6)
    key = rc.verdict_key("state", {"margin": 0.1})
    assert cache.get_json(key) is None
    cache.put_json(key, {"defended": {"proven": True}})
    cache.put_json(key, {"defended": {"proven": False}})        # a second writer loses
    assert cache.get_json(key) == {"defended": {"proven": True}}
    assert rc.verdict_key("state", {"margin": 0.2}) != key
    assert rc.steal_key("state", {"thief_seed": 1}) != rc.steal_key("state", {"thief_seed": 2})
    assert rc.steal_key("state", {"thief_seed": 1}, 3) != rc.steal_key("state", {"thief_seed": 1}, 1)


def test_an_uploaded_folder_never_claims_a_key(tmp_path):
    from ewe.results.runs import unzip_run, zip_run
    src = tmp_path / "run"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"dataset": "digits"}))
    (src / "result.json").write_text(json.dumps({"models": {}}))
    (src / rc.REUSE_FILE).write_text(json.dumps({"key": "someone else's key"}))
    out = unzip_run(zip_run(src), tmp_path / "up")
    assert not (out / rc.REUSE_FILE).exists() and rc.read_state(out) is None


def test_checkout_of_a_missing_key_is_none(tmp_path):
    assert rc.RunCache(tmp_path / "c", 10).checkout("nothing", tmp_path / "dest") is None
    assert not (tmp_path / "dest").exists()
