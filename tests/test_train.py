"""ewe.train: the watermark phase's schedule (spec A3 step 5, and the reference code's clean-data variant),
its batches, and the sign of the SNNL term and of the temperature's step. Tiny budgets, fixed seeds."""
import pytest
import torch

from conftest import toy_task
from ewe.callbacks import Reporter
from ewe.config import RunConfig
from ewe.models import build_model
from ewe.train import entangled_step, plain_step, train_clean, train_watermark, watermark_schedule
from ewe.watermarks.snnl import Temperatures, snnl_layers


def _phase(schedule: str):
    """A tiny watermark phase where every clean sample past the reference prefix is NaN: training that
    touches one of them ends with NaN weights."""
    torch.manual_seed(0)
    cfg = RunConfig(batch_size=8, w_epochs=1, ratio=1.0, kappa=[0.0] * 3, snnl=False, clean_schedule=schedule)
    n, n_trig = 64, 8                               # 8 clean batches an epoch, 2 watermark batches a pass
    x = torch.rand(n, 1, 28, 28)
    y = torch.randint(0, 10, (n,))
    passes, w_num_batch, clean_before = watermark_schedule(n, n_trig, cfg.batch_size, cfg.w_epochs, cfg.ratio)
    prefix = sum(clean_before) * cfg.batch_size       # what the reference code's phase revisits each pass
    assert passes > 1 and prefix < n
    x[prefix:] = float("nan")
    model = build_model("conv2", (1, 28, 28), seed=0)
    triggers = torch.rand(n_trig, 1, 28, 28)
    x_target = torch.rand(8, 1, 28, 28)
    train_watermark(model, x, y, triggers, x_target, 7, cfg=cfg, reporter=Reporter(), stage="s", name="s",
                    use_snnl=False, seed=0)
    return all(torch.isfinite(p).all() for p in model.parameters())


def test_reference_schedule_revisits_only_the_first_clean_batches():
    assert _phase("reference")


def test_shuffled_schedule_covers_all_the_data():
    assert not _phase("shuffled")


def test_unknown_schedule_is_refused():
    from ewe.config import ConfigError, from_dict
    with pytest.raises(ConfigError, match="clean_schedule"):
        from_dict({"clean_schedule": "sorted"})


# ---------------------------------------------------------------------------------------------------
# the watermark schedule (spec A3 step 5): whole and fractional ratios

@pytest.mark.parametrize("ratio", [1.0, 2.0, 3.0, 0.5, 1.5, 2.25])
def test_schedule_puts_ratio_clean_batches_before_each_watermark_batch(ratio):
    n_train, n_triggers, batch = 640, 64, 32                 # 20 clean batches an epoch, 4 watermark batches
    passes, w_num_batch, clean_before = watermark_schedule(n_train, n_triggers, batch, 1.0, ratio)
    assert w_num_batch == n_triggers // (batch // 2) == 4
    assert passes == 5                                        # w_epochs * 20 watermark steps over 4 a pass
    # after b watermark batches, floor(ratio * b) clean ones: whole ratios every time, fractional ones
    # spread evenly (the reference code's pointer arithmetic)
    assert [sum(clean_before[:b + 1]) for b in range(w_num_batch)] == [int(ratio * (b + 1)) for b in range(4)]
    assert set(clean_before) <= {int(ratio), int(ratio) + 1}


def test_schedule_length_follows_w_epochs():
    for w_epochs, passes in ((1.0, 5), (2.0, 10), (0.2, 1), (0.01, 1)):   # at least one pass
        assert watermark_schedule(640, 64, 32, w_epochs, 1.0)[0] == passes


class _Spy(torch.nn.Module):
    """A model that records the inputs of every forward pass (clean steps and watermark steps alike)."""

    def __init__(self):
        super().__init__()
        self.net = build_model("conv2", (1, 28, 28), seed=0)
        self.seen: list[torch.Tensor] = []

    def features(self, x):
        self.seen.append(x.detach().clone())
        return self.net.features(x)

    def forward(self, x):
        return self.features(x)[0]


