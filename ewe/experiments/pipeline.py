"""The whole experiment: train the victims, steal them, verify ownership; write the run folder.

    train_victims(cfg, out_dir)  clean pre-training (shared), triggers, then from the same pre-trained
                                 weights one victim per watermarking scheme (ewe.watermarks.schemes:
                                 defended (EWE), plain_watermark (classic: raw triggers, no SNNL),
                                 ablation_no_snnl (optimised triggers, no SNNL)); and, from scratch, the
                                 clean reference and an independent clean model (the innocent suspect)
                                 -- see step 4 for why they must not share it: with an innocent
                                 population, the task's two reference models, trained once with it.
    steal(run_dir, thief)        extraction attack against every scheme's victim.
    verify_run(run_dir)          the verdicts from predictions.json (ewe.results.verdicts; cheap,
                                 recomputable by anyone).
    run(cfg, out_dir)            all three.

Everything finished is written as soon as it finishes; a stop request ends the run at the next batch with
status "stopped" and keeps what is done.

Seeds. Every random draw comes from its own generator seeded from the run's seed, never from the global
generators (torch.manual_seed, random, numpy.random), which all threads of a process share: two runs in
parallel threads (the app, a sweep) give exactly the numbers they give one after the other. With s the
run's seed (a model's initial weights and its batch order are separate ``torch.Generator`` objects):

    data subsets (load_data)           training s, test s + 1, disjoint thief half s + 2
    pre-trained base model             initial weights s, batch order s
    watermark phase (all victims)      clean batches and target samples s + 7919
    clean reference                    initial weights s + 1, batch order s + 1 (a run without an innocent
                                       population; with one, the task's: seed 60000, ewe.innocents)
    independent clean model            initial weights s + 10000, batch order s + 10000 (with a population:
                                       the task's, seed 60001)
    thief (steal)                      query subset, student weights and batch order: the thief seed
                                       (config.run_thief_seed: s + 20000 unless set)
    removal attacks                    attacker subset s + 30000, fine-tuning batches s + 30001
    projections, verification          random_state s (scikit-learn), numpy default_rng(s)

Trigger making draws nothing at random (tiling, patch location and optimisation are deterministic).
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field
import json
import time
from pathlib import Path
from typing import Callable, Iterable

import torch

from ..attacks.extraction import ThiefConfig, attacker_queries, extract, label_queries
from ..callbacks import Reporter, Stopped, part_of
from ..config import ConfigError, RunConfig, run_thief_seed, saved_config
from ..data.splits import Data, check_device, load_data
from ..models import build_model
from ..results import studies
from ..results.runs import Run
from ..results.schema import CLEAN_MODELS, TRIGGERS_FILE, TRIGGER_SET, VICTIMS, heldout_key, heldout_sets
from ..results.verdicts import record_thief, verify_run
from ..train import (Probe, accuracy, make_optimizer, predict, resolve_precision, train_clean, watermark_schedule,
                     watermark_success)
from ..watermarks import triggers as trig
from ..watermarks.diagnostics import layer_geometry, projection, save_projection_png
from ..watermarks.schemes import SCHEMES, schemes_for

LIVE_TEST = 2000   # test samples used for the live per-epoch curves (the final figures use all)


# ---------------------------------------------------------------------------------------------------
STAGE_COSTS = studies.STAGE_COSTS     # package data: a non-editable install plans with it too


# a training stage's time under the run's precision against fp32's (bench/bench_precision.py: 0.65-0.85 per
# stage on quick MNIST and digits, SNNL steps the least; stage_costs.json is measured in fp32)
RUN_PRECISION_COST = {"fp32": 1.0, "bf16": 0.75}


def stage_plan(cfg: RunConfig, n_train: int, n_triggers: int, with_steal: bool = False) -> dict[str, float]:
    """Expected seconds of each stage on a quiet machine, for the ETA and the app's estimate before Start:
    the stage's work in batch units (``_stage_units``) times the seconds per unit measured for that stage
    by ``bench/bench_eta.py --calibrate`` (ewe/measured/stage_costs.json, a digits quick run), scaled by
    the batch size. Without that file, the units themselves (relative costs only)."""
    units = _stage_units(cfg, n_train, n_triggers, with_steal)
    try:
        costs = json.loads(STAGE_COSTS.read_text())
        per_unit, ref = costs["seconds_per_unit"], costs["measured_with"]
        scale = cfg.batch_size / ref["batch_size"] * (1 + costs.get("overhead", 0.0))
        plan = {k: v * per_unit.get(k.split("_")[0] if k.startswith("steal_") else k, 1.0) * scale
                for k, v in units.items()}
    except (OSError, ValueError, KeyError):
        plan = units
    clean_cost = plan["clean"]   # an fp32 clean model: the unit the population's members are priced in
    factor = RUN_PRECISION_COST[resolve_precision(cfg.precision, cfg.device)]
    plan = {k: v if k == "triggers" else v * factor for k, v in plan.items()}   # trigger making stays fp32
    if cfg.innocents:   # shared with the population: loaded, or trained with it (priced as its members)
        plan.update(clean=0.01 * clean_cost, independent_clean=0.01 * clean_cost)
    return {**plan, **_missing_innocents(cfg, clean_cost)}


def _missing_innocents(cfg: RunConfig, clean_cost: float) -> dict[str, float]:
    """The innocent and reference models the run will train first (once per task; ewe.innocents), at the cost that
    innocents._build gives them in the plan: known from the start, the first run's ETA counts them too."""
    if not cfg.innocents:
        return {}
    from ..innocents import missing_recipes, planned_cost, precision
    mode = precision(cfg.device)
    return {r.name: planned_cost(r, mode) * clean_cost for r in missing_recipes(cfg)}


