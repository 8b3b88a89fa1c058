"""Watermarking schemes: what a run trains from its shared pre-trained model, one scheme per victim.

A scheme has a name (the victim's name in result.json and models/<name>.pt), the name of its stolen copy,
the trigger set it trains on and is judged on ("optimised": the SNNL-optimised triggers; "classic": the same
triggers before optimisation) and its watermark step (``ewe.train.entangled_step``: cross-entropy minus the
weighted SNNL of every layer; ``ewe.train.plain_step``: cross-entropy only). The pipeline loops over
``SCHEMES``; a new scheme is one ``register(Scheme(...))`` call, nothing in the pipeline changes.

    EWE        "defended"           optimised triggers, SNNL term (unless the run sets snnl=False)
    CLASSIC    "plain_watermark"    raw triggers, cross-entropy only (the plain watermark of the paper)
    ABLATION   "ablation_no_snnl"   optimised triggers, cross-entropy only: what the SNNL term adds
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:   # annotations only: importing this module must not import torch (the app's first page)
    import torch

    from ..config import RunConfig
    from .triggers import TriggerSet

TRIGGER_SETS = ("optimised", "classic")


@dataclass(frozen=True)
class Scheme:
    name: str                 # the watermarked victim ("defended", ...)
    stolen: str               # its copy made by the extraction attack ("extracted", ...)
    trigger_set: str          # "optimised" or "classic": trained on, and judged on its held-out half
    label: str                # for people
    snnl: bool | None         # SNNL term in the watermark step; None: the run's own ``snnl`` setting
    baseline: bool = True     # a comparison, trained only with the run's ``train_baselines``

    def __post_init__(self):
        if self.trigger_set not in TRIGGER_SETS:
            raise ValueError(f"trigger_set is one of {TRIGGER_SETS}, got {self.trigger_set!r}")

    def uses_snnl(self, cfg: RunConfig) -> bool:
        return bool(cfg.snnl) if self.snnl is None else self.snnl

    def training_triggers(self, ts: TriggerSet) -> torch.Tensor:
        return ts.train if self.trigger_set == "optimised" else ts.raw_train

    def step(self, cfg: RunConfig) -> Callable:
        """The watermark-batch step (see ``ewe.train.train_watermark``)."""
        from ..train import entangled_step, plain_step
        return entangled_step if self.uses_snnl(cfg) else plain_step

    def train(self, model, x, y, ts: TriggerSet, x_target, cfg: RunConfig, **kw):
        """The watermark phase of this scheme on ``model`` (pre-trained); kw: reporter, optimizer, probe, seed,
        as ``ewe.train.train_watermark``. Returns (optimizer, temperatures)."""
        from ..train import train_watermark
        return train_watermark(model, x, y, self.training_triggers(ts), x_target, cfg.target, cfg=cfg,
                               stage=self.name, name=self.name, step=self.step(cfg), **kw)


EWE = Scheme("defended", "extracted", "optimised", "EWE (defended)", snnl=None, baseline=False)
CLASSIC = Scheme("plain_watermark", "plain_extracted", "classic", "plain watermark", snnl=False)
ABLATION = Scheme("ablation_no_snnl", "ablation_extracted", "optimised", "ablation: no SNNL", snnl=False)

SCHEMES: dict[str, Scheme] = {}
BASE_SETS = {"clean": "optimised", "independent_clean": "optimised"}   # the clean models' trigger set
# kept up to date by register() (updated in place, so every importer sees a later scheme too):
VICTIMS: dict[str, str] = {}                    # victim -> its stolen copy's name
TRIGGER_SET: dict[str, str] = dict(BASE_SETS)   # model -> the held-out trigger set it is judged on


def register(scheme: Scheme) -> Scheme:
    """Add a scheme: every later run trains it (after the ones before it), steals it and judges its copy."""
    taken = {n for s in SCHEMES.values() if s.name != scheme.name for n in (s.name, s.stolen)} | set(BASE_SETS)
    if scheme.name in taken or scheme.stolen in taken:
        raise ValueError(f"scheme names {scheme.name!r} / {scheme.stolen!r} are already taken")
    SCHEMES[scheme.name] = scheme
    VICTIMS[scheme.name] = scheme.stolen
    TRIGGER_SET[scheme.name] = TRIGGER_SET[scheme.stolen] = scheme.trigger_set
    return scheme


for _s in (EWE, CLASSIC, ABLATION):
    register(_s)

# the built-in schemes' stolen copies (the app's fixed columns); library code iterates VICTIMS, which follows
# register()
STOLEN_COPIES = tuple(VICTIMS.values())


def schemes_for(cfg: RunConfig) -> list[Scheme]:
    """The schemes a run with ``cfg`` trains, in order: EWE alone unless ``train_baselines``."""
    return [s for s in SCHEMES.values() if cfg.train_baselines or not s.baseline]