def test_watermark_batches_are_triggers_then_target_samples_all_labelled_target():
    torch.manual_seed(0)
    cfg = RunConfig(batch_size=8, w_epochs=1, ratio=1.5, kappa=[0.1] * 3, snnl=True)
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 9, (64,))      # clean data: never class 9
    triggers = torch.rand(16, 1, 28, 28) + 2.0                         # values > 1: told apart from the rest
    x_target = -torch.rand(12, 1, 28, 28)                              # negative: told apart too
    passes, w_num_batch, clean_before = watermark_schedule(len(x), len(triggers), 8, 1.0, 1.5)
    seen_steps = []

    def step(model, xb, y_wm, w, temps, kappa, metric):
        seen_steps.append((xb.clone(), y_wm.clone(), w.clone()))
        return entangled_step(model, xb, y_wm, w, temps, kappa, metric)

    model = _Spy()
    train_watermark(model, x, y, triggers, x_target, 9, cfg=cfg, reporter=Reporter(), stage="s", name="s",
                    step=step, seed=0)
    assert len(seen_steps) == passes * w_num_batch
    for i, (xb, y_wm, w) in enumerate(seen_steps):
        b = i % w_num_batch
        assert torch.equal(xb[:4], triggers[4 * b:4 * b + 4])          # half a batch of triggers, in order
        assert (xb[4:] <= 0).all() and len(xb) == 8                    # then half a batch of target samples
        assert y_wm.tolist() == [9] * 8                                 # every one labelled the target
        assert w.tolist() == [1.0] * 4 + [0.0] * 4                      # the SNNL groups: triggers vs target
    clean = [xb for xb in model.seen if ((xb >= 0) & (xb <= 1)).all()]
    assert len(clean) == passes * sum(clean_before)                     # ratio clean batches per watermark batch
    assert len(model.seen) == len(clean) + len(seen_steps)
    assert all(len(xb) == 8 for xb in clean)


# ---------------------------------------------------------------------------------------------------
# the SNNL term: its sign, and the temperature's

def _layer_snnl(model, triggers, targets, tau=1.0):
    model.eval()
    with torch.no_grad():
        _, hidden = model.features(torch.cat([triggers, targets]))
        w = torch.cat([torch.ones(len(triggers)), torch.zeros(len(targets))])
        return [float(s) for s in snnl_layers(hidden, w, Temperatures([tau] * 3, "fixed"))]


TAU = 0.5


def _watermarked(step, x, y, trig, seed=0):
    """Pre-train, then a watermark phase with ``step``; each layer's SNNL of held-out triggers against
    target samples before and after."""
    cfg = RunConfig(batch_size=32, w_epochs=3, ratio=1.0, kappa=[4.0] * 3, temperature=[TAU] * 3,
                    temperature_mode="fixed", snnl=True)
    model = build_model("conv2", (1, 28, 28), seed=seed)
    train_clean(model, x, y, epochs=2, batch_size=32, lr=1e-3, reporter=Reporter(), stage="p", name="p", seed=seed)
    before = _layer_snnl(model, trig[32:], x[y == 7][:32], TAU)
    train_watermark(model, x, y, trig[:32], x[y == 7], 7, cfg=cfg, reporter=Reporter(), stage="w", name="w",
                    step=step, seed=seed)
    return before, _layer_snnl(model, trig[32:], x[y == 7][:32], TAU)


def test_ewe_raises_every_layers_snnl_where_the_ablation_does_not():
    """The loss is CE - kappa * SNNL: the weights ascend the SNNL (entangle triggers with the target class) in
    every layer. The same phase without the term (the no-SNNL ablation) does not raise the first two layers'
    SNNL at all (cross-entropy alone separates what it need not mix), and the last layer's (where the
    labels pull triggers towards the target) clearly less than EWE. Measured: before 0.31 / 0.39 / 0.50,
    EWE 0.49 / 0.66 / 0.71, ablation 0.26 / 0.29 / 0.63."""
    torch.manual_seed(0)
    x, y, trig = toy_task()
    before, ewe = _watermarked(entangled_step, x, y, trig)
    before2, ablation = _watermarked(plain_step, x, y, trig)
    assert before == pytest.approx(before2)                      # the same pre-trained model
    for layer in range(3):
        assert ewe[layer] > before[layer] + 0.1, (layer, before, ewe)
        assert ablation[layer] < ewe[layer] - 0.05, (layer, ablation, ewe)
    assert ablation[0] < before[0] and ablation[1] < before[1], (before, ablation)


def test_learned_temperature_descends_each_layers_snnl():
    """The min-max of the reference code: the weights ascend the SNNL, each layer's temperature descends it."""
    torch.manual_seed(0)
    x, y, trig = toy_task()
    model = build_model("conv2", (1, 28, 28), seed=0)
    _, hidden = model.features(torch.cat([trig[:16], x[y == 7][:16]]))
    hidden = [h.detach() for h in hidden]
    w = torch.cat([torch.ones(16), torch.zeros(16)])
    temps = Temperatures([2.0] * 3, "learned", t_lr=50.0)
    start = [s.item() for s in snnl_layers(hidden, w, temps)]
    for _ in range(20):
        temps.apply(temps.gradient(snnl_layers(hidden, w, temps)))
    end = [s.item() for s in snnl_layers(hidden, w, temps)]
    assert temps.tau != pytest.approx([2.0] * 3)
    assert all(e < s for e, s in zip(end, start)), (start, end)
    fixed = Temperatures([2.0] * 3, "fixed")
    assert fixed.gradient(snnl_layers(hidden, w, fixed)) is None       # a fixed temperature never moves


