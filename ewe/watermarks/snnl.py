"""Soft nearest-neighbour loss (Frosst, Papernot & Hinton 2019) as the EWE reference code computes it.

For representations z (ReLU applied inside, flattened) and group labels w (1 = watermark, 0 = target):
    d_ij = 1 - cos(z_i, z_j)  (cosine)   or   ||z_i||^2 + ||z_j||^2 - 2 z_i.z_j  (euclidean)
    e_ij = clip(exp(-d_ij / tau) - delta_ij, 0, 1)
    p_ij = e_ij / (1e-5 + sum_k e_ik)
    SNNL = -mean_i log(1e-5 + sum_j p_ij [w_i == w_j])
High SNNL = the groups are entangled (ln 2 for two equal, perfectly mixed groups).

Temperature: ``tau`` is the standard SNNL temperature. The reference code parameterises it as
T = 100 / tau and takes its gradient steps on T; ``Temperatures`` does the same so a learned run follows
the reference dynamics, and reports tau.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-5


class _Gram(torch.autograd.Function):
    """G = z z^T with a one-matmul backward, (dG + dG^T) z. Autograd's generic z @ z.T backward does two
    matmuls and an add over the wide first-layer features, which dominate the SNNL cost."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return z @ z.T

    @staticmethod
    def backward(ctx, grad):
        z, = ctx.saved_tensors
        return (grad + grad.T) @ z


def pairwise_distance(z: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Pairwise distances from one Gram matrix (no normalised copy of the wide features)."""
    gram = _Gram.apply(z)
    sq = torch.diagonal(gram)
    if metric == "cosine":
        norm = sq.clamp_min(1e-24).sqrt()      # F.normalize's eps 1e-12 on the norm
        return 1.0 - gram / (norm[:, None] * norm[None, :])
    if metric == "euclidean":
        return (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min(0.0)
    raise ValueError(f"metric is 'cosine' or 'euclidean', got {metric!r}")


def _flat(z: torch.Tensor) -> torch.Tensor:
    """[B, ...] -> [B, D] in memory order: both distances ignore the order of features, so a channels-last
    activation is flattened without a copy of the wide first-layer features."""
    if z.dim() == 4 and not z.is_contiguous() and z.is_contiguous(memory_format=torch.channels_last):
        return z.permute(0, 2, 3, 1).flatten(1)
    return z.flatten(1)


def snnl(h: torch.Tensor, w: torch.Tensor, tau: torch.Tensor | float, metric: str = "cosine") -> torch.Tensor:
    """SNNL of one layer's representations ``h`` [B, ...] with group labels ``w`` [B]."""
    z = _flat(F.relu(h))
    d = pairwise_distance(z, metric)
    eye = torch.eye(len(z), device=z.device, dtype=d.dtype)
    e = (torch.exp(-d / tau) - eye).clamp(0.0, 1.0)
    p = e / (EPS + e.sum(1, keepdim=True))
    same = (w[:, None] == w[None, :]).to(p.dtype)
    return -torch.log(EPS + (p * same).sum(1)).mean()


class Temperatures:
    """Per-layer temperatures, parameterised as the reference code's T = 100 / tau.

    ``mode="learned"``: after each watermark batch, T_l <- T_l - t_lr * dSNNL_l/dT_l (each layer's
    temperature descends its own SNNL while the weights ascend it: the reference code's min-max).
    ``mode="fixed"``: no update.
    ``device``: where T lives (the model's device); ``snnl_layers`` moves T to the features' device anyway.
    """

    def __init__(self, tau: list[float], mode: str = "learned", t_lr: float = 0.1,
                 device: torch.device | str | None = None):
        self.mode, self.t_lr = mode, t_lr
        # only a temperature that is stepped needs a gradient: a fixed one would otherwise collect .grad from
        # every backward pass of the weights, with nothing ever clearing it
        self.T = torch.tensor([100.0 / t for t in tau], dtype=torch.float32, device=device,
                              requires_grad=self.learns)

    @property
    def learns(self) -> bool:
        return self.mode == "learned" and self.t_lr != 0

    @property
    def tau(self) -> list[float]:
        return [100.0 / t for t in self.T.detach().cpu().tolist()]

    def for_layer(self, layer: int) -> torch.Tensor:
        # tau as a differentiable function of T; floor T so tau stays finite if T were pushed to 0.
        return 100.0 / self.T[layer].clamp_min(1e-3)

    def gradient(self, snnl_values: list[torch.Tensor]) -> torch.Tensor | None:
        """dSNNL_l/dT_l for each layer (None when fixed). Call before the weights' backward pass, which
        frees the graph; apply it after, so the step uses the pre-update weights as the reference."""
        if not self.learns:
            return None
        grad, = torch.autograd.grad(torch.stack(snnl_values).sum(), self.T, retain_graph=True)
        return grad

    def apply(self, grad: torch.Tensor | None) -> None:
        """T <- T - t_lr * grad: each layer's temperature descends its own SNNL."""
        if grad is None:
            return
        with torch.no_grad():
            self.T -= self.t_lr * grad
            self.T.clamp_(min=1e-3)
        self.T.grad = None


def snnl_layers(hidden: list[torch.Tensor], w: torch.Tensor, temps: Temperatures,
                metric: str = "cosine") -> list[torch.Tensor]:
    """SNNL for each of the three hidden layers, with each layer's temperature."""
    # .to() is a no-op on T's own device and differentiable otherwise (a learned T still gets its gradient)
    return [snnl(h, w.to(h.device), temps.for_layer(i).to(h.device), metric) for i, h in enumerate(hidden)]
