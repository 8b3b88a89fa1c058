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


def test_principal_components_are_scikit_learns_pca():
    """The projection's PCA (from the Gram matrix, without scikit-learn's import in every run) gives scikit-learn's
    exact-solver scores, each component's sign fixed by its largest loading."""
    import numpy as np
    from sklearn.decomposition import PCA
    from ewe.watermarks.diagnostics import principal_components
    g = torch.Generator().manual_seed(0)
    z = torch.rand(30, 200, generator=g) @ torch.rand(200, 200, generator=g)
    ours = principal_components(z, 3)
    theirs = PCA(n_components=3, svd_solver="full").fit_transform(z.double().numpy())
    components = PCA(n_components=3, svd_solver="full").fit(z.double().numpy()).components_
    theirs = theirs * np.sign(components[np.arange(3), np.abs(components).argmax(1)])   # the same sign rule
    assert np.allclose(ours, theirs, atol=1e-3 * np.abs(theirs).max())
