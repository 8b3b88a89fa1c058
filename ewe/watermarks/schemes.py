"""Watermarking schemes: what a run trains from its shared pre-trained model, one scheme per victim.

A scheme has a name (the victim's name in result.json and models/<name>.pt), the name of its stolen copy,
the trigger set it trains on and is judged on ("optimised": the SNNL-optimised triggers; "classic": the same
triggers before optimisation) and its watermark step (``ewe.train.entangled_step``: cross-entropy minus the
weighted SNNL of every layer; ``ewe.train.plain_step``: cross-entropy only). The pipeline loops over
``SCHEMES``; a new scheme is one ``register(Scheme(...))`` call, nothing in the pipeline changes.

    EWE        "defended"           optimised triggers, SNNL term (unless the run sets snnl=False)
    CLASSIC    "plain_watermark"    raw triggers, cross-entropy only: the classic watermark (the paper's plain
                                    watermark; "classic" is the lab's word for it everywhere a person reads)
    ABLATION   "ablation_no_snnl"   optimised triggers, cross-entropy only (the no-SNNL ablation): what the SNNL
                                    term adds
    MEA        "mea_defender"       MEA-Defender (Lv et al., S&P 2024): its own "composite" triggers (halves of
                                    two source classes' images, labelled the target) and training
                                    (ewe.watermarks.mea); trained only when a run lists it in ``schemes``
    DAWN       "dawn_api"           DAWN (Szyller et al., ACM MM 2021): no training; the run's clean model
                                    served through an API that flips a keyed fraction of answers
                                    (ewe.watermarks.dawn). Its "dawn" set is each thief's register of
                                    flipped queries, with a label per input (predictions.json
                                    "set_targets"); only when a run lists it in ``schemes``
    MBW        "mbw"                margin-based watermark (Kim et al., ICML 2023): its own "margin" key of
                                    blended test images with random labels, one label per sample
                                    (predictions.json "set_targets"), trained with a margin
                                    (ewe.watermarks.mbw); only when a run lists it in ``schemes``
    DI         "dataset_inference"  dataset inference (Maini et al., ICLR 2021): no watermark; the owner's
                                    model trained plainly, each suspect judged by its own t-test on its
                                    margins around the owner's private points (ewe.watermarks.
                                    dataset_inference); only when a run lists it in ``schemes``

Every word a person reads for a scheme, its victim or its stolen copy comes from here (``Scheme.label``,
``short``, ``victim_label``, ``copy_label``; ``model_label`` for any model name, the clean models' words in
``BASE_LABELS``): the report, the app and the published tables look them up instead of keeping their own.

A run's ``schemes`` (RunConfig, CLI ``--schemes``) lists the victims it trains; unset, the default ones
(EWE, and the baselines unless ``train_baselines`` is off), so that existing settings give the same numbers.
``check_schemes`` is the one place that validates such a list.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar

from ..config import ConfigError

if TYPE_CHECKING:   # annotations only: importing this module must not import torch (the app's first page)
    import torch

    from ..config import RunConfig
    from .triggers import TriggerSet

TRIGGER_SETS = ("optimised", "classic", "composite", "dawn", "margin")
BUILTIN_SETS = ("optimised", "classic")    # made by ewe.watermarks.triggers for every run


@dataclass(frozen=True)
class Scheme:
    name: str                 # the watermarked victim ("defended", ...)
    stolen: str               # its copy made by the extraction attack ("extracted", ...)
    trigger_set: str          # "optimised" or "classic": trained on, and judged on its held-out half
    label: str                # the scheme for people ("classic watermark")
    snnl: bool | None         # SNNL term in the watermark step; None: the run's own ``snnl`` setting
    baseline: bool = True     # a comparison, trained only with the run's ``train_baselines``
    default: bool = True      # trained when a run does not list its ``schemes``
    setting: str | None = None   # the RunConfig field only this scheme reads (forms show it when it is chosen)
    short: str | None = None         # its column in tables ("classic"; bench/ summaries key on it); default label
    victim_label: str | None = None  # its victim model ("the {victim_label} model"); default label
    copy_label: str | None = None    # its stolen copy; default "stolen from {victim_label}"
    serves_api: ClassVar[bool] = False   # a watermark of the prediction API (DAWN), not of the model
    plan_factor: ClassVar[float] = 1.0   # its phase's expected cost against a plain one of EWE's length (ETA)
    own_test: ClassVar[bool] = False     # judged by its own test on evidence it records (dataset inference)

    def __post_init__(self):
        if self.trigger_set not in TRIGGER_SETS:
            raise ValueError(f"trigger_set is one of {TRIGGER_SETS}, got {self.trigger_set!r}")
        object.__setattr__(self, "short", self.short or self.label)         # frozen: set once, here
        object.__setattr__(self, "victim_label", self.victim_label or self.label)
        object.__setattr__(self, "copy_label", self.copy_label or f"stolen from {self.victim_label}")

    def uses_snnl(self, cfg: RunConfig) -> bool:
        return bool(cfg.snnl) if self.snnl is None else self.snnl

    def training_triggers(self, ts: TriggerSet) -> torch.Tensor:
        if self.trigger_set not in BUILTIN_SETS:
            return ts.extra[self.trigger_set][0]
        return ts.train if self.trigger_set == "optimised" else ts.raw_train

    def build_triggers(self, cfg: RunConfig, data, n_train: int):
        """A scheme with its own trigger set makes it here: (training, held-out, description), plus
        (training labels, held-out labels) for a set with one label per input (the margin key); None for
        the sets every run makes (``ewe.watermarks.triggers``)."""
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

    # A scheme judged by its own test (``own_test``) records what it needs from each model as the run makes it,
    # and judges from those records; the others are judged on their trigger set (ewe.verify) and ignore these.
    def observe(self, run_dir, cfg: RunConfig, data, name: str, model) -> None:
        """A model of the run is finished (a victim, a clean model, a stolen copy) under ``name``."""

    def observe_population(self, run_dir, cfg: RunConfig, data, manifest: dict, models: dict) -> None:
        """The innocent population's models (``ewe.innocents.load_population``), for the run's folder."""

    def verdicts(self, run_dir, settings: dict) -> dict:
        """result.json "verification" entries this scheme judges itself (replacing the trigger-set test's): its
        copy's under the copy's name, the independent clean model's under "clean_<scheme name>"."""
        return {}

    def copy_record(self, run_dir, name: str) -> dict:
        """What thieves.json keeps of this scheme's copy ``name`` beside its verdict, to re-judge it later."""
        return {}

    def rejudge(self, run_dir, record: dict, settings: dict) -> dict | None:
        """A thieves.json copy record judged again (None: judged on its trigger set like any other)."""
        return None

    def own_key(self, run_dir) -> str | None:
        """The name of the key this scheme judges any suspect on in ``run_dir`` (the Verify page's), if it has
        one there."""
        return None

    def judge_model(self, run_dir, model, settings: dict) -> dict | None:
        """Any suspect model (an uploaded checkpoint) judged by this scheme's own test."""
        return None


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


class MbwScheme(Scheme):
    """The margin-based watermark: a key of random-labelled blends trained with a margin (ewe.watermarks.mbw)."""
    labelled_key: ClassVar[bool] = True   # one label per key input, not the run's target class
    # up to 8 rounds of EWE's length, each step with 5 ascent steps on its key samples: digits quick measured
    # 109 s against 7 s for EWE's phase (seed 0, 5 rounds; 3-5 rounds over seeds 0-4); the bar jumps when it stops
    plan_factor: ClassVar[float] = 16.0

    def build_triggers(self, cfg: RunConfig, data, n_train: int):
        from .mbw import make_key
        key, labels, what = make_key(cfg, data)
        return key, key, what, (labels, labels)     # judged on the very key it trains (no held-out half)

    def train(self, model, x, y, ts: TriggerSet, x_target, cfg: RunConfig, **kw):
        from .mbw import train_mbw
        kw.pop("temps", None)
        return train_mbw(model, x, y, self.training_triggers(ts), ts.labels[self.trigger_set][0], cfg,
                         stage=self.name, name=self.name, value_range=ts.value_range,
                         schedule_triggers=len(ts.train), **kw)
class DatasetInferenceScheme(Scheme):
    """Dataset inference: no watermark; the owner's model is trained on its data like the clean one, served
    unchanged, and a suspect is judged by its own test on its decision margins around the owner's private
    points (ewe.watermarks.dataset_inference). The trigger set is only where its figures report what a trigger
    test would see (nothing: it never trained on one)."""
    own_test: ClassVar[bool] = True

    def train(self, model, x, y, ts: TriggerSet, x_target, cfg: RunConfig, **kw):
        """The watermark phase's length of plain training on the owner's data: the clean model's budget."""
        from ..train import resolve_precision, train_clean
        opt = train_clean(model, x, y, epochs=max(1, round(cfg.w_epochs)), batch_size=cfg.batch_size, lr=cfg.lr,
                          reporter=kw["reporter"], stage=self.name, name=self.name, probe=kw.get("probe"),
                          optimizer=kw.get("optimizer"), seed=kw.get("seed", cfg.seed) + 7919,
                          precision=resolve_precision(cfg.precision, cfg.device))
        return opt, None

    def observe(self, run_dir, cfg: RunConfig, data, name: str, model) -> None:
        from . import dataset_inference as di
        if run_dir and name in (self.name, self.stolen, *di.WALKED):
            di.record_model(run_dir, cfg, data, name, model, owner=name == self.name)

    def observe_population(self, run_dir, cfg: RunConfig, data, manifest: dict, models: dict) -> None:
        from . import dataset_inference as di
        if run_dir:
            di.record_population(run_dir, cfg, data, manifest, models)

    def verdicts(self, run_dir, settings: dict) -> dict:
        from . import dataset_inference as di
        return di.run_verdicts(run_dir, self.stolen, alpha=settings.get("alpha", 0.05))

    def copy_record(self, run_dir, name: str) -> dict:
        from . import dataset_inference as di
        ev = di.copy_evidence(run_dir, name) if name == self.stolen else None
        return {"evidence": ev} if ev else {}

    def rejudge(self, run_dir, record: dict, settings: dict) -> dict | None:
        from . import dataset_inference as di
        if not record.get("evidence"):
            return None
        return di.judge_copy(run_dir, record["evidence"], alpha=settings.get("alpha", 0.05))

    def own_key(self, run_dir) -> str | None:
        from . import dataset_inference as di
        return di.TEST_NAME if di.has_evidence(run_dir) else None

    def judge_model(self, run_dir, model, settings: dict) -> dict | None:
        from . import dataset_inference as di
        return di.judge_model(run_dir, model, alpha=settings.get("alpha", 0.05))


# The words (README, docs/RESULTS.md, the report, the app): the scheme's label; its short column word; its
# victim and stolen copy where they are not "<label>" and "stolen from <label>". EWE's victim is "defended (EWE)"
# as a model (the scheme is "EWE (defended)"), its copy "stolen from defended".
EWE = Scheme("defended", "extracted", "optimised", "EWE (defended)", snnl=None, baseline=False, short="EWE",
             victim_label="defended (EWE)", copy_label="stolen from defended")
CLASSIC = Scheme("plain_watermark", "plain_extracted", "classic", "classic watermark", snnl=False, short="classic")
ABLATION = Scheme("ablation_no_snnl", "ablation_extracted", "optimised", "no-SNNL ablation", snnl=False,
                  short="ablation")
MEA = MeaScheme("mea_defender", "mea_extracted", "composite", "MEA-Defender", snnl=False, default=False,
                setting="mea_sources")
DAWN = DawnScheme("dawn_api", "dawn_extracted", "dawn", "DAWN (API)", snnl=False, default=False,
                  setting="dawn_rate", short="DAWN")
MBW = MbwScheme("mbw", "mbw_extracted", "margin", "margin-based (MBW)", snnl=False, default=False,
                setting="mbw_eps", short="MBW")
DATASET_INFERENCE = DatasetInferenceScheme("dataset_inference", "di_extracted", "optimised", "dataset inference",
                                           snnl=False, default=False, setting="di_samples")

SCHEMES: dict[str, Scheme] = {}
BASE_SETS = {"clean": "optimised", "independent_clean": "optimised"}   # the clean models' trigger set
# the models of a run that no scheme owns, in words: the shared pre-training and the two clean models
BASE_LABELS = {"pretrain": "pre-training (shared)", "clean": "clean", "independent_clean": "independent clean"}
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
register(MBW)
register(DATASET_INFERENCE)


class _ModelLabels(Mapping):
    """Model name -> its words, read from the registry as it is now (a scheme registered later is in it, one
    removed is not): every scheme's victim and stolen copy, then ``BASE_LABELS``."""

    def _names(self) -> dict[str, str]:
        out = {n: w for s in SCHEMES.values() for n, w in ((s.name, s.victim_label), (s.stolen, s.copy_label))}
        return {**out, **BASE_LABELS}

    def __getitem__(self, name: str) -> str:
        return self._names()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


MODEL_LABELS: Mapping[str, str] = _ModelLabels()


def model_label(name: str) -> str:
    """A model of a run in words ("plain_extracted" -> "stolen from classic watermark"); an unknown name as it is."""
    return MODEL_LABELS.get(name, name)


def owner(name: str) -> Scheme | None:
    """The scheme whose victim or stolen copy ``name`` is (None: a clean model, or no model of a scheme)."""
    return next((s for s in SCHEMES.values() if name in (s.name, s.stolen)), None)


def scheme_label(name: str, default: str | None = None) -> str:
    """A scheme (by its victim's name) in words: its registry label; ``default`` (else the name) when the name is
    not registered (a stored table's own label for a scheme this code no longer has)."""
    scheme = SCHEMES.get(name)
    return scheme.label if scheme else (default or name)


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
