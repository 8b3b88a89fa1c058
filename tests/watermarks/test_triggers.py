"""Trigger construction: patch location on a constructed gradient, tiling, optimisation invariants, and what
optimisation does on a trained victim (SNNL up, false positives down)."""
import pytest
import torch

from ewe.watermarks import triggers as trig
from ewe.models import ConvNet
from ewe.watermarks.snnl import Temperatures


def test_patch_location_is_the_argmin_window_not_transposed():
    g = torch.zeros(1, 28, 28)
    g[0, 20:23, 4:7] = -1.0          # lowest window at row 20, col 4 (the reference swapped these)
    g[0, 4:7, 20:23] = -0.5
    assert trig.best_patch_location(g) == (20, 4)


def test_patch_location_sums_over_channels():
    g = torch.zeros(2, 10, 12)
    g[0, 1:4, 6:9] = -1.0
    g[1, 5:8, 0:3] = -0.6
    g[1, 1:4, 6:9] = +0.9            # channel 1 cancels channel 0 here
    assert trig.best_patch_location(g) == (5, 0)


def test_apply_patch_sets_channel_zero_only():
    x = torch.zeros(2, 2, 8, 8)
    out = trig.apply_patch(x, (2, 5), 1.0)
    assert out[:, 0, 2:5, 5:8].eq(1).all() and out.sum() == 2 * 9 and x.sum() == 0


def test_tile_repeats_and_truncates():
    x = torch.arange(5.0).view(5, 1)
    assert trig.tile(x, 12).view(-1).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert len(trig.tile(x, 3)) == 3


def test_optimise_respects_range_and_budget_and_false_positive_control():
    torch.manual_seed(0)
    model = ConvNet()
    pool, target = torch.rand(16, 1, 28, 28), torch.rand(16, 1, 28, 28)
    w_lr, maxiter = 0.01, 3
    out = trig.optimise(model, pool, target, 7, half=8, maxiter=maxiter, w_lr=w_lr, threshold=0.1,
                        temps=Temperatures([1.0] * 3, "fixed"), metric="cosine")
    assert out.shape == pool.shape and out.min() >= 0 and out.max() <= 1
    budget = (maxiter + trig.FP_STEP_CAP + trig.FINAL_PUSH_STEPS) * w_lr
    assert (out - pool).abs().max() <= budget + 1e-6
    assert not torch.equal(out, pool)


def test_two_pools_report_progress_as_parts_of_one_stage():
    """The trigger stage optimises the training pool, then the held-out pool: its progress must not reach
    100 % after the first (it did, and the ETA then ran ahead by half the stage)."""
    from ewe.callbacks import Reporter
    torch.manual_seed(0)
    model = ConvNet()
    rep = Reporter()
    rep.set_plan({"triggers": 1.0, "later": 1.0})
    pool, target = torch.rand(16, 1, 28, 28), torch.rand(16, 1, 28, 28)
    kw = dict(half=8, maxiter=1, w_lr=0.01, threshold=0.1, temps=Temperatures([1.0] * 3, "fixed"),
              metric="cosine", reporter=rep)
    trig.optimise(model, pool, target, 7, span=(0, 0.6), **kw)
    assert rep.done["triggers"] == 0.6
    trig.optimise(model, pool[:8], target, 7, span=(0.6, 1), **kw)
    assert rep.done["triggers"] == 1.0


# ---------------------------------------------------------------------------------------------------
# what optimisation does to a trained victim (tiny: a CNN trained for seconds on conftest.toy_task)

@pytest.fixture(scope="module")
def victim():
    from conftest import toy_task
    from ewe.callbacks import Reporter
    from ewe.models import build_model
    from ewe.train import train_clean
    x, y, triggers = toy_task()
    model = build_model("conv2", (1, 28, 28), seed=0)
    train_clean(model, x, y, epochs=2, batch_size=32, lr=1e-3, reporter=Reporter(), stage="p", name="p", seed=0)
    return model, x, y, triggers


TEMPS = dict(temps=Temperatures([0.5] * 3, "fixed"), metric="cosine")


def _total_snnl(model, pool, target):
    from ewe.watermarks.snnl import snnl_layers
    model.eval()
    with torch.no_grad():
        _, hidden = model.features(torch.cat([pool, target]))
        w = torch.cat([torch.ones(len(pool)), torch.zeros(len(target))])
        return sum(s.item() for s in snnl_layers(hidden, w, TEMPS["temps"]))


def test_optimisation_raises_the_snnl_of_triggers_and_target(victim):
    """Sign-gradient ascent on the summed SNNL (measured: 1.22 -> 1.36 on these triggers)."""
    model, x, y, triggers = victim
    target = x[y == 7][:16]
    pool = triggers[:16]
    out = trig.optimise(model, pool, target, 7, half=16, maxiter=10, w_lr=0.01, threshold=1.0, **TEMPS)
    assert _total_snnl(model, out, target) > _total_snnl(model, pool, target) + 0.05


def test_false_positive_control_lowers_the_victims_target_rate_on_the_triggers(victim):
    """Candidates the victim already calls the target would prove nothing (an innocent model calls them the
    target too): the control pushes them away until at most ``threshold`` are. Measured on near-target
    candidates: 100 % answered the target without the control (threshold 1), 0 % with threshold 0.1."""
    from ewe.train import watermark_success
    model, x, y, triggers = victim
    target = x[y == 7][:16]
    pool = x[y == 7][16:32] * 0.9 + 0.05 * triggers[:16]           # look like the target class
    assert watermark_success(model, pool, 7) > 0.9
    kw = dict(half=16, maxiter=10, w_lr=0.01, **TEMPS)
    free = trig.optimise(model, pool, target, 7, threshold=1.0, **kw)
    controlled = trig.optimise(model, pool, target, 7, threshold=0.1, **kw)
    assert watermark_success(model, free, 7) > 0.5
    assert watermark_success(model, controlled, 7) <= 0.1 < watermark_success(model, free, 7)