def _stage_units(cfg: RunConfig, n_train: int, n_triggers: int, with_steal: bool = False) -> dict[str, float]:
    """Work of each stage in clean-batch units."""
    nb = max(1, n_train // cfg.batch_size)
    passes, wnb, clean_before = watermark_schedule(n_train, n_triggers, cfg.batch_size, cfg.w_epochs,
                                                   cfg.ratio)
    wm_clean = passes * sum(clean_before)
    wm_steps = passes * wnb
    chunks = -(-n_triggers // (cfg.batch_size // 2)) + -(-cfg.n_heldout // (cfg.batch_size // 2))
    return {"pretrain": cfg.epochs * nb,
            "triggers": chunks * (cfg.maxiter * 2.5 + 6) * 0.5 if cfg.optimise_triggers else 1,
            **{s.name: (wm_clean + wm_steps * (3.5 if s.uses_snnl(cfg) else 1)) * s.plan_factor
               for s in schemes_for(cfg) if not s.serves_api},
            "clean": (cfg.epochs + max(1, round(cfg.w_epochs))) * nb, "independent_clean": (cfg.epochs + max(1, round(cfg.w_epochs))) * nb,
            **({f"steal_{s.name}": cfg.extraction_epochs * nb for s in schemes_for(cfg)} if with_steal else {})}


# ---------------------------------------------------------------------------------------------------
def _start(cfg: RunConfig, listeners, stop) -> Reporter:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return Reporter(list(listeners or []), stop)


def _evaluate(model, data: Data, sets: dict[str, torch.Tensor], train_sets: dict[str, torch.Tensor],
              name: str, target, train_target=None) -> tuple[dict, dict]:
    """Final figures for one model (full test set, its held-out trigger set) and its trigger predictions.
    ``target``: the class (or per-input labels) a hit is on the model's set; ``train_target`` the same for
    its training triggers (default: ``target``)."""
    figures = {"accuracy": accuracy(model, data.x_test, data.y_test),
               "watermark_success": watermark_success(model, sets[TRIGGER_SET[name]], target)}
    if name in train_sets:
        figures["watermark_success_train"] = watermark_success(
            model, train_sets[name], target if train_target is None else train_target)
    preds = {k: predict(model, v).tolist() for k, v in sets.items()}
    return figures, preds


@contextmanager
def _recorded(run: Run, seconds_key: str, history: Callable[[], list]):
    """Run a stage group: a stop request ends it with status "stopped", an error with "failed" (and is
    re-raised); either way the time, result, predictions and history are written."""
    result = run.result
    t0 = time.perf_counter()
    try:
        yield
    except Stopped:
        result["status"] = "stopped"
    except Exception as exc:
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        result["seconds"][seconds_key] = round(time.perf_counter() - t0, 2)
        run.history = history()
        run.save("result", "predictions", "history")


def train_victims(cfg: RunConfig, out_dir: str | Path | None = None,
                  listeners: Iterable[Callable] | None = None, stop=None,
                  reporter: Reporter | None = None, with_steal: bool = False, data: Data | None = None) -> dict:
    """Train every victim and baseline; return (and write) result.json with status and timings. ``data``: the
    run's tensors when the caller has loaded them (``run`` steals with the same ones)."""
    check_device(cfg.device)   # before anything is written
    schemes = schemes_for(cfg)  # validates the run's scheme list (ConfigError), also before anything is written
    rep = reporter or _start(cfg, listeners, stop)
    run = Run(out_dir)
    run.config = cfg
    run.save("saved")
    run.result = {"dataset": cfg.dataset, "preset": cfg.preset, "seed": cfg.seed, "status": "running",
                  "models": {}, "verification": {}, "seconds": {}}
    run.predictions = {"target": cfg.target, "sets": {"optimised": {}, "classic": {}}}
    with _recorded(run, "train_total", lambda: rep.history):
        t = _Training.begin(run, cfg, schemes, rep, data, with_steal)
        base, base_opt = _pretrain(t)
        x_target = t.data.x_train[t.data.y_train == cfg.target]
        ts = _make_triggers(t, base)
        pre_opt_state = base_opt.state_dict()
        for scheme in t.trained:    # each from the same pre-trained weights and optimiser state
            _train_victim(t, scheme, base, pre_opt_state, ts, x_target)
        _clean_models(t)
        run.result["status"] = "trained"
    return run.result


@dataclass
class _Training:
    """What the stages of one training share: the run folder being written, the settings, the tensors, the
    progress. The stages below take it and record into ``run``; nothing else holds state between them."""
    run: Run
    cfg: RunConfig
    data: Data
    rep: Reporter
    schemes: list                   # the run's schemes, in its order
    raw_train: torch.Tensor         # candidate triggers before optimisation
    raw_held: torch.Tensor
    live: Probe                     # the test samples of the live curves
    sets: dict = field(default_factory=dict)          # held-out trigger set name -> tensor
    train_sets: dict = field(default_factory=dict)    # victim name -> its training triggers
    labels: dict = field(default_factory=dict)        # set with one label per input -> (train, held-out) labels
    diagnostics: dict = field(default_factory=lambda: {"target_samples": "target-class test samples",
                                                       "triggers": "held-out triggers"})

    @classmethod
    def begin(cls, run: Run, cfg: RunConfig, schemes: list, rep: Reporter, data: Data | None,
              with_steal: bool) -> "_Training":
        """Load the data (unless given) and the raw triggers, record the run's shape and set the plan."""
        t = time.perf_counter()
        data = data if data is not None else load_data(cfg)
        rep.message(f"Data: {data.source}")
        raw_train, raw_held, what = trig.build_triggers_raw(cfg, data)
        rep.message(f"Triggers: {what}; {len(raw_train)} for training, {len(raw_held)} held out")
        run.result["seconds"]["data"] = round(time.perf_counter() - t, 2)
        run.result.update(input_shape=list(data.x_train.shape[1:]), n_train=len(data.x_train),
                          n_attack=len(data.x_attack), n_test=len(data.x_test), data_source=data.source,
                          trigger_source=what)
        rep.set_plan(stage_plan(cfg, len(data.x_train), len(raw_train), with_steal))
        rep.emit("run_start", stages=list(rep.plan), config=cfg.to_dict())
        return cls(run, cfg, data, rep, list(schemes), raw_train, raw_held,
                   Probe(data.x_test[:LIVE_TEST], data.y_test[:LIVE_TEST], target=cfg.target))

    @property
    def trained(self) -> list:
        """The schemes whose victims are trained here."""
        return [s for s in self.schemes if not s.serves_api]

    @property
    def served(self) -> list:
        """The API schemes (DAWN): the clean model serves them, nothing is trained."""
        return [s for s in self.schemes if s.serves_api]

    @property
    def shape(self) -> tuple:
        return tuple(self.data.x_train.shape[1:])

    def timed(self, stage: str, fn):
        """``fn()`` as the stage ``stage``: its seconds in result.json, its progress and end event."""
        t0 = time.perf_counter()
        out = fn()
        seconds = self.run.result["seconds"][stage] = round(time.perf_counter() - t0, 2)
        self.rep.advance(stage, 1.0)
        self.rep.emit("stage_end", stage=stage, model=stage, seconds=seconds)
        return out

    def target_of(self, set_name: str):
        return _set_target(self.run.predictions, set_name, self.cfg.device)

    def diagnose(self, key: str, model, trigger_set: str) -> None:
        """The model's feature geometry on a trigger set against the target class (diagnostics.json, and its
        summary in result.json)."""
        target_samples = self.data.x_test[self.data.y_test == self.cfg.target]
        geometry = layer_geometry(model, self.sets[trigger_set], target_samples)
        proj = projection(model, self.sets[trigger_set], target_samples, method="pca", seed=self.cfg.seed)
        self.diagnostics[key] = {"trigger_set": trigger_set, "geometry": geometry, "projection": proj}
        self.run.result.setdefault("diagnostics", {})[key] = {"trigger_set": trigger_set, "geometry": geometry}
        self.run.diagnostics = self.diagnostics
        self.run.save("diagnostics")

    def finish(self, name: str, model) -> None:
        """A trained model kept: its checkpoint, what a scheme with its own test observes (dataset inference),
        its figures and its answers on every trigger set."""
        run, cfg = self.run, self.cfg
        run.save_model(name, model)
        for scheme in self.schemes:   # a scheme with its own test records its evidence (dataset inference)
            scheme.observe(run.path, cfg, self.data, name, model)
        set_name = TRIGGER_SET[name]
        figures, preds = _evaluate(model, self.data, self.sets, self.train_sets, name, self.target_of(set_name),
                                   self.labels[set_name][0] if set_name in self.labels else None)
        run.result["models"][name] = figures
        for k, v in preds.items():
            run.predictions["sets"][k][name] = v
        run.history = self.rep.history
        run.save("result", "predictions", "history")


def _pretrain(t: _Training):
    """1. The clean pre-training every victim starts from; returns the model and its optimiser."""
    cfg = t.cfg
    base = build_model(cfg.model, t.shape, seed=cfg.seed).to(cfg.device)
    if cfg.epochs <= 0:
        return base, torch.optim.Adam(base.parameters())
    opt = t.timed("pretrain", lambda: train_clean(
        base, t.data.x_train, t.data.y_train, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
        reporter=t.rep, stage="pretrain", name="pretrain", probe=t.live, seed=cfg.seed,
        precision=resolve_precision(cfg.precision, cfg.device)))
    return base, opt


def _make_triggers(t: _Training, base) -> trig.TriggerSet:
    """2. The triggers: patch location (in-distribution), then optimisation against the pre-trained model, and
    each scheme's own set (MEA-Defender's composites) made once per set; saved with a picture, and the
    pre-trained model's geometry on them."""
    cfg, run = t.cfg, t.run
    ts = t.timed("triggers", lambda: trig.make_trigger_set(cfg, t.data, base, t.raw_train, t.raw_held, t.rep))
    for scheme in t.trained:
        if scheme.trigger_set not in ts.extra:
            made = scheme.build_triggers(cfg, t.data, len(t.raw_train))
            if made is not None:
                ts.extra[scheme.trigger_set] = made[:2]
                if len(made) > 3:   # one label per input (the margin key): a hit is answering its label
                    ts.labels[scheme.trigger_set] = made[3]
                    run.predictions.setdefault("set_targets", {})[scheme.trigger_set] = made[3][1].tolist()
                run.result.setdefault("scheme_triggers", {})[scheme.trigger_set] = made[2]
                t.rep.message(f"Triggers of {scheme.label}: {made[2]}")
    run.save_tensors(TRIGGERS_FILE, {"train": ts.train, "heldout": ts.heldout,
                                     "raw_train": ts.raw_train, "raw_heldout": ts.raw_heldout,
                                     **{f"{k}_{part}": x for k, pair in ts.extra.items()
                                        for part, x in zip(("train", "heldout"), pair)}})
    if ts.patch:
        run.result["patch"] = list(ts.patch)
    _save_trigger_png(run, ts)
    t.sets = {"optimised": ts.heldout, "classic": ts.raw_heldout, **{k: v[1] for k, v in ts.extra.items()}}
    t.labels = ts.labels
    run.predictions["sets"].update({k: {} for k in ts.extra})
    t.diagnose("before", base, "optimised")
    t.diagnose("before_classic", base, "classic")
    t.train_sets = {s.name: s.training_triggers(ts) for s in t.trained}
    return ts


def _train_victim(t: _Training, scheme, base, pre_opt_state: dict, ts: trig.TriggerSet, x_target) -> None:
    """3. One scheme's watermarked victim, from a copy of the pre-trained model and its optimiser state."""
    cfg, name = t.cfg, scheme.name
    model = copy.deepcopy(base)
    opt = _resume_optimizer(model, cfg.lr, pre_opt_state)
    hit = t.target_of(scheme.trigger_set)
    probe = Probe(t.live.x_test, t.live.y_test, t.sets[scheme.trigger_set], hit,   # per-input labels: the
                  train_triggers=None if scheme.trigger_set in ts.labels          # training key is the set
                  else t.train_sets[name][: cfg.n_heldout])
    t.timed(name, lambda: scheme.train(model, t.data.x_train, t.data.y_train, ts, x_target, cfg, reporter=t.rep,
                                       optimizer=opt, probe=probe, seed=cfg.seed))
    t.diagnose(name, model, scheme.trigger_set)
    if t.run.path:
        key = {"optimised": "before", "classic": "before_classic"}.get(scheme.trigger_set,
                                                                       f"before_{scheme.trigger_set}")
        if key not in t.diagnostics:
            t.diagnose(key, base, scheme.trigger_set)
        save_projection_png(t.diagnostics[key]["projection"], t.diagnostics[name]["projection"],
                            t.run.path / f"projection_{name}.png",
                            f"{name}: triggers vs target class (PCA of cosine-normalised features)")
    t.finish(name, model)


def _clean_models(t: _Training) -> None:
    """4. The clean reference and an independently trained clean model (other initialisation and data order:
    the innocent suspect that verification must not claim), from scratch like the reference code's baseline.
    They must not share the pre-training: the triggers were pushed away from the target *for the pre-trained
    weights* (false-positive control), so a continuation of them under-states how often an innocent model
    labels triggers as the target, and an independent model then gets claimed (measured: quick MNIST seed 0,
    independent model claimed with p = 0.0002). With an innocent population they are its two reference
    models, trained once per task and shared by its runs (ewe.innocents.reference_recipes); a run without one
    trains its own. 5. The innocent population behind every verdict, queried on the run's trigger sets."""
    cfg, run, rep = t.cfg, t.run, t.rep
    population = innocent_population(cfg, rep)
    if population is not None:
        from ..innocents import load_references, trained_references
        refs = t.timed("clean", lambda: load_references(population, cfg.device))
        rep.advance("independent_clean", 1.0)   # loaded with it: the plan's last sliver of the stage
        run.result["references"] = {"population": population.name,
                                    "models": {n: {k: info.get(k) for k in ("seed", "accuracy", "precision", "stored")}
                                               for n, info in trained_references(population).items()}}
        rep.message(f"Clean reference and independent clean model: the task's, shared with its innocent "
                    f"population ({population.name}), not trained again")
    clean = refs["clean"] if population is not None else _train_reference("clean", t)
    t.finish("clean", clean)
    for scheme in t.served:   # what the API costs an honest user (its register starts with a thief)
        run.result["models"][scheme.name] = scheme.figures(clean, cfg, t.data.x_test, t.data.y_test)
        run.save("result")
    indep = refs["independent_clean"] if population is not None else _train_reference("independent_clean", t)
    t.finish("independent_clean", indep)
    if run.path and population is not None:
        from ..innocents import attach_population
        attach_population(run, population)
        _observe_population(t.schemes, cfg, t.data, run.path, population, rep)


REFERENCE_SEED_OFFSET = {"clean": 1, "independent_clean": 10_000}


def _train_reference(name: str, t: _Training):
    """A run without an innocent population trains its own clean reference (seed s + 1) and independent clean
    model (s + 10000): the owner's recipe, clean budget."""
    cfg = t.cfg
    seed = cfg.seed + REFERENCE_SEED_OFFSET[name]
    model = build_model(cfg.model, t.shape, seed=seed).to(cfg.device)
    probe = Probe(t.live.x_test, t.live.y_test, t.sets["optimised"], cfg.target)
    t.timed(name, lambda: train_clean(model, t.data.x_train, t.data.y_train,
                                      epochs=cfg.epochs + max(1, round(cfg.w_epochs)), batch_size=cfg.batch_size,
                                      lr=cfg.lr, reporter=t.rep, stage=name, name=name, probe=probe, seed=seed,
                                      precision=resolve_precision(cfg.precision, cfg.device)))
    return model


def _resume_optimizer(model, lr, state) -> torch.optim.Optimizer:
    opt = make_optimizer(model, lr)
    if state.get("state"):
        opt.load_state_dict(copy.deepcopy(state))
    return opt


def _save_trigger_png(folder: Run, ts: trig.TriggerSet, n: int = 8) -> None:
    if not folder.path:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [("classic (raw)", ts.raw_train), ("optimised (training)", ts.train),
            ("optimised (held out)", ts.heldout)]
    rows += [(f"{name} (held out)", pair[1]) for name, pair in ts.extra.items()]   # a scheme's own set
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 1.1, len(rows) * 1.3))
    for r, (label, x) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(x[c % len(x), 0].cpu().numpy().T if x.shape[-2] > x.shape[-1] * 1.2
                      else x[c % len(x), 0].cpu().numpy(), cmap="gray", aspect="auto")
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.tight_layout()
    fig.savefig(folder.path / "triggers.png", dpi=80)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------
