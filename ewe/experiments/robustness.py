"""The removal-attack suite over a run folder: every attack of ``ewe.attacks.removal`` on the run's victims,
each point judged like the run's suspects; written to ``robustness.json`` and read back for plots.

    run_suite(run_dir, settings)   every attack on the run's victims; writes ``robustness.json``
    curve(robustness, attack, victim, metric), table(robustness), format_table(robustness)

``robustness.json`` (written after every point, so a stopped suite keeps what finished)::

    {"run": {"dataset", "preset", "seed", "path"}, "settings": {RemovalConfig}, "verify_margin": float,
     "status": "running" | "finished" | "stopped", "seconds": {"total", <attack>: ...},
     "records": [{"attack": "none" | "fine_tune_last" | "fine_tune_all" | "prune" | "prune_finetune"
                            | "fine_prune",
                  "victim": "defended" | "plain_watermark" | ...,  "trigger_set": "optimised" | "classic",
                  "ratio": float | None (requested pruning ratio),  "achieved_ratio": float | None,
                  "epoch": float (fine-tuning epochs done; 0 = none),
                  "accuracy", "watermark_success", "p_value", "queries_for_95" (None = not reached),
                  "verified", "victim_queries" (queries the attacker sent the victim for labels)}]}

``curve(robustness, attack, victim, metric)`` gives (x, y) lists for a plot: x is the pruning ratio for
the pruning attacks and the fine-tuning epoch for the fine-tuning attacks. The ``none`` record of each
victim (the untouched model) is x = 0 of every curve.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ..attacks.extraction import QueryCounter
from ..attacks.removal import (ATTACKS, NO_ATTACK, REMOVAL_ATTACKS, X_AXIS, Attacker, FineTuneAttack,
                              RemovalAttack, evaluate)
from ..callbacks import Reporter, Stopped
from ..data.splits import load_data
from ..results.runs import Run
from ..results.schema import (CONFIG_FILE, PREDICTIONS_FILE, RESULT_FILE, TRIGGER_SET, TRIGGERS_FILE,
                              heldout_sets)
from ..verify import nulls_for_run


@dataclass
class RemovalConfig:
    """What :func:`run_suite` does. Sizes default to a few minutes per victim on full MNIST, 2 cores."""
    victims: list[str] = field(default_factory=lambda: ["defended", "plain_watermark"])
    attacks: list[str] = field(default_factory=lambda: list(ATTACKS))
    ratios: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    finetune_ratios: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8, 0.9])  # prune_finetune, fine_prune
    prune_scope: str = "global"          # global | layer
    finetune_epochs: float = 2.0
    finetune_lr: float = 1e-3
    labels: str = "victim"               # victim (the attacker queries the victim) | true
    attacker_size: int | None = 5000     # attacker samples used (seeded subset of the run's attacker set)
    batch_size: int | None = None        # None = the run's batch size
    query_draws: int | None = None       # None = the run's query_draws
    threads: int | None = None           # None = the run's threads setting

    @classmethod
    def from_dict(cls, values: dict | None) -> "RemovalConfig":
        values = dict(values or {})
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown robustness setting(s): {', '.join(unknown)}")
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        bad = [a for a in self.attacks if a not in ATTACKS]
        if bad:
            raise ValueError(f"unknown attack(s) {bad}; choose from {', '.join(ATTACKS)}")
        if any(not 0 <= r < 1 for r in list(self.ratios) + list(self.finetune_ratios)):
            raise ValueError("pruning ratios must be in [0, 1)")
        if self.prune_scope not in ("global", "layer"):
            raise ValueError("prune_scope is 'global' or 'layer'")
        if self.labels not in ("victim", "true"):
            raise ValueError("labels is 'victim' (the victim's answers) or 'true'")
        if self.finetune_epochs < 0 or self.finetune_lr <= 0:
            raise ValueError("finetune_epochs must be >= 0 and finetune_lr > 0")
        if self.attacker_size is not None and self.attacker_size < 2:
            raise ValueError("attacker_size must be at least 2")


def _plan(settings: RemovalConfig, victims: list[str], n_batches: int, n_eval: float) -> dict[str, float]:
    plan: dict[str, float] = {}
    ft = settings.finetune_epochs * n_batches
    for v in victims:
        plan[f"{NO_ATTACK}/{v}"] = n_eval
        for attack in _attacks(settings):
            for point in attack.points(settings):
                plan[attack.stage(v, point)] = attack.cost(point, ft, n_eval)
    return plan


def _attacks(settings: RemovalConfig) -> list[RemovalAttack]:
    return [REMOVAL_ATTACKS[name] for name in settings.attacks]


def run_suite(run_dir: str | Path, settings: RemovalConfig | dict | None = None,
              listeners: Iterable[Callable] | None = None, stop=None, reporter: Reporter | None = None,
              data=None) -> dict:
    """Every removal attack in ``settings`` on the run's victims; writes and returns robustness.json.

    ``listeners`` / ``stop`` as for ``pipeline.run`` (events: run_start, stage_start/epoch/stage_end per
    attack point with the point's figures as ``metrics``, progress, run_end). A stop request ends the
    suite at the next batch with status "stopped"; finished points are kept.
    """
    run_dir = Path(run_dir)
    settings = settings if isinstance(settings, RemovalConfig) else RemovalConfig.from_dict(settings)
    settings.validate()
    folder = _trained_run(run_dir)
    threads = settings.threads or folder.config.threads
    if threads:
        torch.set_num_threads(threads)
    suite = _Suite(folder, run_dir, settings, reporter or Reporter(list(listeners or []), stop))
    t_all = time.perf_counter()
    status = "failed"
    try:
        suite.run(data or load_data(folder.config))
        status = "finished"
    except Stopped:
        status = "stopped"
    except Exception as exc:
        suite.out["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        suite.finish(status, time.perf_counter() - t_all)
    return suite.out


def _trained_run(run_dir: Path) -> Run:
    folder = Run(run_dir)
    if (folder.saved is None or folder.result is None or folder.predictions is None
            or not folder.has(TRIGGERS_FILE)):
        raise FileNotFoundError(f"{run_dir} is not a trained run folder ({CONFIG_FILE}, {RESULT_FILE}, "
                                f"{PREDICTIONS_FILE} and {TRIGGERS_FILE} are needed)")
    return folder


@dataclass
class _Victim:
    """A victim under attack and what each of its points is judged on, as the run judged its suspects."""
    name: str
    model: nn.Module
    trigger_set: str
    triggers: torch.Tensor
    reference: list
    null: Any


class _Suite:
    """One suite's state, held in one place: the run folder, the settings, the reporter and the robustness.json
    being built (``out``; written after every point, so a stopped suite keeps what finished)."""

    def __init__(self, folder: Run, run_dir: Path, settings: RemovalConfig, reporter: Reporter):
        self.folder, self.run_dir, self.settings, self.rep = folder, run_dir, settings, reporter
        self.cfg = cfg = folder.config
        self.batch = settings.batch_size or cfg.batch_size
        self.draws = settings.query_draws or cfg.query_draws
        self.data: Any = None
        self.out: dict[str, Any] = {"run": {"dataset": cfg.dataset, "preset": cfg.preset, "seed": cfg.seed,
                                            "path": str(run_dir)},
                                    "settings": asdict(settings), "verify_margin": cfg.verify_margin,
                                    "status": "running", "seconds": {}, "records": []}

    # ---- the whole suite ----------------------------------------------------------------------------
    def run(self, data) -> None:
        self.data = data
        sets = {k: v.to(self.cfg.device) for k, v in heldout_sets(self.folder.triggers()).items()}
        models = self._load_victims()
        x_att, y_true = self._attacker_samples()
        self._announce(list(models), x_att)
        preds = self.folder.predictions
        nulls = nulls_for_run(preds, self.folder.innocents, self.cfg.verify_margin)
        for name, model in models.items():
            set_name = TRIGGER_SET[name]
            victim = _Victim(name, model, set_name, sets[set_name], preds["sets"][set_name]["clean"],
                             nulls[set_name])
            self.attack_victim(victim, x_att, y_true)

    def finish(self, status: str, seconds: float) -> None:
        self.out["status"] = status
        self.out["seconds"]["total"] = round(seconds, 2)
        self.write()
        self.rep.emit("run_end", status=status, result=None)

    def _load_victims(self) -> dict[str, nn.Module]:
        wanted = list(self.settings.victims)
        models = self.folder.load_models(wanted)
        missing = [v for v in wanted if v not in models]
        if missing:
            self.rep.message(f"Robustness: no checkpoint for {', '.join(missing)} in {self.run_dir.name}; skipped")
        if not models:
            raise ValueError(f"{self.run_dir} has none of the victims {wanted}; train the run first")
        return models

    def _attacker_samples(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The attacker's samples (a seeded subset of the run's attacker set) and, with true labels, theirs
        (ewe.data.splits.load_data keeps the attacker set's true labels for either attacker_data)."""
        data, size = self.data, self.settings.attacker_size
        g = torch.Generator().manual_seed(self.cfg.seed + 30_000)
        n_att = len(data.x_attack)
        idx = torch.randperm(n_att, generator=g)[:size] if size and size < n_att else torch.arange(n_att)
        idx = idx.to(data.x_attack.device)
        return data.x_attack[idx], (data.y_attack[idx] if self.settings.labels == "true" else None)

    def _announce(self, victims: list[str], x_att: torch.Tensor) -> None:
        s, cfg, rep = self.settings, self.cfg, self.rep
        n_eval = (len(self.data.x_test) + cfg.n_heldout) / self.batch * 0.3
        rep.set_plan(_plan(s, victims, max(1, len(x_att) // self.batch), n_eval))
        rep.emit("run_start", stages=list(rep.plan), config={"robustness": asdict(s), "run": str(self.run_dir)})
        rep.message(f"Robustness: {', '.join(s.attacks)} on {', '.join(victims)}; attacker data: "
                    f"{len(x_att)} samples ({cfg.attacker_data} as the defender's), "
                    f"{'victim' if s.labels == 'victim' else 'true'} labels")

    # ---- one victim ---------------------------------------------------------------------------------
    def attack_victim(self, victim: _Victim, x_att: torch.Tensor, y_true: torch.Tensor | None) -> None:
        """The untouched victim, then every attack of the settings on it."""
        self.rep.check()
        t0 = time.perf_counter()
        stage = f"{NO_ATTACK}/{victim.name}"
        self.rep.emit("stage_start", stage=stage, model=victim.name, epochs=0)
        self.record(victim, NO_ATTACK, stage, self.measure(victim, victim.model), t0)
        attacker = self._attacker(victim, x_att, y_true)
        for attack in _attacks(self.settings):
            reason = attack.skip_reason(victim.model)
            if reason is not None:
                self._skip(victim, attack, reason)
            elif attack.measured_in_training:
                self._training_run(victim, attack, attacker)
            else:
                self._points(victim, attack, attacker)

    def _attacker(self, victim: _Victim, x_att: torch.Tensor, y_true: torch.Tensor | None) -> Attacker:
        """The attacker's training labels: the victim's answers (counted queries) or the truth."""
        if self.settings.labels == "victim":
            box = QueryCounter(victim.model)
            y_att = box.hard_labels(x_att)
            queries = box.queries
        else:
            y_att, queries = y_true, 0
        s = self.settings
        return Attacker(x=x_att, y=y_att, queries=queries, epochs=s.finetune_epochs, lr=s.finetune_lr,
                        batch_size=self.batch, seed=self.cfg.seed + 30_001, prune_scope=s.prune_scope,
                        reporter=self.rep)

    def _skip(self, victim: _Victim, attack: RemovalAttack, reason: str) -> None:
        self.rep.message(f"Robustness: {attack.label} skipped for {victim.name}: {reason}")
        for point in attack.points(self.settings):
            self.rep.advance(attack.stage(victim.name, point), 1.0)

    def _points(self, victim: _Victim, attack: RemovalAttack, attacker: Attacker) -> None:
        """One attacked model per point, each its own stage and record."""
        for point in attack.points(self.settings):
            self.rep.check()
            stage = attack.stage(victim.name, point)
            t0 = time.perf_counter()
            if not attack.trains:      # a training attack's stage is announced by its training
                self.rep.emit("stage_start", stage=stage, model=victim.name, epochs=0)
            model, extra = attack.run(victim.model, point, attacker, stage=stage, name=victim.name)
            self.record(victim, attack.name, stage, self.measure(victim, model), t0, **extra)

    def _training_run(self, victim: _Victim, attack: FineTuneAttack, attacker: Attacker) -> None:
        """One training run per point, one record per evaluation along it (``_Probe``); the stage ends with
        the last."""
        for point in attack.points(self.settings):
            stage = attack.stage(victim.name, point)
            probe = _Probe(self, victim, attack.name, stage, point, attack.evaluations(point), attacker.queries)
            self.rep.emit("stage_start", stage=stage, model=victim.name, epochs=probe.evaluations)
            attack.run(victim.model, point, attacker, stage=stage, name=victim.name, probe=probe)
            self.rep.advance(stage, 1.0)
            if probe.last is not None:
                self.rep.emit("stage_end", stage=stage, model=victim.name, metrics=_point_metrics(probe.last),
                              seconds=round(time.perf_counter() - probe.t0, 3))

    # ---- one point ----------------------------------------------------------------------------------
    def measure(self, victim: _Victim, model: nn.Module) -> dict:
        cfg, data = self.cfg, self.data
        return evaluate(model, data.x_test, data.y_test, victim.triggers, cfg.target, null=victim.null,
                        reference_pred=victim.reference, test=cfg.test, alpha=cfg.alpha, draws=self.draws,
                        seed=cfg.seed, margin=cfg.verify_margin)

    def record(self, victim: _Victim, attack: str, stage: str, figures: dict, t0: float, emit: bool = True,
               **extra) -> dict:
        """Add a point's record (``extra`` over the defaults, then its figures), end its stage unless
        ``emit`` is off, and write robustness.json."""
        rec = {"attack": attack, "victim": victim.name, "trigger_set": victim.trigger_set, "ratio": None,
               "achieved_ratio": None, "epoch": 0, "victim_queries": 0, **extra, **figures,
               "seconds": round(time.perf_counter() - t0, 3)}
        self.out["records"].append(rec)
        seconds = self.out["seconds"]
        seconds[attack] = round(seconds.get(attack, 0.0) + rec["seconds"], 3)
        if emit:
            self.rep.advance(stage, 1.0)
            self.rep.emit("stage_end", stage=stage, model=victim.name, seconds=rec["seconds"],
                          metrics=_point_metrics(rec))
        self.write()
        return rec

    def write(self) -> None:
        self.folder.robustness = self.out
        self.folder.save("robustness")


class _Probe:
    """Measures and records a fine-tuning run at each of its evaluations (``ewe.train.train_clean``'s probe);
    keeps the last record for the stage's end."""

    def __init__(self, suite: _Suite, victim: _Victim, attack: str, stage: str, epochs: float, evaluations: int,
                 queries: int):
        self.suite, self.victim, self.attack, self.stage = suite, victim, attack, stage
        self.epochs, self.evaluations, self.queries = epochs, evaluations, queries
        self.done = 0
        self.last: dict | None = None
        self.t0 = time.perf_counter()

    def __call__(self, model: nn.Module) -> dict:
        self.done += 1
        figures = self.suite.measure(self.victim, model)
        self.last = self.suite.record(self.victim, self.attack, self.stage, figures, self.t0, emit=False,
                                      epoch=round(self.epochs * self.done / self.evaluations, 4),
                                      victim_queries=self.queries)
        return {k: figures[k] for k in ("accuracy", "watermark_success", "p_value")}


def _point_metrics(rec: dict) -> dict:
    return {k: rec[k] for k in ("attack", "accuracy", "watermark_success", "p_value", "queries_for_95",
                                "ratio", "epoch")}


# ---------------------------------------------------------------------------------------------------
# reading

def curve(robustness: dict, attack: str, victim: str, metric: str = "watermark_success"
          ) -> tuple[list[float], list[Any]]:
    """(x, y) for one attack and victim, sorted by x, starting with the untouched model at x = 0."""
    axis = X_AXIS[attack]
    points = {}
    for rec in robustness.get("records", []):
        if rec["victim"] != victim:
            continue
        if rec["attack"] == "none":
            points.setdefault(0.0, rec[metric])
        elif rec["attack"] == attack:
            points[float(rec[axis])] = rec[metric]
    xs = sorted(points)
    return xs, [points[x] for x in xs]


def table(robustness: dict) -> list[dict]:
    """Rows for printing: attack, victim, x, accuracy, watermark success, p-value, queries for 95 %."""
    rows = []
    for rec in robustness.get("records", []):
        x = rec["ratio"] if X_AXIS.get(rec["attack"]) == "ratio" else rec["epoch"]
        rows.append({"attack": rec["attack"], "victim": rec["victim"], "x": x,
                     "accuracy": rec["accuracy"], "watermark_success": rec["watermark_success"],
                     "p_value": rec["p_value"], "queries_for_95": rec["queries_for_95"]})
    return rows


def format_table(robustness: dict) -> str:
    lines = [f"{'attack':<16} {'victim':<16} {'x':>5}  {'accuracy':>8}  {'wm':>6}  {'p':>9}  {'q95':>5}"]
    for r in table(robustness):
        x = "" if r["x"] is None else f"{r['x']:g}"
        q = "-" if r["queries_for_95"] is None else str(r["queries_for_95"])
        lines.append(f"{r['attack']:<16} {r['victim']:<16} {x:>5}  {r['accuracy']:>8.4f}  "
                     f"{r['watermark_success']:>6.3f}  {r['p_value']:>9.3g}  {q:>5}")
    return "\n".join(lines)
