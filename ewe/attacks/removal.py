"""Watermark removal attacks on a stolen or leaked victim: fine-tuning, magnitude pruning, fine-pruning.

The attacker holds the victim's weights and some unlabelled data (the run's attacker set, see
``ewe.data.splits.load_data``); it labels that data with the victim's own answers (the default: it has no true
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

Each attack the suite runs is a ``RemovalAttack`` in ``REMOVAL_ATTACKS``, an object like the watermark schemes
(``ewe.watermarks.schemes``): its name, label, x axis, the points it is run at, whether it applies to a victim
and how one point is run; ``ATTACKS``, ``X_AXIS`` and ``ATTACK_LABELS`` are read from it. The suite over a run
folder's victims (``robustness.json``) is ``ewe.experiments.robustness.run_suite``: this module holds the
attacks only.

Verification is ``ewe.verify.verify`` of the attacked model's held-out trigger predictions, judged as in
``ewe.results.verdicts.verify_run``: against the run's innocent population (``innocents.json``) by default, or with the
Welch test against the clean reference on the same triggers (``predictions.json``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..callbacks import Reporter
from ..train import predict, train_clean
from ..verify import Null, verify


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
# the attacks as objects: what the suite (ewe.experiments.robustness) runs, one registry entry each

@dataclass(frozen=True)
class Attacker:
    """What the attacker holds besides the victim, shared by every attack on it: its data and the labels it
    gave them (``queries``: how many the victim answered for them; 0 with true labels), and its recipe."""
    x: torch.Tensor
    y: torch.Tensor
    queries: int
    epochs: float             # fine-tuning epochs
    lr: float
    batch_size: int
    seed: int
    prune_scope: str          # "global" | "layer"
    reporter: Reporter | None = None

    def finetune(self, stage: str, name: str) -> dict:
        """Keyword arguments of :func:`fine_tune` (with ``x`` and ``y``), as ``prune`` and ``fine_prune`` take."""
        return dict(x=self.x, y=self.y, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                    seed=self.seed, reporter=self.reporter, stage=stage, name=name)


@dataclass(frozen=True)
class RemovalAttack:
    """One removal attack. A point (a pruning ratio, a number of fine-tuning epochs) is one progress stage;
    ``settings`` is the suite's ``RemovalConfig`` (read by attribute: attacks do not import the suite)."""
    name: str                 # in robustness.json's records
    label: str                # for people
    x_axis: ClassVar[str] = "ratio"             # the record field its curves are drawn against
    trains: ClassVar[bool] = True               # its training announces each stage (ewe.train.train_clean)
    measured_in_training: ClassVar[bool] = False  # one training run measured as it goes, not a model per point

    def points(self, settings) -> list[float]:
        raise NotImplementedError

    def stage(self, victim: str, point: float) -> str:
        return f"{self.name}/{victim}/{point:g}"

    def skip_reason(self, model: nn.Module) -> str | None:
        """Why the attack cannot run on ``model``; None when it can."""
        return None

    def applies_to(self, model: nn.Module) -> bool:
        return self.skip_reason(model) is None

    def cost(self, point: float, training_batches: float, evaluation: float) -> float:
        """A point's expected cost for the progress plan, in batches (``training_batches``: one fine-tuning
        run's; ``evaluation``: one measurement's)."""
        raise NotImplementedError

    def run(self, victim: nn.Module, point: float, attacker: Attacker, *, stage: str, name: str,
            probe: Callable | None = None) -> tuple[nn.Module, dict]:
        """The attacked copy of ``victim`` at ``point`` and its record's fields besides the measurements."""
        raise NotImplementedError


