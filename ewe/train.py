"""Training loops: clean training and the interleaved watermark phase (spec A2, A3 step 5).

One optimiser setting for everything, as the reference code: Adam lr 1e-3, betas (0.9, 0.99), eps 1e-5.
Cross-entropy is the batch mean (the reference summed it; kappa is rescaled accordingly in config).
Every batch checks the reporter's stop flag; every (pseudo-)epoch emits an ``epoch`` event.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .callbacks import Reporter
from .watermarks.snnl import Temperatures, snnl_layers


def make_optimizer(model: torch.nn.Module, lr: float = 1e-3) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99), eps=1e-5)


# Inference batches of 256: at 1,024 the first layer's activations (100 MB) leave the cache and a pass over
# 8,000 images takes 1.7 s instead of 0.7 (2 threads, channels-last CNN)
EVAL_BATCH = 256


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def predict_proba(model: torch.nn.Module, x: torch.Tensor, temperature: float = 1.0,
                  batch_size: int = EVAL_BATCH) -> torch.Tensor:
    model.eval()
    return torch.cat([F.softmax(model(x[i:i + batch_size]) / temperature, 1)
                      for i in range(0, len(x), batch_size)])


def logit_margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each row's logit of its label minus its largest other logit (> 0: the label is the model's answer)."""
    own = logits.gather(1, labels[:, None])[:, 0]
    return own - logits.scatter(1, labels[:, None], float("-inf")).max(1).values


def accuracy(model, x, y) -> float:
    return (predict(model, x) == y).float().mean().item()


def watermark_success(model, triggers: torch.Tensor, target: int) -> float:
    return (predict(model, triggers) == target).float().mean().item()


@dataclass
class Probe:
    """What each epoch event measures: accuracy on a (small) test slice, watermark success on triggers."""
    x_test: torch.Tensor
    y_test: torch.Tensor
    triggers: torch.Tensor | None = None
    target: int | torch.Tensor = 0     # the class a hit is, or one label per trigger
    train_triggers: torch.Tensor | None = None

    def __call__(self, model) -> dict:
        m = {"accuracy": accuracy(model, self.x_test, self.y_test)}
        if self.triggers is not None:
            m["watermark_success"] = watermark_success(model, self.triggers, self.target)
        if self.train_triggers is not None:
            m["watermark_success_train"] = watermark_success(model, self.train_triggers, self.target)
        return m


