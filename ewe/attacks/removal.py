"""Watermark removal attacks on a stolen or leaked victim: fine-tuning, magnitude pruning, fine-pruning.

The attacker holds the victim's weights and some unlabelled data (the run's attacker set, see
``pipeline.load_data``); it labels that data with the victim's own answers (the default: it has no true
labels) or, as an option, with the true labels. Every attack works on a copy and leaves the input model
unchanged.

    fine_tune(model, x, y, layers="last" | "all", epochs, ...)    -> (model, info)
    prune(model, ratio, scope="global" | "layer")                 -> (model, info)    L1 magnitude
    prune(..., finetune=dict(x=..., y=..., epochs=...))           pruned, then fine-tuned with the mask
    fine_prune(model, x, ratio, finetune=...)                     Liu et al. 2018: the last conv layer's
                                                                  channels least active on clean data are
                                                                  removed, then the model is fine-tuned
    evaluate(model, x_test, y_test, triggers, target, null=...) -> accuracy, watermark success,
                                                                  p-value, queries for 95 %
    run_suite(run_dir, settings)  every attack on the run's victims; writes ``robustness.json``

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

Verification is ``ewe.verify.verify`` of the attacked model's held-out trigger predictions, judged as in
``pipeline.verify_run``: against the run's innocent population (``innocents.json``) by default, or with the
Welch test against the clean reference on the same triggers (``predictions.json``).
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..callbacks import Reporter, Stopped
from ..train import predict, train_clean
from ..verify import Null, nulls_for_run, verify
from .extraction import QueryCounter

ATTACKS = ("fine_tune_last", "fine_tune_all", "prune", "prune_finetune", "fine_prune")
X_AXIS = {"fine_tune_last": "epoch", "fine_tune_all": "epoch", "prune": "ratio", "prune_finetune": "ratio",
          "fine_prune": "ratio"}
ATTACK_LABELS = {"none": "no attack", "fine_tune_last": "fine-tuning (last layer)",
                 "fine_tune_all": "fine-tuning (all layers)", "prune": "magnitude pruning",
                 "prune_finetune": "pruning + fine-tuning", "fine_prune": "fine-pruning"}


# ---------------------------------------------------------------------------------------------------
# measurement

def evaluate(model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, triggers: torch.Tensor,
             target: int, *, null: Null | None = None, reference_pred=None, test: str = "binomial",
             alpha: float = 0.05, draws: int = 200, seed: int = 0, margin: float = 0.0) -> dict:
    """Accuracy on (x_test, y_test); watermark success, p-value and queries for 1 - alpha on ``triggers``,
    judged like the run's own suspects (ewe.verify: against the innocent population's null rate, or the
    Welch test against the clean reference's predictions on the same triggers)."""
    acc = (predict(model, x_test) == y_test).float().mean().item()
    suspect = predict(model, triggers).cpu().tolist()
    v = verify(suspect, target, null=null, reference_pred=reference_pred, test=test, alpha=alpha, draws=draws,
               seed=seed, margin=margin)
    return {"accuracy": acc, "watermark_success": v["suspect_rate"], "p_value": v["p_value"],
            "queries_for_95": v["queries_for_95"], "verified": v["proven"], "proven": v["proven"]}


def prunable(model: nn.Module) -> list[nn.Module]:
    """The layers magnitude pruning acts on: every Conv2d and Linear (LSTM weights are left alone)."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear))]


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero weights over the prunable layers (biases not counted)."""
    zeros = total = 0
    for m in prunable(model):
        w = m.weight.detach()
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / max(1, total)


def last_linear(model: nn.Module) -> nn.Linear:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no linear layer to fine-tune")
    return layers[-1]


def last_conv(model: nn.Module) -> nn.Conv2d:
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not layers:
        raise ValueError(f"fine-pruning needs a convolutional layer; {type(model).__name__} has none")
    return layers[-1]


