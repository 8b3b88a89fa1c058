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
from ..attacks.removal import ATTACKS, X_AXIS, evaluate, fine_prune, fine_tune, prune
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
        plan[f"none/{v}"] = n_eval
        for a in settings.attacks:
            if a in ("fine_tune_last", "fine_tune_all"):
                plan[f"{a}/{v}"] = (ft * (0.4 if a == "fine_tune_last" else 1.0)
                                    + n_eval * max(1, round(settings.finetune_epochs)))
            elif a == "prune":
                for r in settings.ratios:
                    plan[f"{a}/{v}/{r:g}"] = n_eval
            else:
                for r in settings.finetune_ratios:
                    plan[f"{a}/{v}/{r:g}"] = ft + n_eval
    return plan


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
    folder = Run(run_dir)
    saved, result, preds = folder.saved, folder.result, folder.predictions
    if saved is None or result is None or preds is None or not folder.has(TRIGGERS_FILE):
        raise FileNotFoundError(f"{run_dir} is not a trained run folder ({CONFIG_FILE}, {RESULT_FILE}, "
                                f"{PREDICTIONS_FILE} and {TRIGGERS_FILE} are needed)")
    cfg = folder.config
    threads = settings.threads or cfg.threads
    if threads:
        torch.set_num_threads(threads)
    rep = reporter or Reporter(list(listeners or []), stop)
    out: dict[str, Any] = {"run": {"dataset": cfg.dataset, "preset": cfg.preset, "seed": cfg.seed,
                                   "path": str(run_dir)},
                           "settings": asdict(settings), "verify_margin": cfg.verify_margin, "status": "running",
                           "seconds": {}, "records": []}
    t_all = time.perf_counter()
    status = "failed"
    try:
        data = data or load_data(cfg)
        sets = {k: v.to(cfg.device) for k, v in heldout_sets(folder.triggers()).items()}
        wanted = [v for v in settings.victims]
        victims = folder.load_models(wanted)
        missing = [v for v in wanted if v not in victims]
        if missing:
            rep.message(f"Robustness: no checkpoint for {', '.join(missing)} in {run_dir.name}; skipped")
        if not victims:
            raise ValueError(f"{run_dir} has none of the victims {wanted}; train the run first")
        g = torch.Generator().manual_seed(cfg.seed + 30_000)
        n_att = len(data.x_attack)
        idx = (torch.randperm(n_att, generator=g)[:settings.attacker_size]
               if settings.attacker_size and settings.attacker_size < n_att else torch.arange(n_att))
        x_att = data.x_attack[idx.to(data.x_attack.device)]
        # ewe.data.splits.load_data keeps the attacker set's true labels for either attacker_data
        y_true = data.y_attack[idx.to(data.x_attack.device)] if settings.labels == "true" else None
        batch = settings.batch_size or cfg.batch_size
        draws = settings.query_draws or cfg.query_draws
        n_eval = (len(data.x_test) + cfg.n_heldout) / batch * 0.3
        rep.set_plan(_plan(settings, list(victims), max(1, len(x_att) // batch), n_eval))
        rep.emit("run_start", stages=list(rep.plan), config={"robustness": asdict(settings), "run": str(run_dir)})
        rep.message(f"Robustness: {', '.join(settings.attacks)} on {', '.join(victims)}; attacker data: "
                    f"{len(x_att)} samples ({cfg.attacker_data} as the defender's), "
                    f"{'victim' if settings.labels == 'victim' else 'true'} labels")

        def write():
            folder.robustness = out
            folder.save("robustness")

        nulls = nulls_for_run(preds, folder.innocents, cfg.verify_margin)
        for vname, victim in victims.items():
            set_name = TRIGGER_SET[vname]
            triggers = sets[set_name]
            reference = preds["sets"][set_name]["clean"]
            null = nulls[set_name]

            def measure(model) -> dict:
                return evaluate(model, data.x_test, data.y_test, triggers, cfg.target, null=null,
                                reference_pred=reference, test=cfg.test, alpha=cfg.alpha, draws=draws,
                                seed=cfg.seed, margin=cfg.verify_margin)

            def record(attack: str, stage: str, figures: dict, t0: float, emit: bool = True, **extra) -> dict:
                rec = {"attack": attack, "victim": vname, "trigger_set": set_name, "ratio": None,
                       "achieved_ratio": None, "epoch": 0, "victim_queries": 0, **extra, **figures,
                       "seconds": round(time.perf_counter() - t0, 3)}
                out["records"].append(rec)
                out["seconds"][attack] = round(out["seconds"].get(attack, 0.0) + rec["seconds"], 3)
                if emit:
                    rep.advance(stage, 1.0)
                    rep.emit("stage_end", stage=stage, model=vname, seconds=rec["seconds"],
                             metrics=_point_metrics(rec))
                write()
                return rec

            rep.check()
            t0 = time.perf_counter()
            rep.emit("stage_start", stage=f"none/{vname}", model=vname, epochs=0)
            record("none", f"none/{vname}", measure(victim), t0)

            # the attacker's training labels: the victim's answers (counted queries) or the truth
            if settings.labels == "victim":
                box = QueryCounter(victim)
                y_att = box.hard_labels(x_att)
                queries = box.queries
            else:
                y_att, queries = y_true, 0
            ft = dict(x=x_att, y=y_att, epochs=settings.finetune_epochs, batch_size=batch,
                      lr=settings.finetune_lr, seed=cfg.seed + 30_001, reporter=rep)

            for attack in settings.attacks:
                if attack in ("fine_tune_last", "fine_tune_all"):
                    stage = f"{attack}/{vname}"
                    t0 = time.perf_counter()
                    epochs_done, last = [0], [None]
                    n_evals = max(1, round(settings.finetune_epochs))

                    def probe(model, attack=attack, stage=stage):
                        epochs_done[0] += 1
                        figures = measure(model)
                        last[0] = record(attack, stage, figures, t0, emit=False,
                                         epoch=round(settings.finetune_epochs * epochs_done[0] / n_evals, 4),
                                         victim_queries=queries)
                        return {k: figures[k] for k in ("accuracy", "watermark_success", "p_value")}
                    rep.emit("stage_start", stage=stage, model=vname, epochs=n_evals)
                    if settings.finetune_epochs > 0:
                        fine_tune(victim, x_att, y_att, layers=attack.rsplit("_", 1)[1],
                                  epochs=settings.finetune_epochs, batch_size=batch, lr=settings.finetune_lr,
                                  seed=cfg.seed + 30_001, reporter=rep, stage=stage, name=vname,
                                  probe=probe, evals=n_evals)
                    rep.advance(stage, 1.0)
                    if last[0] is not None:
                        rep.emit("stage_end", stage=stage, model=vname, metrics=_point_metrics(last[0]),
                                 seconds=round(time.perf_counter() - t0, 3))
                elif attack == "prune":
                    for r in settings.ratios:
                        rep.check()
                        stage = f"{attack}/{vname}/{r:g}"
                        t0 = time.perf_counter()
                        rep.emit("stage_start", stage=stage, model=vname, epochs=0)
                        model, info = prune(victim, r, scope=settings.prune_scope)
                        record(attack, stage, measure(model), t0, ratio=r,
                               achieved_ratio=round(info["achieved_ratio"], 6))
                else:
                    if attack == "fine_prune" and not any(isinstance(m, nn.Conv2d) for m in victim.modules()):
                        rep.message(f"Robustness: fine-pruning skipped for {vname}: "
                                    f"{type(victim).__name__} has no convolutional layer")
                        for r in settings.finetune_ratios:
                            rep.advance(f"{attack}/{vname}/{r:g}", 1.0)
                        continue
                    for r in settings.finetune_ratios:
                        rep.check()
                        stage = f"{attack}/{vname}/{r:g}"
                        t0 = time.perf_counter()
                        kw = {**ft, "stage": stage, "name": vname}
                        if attack == "prune_finetune":
                            model, info = prune(victim, r, scope=settings.prune_scope, finetune=kw)
                        else:
                            model, info = fine_prune(victim, x_att, r, finetune=kw)
                        extra = {"ratio": r, "achieved_ratio": round(info["achieved_ratio"], 6),
                                 "epoch": settings.finetune_epochs, "victim_queries": queries}
                        if attack == "fine_prune":
                            extra["pruned_channels"] = info["pruned_channels"]
                        record(attack, stage, measure(model), t0, **extra)
        status = "finished"
    except Stopped:
        status = "stopped"
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        out["status"] = status
        out["seconds"]["total"] = round(time.perf_counter() - t_all, 2)
        folder.robustness = out
        folder.save("robustness")
        rep.emit("run_end", status=status, result=None)
    return out


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