def steal(run_dir: str | Path, thief: dict | None = None, listeners: Iterable[Callable] | None = None,
          stop=None, reporter: Reporter | None = None, data: Data | None = None) -> dict:
    """Extraction attack on the run's victims with the run's thief settings, overridden by ``thief``
    (keys of RunConfig: extract_labels, distill_temperature, student, query_budget, extract_epochs, thief_seed,
    threads)."""
    run = Run.open(run_dir)   # a clear RunFolderError for anything that is not a run folder
    cfg = _thief_run_config(run, thief)
    rep = reporter or _start(cfg, listeners, stop)
    earlier = (run.history or []) if reporter is None else []
    with _recorded(run, "steal_total", lambda: earlier + rep.history):
        data = data or load_data(cfg)
        sets = {k: v.to(cfg.device) for k, v in heldout_sets(run.triggers()).items()}
        thief_cfg = ThiefConfig.from_run_config(cfg)
        thief_seed = run_thief_seed(cfg.seed, cfg.thief_seed)
        victims, apis = _victims(run, cfg, thief_cfg, thief_seed, data, sets, rep)
        nb = max(1, len(data.x_attack) if cfg.query_budget is None else cfg.query_budget) // cfg.batch_size
        plan = {f"steal_{n}": thief_cfg.epochs * max(1, nb) for n in victims}
        if not all(k in rep.plan for k in plan):
            rep.set_plan(plan)
        run.result["stolen"] = [VICTIMS[n] for n in victims]   # this thief's copies (thieves.json records only them)
        run.result["thief"] = {"labels": thief_cfg.labels, "student": thief_cfg.student,
                               "epochs": thief_cfg.epochs, "query_budget": thief_cfg.query_budget,
                               "attacker_data": cfg.attacker_data, "distill_temperature": thief_cfg.temperature,
                               "seed": thief_seed}
        for victim_name, victim in victims.items():
            _steal_copy(run, cfg, victim_name, victim, apis.get(victim_name), thief_cfg, thief_seed, data, sets, rep)
        run.result["status"] = "finished"
    if run.result["status"] != "finished":
        return run.result
    result = verify_run(run)      # judged from the answers in hand, then recorded with its thief
    record_thief(run, result)
    return result