# ---------------------------------------------------------------------------------------------------
# attacks

def _reporter(reporter: Reporter | None) -> Reporter:
    return reporter if reporter is not None else Reporter()


def fine_tune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, layers: str = "all",
              epochs: float = 2, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
              reporter: Reporter | None = None, stage: str = "fine_tune", name: str = "fine_tune",
              probe: Callable | None = None, evals: int | None = None, inplace: bool = False
              ) -> tuple[nn.Module, dict]:
    """Fine-tune on (x, y) with a fresh Adam (lr, betas as training). ``layers="last"`` trains only the
    final linear layer (every other parameter is frozen, so it stays bit-identical); ``"all"`` trains all.
    ``y`` may be class ids or probabilities. Pruning masks on the model are kept (pruned weights stay 0).
    """
    if layers not in ("last", "all"):
        raise ValueError("layers is 'last' or 'all'")
    model = model if inplace else copy.deepcopy(model)
    if epochs <= 0:
        return model, {"layers": layers, "epochs": 0}
    saved = {p: p.requires_grad for p in model.parameters()}
    if layers == "last":
        head = last_linear(model)
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head.parameters():
            p.requires_grad_(True)
        params = list(head.parameters())
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99), eps=1e-5)
    try:
        train_clean(model, x, y, epochs=epochs, batch_size=min(batch_size, len(x)), lr=lr,
                    reporter=_reporter(reporter), stage=stage, name=name, probe=probe, seed=seed,
                    optimizer=opt, evals=evals)
    finally:
        for p, flag in saved.items():
            p.requires_grad_(flag)
    model.eval()
    return model, {"layers": layers, "epochs": epochs, "trained_parameters": sum(p.numel() for p in params)}


def _make_permanent(model: nn.Module) -> None:
    for m in model.modules():
        for pname in ("weight", "bias"):
            if torch_prune.is_pruned(m) and hasattr(m, pname + "_mask"):
                torch_prune.remove(m, pname)


def prune(model: nn.Module, ratio: float, *, scope: str = "global", finetune: dict | None = None
          ) -> tuple[nn.Module, dict]:
    """L1 magnitude pruning of ``ratio`` of the conv/linear weights (``torch.nn.utils.prune``): over all
    those weights at once (``scope="global"``) or ``ratio`` of each layer (``"layer"``). With
    ``finetune`` (keyword arguments of :func:`fine_tune`, including ``x`` and ``y``) the pruned model is
    then fine-tuned with the masks in place, so pruned weights stay zero. Returns a pruned copy.
    """
    if not 0 <= ratio < 1:
        raise ValueError(f"pruning ratio must be in [0, 1), got {ratio}")
    if scope not in ("global", "layer"):
        raise ValueError("scope is 'global' or 'layer'")
    # torch's global pruning flattens the weights with .view(-1), which channels-last weights refuse
    model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    layers = prunable(model)
    if ratio > 0:
        if scope == "global":
            torch_prune.global_unstructured([(m, "weight") for m in layers],
                                            pruning_method=torch_prune.L1Unstructured, amount=float(ratio))
        else:
            for m in layers:
                torch_prune.l1_unstructured(m, "weight", amount=float(ratio))
    info: dict[str, Any] = {"ratio": ratio, "scope": scope}
    if finetune:
        kw = dict(finetune)
        model, ft = fine_tune(model, kw.pop("x"), kw.pop("y"), inplace=True, **kw)
        info["finetune"] = ft
    _make_permanent(model)
    info["achieved_ratio"] = sparsity(model)
    return model, info


