"""Removal attacks on a tiny model and tiny data: pruning ratio achieved, last-layer fine-tuning leaves
the other weights alone, fine-pruning removes the chosen channels; the suite over a run folder."""
from __future__ import annotations

import pytest
import torch

from ewe.verify import Null
from ewe.attacks.removal import (channel_activity, evaluate, fine_prune, fine_tune, last_conv, prunable,
                                 prune, sparsity)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _layer_sparsity(m):
    return float((m.weight == 0).float().mean())


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.9])
def test_global_pruning_achieves_the_ratio(trained_convnet, blobs, ratio):
    before = _state(trained_convnet)
    model, info = prune(trained_convnet, ratio, scope="global")
    assert abs(info["achieved_ratio"] - ratio) < 1e-3 and abs(sparsity(model) - ratio) < 1e-3
    # the smallest weights went: every surviving weight is at least as large as every pruned one
    if ratio > 0:
        orig = torch.cat([m.weight.flatten().abs() for m in prunable(trained_convnet)])
        kept = torch.cat([m.weight.flatten() != 0 for m in prunable(model)])
        assert orig[kept].min() >= orig[~kept].max()
    # a plain model again (mask folded in), and the victim untouched
    assert set(model.state_dict()) == set(before)
    assert all(torch.equal(before[k], v) for k, v in trained_convnet.state_dict().items())
    assert model(blobs[0][:4]).shape == (4, 10)


def test_per_layer_pruning_prunes_each_layer(trained_convnet):
    model, info = prune(trained_convnet, 0.6, scope="layer")
    for m in prunable(model):
        assert abs(_layer_sparsity(m) - 0.6) < 0.01
    assert abs(info["achieved_ratio"] - 0.6) < 0.01


def test_pruning_then_fine_tuning_keeps_pruned_weights_at_zero(trained_convnet, blobs):
    x, y = blobs[0][:96], blobs[1][:96]
    pruned, _ = prune(trained_convnet, 0.5)
    model, info = prune(trained_convnet, 0.5, finetune=dict(x=x, y=y, epochs=1, batch_size=32, lr=1e-3))
    assert abs(info["achieved_ratio"] - 0.5) < 1e-3 and info["finetune"]["epochs"] == 1
    for a, b in zip(prunable(pruned), prunable(model)):
        assert torch.equal(a.weight == 0, b.weight == 0)          # same weights pruned, still zero
    assert not torch.equal(prunable(pruned)[0].weight, prunable(model)[0].weight)   # the rest moved


def test_last_layer_fine_tuning_changes_only_the_last_layer(trained_convnet, blobs):
    x, y = blobs[0][:96], blobs[1][:96]
    before = _state(trained_convnet)
    model, info = fine_tune(trained_convnet, x, y, layers="last", epochs=1, batch_size=32, lr=1e-2)
    after = model.state_dict()
    for k in before:
        if k.startswith("fc2."):
            assert not torch.equal(before[k], after[k]), k
        else:
            assert torch.equal(before[k], after[k]), k
    assert info["trained_parameters"] == 128 * 10 + 10
    assert all(torch.equal(before[k], v) for k, v in trained_convnet.state_dict().items())  # a copy
    assert all(p.requires_grad for p in model.parameters())        # nothing left frozen


def test_all_layer_fine_tuning_changes_every_layer(trained_convnet, blobs):
    x, y = blobs[0][:96], blobs[1][:96]
    before = _state(trained_convnet)
    model, _ = fine_tune(trained_convnet, x, y, layers="all", epochs=1, batch_size=32)
    assert all(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fine_pruning_removes_the_least_active_channels(trained_convnet, blobs):
    x, y = blobs[0][:128], blobs[1][:128]
    conv = last_conv(trained_convnet)
    activity = channel_activity(trained_convnet, conv, x)
    assert activity.shape == (conv.out_channels,) and (activity >= 0).all()
    model, info = fine_prune(trained_convnet, x, 0.25, finetune=dict(x=x, y=y, epochs=1, batch_size=32))
    chosen = info["pruned_channels"]
    assert len(chosen) == round(0.25 * conv.out_channels) == 16
    kept = sorted(set(range(conv.out_channels)) - set(chosen))
    assert activity[chosen].max() <= activity[kept].min()          # the least active ones
    new = last_conv(model)
    assert (new.weight[chosen] == 0).all() and (new.bias[chosen] == 0).all()   # still removed after fine-tuning
    assert (new.weight[kept] != 0).any(dim=(1, 2, 3)).all()
    # removed channels output nothing: their activity on clean data is exactly zero
    assert (channel_activity(model, new, x)[chosen] == 0).all()
    assert info["achieved_ratio"] == 0.25
    assert not (last_conv(trained_convnet).weight[chosen] == 0).all()           # the victim untouched


def test_fine_pruning_needs_a_conv_layer(blobs):
    from ewe.models import build_model
    with pytest.raises(ValueError, match="convolutional"):
        fine_prune(build_model("mlp", (1, 28, 28)), blobs[0][:8], 0.5)


def test_evaluate_reports_accuracy_watermark_and_verification(trained_convnet, blobs):
    _, _, xt, yt = blobs
    target = int(trained_convnet(xt).argmax(1).mode().values)
    triggers = xt[trained_convnet(xt).argmax(1) == target][:30]    # inputs the model answers with the target
    pred = trained_convnet(triggers).argmax(1)
    reference = [target] + [(target + 1) % 10] * (len(triggers) - 1)   # a clean model that rarely says it                         # a reference that never says the target
    out = evaluate(trained_convnet, xt, yt, triggers, target, null=Null(0.05, 20, "t"), draws=20)
    assert out["accuracy"] == pytest.approx(float((trained_convnet(xt).argmax(1) == yt).float().mean()))
    assert out["watermark_success"] == pytest.approx(float((pred == target).float().mean()))
    assert out["p_value"] < 0.05 and out["proven"] and out["queries_for_95"] is not None
    # an innocent population that answers the target as often as the model does: nothing to prove
    same = evaluate(trained_convnet, xt, yt, triggers, target, null=Null(0.999, 20, "t"), draws=20)
    assert same["p_value"] > 0.05 and same["queries_for_95"] is None
    welch = evaluate(trained_convnet, xt, yt, triggers, target, reference_pred=reference, test="welch", draws=20)
    assert welch["proven"]