def _thief_run_config(run: Run, thief: dict | None) -> RunConfig:
    """The run's config with the thief's settings, checked before anything is written."""
    wanted, trained = (thief or {}).get("attacker_data"), run.saved.get("attacker_data", "same")
    if wanted is not None and (wanted == "disjoint") != (trained == "disjoint"):
        # the split is fixed when the victims are trained: a "disjoint" thief on victims trained on all the data
        # would query training data, a "same" or "fresh" thief on disjoint victims would query both halves
        raise ConfigError(f"this run's victims were trained for a thief with {trained!r} data, not {wanted!r}: "
                          "train a run with --attacker-data " + wanted)
    cfg = saved_config(run.saved, **(thief or {}))
    if cfg.schemes is not None:
        schemes_for(cfg)    # unknown scheme names: ConfigError
    return cfg


def _victims(run: Run, cfg: RunConfig, thief_cfg: ThiefConfig, thief_seed: int, data: Data, sets: dict,
             rep: Reporter) -> tuple[dict, dict]:
    """The models this thief steals (victim name -> model): the run's trained victims (only its listed schemes'
    when it lists them) and its APIs' served models; and the APIs by victim name."""
    victims = run.load_models(VICTIMS)
    if cfg.schemes is not None:     # a run (or a thief) that lists its schemes steals only those
        wanted = {s.name for s in schemes_for(cfg)}
        victims = {n: m for n, m in victims.items() if n in wanted}
    apis, unserved = _serve_apis(run, cfg, thief_cfg, thief_seed, data, sets, rep)
    victims.update({name: api.model for name, api in apis.items()})
    for name, api in apis.items():   # served to a thief in a run that did not train with it: its cost
        if name not in run.result["models"]:
            run.result["models"][name] = SCHEMES[name].figures(api.model, cfg, data.x_test, data.y_test)
    if not victims:
        raise ConfigError(unserved[0] if unserved else "this run has no trained victim models to attack; train first")
    return victims, apis


