"""SNNL against a brute-force loop of the reference formula, its gradient, and the temperature update."""
import math

import pytest
import torch
import torch.nn.functional as F

from ewe.watermarks.snnl import EPS, Temperatures, pairwise_distance, snnl, snnl_layers


def snnl_loop(h, w, tau, metric):
    """Spec A1 written out element by element (float64)."""
    z = F.relu(h).flatten(1).double()
    n = len(z)
    total = 0.0
    for i in range(n):
        e = []
        for j in range(n):
            if metric == "cosine":
                d = 1 - float(z[i] @ z[j]) / (max(z[i].norm().item(), 1e-12) * max(z[j].norm().item(), 1e-12))
            else:
                d = float(((z[i] - z[j]) ** 2).sum())
            e.append(min(max(math.exp(-d / tau) - (1.0 if i == j else 0.0), 0.0), 1.0))
        s = sum(e)
        same = sum(e[j] / (EPS + s) for j in range(n) if w[i] == w[j])
        total += -math.log(EPS + same)
    return total / n


@pytest.mark.parametrize("metric,tau", [("cosine", 1.0), ("cosine", 0.2), ("cosine", 100.0), ("euclidean", 5.0)])
def test_snnl_matches_loop(metric, tau):
    torch.manual_seed(0)
    h = torch.randn(12, 3, 4, 4, dtype=torch.float64)
    w = torch.tensor([1.0] * 6 + [0.0] * 6)
    assert snnl(h, w, tau, metric).item() == pytest.approx(snnl_loop(h, w, tau, metric), rel=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_channels_last_activations_give_the_loop_formula_and_gradient(metric):
    """The CNN's activations are channels-last; SNNL flattens them in memory order, which must not change
    the loss (distances ignore feature order) nor the gradient that reaches the activation."""
    torch.manual_seed(1)
    h = torch.randn(12, 3, 4, 4, dtype=torch.float64)
    w = torch.tensor([1.0] * 6 + [0.0] * 6)
    h_cl = h.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    h_nchw = h.clone().requires_grad_(True)
    loss_cl, loss_nchw = snnl(h_cl, w, 1.0, metric), snnl(h_nchw, w, 1.0, metric)
    assert loss_cl.item() == pytest.approx(snnl_loop(h, w, 1.0, metric), rel=1e-6)
    loss_cl.backward(), loss_nchw.backward()
    assert torch.allclose(h_cl.grad, h_nchw.grad, atol=1e-12)


def test_flat_kernel_gives_ln2():
    """At a huge temperature two equal groups look perfectly mixed: SNNL -> ln 2 (spec 0b)."""
    torch.manual_seed(0)
    h = torch.rand(64, 10, dtype=torch.float64)
    w = torch.tensor([1.0] * 32 + [0.0] * 32)
    assert snnl(h, w, 1e4).item() == pytest.approx(math.log(2 * 31 / 31 * 63 / 62), abs=0.02)


def test_separated_groups_have_low_snnl_and_mixed_high():
    torch.manual_seed(0)
    a, b = torch.zeros(8, 6), torch.zeros(8, 6)
    a[:, 0], b[:, 1] = 1 + 0.1 * torch.rand(8), 1 + 0.1 * torch.rand(8)
    w = torch.tensor([1.0] * 8 + [0.0] * 8)
    separated = snnl(torch.cat([a, b]), w, 0.1).item()
    mixed = snnl(torch.cat([a[:4], b[:4], a[4:], b[4:]]), w, 0.1).item()
    assert separated < 0.05 < mixed


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_gradient_matches_autograd_of_naive_formula(metric):
    torch.manual_seed(1)
    z = (torch.rand(10, 7, dtype=torch.float64) + 0.05).requires_grad_(True)
    w = torch.tensor([1.0] * 5 + [0.0] * 5)
    g, = torch.autograd.grad(snnl(z, w, 0.7, metric), z)

    def naive(z):
        if metric == "cosine":
            zn = z / z.norm(dim=1, keepdim=True)
            d = 1 - zn @ zn.T
        else:
            d = ((z[:, None] - z[None]) ** 2).sum(-1)
        e = (torch.exp(-d / 0.7) - torch.eye(len(z), dtype=z.dtype)).clamp(0, 1)
        p = e / (EPS + e.sum(1, keepdim=True))
        return -torch.log(EPS + (p * (w[:, None] == w[None]).double()).sum(1)).mean()
    g_ref, = torch.autograd.grad(naive(z), z)
    assert torch.allclose(g, g_ref, atol=1e-9)
    assert torch.autograd.gradcheck(lambda z: pairwise_distance(z, metric), (z[:5].detach().requires_grad_(True),))


def test_temperature_step_lowers_each_layers_snnl():
    """The reference min-max: the temperature descends SNNL (the weights ascend it)."""
    torch.manual_seed(0)
    hidden = [torch.randn(16, 8), torch.randn(16, 4, 3), torch.randn(16, 5)]
    w = torch.tensor([1.0] * 8 + [0.0] * 8)
    temps = Temperatures([1.0, 2.0, 0.5], mode="learned", t_lr=2000.0)
    before = [s.item() for s in snnl_layers(hidden, w, temps)]
    T_before = temps.T.detach().clone()
    temps.apply(temps.gradient(snnl_layers(hidden, w, temps)))
    after = [s.item() for s in snnl_layers(hidden, w, temps)]
    assert all(a < b for a, b in zip(after, before)), (before, after)
    assert not torch.equal(temps.T.detach(), T_before)
    assert temps.tau == pytest.approx([100.0 / t for t in temps.T.detach().tolist()])


def test_fixed_temperatures_do_not_move():
    temps = Temperatures([1.0] * 3, mode="fixed")
    hidden = [torch.randn(8, 3) for _ in range(3)]
    w = torch.tensor([1.0] * 4 + [0.0] * 4)
    assert temps.gradient(snnl_layers(hidden, w, temps)) is None
    assert temps.tau == pytest.approx([1.0] * 3)


@pytest.mark.parametrize("mode, t_lr", [("fixed", 0.1), ("learned", 0.0)])
def test_temperatures_that_never_move_collect_no_gradient(mode, t_lr):
    """A fixed temperature (or a learned one with t_lr 0) takes no part in autograd: the weights' backward
    passes used to pile up .grad on it forever."""
    temps = Temperatures([1.0, 2.0, 0.5], mode=mode, t_lr=t_lr)
    assert not temps.T.requires_grad
    hidden = [torch.randn(8, 3, requires_grad=True) for _ in range(3)]
    w = torch.tensor([1.0] * 4 + [0.0] * 4)
    for _ in range(3):
        torch.stack(snnl_layers(hidden, w, temps)).sum().backward()
        temps.apply(temps.gradient(snnl_layers(hidden, w, temps)))
    assert temps.T.grad is None
    assert all(h.grad is not None for h in hidden)   # the representations still get their gradient
    assert temps.tau == pytest.approx([1.0, 2.0, 0.5])


def test_learned_temperatures_clear_their_gradient_after_each_step():
    temps = Temperatures([1.0] * 3, mode="learned", t_lr=0.1)
    hidden = [torch.randn(8, 3, requires_grad=True) for _ in range(3)]
    w = torch.tensor([1.0] * 4 + [0.0] * 4)
    layer_snnl = snnl_layers(hidden, w, temps)
    grad = temps.gradient(layer_snnl)
    torch.stack(layer_snnl).sum().backward()     # the weights' backward also reaches T
    temps.apply(grad)
    assert temps.T.requires_grad and temps.T.grad is None
