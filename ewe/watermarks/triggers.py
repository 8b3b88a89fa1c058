"""Watermark triggers: where they come from, where the in-distribution patch goes, and how they are
optimised (spec A3 steps 2-4).

- OOD: a class of another dataset is the trigger (MNIST <- Fashion-MNIST trousers, Fashion <- MNIST 8).
- In-distribution: source-class samples with a 3x3 patch at the window where the SNNL input-gradient is
  lowest. The reference code transposed that window (row/column swap); here the argmin is used as is.
- Optimisation: sign-gradient steps that raise SNNL, with the false-positive control that pushes
  triggers away from the target until at most ``threshold`` of them are already predicted as the target.
Held-out triggers are made the same way (same patch, same optimisation) but never trained on.

    build_triggers_raw(cfg, data)   the raw pools (train, held-out) and where they come from
    make_trigger_set(cfg, data, base, raw_train, raw_held)   patch + optimisation -> TriggerSet
    preview(dataset, trigger, source)   raw candidates for a preview, before any run
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..callbacks import Reporter
from ..config import ConfigError, RunConfig
from ..data.splits import Data
from .snnl import Temperatures, snnl_layers

PATCH = 3
FP_STEP_CAP = 50        # false-positive steps per half-batch, over all iterations (reference)
FINAL_PUSH_STEPS = 5    # unconditional push-away steps after the iterations (reference)


@dataclass
class TriggerSet:
    train: torch.Tensor          # triggers the defended model is trained on
    heldout: torch.Tensor        # made the same way, never trained on: watermark success is measured here
    raw_train: torch.Tensor      # before optimisation (the classic watermark trains on these)
    raw_heldout: torch.Tensor
    patch: tuple[int, int] | None = None   # (row, col) of the in-distribution patch
    value_range: tuple[float, float] = (0.0, 1.0)
    # a scheme's own trigger set (ewe.watermarks.schemes.Scheme.build_triggers): name -> (training, held-out)
    extra: dict = field(default_factory=dict)
    # a scheme's set with one label per input (the margin key): name -> (training labels, held-out labels)
    labels: dict = field(default_factory=dict)


def tile(x: torch.Tensor, n: int) -> torch.Tensor:
    """Repeat or truncate ``x`` along the batch axis to exactly ``n`` samples (reference behaviour)."""
    reps = -(-n // len(x))
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:n].clone()


def best_patch_location(grad: torch.Tensor, size: int = PATCH) -> tuple[int, int]:
    """(row, col) of the size x size window with the lowest summed gradient (summed over channels too).

    ``grad`` is [C, H, W] (already averaged over samples).
    """
    sums = F.avg_pool2d(grad.sum(0)[None, None], size, stride=1)[0, 0] * size * size
    idx = int(torch.argmin(sums))
    return divmod(idx, sums.shape[1])


def apply_patch(x: torch.Tensor, loc: tuple[int, int], value: float, size: int = PATCH) -> torch.Tensor:
    """Set a size x size patch in channel 0 at ``loc`` to ``value`` (reference: 1.0 on [0, 1] images)."""
    r, c = loc
    out = x.clone()
    out[:, 0, r:r + size, c:c + size] = value
    return out


def snnl_input_grad(model, x_pool, x_target, temps: Temperatures, metric: str) -> torch.Tensor:
    """Gradient of sum_l SNNL_l w.r.t. the pool half of [pool ; target] batches, per pool sample."""
    x = torch.cat([x_pool, x_target]).requires_grad_(True)
    w = torch.cat([torch.ones(len(x_pool)), torch.zeros(len(x_target))]).to(x.device)
    _, hidden = model.features(x)
    total = torch.stack(snnl_layers(hidden, w, temps, metric)).sum()
    grad, = torch.autograd.grad(total, x)
    return grad[: len(x_pool)]


def locate_patch(model, pool, target, half, temps, metric) -> tuple[int, int]:
    grads = []
    for i in range(0, len(pool), half):
        x = pool[i:i + half]
        j = i % max(1, len(target) - len(x) + 1)
        grads.append(snnl_input_grad(model, x, target[j:j + len(x)], temps, metric).mean(0))
    return best_patch_location(torch.stack(grads).mean(0))


def optimise(model, pool: torch.Tensor, target: torch.Tensor, c_target: int, *, half: int, maxiter: int,
             w_lr: float, threshold: float, temps: Temperatures, metric: str,
             value_range=(0.0, 1.0), reporter: Reporter | None = None, stage: str = "triggers",
             span: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Reference trigger optimisation, one half-batch of the pool at a time; returns the new pool.
    ``span``: the part of ``stage`` this call is, for its progress (the stage optimises two pools)."""
    lo, hi = value_range
    model.eval()
    out = pool.clone()
    chunks = list(range(0, len(pool), half))
    for n_done, i in enumerate(chunks):
        x = out[i:i + half].clone()
        j = (i % max(1, len(target) - len(x) + 1))
        xt = target[j:j + len(x)]
        w = torch.cat([torch.ones(len(x)), torch.zeros(len(xt))]).to(x.device)
        fp_steps = 0

        def push_away(x):
            x = x.clone().requires_grad_(True)
            logit = model(x)[:, c_target].sum()
            g, = torch.autograd.grad(logit, x)
            return (x - w_lr * g.sign()).clamp(lo, hi).detach()

        def predicted_target_fraction(x):
            with torch.no_grad():
                return (model(x).argmax(1) == c_target).float().mean().item()

        for _ in range(maxiter):
            if reporter:
                reporter.check()
            while fp_steps < FP_STEP_CAP and predicted_target_fraction(x) > threshold:
                x = push_away(x)
                fp_steps += 1
            xg = torch.cat([x, xt]).requires_grad_(True)
            _, hidden = model.features(xg)
            total = torch.stack(snnl_layers(hidden, w, temps, metric)).sum()
            g, = torch.autograd.grad(total, xg)
            x = (x + w_lr * g[: len(x)].sign()).clamp(lo, hi).detach()
        for _ in range(FINAL_PUSH_STEPS):
            x = push_away(x)
        out[i:i + half] = x
        if reporter:
            reporter.advance(stage, span[0] + (span[1] - span[0]) * (n_done + 1) / len(chunks))
    return out