@dataclass(frozen=True)
class FineTuneAttack(RemovalAttack):
    """Fine-tuning on the attacker's data: one run of ``settings.finetune_epochs``, measured by ``probe`` after
    each of about one evaluation per epoch."""
    layers: str = "all"       # "last" | "all"
    plan_factor: float = 1.0  # its training's cost against training every layer (the progress plan's estimate)
    x_axis: ClassVar[str] = "epoch"
    measured_in_training: ClassVar[bool] = True

    def points(self, settings) -> list[float]:
        return [settings.finetune_epochs]

    def stage(self, victim: str, point: float) -> str:
        return f"{self.name}/{victim}"

    @staticmethod
    def evaluations(epochs: float) -> int:
        return max(1, round(epochs))

    def cost(self, point: float, training_batches: float, evaluation: float) -> float:
        return training_batches * self.plan_factor + evaluation * self.evaluations(point)

    def run(self, victim, point, attacker, *, stage, name, probe=None):
        model, _ = fine_tune(victim, attacker.x, attacker.y, layers=self.layers, epochs=point,
                             batch_size=attacker.batch_size, lr=attacker.lr, seed=attacker.seed,
                             reporter=attacker.reporter, stage=stage, name=name, probe=probe,
                             evals=self.evaluations(point))
        return model, {"epoch": point, "victim_queries": attacker.queries}


@dataclass(frozen=True)
class PruneAttack(RemovalAttack):
    """Magnitude pruning alone at each of ``settings.ratios``: no training, no query to the victim."""
    trains: ClassVar[bool] = False

    def points(self, settings) -> list[float]:
        return list(settings.ratios)

    def cost(self, point: float, training_batches: float, evaluation: float) -> float:
        return evaluation

    def run(self, victim, point, attacker, *, stage, name, probe=None):
        model, info = prune(victim, point, scope=attacker.prune_scope)
        return model, {"ratio": point, "achieved_ratio": round(info["achieved_ratio"], 6)}


@dataclass(frozen=True)
class PruneFinetuneAttack(RemovalAttack):
    """Magnitude pruning, then fine-tuning with the masks held, at each of ``settings.finetune_ratios``."""

    def points(self, settings) -> list[float]:
        return list(settings.finetune_ratios)

    def cost(self, point: float, training_batches: float, evaluation: float) -> float:
        return training_batches + evaluation

    def run(self, victim, point, attacker, *, stage, name, probe=None):
        model, info = prune(victim, point, scope=attacker.prune_scope, finetune=attacker.finetune(stage, name))
        return model, self._fields(point, info, attacker)

    @staticmethod
    def _fields(point: float, info: dict, attacker: Attacker) -> dict:
        return {"ratio": point, "achieved_ratio": round(info["achieved_ratio"], 6), "epoch": attacker.epochs,
                "victim_queries": attacker.queries}


@dataclass(frozen=True)
class FinePruneAttack(PruneFinetuneAttack):
    """Fine-pruning (:func:`fine_prune`) at the same points as pruning + fine-tuning; it needs a conv layer."""

    def skip_reason(self, model: nn.Module) -> str | None:
        if any(isinstance(m, nn.Conv2d) for m in model.modules()):
            return None
        return f"{type(model).__name__} has no convolutional layer"

    def run(self, victim, point, attacker, *, stage, name, probe=None):
        model, info = fine_prune(victim, attacker.x, point, finetune=attacker.finetune(stage, name))
        return model, {**self._fields(point, info, attacker), "pruned_channels": info["pruned_channels"]}


NO_ATTACK = "none"   # the untouched victim's record
REMOVAL_ATTACKS: dict[str, RemovalAttack] = {a.name: a for a in (
    FineTuneAttack("fine_tune_last", "fine-tuning (last layer)", layers="last", plan_factor=0.4),
    FineTuneAttack("fine_tune_all", "fine-tuning (all layers)", layers="all"),
    PruneAttack("prune", "magnitude pruning"),
    PruneFinetuneAttack("prune_finetune", "pruning + fine-tuning"),
    FinePruneAttack("fine_prune", "fine-pruning"),
)}
# the registry's tables, as the suite, the report and the benches read them
ATTACKS = tuple(REMOVAL_ATTACKS)
X_AXIS = {a.name: a.x_axis for a in REMOVAL_ATTACKS.values()}
ATTACK_LABELS = {NO_ATTACK: "no attack", **{a.name: a.label for a in REMOVAL_ATTACKS.values()}}