def _steal_copy(run: Run, cfg: RunConfig, victim_name: str, victim, api, thief_cfg: ThiefConfig, thief_seed: int,
                data: Data, sets: dict, rep: Reporter) -> None:
    """One stolen copy: trained on the victim's (or its API's) answers, saved, measured, and its answers on
    every trigger set kept."""
    name, stage = VICTIMS[victim_name], f"steal_{victim_name}"
    set_name = TRIGGER_SET[name]
    hit = _set_target(run.predictions, set_name, cfg.device)   # the class (or labels) it must answer
    probe = Probe(data.x_test[:LIVE_TEST], data.y_test[:LIVE_TEST], sets[set_name], hit)
    t0 = time.perf_counter()
    # the same seed for every victim: the students differ only by the labels they were given
    student, info = extract(victim, data.x_attack, thief_cfg, reporter=rep, stage=stage, name=name,
                            probe=probe, seed=thief_seed, labels=api.answers if api else None)
    seconds = run.result["seconds"][stage] = round(time.perf_counter() - t0, 2)
    rep.advance(stage, 1.0)
    rep.emit("stage_end", stage=stage, model=name, seconds=seconds)
    run.save_model(name, student)
    figures = {"accuracy": accuracy(student, data.x_test, data.y_test),
               "watermark_success": watermark_success(student, sets[set_name], hit), "queries": info["queries"]}
    if api:
        figures["register"] = len(sets[set_name])
    run.result["models"][name] = figures
    # does the stolen copy inherit the victim's entanglement? (the thief never sees a trigger)
    run.result.setdefault("diagnostics", {})[name] = {
        "trigger_set": set_name,
        "geometry": layer_geometry(student, sets[set_name], data.x_test[data.y_test == cfg.target])}
    for k, v in sets.items():
        run.predictions["sets"][k][name] = predict(student, v).tolist()
    for scheme in schemes_for(cfg):
        scheme.observe(run.path, cfg, data, name, student)
    run.save("result", "predictions")


