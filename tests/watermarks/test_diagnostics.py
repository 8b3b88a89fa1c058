"""Diagnostics against direct computations on constructed batches."""
import torch

from ewe.watermarks.diagnostics import group_distances, layer_geometry, projection
from ewe.models import ConvNet


def test_group_distances_on_constructed_batch():
    # triggers all along e0, targets all along e1: within 0, between 1 (cosine distance of orthogonal)
    z = torch.cat([torch.tensor([[1.0, 0.0]]).repeat(4, 1), torch.tensor([[0.0, 2.0]]).repeat(3, 1)])
    w = torch.tensor([1.0] * 4 + [0.0] * 3)
    d = group_distances(z, w)
    assert abs(d["within_triggers"]) < 1e-9 and abs(d["within_target"]) < 1e-9
    assert abs(d["between"] - 1.0) < 1e-9 and abs(d["gap"] - 1.0) < 1e-9


def test_mixed_groups_have_no_gap():
    torch.manual_seed(0)
    z = torch.rand(40, 5)
    w = torch.tensor([1.0, 0.0] * 20)
    assert abs(group_distances(z, w)["gap"]) < 0.02


def test_projection_shape_and_geometry_per_layer():
    torch.manual_seed(0)
    model = ConvNet()
    trig, target = torch.rand(12, 1, 28, 28), torch.rand(10, 1, 28, 28)
    proj = projection(model, trig, target, method="pca", n=8)
    assert proj["group"] == ["trigger"] * 8 + ["target"] * 8
    assert len(proj["layers"]) == 3 and all(len(l) == 16 and len(l[0]) == 2 for l in proj["layers"])
    tsne = projection(model, trig, target, method="tsne", n=8)
    assert len(tsne["layers"][2]) == 16
    assert len(layer_geometry(model, trig, target, n=8)) == 3