class BatchStream:
    """Endless shuffled mini-batches over (x, y): reshuffled every pass, last partial batch dropped."""

    def __init__(self, x, y, batch_size: int, generator: torch.Generator):
        self.x, self.y, self.b, self.g = x, y, batch_size, generator
        self.per_epoch = max(1, len(x) // batch_size)
        self._order, self._pos = None, self.per_epoch

    def next(self):
        if self._pos >= self.per_epoch:
            # a CPU generator (seeded, device-independent order) draws on the CPU; the indices go to the data
            self._order, self._pos = torch.randperm(len(self.x), generator=self.g).to(self.x.device), 0
        idx = self._order[self._pos * self.b:(self._pos + 1) * self.b]
        self._pos += 1
        return self.x[idx], self.y[idx]


PRECISIONS = ("fp32", "bf16")


def fast_precision(device: str | torch.device = "cpu") -> str:
    """"bf16" where the device runs bfloat16 matrix and convolution kernels natively (CPUs with AVX-512 BF16
    or AMX, through oneDNN; CUDA GPUs with bf16 support), else "fp32". On this project's 2-core Xeon (AMX) a
    training step of the 2-conv CNN at batch 128 took 12 ms under bf16 autocast against 28 ms in fp32, and
    the quick MNIST innocent population 84 s against 160 s (bench/bench_population.py); on a CPU without those units bf16 would be emulated and slower."""
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    try:
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    except (AttributeError, RuntimeError):
        return "fp32"


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """A run's ``precision`` setting as the arithmetic it gets: "auto" is ``fast_precision`` of its device."""
    return fast_precision(device) if precision == "auto" else precision


def autocast(device: torch.device, precision: str):
    """Mixed precision for the forward pass: weights, optimiser state and gradients stay fp32, the
    convolutions and matrix products run in bf16 and the loss in fp32 (torch.autocast's own lists)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision is one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _ce(logits, y, temperature: float = 1.0):
    if y.dtype.is_floating_point:   # soft labels (distillation): cross-entropy against probabilities
        return -(y * F.log_softmax(logits / temperature, 1)).sum(1).mean()
    return F.cross_entropy(logits, y)


def train_clean(model, x, y, *, epochs: float, batch_size: int, lr: float, reporter: Reporter,
                stage: str, name: str, probe: Probe | None = None, seed: int = 0,
                optimizer: torch.optim.Optimizer | None = None, label_temperature: float = 1.0,
                evals: int | None = None, precision: str = "fp32") -> torch.optim.Optimizer:
    """Train on (x, y) for ``epochs`` epochs (y may be class ids or soft-label probabilities).

    ``precision`` "bf16" runs the forward pass under bf16 autocast (``autocast``; the innocent population
    uses it where the hardware has bf16 units, ``fast_precision``; the run's own models as its ``precision``
    setting says).

    Emits ``evals`` epoch events (default: one per epoch). Returns the optimiser so a later stage can
    continue with the same Adam state (shared pre-training).
    """
    opt = optimizer or make_optimizer(model, lr)
    g = torch.Generator().manual_seed(seed)
    stream = BatchStream(x, y, batch_size, g)
    steps = max(1, round(epochs * stream.per_epoch))
    evals = max(1, evals or math.ceil(epochs))
    checkpoints = {round(steps * (k + 1) / evals) for k in range(evals)}
    reporter.emit("stage_start", stage=stage, model=name, epochs=evals)
    running, seen = 0.0, 0
    model.train()
    for step in range(1, steps + 1):
        reporter.check()
        xb, yb = stream.next()
        with autocast(xb.device, precision):
            logits = model(xb)
        loss = _ce(logits.float(), yb, label_temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running, seen = running + loss.item(), seen + 1
        reporter.advance(stage, step / steps)
        if step in checkpoints:
            metrics = {"loss": running / seen, **(probe(model) if probe else {})}
            model.train()
            reporter.emit("epoch", stage=stage, model=name, epoch=len([c for c in checkpoints if c <= step]),
                          epochs=evals, metrics=metrics)
            running, seen = 0.0, 0
    return opt


def watermark_schedule(n_train: int, n_triggers: int, batch_size: int, w_epochs: float, ratio: float):
    """Reference schedule: (passes, watermark batches per pass, clean batches before each of them).

    passes = round(w_epochs * num_batch / w_num_batch), so the phase has w_epochs * num_batch watermark
    steps and about ratio times as many clean steps.
    """
    half = batch_size // 2
    num_batch = max(1, n_train // batch_size)
    w_num_batch = max(1, n_triggers // half)
    passes = max(1, round(w_epochs * num_batch / w_num_batch))
    clean_before = []
    j = 0
    for b in range(w_num_batch):
        k = int(ratio)
        if ratio != int(ratio) and ratio * (b + 1) >= j + k + 1:
            k += 1
        clean_before.append(k)
        j += k
    return passes, w_num_batch, clean_before


def entangled_step(model, xb, y_wm, w, temps: Temperatures, kappa: torch.Tensor, metric: str):
    """EWE's watermark step: loss = CE - sum_l kappa_l * SNNL_l over the batch [triggers ; target samples]
    (``w`` marks the triggers). Returns (loss, ce, per-layer SNNL, the temperatures' gradient), the latter
    taken before the weights' backward pass, as the reference code."""
    logits, hidden = model.features(xb)
    # under a bf16 forward (train_watermark's precision) the SNNL's pairwise similarities stay fp32: they are
    # exponentiated over a temperature, where bf16's 3 significant digits would flatten them
    with torch.autocast(xb.device.type, enabled=False):
        layer_snnl = snnl_layers([h.float() for h in hidden], w, temps, metric)
        ce = F.cross_entropy(logits.float(), y_wm)
        loss = ce - (kappa * torch.stack(layer_snnl)).sum()
        return loss, ce, layer_snnl, temps.gradient(layer_snnl)


def plain_step(model, xb, y_wm, w, temps: Temperatures, kappa: torch.Tensor, metric: str):
    """The classic watermark's step (and the no-SNNL ablation's): cross-entropy only."""
    ce = F.cross_entropy(model(xb).float(), y_wm)
    return ce, ce, None, None


class ReferenceBatches:
    """The reference code's clean batches in the watermark phase: the data in file order, from the first
    batch again at every pass (so the phase revisits only a prefix of the data)."""

    def __init__(self, x, y, batch_size: int):
        self.x, self.y, self.b = x, y, batch_size
        self.per_epoch = max(1, len(x) // batch_size)
        self._pos = 0

    def next(self):
        start = (self._pos % self.per_epoch) * self.b
        self._pos += 1
        return self.x[start:start + self.b], self.y[start:start + self.b]


def _clean_step(model, opt, xb, yb, precision: str) -> None:
    """One cross-entropy step on a clean batch of the watermark phase."""
    with autocast(xb.device, precision):
        logits = model(xb)
    loss = F.cross_entropy(logits.float(), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _watermark_batch(triggers, x_target, t_order, b: int, half: int) -> torch.Tensor:
    """Watermark batch ``b`` of a pass: its half batch of triggers, in order, then half a batch of target
    samples from this pass's shuffled order (restarting at its head where too few are left)."""
    trig = triggers[b * half:(b + 1) * half]
    idx = t_order[(b * half) % max(1, len(x_target) - half + 1):][:half]
    if len(idx) < half:
        idx = t_order[:half]
    return torch.cat([trig, x_target[idx]])


def _watermark_step(model, opt, step, xb, y_wm, w, temps: Temperatures, kappa, metric: str,
                    device: torch.device, precision: str):
    """One watermark batch through ``step``; the temperatures move on the gradient the step took before
    the weights' backward pass. Returns (cross-entropy, per-layer SNNL or None)."""
    with autocast(device, precision):
        loss, ce, layer_snnl, t_grad = step(model, xb, y_wm, w, temps, kappa, metric)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    temps.apply(t_grad)      # a no-op without a gradient (fixed temperatures, plain step)
    opt.step()
    return ce, layer_snnl


class WatermarkTotals:
    """The watermark steps' cross-entropy and per-layer SNNL summed since the last epoch event."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reports_snnl = False    # kept once set: the step has SNNL values for the epoch events
        self.reset()

    def reset(self) -> None:
        self.loss, self.snnl, self.n = 0.0, torch.zeros(3, device=self.device), 0

    def add(self, ce: torch.Tensor, layer_snnl) -> None:
        if layer_snnl is not None:
            self.snnl += torch.stack([s.detach() for s in layer_snnl])
            self.reports_snnl = True
        self.loss += ce.item()
        self.n += 1

    def metrics(self, model, probe: Probe | None, temps: Temperatures) -> dict:
        n = max(1, self.n)
        metrics = {"loss": self.loss / n, **(probe(model) if probe else {})}
        if self.reports_snnl:
            metrics["snnl"] = [round(v, 5) for v in (self.snnl / n).cpu().tolist()]
            metrics["temperature"] = [round(t, 5) for t in temps.tau]
        return metrics


def train_watermark(model, x, y, triggers: torch.Tensor, x_target: torch.Tensor, target: int, *,
                    cfg, reporter: Reporter, stage: str, name: str, use_snnl: bool | None = None,
                    step=None, optimizer: torch.optim.Optimizer | None = None, probe: Probe | None = None,
                    seed: int = 0, temps: Temperatures | None = None, evals: int | None = None):
    """The watermark phase: ``ratio`` clean batches, then a batch [H triggers ; H target samples] all
    labelled ``target``, trained with ``step`` (``entangled_step``: loss CE - sum_l kappa_l * SNNL_l;
    ``plain_step``: CE). ``use_snnl`` picks one of the two when ``step`` is not given (the schemes in
    ``ewe.watermarks.schemes`` pass their own).

    The forward passes run in the run's ``cfg.precision`` (``resolve_precision``; a step keeps its SNNL in
    fp32). Returns (optimizer, temperatures).
    """
    if step is None:
        step = entangled_step if use_snnl else plain_step
    opt = optimizer or make_optimizer(model, cfg.lr)
    temps = temps or Temperatures(cfg.temperature, cfg.temperature_mode, cfg.t_lr, device=x.device)
    g = torch.Generator().manual_seed(seed + 7919)
    clean = BatchStream(x, y, cfg.batch_size, g)
    reference = getattr(cfg, "clean_schedule", "shuffled") == "reference"
    half = cfg.batch_size // 2
    passes, w_num_batch, clean_before = watermark_schedule(len(x), len(triggers), cfg.batch_size,
                                                           cfg.w_epochs, cfg.ratio)
    evals = min(passes, evals or max(math.ceil(cfg.w_epochs), 6))
    checkpoints = {round(passes * (k + 1) / evals) for k in range(evals)}
    dev = x.device
    precision = resolve_precision(getattr(cfg, "precision", "fp32"), dev)
    kappa = torch.tensor(cfg.kappa).to(dev)
    w = torch.cat([torch.ones(half), torch.zeros(half)]).to(dev)
    y_wm = torch.full((2 * half,), target, dtype=torch.long, device=dev)
    reporter.emit("stage_start", stage=stage, model=name, epochs=evals)
    totals = WatermarkTotals(dev)
    model.train()
    for p in range(1, passes + 1):
        t_order = torch.randperm(len(x_target), generator=g).to(x_target.device)
        # the reference schedule's clean pointer restarts each pass; the shuffled stream runs on across passes
        batches = ReferenceBatches(x, y, cfg.batch_size) if reference else clean
        for b in range(w_num_batch):
            for _ in range(clean_before[b]):
                reporter.check()
                _clean_step(model, opt, *batches.next(), precision)
            reporter.check()
            xb = _watermark_batch(triggers, x_target, t_order, b, half)
            ce, layer_snnl = _watermark_step(model, opt, step, xb, y_wm, w, temps, kappa, cfg.metric, dev, precision)
            totals.add(ce, layer_snnl)
            reporter.advance(stage, ((p - 1) * w_num_batch + b + 1) / (passes * w_num_batch))
        if p in checkpoints:
            metrics = totals.metrics(model, probe, temps)
            model.train()
            reporter.emit("epoch", stage=stage, model=name, epoch=len([c for c in checkpoints if c <= p]),
                          epochs=evals, metrics=metrics)
            totals.reset()
    return opt, temps
