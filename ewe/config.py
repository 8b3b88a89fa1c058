"""Run configuration: one small dataclass, presets, and all parameter validation in one place.

Temperature convention (spec section 0): ``temperature`` is the standard SNNL temperature tau of
Frosst et al. (kernel exp(-d / tau)). The reference code's ``T`` maps to it as tau = 100 / T; presets
may give either (``reference_T`` is converted on load).

Loss scale: cross-entropy is the batch *mean*; the reference code summed it, so its kappa is divided by
its batch size to get the effective ``kappa`` stored here.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

DATASETS = ("mnist", "fashion-mnist", "digits", "speech-commands")
PRESETS = ("quick", "paper", "reference")
# what the thief queries with: the owner's training data (as the reference code), its own half of it, or
# fresh data from the task distribution that the owner never trained on (subset presets only)
ATTACKER_DATA = ("same", "disjoint", "fresh")
CLEAN_SCHEDULES = ("shuffled", "reference")


class ConfigError(ValueError):
    """A parameter or combination of parameters that cannot run; the message says what to change."""


PRECISION_CHOICES = ("fp32", "bf16", "auto")


@dataclass
class RunConfig:
    # what to run
    dataset: str = "mnist"
    preset: str = "quick"
    seed: int = 0
    data_dir: str | None = None
    device: str = "cpu"
    model: str = "conv2"              # conv2 (paper CNN), lstm (speech), see ewe.models.MODELS
    # data budget (None = all)
    train_size: int | None = None
    test_size: int | None = None
    # optimisation (reference: Adam 1e-3, betas 0.9/0.99, eps 1e-5)
    batch_size: int = 512
    lr: float = 1e-3
    epochs: int = 10                  # clean pre-training epochs
    w_epochs: float = 10.0            # watermark phase length, in clean-epoch units of watermark steps
    ratio: float = 1.0                # clean batches per watermark batch
    # clean batches of the watermark phase: shuffled over all the data (default), or as the reference code
    # (no shuffling, the pointer restarts every pass: only the first ratio * w_num_batch * B samples)
    clean_schedule: str = "shuffled"
    # SNNL
    kappa: list[float] = field(default_factory=lambda: [32 / 512] * 3)   # effective, mean-CE scale
    temperature: list[float] = field(default_factory=lambda: [100.0] * 3)  # tau per layer
    temperature_mode: str = "learned"  # learned (reference min-max) or fixed
    t_lr: float = 0.1
    metric: str = "cosine"
    snnl: bool = True                 # False = the "optimised triggers, no SNNL" ablation
    # triggers
    trigger: str = "ood"              # ood (another dataset's class) or in (source class + 3x3 patch)
    source: int = 1
    target: int = 7
    n_triggers: int | None = None     # training triggers (None = |target class|, as the reference)
    n_heldout: int = 1000             # held-out triggers for measuring watermark success
    optimise_triggers: bool = True
    maxiter: int = 10
    w_lr: float = 0.01
    threshold: float = 0.1
    # extraction (thief)
    extract_epochs: int | None = None  # None = epochs + w_epochs (reference)
    extract_labels: str = "hard"       # hard | soft
    distill_temperature: float = 1.0
    student: str | None = None         # None = same architecture as the victim
    query_budget: int | None = None    # None = the whole attacker set
    attacker_data: str = "same"        # same (defender's training set, as the reference) | disjoint
    thief_seed: int | None = None      # the student's initialisation and data order; see run_thief_seed
    # verification
    alpha: float = 0.05
    # welch test: H0 is rate(suspect) <= rate(clean reference) + margin (verify.py); also the allowance over
    # the clean reference when a run has no innocent population. 0.1: the smallest margin that accused no
    # innocent model in 17 measured runs (docs/history/2026-11-28-verification-margin.md) -- an in-sample
    # choice, hence the binomial test against an innocent population by default
    verify_margin: float = 0.1
    query_draws: int = 200
    test: str = "binomial"             # binomial (against the innocent population) | welch (the paper's)
    innocents: int = 24                # innocent models behind the null rate (0: the run's clean model only);
                                       # proving at alpha needs at least 1/alpha (20 at 0.05): ewe.verify.innocents_needed
    # run control
    train_baselines: bool = True       # clean, classic watermark, ablation and their extractions
    # the watermarking schemes (victims) the run trains, by name (ewe.watermarks.schemes, e.g. "mea_defender";
    # "default" = the default ones); None = the default ones (EWE + the baselines): the numbers stay as before
    schemes: list[str] | None = None
    # MEA-Defender's two source classes (its composites' halves); None = the two lowest classes other than target
    mea_sources: list[int] | None = None
    # DAWN's share of API answers flipped (ewe.watermarks.dawn): the honest users' accuracy cost
    dawn_rate: float = 0.005
    # the margin-based watermark's radius (ewe.watermarks.mbw): L-infinity bound of the ascent on its key
    # samples; 5/255 is the paper's, 0 trains the key without a margin
    mbw_eps: float = 5 / 255
    # dataset inference's m: the private (and as many public) points the owner reveals to its t-test
    # (ewe.watermarks.dataset_inference; the paper's claim is for 50)
    di_samples: int = 50
    threads: int | None = None
    # the arithmetic of the run's own models' forward passes (pre-training, victims, thieves): fp32, bf16
    # (autocast: weights, gradients and the SNNL stay fp32) or auto (bf16 where the device has bf16 units,
    # ewe.train.fast_precision). The innocent population has its own (ewe.innocents.precision)
    precision: str = "fp32"

    # ---- derived -------------------------------------------------------------------------------
    @property
    def extraction_epochs(self) -> int:
        if self.extract_epochs is not None:
            return self.extract_epochs
        return int(self.epochs + round(self.w_epochs))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def replace(self, **changes: Any) -> "RunConfig":
        """A validated copy with ``changes`` (scalars are accepted for the per-layer kappa/temperature)."""
        return from_dict({**self.to_dict(), **changes})


# Per-dataset presets. "reference" mirrors the reference code's --default 1 settings (spec b2), with
# kappa converted to the mean-CE scale (kappa_ref / B). "paper" and "quick" are this project's settings.
_REFERENCE = {
    "mnist": dict(model="conv2", batch_size=512, ratio=1.0, epochs=10, w_epochs=10, reference_kappa=32,
                  reference_T=1, t_lr=0.1, source=1, target=7, trigger="ood"),
    "fashion-mnist": dict(model="conv2", batch_size=128, ratio=2.0, epochs=10, w_epochs=10,
                          reference_kappa=32, reference_T=1, t_lr=0.1, source=8, target=0, trigger="ood"),
    "digits": dict(model="conv2", batch_size=128, ratio=1.0, epochs=10, w_epochs=10, reference_kappa=32,
                   reference_T=1, t_lr=0.1, source=1, target=7, trigger="ood"),
    "speech-commands": dict(model="lstm", batch_size=128, ratio=1.0, epochs=30, w_epochs=1,
                            reference_kappa=16, reference_T=30, t_lr=2.0, source=9, target=5,
                            trigger="in"),
}

# Project presets: overrides on top of the reference values. Chosen from measurements (README).
_PROJECT = {
    # MNIST / Fashion: tau = 1 (reference T = 100), where the cosine kernel is not flat and SNNL moves;
    # kappa 0.25: on MNIST no setting of the quick-scale grid (kappa, tau, ratio, triggers; 3 seeds,
    # bench/results/explore_grid.jsonl) beat it consistently, and none beat the no-SNNL ablation by much:
    # see docs/history/2026-11-28-snnl-study.md.
    # paper: full data, 2 + 2 epochs (the thief and the clean models get 4): 3 + 3 would take ~27 min a
    # run on 2 cores; 2 + 2 is about 18 (docs/history/2026-11-28-presets-and-step-cost.md).
    ("mnist", "paper"): dict(batch_size=256, epochs=2, w_epochs=2, n_triggers=2048, n_heldout=1000,
                             kappa=[0.25] * 3, temperature=[1.0] * 3),
    # quick MNIST and digits: bf16 forward passes where the hardware has them (precision "auto"): 0.77x and
    # 0.80x of the fp32 run's time on 2 cores, every accuracy, watermark rate and verdict within the victim
    # seeds' spread (5 seeds each way, bench/bench_precision.py, docs/RESULTS.md §5). --precision fp32 for fp32
    ("mnist", "quick"): dict(batch_size=128, epochs=2, w_epochs=2, train_size=8000, test_size=2000,
                             n_triggers=512, n_heldout=300, maxiter=10, extract_epochs=3,
                             kappa=[0.25] * 3, temperature=[1.0] * 3, precision="auto"),
    ("fashion-mnist", "paper"): dict(batch_size=256, ratio=1.0, epochs=2, w_epochs=2, n_triggers=2048,
                                     n_heldout=1000, kappa=[0.25] * 3, temperature=[1.0] * 3),
    # Fashion quick: kappa 1 kept 0.730 of the watermark in the stolen copy against 0.594 with 0.25, and
    # beat the no-SNNL ablation on all three seeds (+11.3 points on average; docs/history/2026-11-28-snnl-study.md)
    ("fashion-mnist", "quick"): dict(batch_size=128, ratio=1.0, epochs=2, w_epochs=2, train_size=8000,
                                     test_size=2000, n_triggers=512, n_heldout=300, maxiter=10,
                                     extract_epochs=3, kappa=[1.0] * 3, temperature=[1.0] * 3),
    # digits (offline demo): kappa 2 (bench/results/explore_digits.jsonl). Target 6, not 7: innocent models
    # call the photo-patch triggers 7 on up to 72 % of them (a null rate of 0.78 on the classic triggers) and
    # 6 on none (issue 16, H4; docs/RESULTS.md §2). The preset's thief distils soft labels at
    # temperature 5: a hard-label thief querying the owner's 1,437 training images gets the true labels back
    # (1 answer of 1,437 was the target where the truth is another class) and no watermark survived it; from
    # temperature 2 every watermark did. bench/demo_reliability.py measures both thieves over victims x thieves.
    ("digits", "paper"): dict(epochs=20, w_epochs=10, n_heldout=200, maxiter=10, kappa=[2.0] * 3,
                              temperature=[1.0] * 3, target=6),
    ("digits", "quick"): dict(batch_size=64, epochs=8, w_epochs=6, n_triggers=256, n_heldout=200,
                              maxiter=10, extract_epochs=10, kappa=[2.0] * 3, temperature=[1.0] * 3,
                              target=6, extract_labels="soft", distill_temperature=5.0, precision="auto"),
    # speech: the temporal AudioCNN (the LSTM needs ~10x the time per epoch and 30 epochs), batch 64
    # (3,154 training clips), 2 clean batches per watermark batch (ratio 1 cost ~5 points of accuracy),
    # tau 0.1 / 0.1 / 0.3 (at the reference's tau 3.33 the SNNL stays at ln 2 and does nothing), and
    # source "stop" instead of "go": go and "no" are confused ~13 % of the time by clean models, so an
    # independently trained model was claimed as a copy (README; bench/bench_speech.py, retired: docs/history).
    ("speech-commands", "paper"): dict(model="audio_cnn", batch_size=64, ratio=2.0, epochs=8, w_epochs=3,
                                       n_heldout=100, maxiter=10, extract_epochs=8, kappa=[0.25] * 3,
                                       temperature=[0.1, 0.1, 0.3], source=8),
    ("speech-commands", "quick"): dict(model="audio_cnn", batch_size=64, ratio=2.0, epochs=4, w_epochs=1.5,
                                       n_triggers=256, n_heldout=100, maxiter=10, extract_epochs=3,
                                       kappa=[0.25] * 3, temperature=[0.1, 0.1, 0.3], source=8),
}


# A very small configuration for smoke tests and classroom "does it work" runs (seconds, not minutes): the
# quick preset with these settings. Not one of PRESETS: its run folders say "custom".
TINY = dict(epochs=1, w_epochs=1, maxiter=1, n_triggers=64, n_heldout=32, extract_epochs=1,
            train_size=256, test_size=128, batch_size=32, query_draws=40, innocents=4)


def tiny(dataset: str, *, limits: dict[str, float] | None = None, **overrides: Any) -> RunConfig:
    """The TINY configuration of ``dataset`` with ``overrides``, validated (``limits``: see ``validate``)."""
    return preset(dataset, "quick", limits=limits, **{**TINY, **overrides}).replace(preset="custom")


def preset_values(dataset: str, name: str = "quick") -> dict[str, Any]:
    """The named preset's raw settings (before validation; may use the ``reference_*`` aliases).

    Cheap: it needs no torch, so the app can fill its widgets without importing the model registry."""
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    values: dict[str, Any] = dict(_REFERENCE[dataset])
    if name != "reference":
        values.update(_PROJECT.get((dataset, name), {}))
    return values


def preset(dataset: str, name: str = "quick", *, limits: dict[str, float] | None = None,
           **overrides: Any) -> RunConfig:
    """The named preset for a dataset, with overrides applied and everything validated (``limits``: the
    caller's upper bounds, see ``validate``)."""
    values = preset_values(dataset, name)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    # an alias in the overrides wins over the preset's own value of the same setting
    if "reference_T" in overrides:
        values.pop("temperature", None)
    if "reference_kappa" in overrides:
        values.pop("kappa", None)
    values.update(overrides)
    values["dataset"], values["preset"] = dataset, name
    return from_dict(values, limits=limits)


SAVED_NOTES = ("effective",)   # what a run folder's config.json holds beside RunConfig's fields (derived values)


def saved_config(saved: dict[str, Any], check: bool = True, **overrides: Any) -> RunConfig:
    """The RunConfig of a run folder's config.json content (``saved``), with ``overrides`` (a thief's settings, a
    data dir): the one place that knows what config.json holds beside the fields (``SAVED_NOTES``)."""
    return from_dict({**{k: v for k, v in saved.items() if k not in SAVED_NOTES}, **overrides}, check=check)


def from_dict(values: dict[str, Any], check: bool = True, limits: dict[str, float] | None = None) -> RunConfig:
    """Build a config from a dict (a preset, a saved config.json or CLI overrides).

    ``check=False`` skips ``validate`` (which imports torch for the model names): for readers of stored
    configs that only want today's defaults filled in (ewe.results.sidebyside).

    Accepts the reference code's parameterisation as aliases: ``reference_T`` (tau = 100 / T) and
    ``reference_kappa`` (divided by the batch size, since the reference summed its cross-entropy).
    """
    values = dict(values)
    known = {f.name for f in fields(RunConfig)}
    ref_T = values.pop("reference_T", None)
    ref_kappa = values.pop("reference_kappa", None)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    batch = int(values.get("batch_size", RunConfig.batch_size))
    if ref_T is not None and "temperature" not in values:
        values["temperature"] = [100.0 / float(t) for t in _three(ref_T, "reference_T")]
    if ref_kappa is not None and "kappa" not in values:
        values["kappa"] = [float(k) / batch for k in _three(ref_kappa, "reference_kappa")]
    for key in ("kappa", "temperature"):
        if key in values:
            values[key] = [float(v) for v in _three(values[key], key)]
    if values.get("mea_sources") is not None:     # the CLI's list options parse floats
        values["mea_sources"] = [int(v) for v in values["mea_sources"]]
    if isinstance(values.get("schemes"), str):    # a CLI or form value: "defended,mea_defender"
        values["schemes"] = [values["schemes"]]
    if values.get("schemes") is not None:
        # the names are checked against the scheme registry by ewe.watermarks.schemes.check_schemes (by the
        # pipeline, the CLI and the app, before anything is written): the registry imports this module
        values["schemes"] = [n.strip() for v in values["schemes"] for n in str(v).split(",") if n.strip()]
    cfg = RunConfig(**values)
    return validate(cfg, limits) if check else cfg


def _three(value: Any, name: str) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)] * 3
    value = list(value)
    if len(value) == 1:
        return [float(value[0])] * 3
    if len(value) != 3:
        raise ConfigError(f"{name} needs one value or three (one per SNNL layer), got {len(value)}")
    return [float(v) for v in value]