def test_bf16_training_learns_like_fp32_and_keeps_fp32_weights():
    """The innocents' mixed precision: the forward pass runs in bf16, weights and optimiser stay fp32, and a
    separable task is learnt as well as in fp32; fp32 mode is the plain loop, bit for bit."""
    from ewe.callbacks import Reporter
    from ewe.models import build_model
    from ewe.train import accuracy, autocast, train_clean
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (512,), generator=g)
    x = torch.randn(512, 1, 28, 28, generator=g) * 0.3
    for c in range(10):                          # the label is written into the image: a bright row band
        x[y == c, 0, 2 * c:2 * c + 3, :] += 2.0
    acc, weights = {}, {}
    for mode in ("fp32", "bf16", "fp32"):
        model = build_model("conv2", (1, 28, 28), seed=1)
        train_clean(model, x, y, epochs=6, batch_size=64, lr=1e-3, reporter=Reporter(), stage="s", name="m",
                    seed=2, precision=mode)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        acc.setdefault(mode, []).append(accuracy(model, x, y))
        weights.setdefault(mode, []).append(model.fc1.weight.detach().clone())
    assert acc["fp32"][0] > 0.9 and acc["bf16"][0] > 0.9
    assert torch.equal(weights["fp32"][0], weights["fp32"][1])
    assert not torch.equal(weights["fp32"][0], weights["bf16"][0])   # bf16 really ran (on this CPU or emulated)
    with pytest.raises(ValueError, match="precision is one of"):
        autocast(torch.device("cpu"), "fp16")


def test_a_bf16_watermark_step_keeps_the_snnl_in_fp32():
    """A run's precision "bf16" autocasts its forward passes; EWE's step takes the features in bf16 but computes
    the SNNL (exponentiated similarities over a temperature) and the loss in fp32: the per-layer SNNL is fp32,
    close to the fp32 step's, and the temperatures' gradient exists."""
    from ewe.train import autocast
    g = torch.Generator().manual_seed(0)
    model = build_model("conv2", (1, 28, 28), seed=0)
    xb = torch.rand(16, 1, 28, 28, generator=g)
    w = torch.cat([torch.ones(8), torch.zeros(8)])
    y = torch.full((16,), 7)
    kappa = torch.ones(3)
    fp32 = entangled_step(model, xb, y, w, Temperatures([2.0] * 3), kappa, "cosine")
    with autocast(torch.device("cpu"), "bf16"):
        bf16 = entangled_step(model, xb, y, w, Temperatures([2.0] * 3), kappa, "cosine")
    assert all(s.dtype == torch.float32 for s in bf16[2]) and bf16[0].dtype == torch.float32
    assert torch.allclose(torch.stack(bf16[2]), torch.stack(fp32[2]), atol=0.02)
    assert bf16[3] is not None and all(torch.isfinite(t).all() for t in bf16[3])


def test_the_runs_precision_reaches_its_watermark_phase_and_its_thief():
    """``RunConfig.precision``: "auto" is the device's fast precision, the thief inherits it, an unknown value
    is refused naming the choices, and a bf16 watermark phase trains other weights than the fp32 one."""
    from ewe.attacks.extraction import ThiefConfig
    from ewe.config import ConfigError, from_dict
    from ewe.train import fast_precision
    assert ThiefConfig.from_run_config(RunConfig(precision="bf16")).precision == "bf16"
    assert ThiefConfig.from_run_config(RunConfig(precision="auto")).precision == fast_precision("cpu")
    with pytest.raises(ConfigError, match="precision is one of fp32, bf16, auto"):
        from_dict({"precision": "fp16"})
    weights = {}
    for mode in ("fp32", "bf16"):
        cfg = RunConfig(batch_size=8, w_epochs=1, ratio=1.0, kappa=[0.1] * 3, temperature=[2.0] * 3, precision=mode)
        model = build_model("conv2", (1, 28, 28), seed=0)
        g = torch.Generator().manual_seed(1)
        x, y = torch.rand(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
        train_watermark(model, x, y, torch.rand(8, 1, 28, 28, generator=g), torch.rand(8, 1, 28, 28, generator=g),
                        7, cfg=cfg, reporter=Reporter(), stage="s", name="s", use_snnl=True, seed=0)
        assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
        weights[mode] = model.fc2.weight.detach().clone()
    assert not torch.equal(weights["fp32"], weights["bf16"])