@torch.no_grad()
def channel_activity(model: nn.Module, layer: nn.Module, x: torch.Tensor, batch_size: int = 512
                     ) -> torch.Tensor:
    """Mean ReLU activation of each output channel of ``layer`` over the samples ``x`` and positions."""
    sums: list[torch.Tensor] = []
    counts: list[int] = []

    def hook(_module, _inputs, out):
        a = torch.relu(out).transpose(0, 1).flatten(1)     # [channels, samples * positions]
        sums.append(a.sum(1))
        counts.append(a.shape[1])

    handle = layer.register_forward_hook(hook)
    try:
        model.eval()
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    finally:
        handle.remove()
    return torch.stack(sums).sum(0) / sum(counts)


def fine_prune(model: nn.Module, x: torch.Tensor, ratio: float, *, finetune: dict | None = None,
               layer: nn.Module | None = None) -> tuple[nn.Module, dict]:
    """Fine-pruning (Liu, Dolan-Gavitt & Garg, RAID 2018): remove the ``ratio`` fraction of the last
    convolutional layer's output channels with the lowest mean activation on the clean data ``x`` (their
    filters and biases are set to zero and held there), then fine-tune (``finetune``: keyword arguments
    of :func:`fine_tune` with ``x`` and ``y``; ``None`` = prune only).
    """
    if not 0 <= ratio <= 1:
        raise ValueError(f"fine-pruning ratio must be in [0, 1], got {ratio}")
    original, model = model, copy.deepcopy(model)
    conv = last_conv(model) if layer is None else dict(model.named_modules())[_name_of(layer, original)]
    activity = channel_activity(model, conv, x)
    n = int(round(ratio * conv.out_channels))
    order = torch.argsort(activity, stable=True)
    chosen = sorted(order[:n].tolist())
    if chosen:
        mask_w = torch.ones_like(conv.weight)
        mask_w[chosen] = 0
        torch_prune.custom_from_mask(conv, "weight", mask_w)
        if conv.bias is not None:
            mask_b = torch.ones_like(conv.bias)
            mask_b[chosen] = 0
            torch_prune.custom_from_mask(conv, "bias", mask_b)
    info: dict[str, Any] = {"ratio": ratio, "pruned_channels": chosen, "channels": conv.out_channels,
                            "activity": [round(float(a), 6) for a in activity]}
    if finetune:
        kw = dict(finetune)
        model, ft = fine_tune(model, kw.pop("x"), kw.pop("y"), inplace=True, **kw)
        info["finetune"] = ft
    _make_permanent(model)
    info["achieved_ratio"] = n / conv.out_channels
    return model, info


def _name_of(layer: nn.Module, model: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is layer:
            return name
    raise ValueError("layer is not part of the model")


# ---------------------------------------------------------------------------------------------------
# the suite over a run folder

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
    from ..config import from_dict
    from ..innocents import INNOCENTS_FILE
    from ..pipeline import TRIGGER_SET, RunFolder, load_data, load_run_models

    run_dir = Path(run_dir)
    settings = settings if isinstance(settings, RemovalConfig) else RemovalConfig.from_dict(settings)
    settings.validate()
    folder = RunFolder(run_dir)
    saved = folder.read_json("config.json")
    result = folder.read_json("result.json")
    preds = folder.read_json("predictions.json")
    if saved is None or result is None or preds is None or not (run_dir / "triggers.pt").exists():
        raise FileNotFoundError(f"{run_dir} is not a trained run folder (config.json, result.json, "
                                "predictions.json and triggers.pt are needed)")
    cfg = from_dict({k: v for k, v in saved.items() if k != "effective"})
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
        tensors = torch.load(run_dir / "triggers.pt", weights_only=True)
        sets = {"optimised": tensors["heldout"].to(cfg.device), "classic": tensors["raw_heldout"].to(cfg.device)}
        wanted = [v for v in settings.victims]
        victims = load_run_models(run_dir, wanted)
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
        # pipeline.load_data keeps the attacker set's true labels for either attacker_data
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
            folder.write_json("robustness.json", out)

        nulls = nulls_for_run(preds, folder.read_json(INNOCENTS_FILE), cfg.verify_margin)
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
        folder.write_json("robustness.json", out)
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
