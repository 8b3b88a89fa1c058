"""Fixtures for the app tests: a synchronous job registry, a tiny real run folder, a fast fake pipeline."""
from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path

import pytest


TINY = dict(epochs=1, w_epochs=1, maxiter=1, n_triggers=64, n_heldout=32, extract_epochs=1,
            train_size=256, test_size=128, batch_size=32, query_draws=20, threads=1, innocents=4)


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Streamlit's AppTest installs the page script as sys.modules["__main__"] and leaves it there; a
    later multiprocessing "spawn" (the sweep's process pool) would then re-run that page in every worker,
    which dies (BrokenProcessPool in tests/test_sweep.py when it ran after these tests)."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One real (tiny) train + steal + verify run with the library, reused as a template."""
    from ewe.experiments import pipeline
    from ewe.config import preset
    out = tmp_path_factory.mktemp("template") / "run"
    cfg = preset("digits", "quick", **TINY)
    result = pipeline.run(cfg, out)
    assert result["status"] == "finished", result
    return out


class FakePipeline:
    """Same signatures as ewe.experiments.pipeline; copies the template run and replays its events (fast)."""

    def __init__(self, template: Path, block: threading.Event | None = None):
        self.template = Path(template)
        self.block = block          # when set: wait here (checking stop) to test queueing / Cancel
        self.calls: list[tuple] = []

    def _history(self):
        return json.loads((self.template / "history.json").read_text())

    def _wait(self, stop):
        if self.block is not None:
            while not self.block.is_set():
                if stop is not None and stop.is_set():
                    return True
                self.block.wait(0.02)
        return bool(stop is not None and stop.is_set())

    def train_victims(self, cfg, out_dir, listeners=(), stop=None):
        self.calls.append(("train", cfg, out_dir))
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "models").mkdir(exist_ok=True)
        for name in ("triggers.pt", "triggers.png", "diagnostics.json"):
            shutil.copy(self.template / name, out / name)
        for p in (self.template / "models").glob("*.pt"):
            if "extracted" not in p.name:
                shutil.copy(p, out / "models" / p.name)
        listeners = list(listeners or [])
        if self._wait(stop):
            result = {"status": "stopped", "models": {}, "verification": {}}
            (out / "result.json").write_text(json.dumps(result))
            return result
        victims = [e for e in self._history() if e.get("model") not in ("extracted", "plain_extracted",
                                                                           "ablation_extracted")]
        for e in victims:
            for fn in listeners:
                fn(e)
        for fn in listeners:
            fn({"kind": "progress", "fraction": 1.0, "eta": 0, "elapsed": 1.0, "stage": "independent_clean"})
        result = json.loads((self.template / "result.json").read_text())
        result["models"] = {k: v for k, v in result["models"].items() if "extracted" not in k}
        result["diagnostics"] = {k: v for k, v in result["diagnostics"].items() if "extracted" not in k}
        result["verification"], result["status"] = {}, "trained"
        result.update(dataset=cfg.dataset, seed=cfg.seed)
        (out / "config.json").write_text(json.dumps(cfg.to_dict()))
        (out / "result.json").write_text(json.dumps(result))
        (out / "history.json").write_text(json.dumps(victims))
        shutil.copy(self.template / "predictions.json", out / "predictions.json")
        return result

    def steal(self, run_dir, thief=None, listeners=(), stop=None):
        self.calls.append(("steal", run_dir, thief))
        out = Path(run_dir)
        if self._wait(stop):
            return {"status": "stopped"}
        for e in self._history():
            if e.get("model") in ("extracted", "plain_extracted", "ablation_extracted"):
                for fn in listeners or []:
                    fn(e)
        for p in (self.template / "models").glob("*extracted.pt"):
            shutil.copy(p, out / "models" / p.name)
        result = json.loads((self.template / "result.json").read_text())
        (out / "result.json").write_text(json.dumps(result))
        return result

    def steal_several(self, run_dir, thief=None, thieves=1, listeners=(), stop=None):
        return self.steal_each(run_dir, self.thief_seeds(run_dir, [thief or {}], thieves), listeners, stop)

    @staticmethod
    def thief_seeds(run_dir, kinds, thieves=1):
        from ewe.experiments.pipeline import thief_seeds
        return thief_seeds(run_dir, kinds, thieves)

    def steal_each(self, run_dir, thieves, listeners=(), stop=None):
        """steal() once per thief; each recorded in thieves.json (the real recorder) with its seed, the answers
        it got, and a watermark that differs from thief to thief, like real thieves'."""
        from ewe.experiments.pipeline import record_thief
        result = {}
        for i, thief in enumerate(thieves):
            result = self.steal(run_dir, thief, listeners, stop)
            if result.get("status") != "finished":
                break
            result["thief"] = {**result["thief"], "seed": thief["thief_seed"],
                               "labels": thief.get("extract_labels", result["thief"].get("labels")),
                               "distill_temperature": thief.get("distill_temperature", 1.0)}
            result["models"]["extracted"]["watermark_success"] = round(0.1 + 0.2 * i, 3)
            (Path(run_dir) / "result.json").write_text(json.dumps(result))
            record_thief(run_dir, result)
        return result

    def run(self, cfg, out_dir, listeners=(), stop=None):
        self.calls.append(("run", cfg, out_dir))
        r = self.train_victims(cfg, out_dir, listeners, stop)
        if r.get("status") != "trained":
            return r
        r = self.steal(out_dir, None, listeners, stop)
        # make the points of a sweep differ a little, like real runs would
        tau = float(cfg.temperature[0])
        r["models"]["defended"]["accuracy"] = round(0.9 - 0.01 * tau, 3)
        r["models"]["extracted"]["watermark_success"] = round(min(1.0, 0.2 + 0.05 * tau * cfg.ratio), 3)
        (Path(out_dir) / "result.json").write_text(json.dumps(r))
        return r


@pytest.fixture()
def app_env(tmp_path, monkeypatch, tiny_run):
    """Synchronous registry, fake pipeline, runs under tmp_path, tiny preset offered."""
    from ui import state, work
    from ui.jobs import JobRegistry
    monkeypatch.setenv("EWE_APP_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("EWE_APP_TINY", "1")
    monkeypatch.delenv("EWE_DATA_DIR", raising=False)
    fake = FakePipeline(tiny_run)
    monkeypatch.setattr(work, "PIPELINE", fake)
    reg = JobRegistry(synchronous=True)
    state.set_registry(reg)
    yield {"registry": reg, "pipeline": fake, "runs": tmp_path / "runs"}
    state.set_registry(None)