def build_triggers_raw(cfg: RunConfig, data: Data) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The un-optimised trigger pools (train, held-out) and a description of where they come from."""
    half = cfg.batch_size // 2
    n_target = int((data.y_train == cfg.target).sum())
    if n_target < half:
        raise ConfigError(f"the target class {cfg.target} has only {n_target} training samples, fewer than half "
                         f"a batch ({half}); use a smaller batch size or more training data")
    # whole watermark batches of triggers (half a batch each)
    n_train = max(half, (cfg.n_triggers or n_target) // half * half)
    if cfg.trigger == "ood":
        from ..data.registry import load_ood_source
        ood_train, ood_test = load_ood_source(cfg.dataset, cfg.data_dir)
        cls = cfg.source if int(ood_train.y.max()) >= cfg.source else 0
        pool, held = ood_train.x[ood_train.y == cls], ood_test.x[ood_test.y == cls]
        what = f"out-of-distribution: class {cls} of the dataset paired with {cfg.dataset}"
        if int(ood_train.y.max()) == 0:   # digits: photo patches, one class whatever the source says
            what = "out-of-distribution: patches of scikit-learn's sample photos (a single class)"
    else:
        pool, held = data.x_train[data.y_train == cfg.source], data.x_test[data.y_test == cfg.source]
        what = f"in-distribution: class {cfg.source} ({data.classes[cfg.source]}) with a 3x3 patch"
    if len(pool) == 0 or len(held) < 2:
        raise ConfigError(f"no trigger source samples for class {cfg.source} ({what}); pick another source")
    dev = data.x_train.device
    return tile(pool, n_train).to(dev), held[: cfg.n_heldout].clone().to(dev), what


def value_range(cfg: RunConfig, data: Data) -> tuple[float, float]:
    if cfg.dataset == "speech-commands":   # z-normalised log-mels: clip to the data's range, not [0, 1]
        return float(data.x_train.min()), float(data.x_train.max())
    return 0.0, 1.0


def make_trigger_set(cfg: RunConfig, data: Data, base, raw_train: torch.Tensor, raw_held: torch.Tensor,
                     reporter: Reporter | None = None) -> TriggerSet:
    """The run's triggers from its raw pools: the in-distribution patch (placed where the SNNL gradient of
    ``base``, the pre-trained model, is lowest), then optimisation against ``base``; the classic set is the
    pools before optimisation (patched, for in-distribution triggers)."""
    temps = Temperatures(cfg.temperature, "fixed", device=data.x_train.device)
    x_target = data.x_train[data.y_train == cfg.target]
    half = cfg.batch_size // 2
    loc = None
    pool, held = raw_train, raw_held
    vr = value_range(cfg, data)
    if cfg.trigger == "in":
        loc = locate_patch(base, pool, x_target, half, temps, cfg.metric)
        pool, held = apply_patch(pool, loc, vr[1]), apply_patch(held, loc, vr[1])
    classic = (pool.clone(), held.clone())
    if cfg.optimise_triggers:
        kw = dict(half=half, maxiter=cfg.maxiter, w_lr=cfg.w_lr, threshold=cfg.threshold,
                  temps=temps, metric=cfg.metric, value_range=vr, reporter=reporter)
        cut = len(pool) / (len(pool) + len(held))     # progress: each pool's share of the stage
        pool = optimise(base, pool, x_target, cfg.target, stage="triggers", span=(0, cut), **kw)
        held = optimise(base, held, x_target, cfg.target, stage="triggers", span=(cut, 1), **kw)
    return TriggerSet(pool, held, classic[0], classic[1], loc, vr)


def preview(dataset: str, trigger: str, source: int, n: int = 8):
    """Raw trigger candidates before any run (the app's Train page): (tensor [n, C, H, W], caption).
    In-distribution previews put the 3x3 patch in the centre; training picks its place from gradients.
    Raises ewe.data.DataError when the data is not available offline."""
    from ..data.registry import load_dataset, load_ood_source
    if trigger == "ood":
        tr, _ = load_ood_source(dataset, download=False)
        cls = source if int(tr.y.max()) >= source else 0
        x = tr.x[tr.y == cls][:n]
        what = ("patches of scikit-learn's sample photos" if dataset == "digits"
                else f"class {cls} of the paired dataset")
        return x, f"Out-of-distribution trigger candidates: {what} (before optimisation)"
    ds = load_dataset(dataset, download=False)
    x = ds.train.x[ds.train.y == source][:n].clone()
    h, w = x.shape[-2:]
    r, c = h // 2 - 1, w // 2 - 1
    x[:, 0, r:r + 3, c:c + 3] = float(x.max())
    return x, (f"In-distribution trigger candidates: class {source} ({ds.classes[source]}) with a 3×3 patch "
               "(training chooses the patch position)")
