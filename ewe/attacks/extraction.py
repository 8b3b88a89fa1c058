"""Model extraction (the thief), spec section d: query the victim on the attacker's data, take its labels,
train a fresh student on them.

Default as the reference code: hard labels on the defender's own training set, the victim's architecture,
trained from scratch for epochs + w_epochs. Variants: a query budget, soft labels (distillation with a
temperature), another student architecture, attacker data disjoint from the defender's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..callbacks import Reporter
from ..models import build_model
from ..train import Probe, predict, predict_proba, train_clean


class QueryCounter:
    """The victim as a black box that counts how many inputs it was asked about."""

    def __init__(self, model: torch.nn.Module):
        self._model = model
        self.queries = 0

    def hard_labels(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        return predict(self._model, x)

    def soft_labels(self, x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        self.queries += len(x)
        return predict_proba(self._model, x, temperature)


@dataclass
class ThiefConfig:
    labels: str = "hard"              # hard | soft
    temperature: float = 1.0          # distillation temperature for soft labels
    student: str = "conv2"
    epochs: int = 20
    query_budget: int | None = None   # None = every attacker sample
    batch_size: int = 512
    lr: float = 1e-3
    precision: str = "fp32"           # the student's forward passes (ewe.train.autocast)

    @classmethod
    def from_run_config(cls, cfg) -> "ThiefConfig":
        from ..train import resolve_precision
        return cls(labels=cfg.extract_labels, temperature=cfg.distill_temperature,
                   student=cfg.student or cfg.model, epochs=cfg.extraction_epochs,
                   query_budget=cfg.query_budget, batch_size=cfg.batch_size, lr=cfg.lr,
                   precision=resolve_precision(cfg.precision, cfg.device))


def attacker_queries(x_attack: torch.Tensor, budget: int | None, seed: int) -> torch.Tensor:
    """The inputs the thief sends: all attacker data, or a seeded random subset of ``budget`` of them."""
    if budget is None or budget >= len(x_attack):
        return x_attack
    g = torch.Generator().manual_seed(seed)   # a CPU generator draws CPU indices: move them to the data
    return x_attack[torch.randperm(len(x_attack), generator=g)[:budget].to(x_attack.device)]


def label_queries(victim: QueryCounter, x: torch.Tensor, thief: ThiefConfig) -> torch.Tensor:
    if thief.labels == "soft":
        return victim.soft_labels(x, thief.temperature)
    return victim.hard_labels(x)


def extract(victim: torch.nn.Module, x_attack: torch.Tensor, thief: ThiefConfig, *, reporter: Reporter,
            stage: str, name: str, probe: Probe | None = None, seed: int = 0,
            labels: torch.Tensor | None = None) -> tuple[torch.nn.Module, dict]:
    """Steal ``victim``: returns the trained student and {"queries": n, ...}.

    ``labels`` may be passed when the victim's answers on the same queries were already computed.
    """
    box = QueryCounter(victim)
    x = attacker_queries(x_attack, thief.query_budget, seed)
    y = labels if labels is not None else label_queries(box, x, thief)
    # the student's weights, like its batch order and query subset, come from its own seeded generator
    student = build_model(thief.student, tuple(x.shape[1:]), seed=seed).to(x.device)
    train_clean(student, x, y, epochs=thief.epochs, batch_size=thief.batch_size, lr=thief.lr,
                reporter=reporter, stage=stage, name=name, probe=probe, seed=seed,
                label_temperature=thief.temperature if thief.labels == "soft" else 1.0, precision=thief.precision)
    return student, {"queries": box.queries if labels is None else len(x), "labels": thief.labels,
                     "student": thief.student, "epochs": thief.epochs}
