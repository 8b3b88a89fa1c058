"""Watermarking schemes: what a run trains from its shared pre-trained model, one scheme per victim.

A scheme has a name (the victim's name in result.json and models/<name>.pt), the name of its stolen copy,
the trigger set it trains on and is judged on ("optimised": the SNNL-optimised triggers; "classic": the same
triggers before optimisation) and its watermark step (``ewe.train.entangled_step``: cross-entropy minus the
weighted SNNL of every layer; ``ewe.train.plain_step``: cross-entropy only). The pipeline loops over
``SCHEMES``; a new scheme is one ``register(Scheme(...))`` call, nothing in the pipeline changes.

    EWE        "defended"           optimised triggers, SNNL term (unless the run sets snnl=False)
    CLASSIC    "plain_watermark"    raw triggers, cross-entropy only (the plain watermark of the paper)
    ABLATION   "ablation_no_snnl"   optimised triggers, cross-entropy only: what the SNNL term adds
    MEA        "mea_defender"       MEA-Defender (Lv et al., S&P 2024): its own "composite" triggers (halves of
                                    two source classes' images, labelled the target) and training
                                    (ewe.watermarks.mea); trained only when a run lists it in ``schemes``
    DAWN       "dawn_api"           DAWN (Szyller et al., ACM MM 2021): no training; the run's clean model
                                    served through an API that flips a keyed fraction of answers
                                    (ewe.watermarks.dawn). Its "dawn" set is each thief's register of
                                    flipped queries, with a label per input (predictions.json
                                    "set_targets"); only when a run lists it in ``schemes``

A run's ``schemes`` (RunConfig, CLI ``--schemes``) lists the victims it trains; unset, the default ones
(EWE, and the baselines unless ``train_baselines`` is off), so that existing settings give the same numbers.
``check_schemes`` is the one place that validates such a list.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar

from ..config import ConfigError

if TYPE_CHECKING:   # annotations only: importing this module must not import torch (the app's first page)
    import torch

    from ..config import RunConfig
    from .triggers import TriggerSet

TRIGGER_SETS = ("optimised", "classic", "composite", "dawn")
BUILTIN_SETS = ("optimised", "classic")    # made by ewe.watermarks.triggers for every run


@dataclass(frozen=True)
class Scheme:
    name: str                 # the watermarked victim ("defended", ...)
    stolen: str               # its copy made by the extraction attack ("extracted", ...)
    trigger_set: str          # "optimised" or "classic": trained on, and judged on its held-out half
    label: str                # for people
    snnl: bool | None         # SNNL term in the watermark step; None: the run's own ``snnl`` setting
    baseline: bool = True     # a comparison, trained only with the run's ``train_baselines``
    default: bool = True      # trained when a run does not list its ``schemes``
    setting: str | None = None   # the RunConfig field only this scheme reads (forms show it when it is chosen)
    serves_api: ClassVar[bool] = False   # a watermark of the prediction API (DAWN), not of the model

    def __post_init__(self):
        if self.trigger_set not in TRIGGER_SETS:
            raise ValueError(f"trigger_set is one of {TRIGGER_SETS}, got {self.trigger_set!r}")

    def uses_snnl(self, cfg: RunConfig) -> bool:
        return bool(cfg.snnl) if self.snnl is None else self.snnl

    def training_triggers(self, ts: TriggerSet) -> torch.Tensor:
        if self.trigger_set not in BUILTIN_SETS:
            return ts.extra[self.trigger_set][0]
        return ts.train if self.trigger_set == "optimised" else ts.raw_train

    def build_triggers(self, cfg: RunConfig, data, n_train: int):
        """A scheme with its own trigger set makes it here: (training, held-out, description); None for the
        sets every run makes (``ewe.watermarks.triggers``)."""
        return None

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


class MeaScheme(Scheme):
    """MEA-Defender: composite triggers and its own training (ewe.watermarks.mea)."""

    def build_triggers(self, cfg: RunConfig, data, n_train: int):
        from .mea import make_composite_set
        return make_composite_set(cfg, data, n_train)

    def train(self, model, x, y, ts: TriggerSet, x_target, cfg: RunConfig, **kw):
        from .mea import train_mea
        kw.pop("temps", None)
        return train_mea(model, x, y, self.training_triggers(ts), cfg, stage=self.name, name=self.name, **kw)


class DawnScheme(Scheme):
    """DAWN: the run's clean model behind a keyed flipping API (ewe.watermarks.dawn); nothing is trained."""
    serves_api: ClassVar[bool] = True

    def serve(self, model, cfg: RunConfig):
        """The API one client (thief) queries: its answers, and the owner's register of its flipped queries."""
        from .dawn import DawnApi, lab_key
        return DawnApi(model, lab_key(cfg.dataset, cfg.seed), cfg.dawn_rate)

    def figures(self, model, cfg: RunConfig, x_test, y_test) -> dict:
        from .dawn import api_figures, lab_key
        return api_figures(model, lab_key(cfg.dataset, cfg.seed), cfg.dawn_rate, x_test, y_test)

    def train(self, *args, **kw):
        raise TypeError("DAWN trains nothing: it serves the run's clean model (DawnScheme.serve)")


EWE = Scheme("defended", "extracted", "optimised", "EWE (defended)", snnl=None, baseline=False)
CLASSIC = Scheme("plain_watermark", "plain_extracted", "classic", "plain watermark", snnl=False)
ABLATION = Scheme("ablation_no_snnl", "ablation_extracted", "optimised", "ablation: no SNNL", snnl=False)
MEA = MeaScheme("mea_defender", "mea_extracted", "composite", "MEA-Defender", snnl=False, default=False,
                setting="mea_sources")
DAWN = DawnScheme("dawn_api", "dawn_extracted", "dawn", "DAWN (API)", snnl=False, default=False,
                  setting="dawn_rate")

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
register(MEA)   # after STOLEN_COPIES: rival schemes, not among the app's fixed EWE columns
register(DAWN)


def check_schemes(names) -> list[str]:
    """A run's ``schemes`` list, validated: known victim names (or "default": the default ones), no
    repeats. Raises ConfigError (one line) otherwise. Returns the names with "default" expanded."""
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for raw in names:
        for n in str(raw).split(","):
            n = n.strip()
            if not n:
                continue
            expanded = [s.name for s in SCHEMES.values() if s.default] if n == "default" else [n]
            for e in expanded:
                if e not in SCHEMES:
                    raise ConfigError(f"unknown scheme {e!r}; choose from {', '.join(SCHEMES)} (or 'default')")
                if e in out:
                    raise ConfigError(f"scheme {e!r} is listed twice")
                out.append(e)
    if not out:
        raise ConfigError("schemes lists no scheme; leave it unset for the default ones")
    return out


def schemes_for(cfg: RunConfig) -> list[Scheme]:
    """The schemes a run with ``cfg`` trains, in registry order: the ones its ``schemes`` lists; unset, the
    default ones (EWE alone unless ``train_baselines``)."""
    chosen = getattr(cfg, "schemes", None)
    if chosen is not None:
        wanted = set(check_schemes(chosen))
        return [s for s in SCHEMES.values() if s.name in wanted]
    return [s for s in SCHEMES.values() if s.default and (cfg.train_baselines or not s.baseline)]