def _set_target(predictions: dict, set_name: str, device: str):
    """What a hit is on a trigger set, as ``watermark_success`` takes it: the run's target class, or the
    per-input labels of a DAWN register."""
    from ..verify import set_target
    target = set_target(predictions, set_name)
    return target if isinstance(target, int) else torch.as_tensor(target, device=device)


def _serve_apis(folder: Run, cfg: RunConfig, thief_cfg: ThiefConfig, thief_seed: int, data: Data, sets: dict,
                rep: Reporter) -> dict:
    """The run's API-level schemes (DAWN) answer this thief's queries through their API, which records the
    owner's register of flipped queries: it becomes the scheme's trigger set (triggers.pt, predictions.json
    with one label per input, the innocent population's answers on it), replacing an earlier thief's. Returns
    (victim name -> the API, with its answers in ``.answers``; why any listed API has nothing to prove with)."""
    listed = set(cfg.schemes or ())
    api_schemes = [s for s in schemes_for(cfg) if s.serves_api and s.name in listed]
    if not api_schemes:
        return {}, []
    predictions = folder.predictions
    clean = folder.load_models(("clean",)).get("clean")
    if clean is None:
        raise ValueError("DAWN serves the run's clean model, and this run has none; train it first")
    x = attacker_queries(data.x_attack, thief_cfg.query_budget, thief_seed)
    tensors = folder.triggers()
    served, unserved = {}, []
    for scheme in api_schemes:
        api = scheme.serve(clean, cfg)
        api.answers = label_queries(api, x, thief_cfg)
        reg_x, reg_y = api.register()
        set_name, key = scheme.trigger_set, heldout_key(scheme.trigger_set)
        if not len(reg_x):
            unserved.append(f"{scheme.label}: the API flipped none of this thief's {len(x)} answers at rate "
                            f"{cfg.dawn_rate:g}: nothing to prove ownership with (raise dawn_rate or the queries)")
            rep.message(unserved[-1])   # an earlier thief's register and copy stay as they were
            continue
        rep.message(f"{scheme.label}: flipped {len(reg_x)} of this thief's {len(x)} answers; the owner keeps "
                    "them as this client's register")
        tensors[key] = reg_x
        sets[set_name] = reg_x.to(cfg.device)
        predictions.setdefault("set_targets", {})[set_name] = reg_y.tolist()
        predictions["sets"][set_name] = {n: predict(m, sets[set_name]).tolist()
                                         for n, m in folder.load_models(CLEAN_MODELS).items()}
        served[scheme.name] = api
    if not served:       # no new register: the run folder stays as it was
        return served, unserved
    folder.save_tensors(TRIGGERS_FILE, tensors)
    folder.save("predictions")
    from ..innocents import attach_population, ready_population
    population = ready_population(cfg) if cfg.innocents else None
    if population is not None:
        attach_population(folder, population)   # the innocents' answers on the new register too
    return served, unserved