def check_verify_margin(margin: float, name: str = "verify_margin") -> float:
    if not 0 <= margin < 1:
        raise ConfigError(f"{name} is a difference of rates in [0, 1)")
    return margin


def run_thief_seed(seed: int, thief_seed: int | None = None) -> int:
    """The seed of a run's own thief: its ``thief_seed``, or by default the run's seed + 20000 (away from
    the seeds the victims and clean models are drawn with)."""
    return int(seed) + 20_000 if thief_seed is None else int(thief_seed)


def validate(cfg: RunConfig, limits: dict[str, float] | None = None) -> RunConfig:
    """Check every parameter and combination; raise ConfigError naming every setting to change (one line).

    ``limits``: upper bounds a caller imposes beyond what the method needs, by field name (a shared server
    keeps a typed 10,000 epochs from holding its queue: the app's ``ui.presets.LIMITS``); a list field's
    largest value is checked."""
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    need(cfg.dataset in DATASETS, f"unknown dataset {cfg.dataset!r}; choose one of {', '.join(DATASETS)}")
    need(cfg.preset in PRESETS + ("custom",), f"unknown preset {cfg.preset!r}")
    need(cfg.seed >= 0, "seed must be 0 or more")
    need(cfg.batch_size >= 4 and cfg.batch_size % 2 == 0,
         f"batch size must be an even number of at least 4 (watermark batches are half triggers), "
         f"got {cfg.batch_size}")
    need(cfg.lr > 0, "learning rate must be positive")
    need(cfg.epochs >= 0, "epochs must be 0 or more")
    need(cfg.w_epochs > 0, "the watermark phase needs w_epochs > 0")
    need(cfg.ratio > 0, f"ratio (clean batches per watermark batch) must be positive, got {cfg.ratio}")
    need(cfg.ratio <= 100, f"ratio {cfg.ratio} is too large (at most 100)")
    need(len(cfg.kappa) == 3 and all(k >= 0 for k in cfg.kappa),
         f"kappa (κ, the SNNL weight) needs three values >= 0, got {cfg.kappa}")
    need(len(cfg.temperature) == 3 and all(t > 0 for t in cfg.temperature),
         f"temperature must be positive (got {cfg.temperature}); tau = 100 / T for the reference code's T")
    need(cfg.temperature_mode in ("learned", "fixed"), "temperature_mode is 'learned' or 'fixed'")
    need(cfg.precision in PRECISION_CHOICES, f"precision is one of {', '.join(PRECISION_CHOICES)}, got "
         f"{cfg.precision!r}")
    need(cfg.t_lr >= 0, "t_lr must be 0 or more")
    need(cfg.metric in ("cosine", "euclidean"), "metric is 'cosine' or 'euclidean'")
    need(cfg.trigger in ("ood", "in"), "trigger is 'ood' (out-of-distribution) or 'in' (patch)")
    n_classes = 10
    need(0 <= cfg.target < n_classes, f"target class must be 0..{n_classes - 1}, got {cfg.target}")
    need(0 <= cfg.source < n_classes, f"source class must be 0..{n_classes - 1}, got {cfg.source}")
    need(not (cfg.trigger == "in" and cfg.source == cfg.target),
         f"source and target are both class {cfg.source}: an in-distribution watermark needs a source "
         "class different from the target")
    need(0 < cfg.dawn_rate <= 0.5, f"dawn_rate (the share of API answers DAWN flips) is in (0, 0.5], "
         f"got {cfg.dawn_rate}")
    need(0 <= cfg.mbw_eps <= 0.5, f"mbw_eps (the margin-based watermark's radius, L-infinity on [0, 1] inputs) "
         f"is in [0, 0.5], got {cfg.mbw_eps}")
    need(isinstance(cfg.di_samples, int) and not isinstance(cfg.di_samples, bool) and cfg.di_samples >= 2,
         f"di_samples (the private and public points dataset inference reveals) must be an integer of at "
         f"least 2 (the t-test needs two points a side), got {cfg.di_samples!r}")
    need(cfg.mea_sources is None or (len(cfg.mea_sources) == 2 and len(set(cfg.mea_sources)) == 2
                                     and all(0 <= c < n_classes for c in cfg.mea_sources)
                                     and cfg.target not in cfg.mea_sources),
         f"mea_sources is two different classes 0..{n_classes - 1}, neither the target {cfg.target}; "
         f"got {cfg.mea_sources}")
    need(cfg.n_triggers is None or cfg.n_triggers >= 2, "n_triggers must be at least 2")
    need(cfg.n_heldout >= 2, "n_heldout must be at least 2 (the t-test needs several queries)")
    need(cfg.maxiter >= 0, "maxiter must be 0 or more")
    need(cfg.w_lr >= 0, "w_lr must be 0 or more")
    need(0 <= cfg.threshold <= 1, "threshold is a fraction in [0, 1]")
    need(cfg.train_size is None or cfg.train_size >= 2 * cfg.batch_size // 2,
         f"train_size {cfg.train_size} is smaller than one batch ({cfg.batch_size})")
    need(cfg.test_size is None or cfg.test_size >= 1, "test_size must be positive")
    need(cfg.extract_epochs is None or cfg.extract_epochs >= 1, "extract_epochs must be at least 1")
    need(cfg.extract_labels in ("hard", "soft"), "extract_labels is 'hard' or 'soft'")
    need(cfg.distill_temperature > 0, "distill_temperature must be positive")
    need(cfg.query_budget is None or cfg.query_budget >= cfg.batch_size // 2,
         f"query budget {cfg.query_budget} is below half a batch ({cfg.batch_size // 2})")
    need(cfg.thief_seed is None or cfg.thief_seed >= 0, "thief_seed must be 0 or more")
    need(cfg.attacker_data in ATTACKER_DATA, f"attacker_data is one of {', '.join(ATTACKER_DATA)}")
    need(cfg.clean_schedule in CLEAN_SCHEDULES, f"clean_schedule is one of {', '.join(CLEAN_SCHEDULES)}")
    need(cfg.attacker_data != "fresh" or cfg.train_size is not None,
         "a thief with fresh data needs the owner to train on a subset (train_size), so that images the owner "
         f"never saw are left for the thief; {cfg.dataset} here uses all its training images")
    need(0 < cfg.alpha < 1, "alpha is a significance level in (0, 1)")
    try:
        check_verify_margin(cfg.verify_margin)
    except ConfigError as exc:
        problems.append(str(exc))
    need(cfg.query_draws >= 1, "query_draws must be at least 1")
    need(cfg.test in ("binomial", "welch"), f"test is 'binomial' or 'welch', got {cfg.test!r}")
    need(cfg.innocents == 0 or cfg.innocents >= 4,
         f"innocents must be 0 (no population) or at least 4 models, got {cfg.innocents}")
    need(cfg.threads is None or cfg.threads >= 1, "threads must be at least 1")
    need(cfg.device == "cpu" or cfg.device.startswith("cuda"), "device is 'cpu' or 'cuda[:N]'")
    from .models import MODELS  # late import: models imports torch
    need(cfg.model in MODELS, f"unknown model {cfg.model!r}; choose one of {', '.join(MODELS)}")
    need(cfg.student is None or cfg.student in MODELS,
         f"unknown student architecture {cfg.student!r}; choose one of {', '.join(MODELS)}")
    need(not (cfg.dataset == "speech-commands") or cfg.model in ("lstm", "audio_cnn"),
         "speech-commands needs an audio model ('lstm' or 'audio_cnn')")
    need(not (cfg.dataset == "speech-commands" and cfg.trigger == "ood"),
         "speech-commands uses in-distribution triggers (trigger 'in'): the out-of-distribution words the "
         "reference recorded are not part of the 10-keyword data")
    need(cfg.dataset == "speech-commands" or cfg.model not in ("lstm", "audio_cnn"),
         f"model {cfg.model!r} is for speech-commands; image datasets use 'conv2'")
    for name, most in (limits or {}).items():
        value = getattr(cfg, name)
        value = max(value) if isinstance(value, list) else value
        need(value <= most, f"{name} is at most {most:g} here, got {value:g}")
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} settings need a change: " + "; ".join(problems))
    return cfg
