"""Watermark triggers: where they come from, where the in-distribution patch goes, and how they are
optimised (spec A3 steps 2-4).

- OOD: a class of another dataset is the trigger (MNIST <- Fashion-MNIST trousers, Fashion <- MNIST 8).
- In-distribution: source-class samples with a 3x3 patch at the window where the SNNL input-gradient is
  lowest. The reference code transposed that window (row/column swap); here the argmin is used as is.
- Optimisation: sign-gradient steps that raise SNNL, with the false-positive control that pushes
  triggers away from the target until at most ``threshold`` of them are already predicted as the target.
Held-out triggers are made the same way (same patch, same optimisation) but never trained on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .callbacks import Reporter
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