def steal_several(run_dir: str | Path, thief: dict | None = None, thieves: int = 1,
                  listeners: Iterable[Callable] | None = None, stop=None) -> dict:
    """``thieves`` extraction attacks in a row that differ only by the thief's seed (``thief_seed``, then
    + 1, + 2, ...; by default the run's own thief first). Each is recorded in thieves.json; the run
    folder's stolen models and result.json are the last one's."""
    return steal_each(run_dir, thief_seeds(run_dir, [thief or {}], thieves), listeners, stop)


def thief_seeds(run_dir: str | Path, kinds: list[dict], thieves: int = 1) -> list[dict]:
    """``thieves`` thieves of each kind of ``kinds`` (thief settings), seed by seed: the i-th thief of every
    kind has seed ``thief_seed + i`` (by default the run's own thief's seed first), so the kinds differ in
    their settings only (a contrast: the same thief given probabilities or the top class)."""
    if not isinstance(thieves, int) or thieves < 1:
        raise ConfigError(f"the number of thieves must be at least 1, got {thieves}")
    first = next((k["thief_seed"] for k in kinds if k.get("thief_seed") is not None), None)
    if first is None:
        saved = Run.open(run_dir).saved
        first = run_thief_seed(saved.get("seed", 0), saved.get("thief_seed"))
    return [{**kind, "thief_seed": first + i} for i in range(thieves) for kind in kinds]


DATA_SETTINGS = {"dataset", "data_dir", "seed", "train_size", "test_size", "attacker_data", "device"}   # load_data's


def steal_each(run_dir: str | Path, thieves: list[dict], listeners: Iterable[Callable] | None = None,
               stop=None) -> dict:
    """One steal per thief settings in ``thieves``, in turn, each recorded in thieves.json; progress runs over
    all of them. Stops at a steal that did not finish; returns the last steal's result."""
    started, result, data = time.perf_counter(), {}, None
    if len(thieves) > 1 and not any(DATA_SETTINGS & set(t) for t in thieves):   # the same tensors for every thief
        data = load_data(Run.open(run_dir).config)
    for i, thief in enumerate(thieves):
        parts = [part_of(fn, i, len(thieves), started) for fn in listeners or []]
        result = steal(run_dir, thief, parts, stop, data=data)
        if result.get("status") != "finished":
            break
    return result


def _observe_population(schemes, cfg: RunConfig, data: Data, run_dir: Path, population: Path,
                        reporter: Reporter) -> None:
    """The innocent population shown to the schemes that judge with their own test (dataset inference walks
    each innocent on the run's points); nothing is loaded for a run without such a scheme."""
    own = [s for s in schemes if s.own_test]
    if not own:
        return
    from ..innocents import load_population
    manifest, models = load_population(population, cfg.device)
    for scheme in own:
        reporter.message(f"{scheme.label}: the {len(models)} innocent models judged on the run's points")
        scheme.observe_population(run_dir, cfg, data, manifest, models)


def innocent_population(cfg: RunConfig, reporter: Reporter) -> Path | None:
    """The folder of the task's innocent population and reference models, built first if it is missing
    (once per task: cached, or shipped with the lab). ``cfg.innocents`` = 0: None (verdicts then fall back
    to the run's clean model, which the run trains itself)."""
    if not cfg.innocents:
        return None
    from ..innocents import SHIPPED_ROOT, build_population, ready_population
    folder = ready_population(cfg)
    if folder is not None:
        reporter.message(f"Innocent population: {cfg.innocents} models that never saw the watermark, "
                         f"{'shipped with the lab' if folder.parent == SHIPPED_ROOT else 'cached'} "
                         f"({folder.name})")
        return folder
    reporter.message(f"Innocent population: {cfg.innocents} models that never saw the watermark, and the "
                     "task's clean reference models (trained once per task, then reused)")
    return build_population(cfg, n=cfg.innocents, reporter=reporter)


def run(cfg: RunConfig, out_dir: str | Path | None = None, listeners: Iterable[Callable] | None = None,
        stop=None) -> dict:
    """Train, steal and verify; returns result.json's content."""
    import tempfile
    t0 = time.perf_counter()
    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="ewe-run-")
        out_dir = tmp.name
    rep = _start(cfg, listeners, stop)
    status = "failed"
    result: dict = {}
    try:
        # loaded once for both: each load is a fresh float copy of the whole dataset (MNIST: 0.3 s, 220 MB)
        data = load_data(cfg)
        result = train_victims(cfg, out_dir, reporter=rep, with_steal=True, data=data)
        if result["status"] == "trained":
            result = steal(out_dir, reporter=rep, data=data)
        status = result["status"]
        result["seconds"]["total"] = round(time.perf_counter() - t0, 2)
        final = Run(out_dir)
        final.result, final.history = result, rep.history
        final.save("result", "history")
        return result
    finally:
        rep.emit("run_end", status=status, result=result or None)
        if tmp:
            tmp.cleanup()
