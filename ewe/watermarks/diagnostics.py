"""What entanglement does to the representations: per-layer geometry of triggers vs target-class samples
and 2-D projections (PCA, t-SNE) of each SNNL layer, before and after the watermark phase.

A watermark is entangled in a layer when triggers and target-class samples are mixed there: the
between-group cosine distance is close to the within-group distances (gap near 0) and SNNL is high.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .snnl import pairwise_distance
from ..train import EVAL_BATCH

LAYERS = ("layer 1", "layer 2", "layer 3")


@torch.no_grad()
def hidden_features(model, x: torch.Tensor, batch_size: int = EVAL_BATCH) -> list[torch.Tensor]:
    """ReLU'd, flattened SNNL-layer representations (as SNNL sees them) for ``x``."""
    model.eval()
    chunks = [model.features(x[i:i + batch_size])[1] for i in range(0, len(x), batch_size)]
    return [torch.cat([F.relu(c[layer]).flatten(1) for c in chunks]) for layer in range(len(chunks[0]))]


def group_distances(z: torch.Tensor, w: torch.Tensor) -> dict[str, float]:
    """Mean cosine distance within the triggers (w = 1), within the target samples (w = 0), and between
    them; ``gap`` = between - mean(within): 0 when the two groups are perfectly mixed."""
    # the Gram matrix in the features' fp32 (a float64 copy of 512 first-layer feature maps was 100 MB of a quick
    # run's peak memory), the distances' means in float64
    d = pairwise_distance(z.float(), "cosine").double()
    w = w.to(z.device)   # masks must live on the features' device
    a, b = w == 1, w == 0
    off = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    within_t = d[a][:, a][off[a][:, a]].mean().item()
    within_c = d[b][:, b][off[b][:, b]].mean().item()
    between = d[a][:, b].mean().item()
    return {"within_triggers": within_t, "within_target": within_c, "between": between,
            "gap": between - (within_t + within_c) / 2}


def layer_geometry(model, triggers: torch.Tensor, target_samples: torch.Tensor, n: int = 256) -> list[dict]:
    """``group_distances`` for each SNNL layer on up to ``n`` triggers and ``n`` target samples."""
    x = torch.cat([triggers[:n], target_samples[:n]])
    w = torch.cat([torch.ones(len(triggers[:n])), torch.zeros(len(target_samples[:n]))])
    return [group_distances(z, w) for z in hidden_features(model, x)]


def principal_components(z: torch.Tensor, k: int) -> np.ndarray:
    """The scores of ``z``'s [n, d] first ``k`` principal components, as scikit-learn's
    ``PCA(k).fit_transform`` (exact solver) gives them up to each component's sign, which is fixed the same
    way here (the largest loading positive). From the n x n Gram matrix of the centred rows (n is a few
    hundred, d up to 25,088): a float64 copy of the features would be the run's largest allocation."""
    z = z.float()
    zc = z - z.mean(0)
    gram = (zc @ zc.T).double().cpu()
    values, vectors = torch.linalg.eigh(gram)                 # ascending
    values, vectors = values.flip(0)[:k].clamp_min(0), vectors.flip(1)[:, :k]
    # d x k, proportional to the components: only their signs are read, so in the features' fp32 (a float64
    # product would need the float64 copy this function avoids)
    loadings = (zc.T @ vectors.to(zc.device, torch.float32)).cpu()
    sign = torch.sign(loadings.gather(0, loadings.abs().argmax(0, keepdim=True)))
    sign[sign == 0] = 1
    return (vectors * values.sqrt() * sign).numpy()


def projection(model, triggers: torch.Tensor, target_samples: torch.Tensor, *, method: str = "pca",
               n: int = 200, seed: int = 0) -> dict:
    """2-D coordinates of each SNNL layer's representations of ``n`` triggers and ``n`` target samples.

    Returns {"group": ["trigger"] * n_t + ["target"] * n_c, "layers": [[[x, y], ...] per layer]}.
    """
    x = torch.cat([triggers[:n], target_samples[:n]])
    groups = ["trigger"] * len(triggers[:n]) + ["target"] * len(target_samples[:n])
    layers = []
    for z in hidden_features(model, x):
        z = F.normalize(z, dim=1)   # the cosine geometry SNNL uses
        if method == "tsne":
            # scikit-learn only here: importing it costs a run 150 MB of memory (the quick MNIST run's peak)
            from sklearn.manifold import TSNE
            z50 = principal_components(z, min(50, z.shape[1], len(z) - 1))
            xy = TSNE(n_components=2, init="pca", perplexity=min(30.0, (len(z) - 1) / 3),
                      random_state=seed).fit_transform(z50)
        elif method == "pca":
            xy = principal_components(z, 2)
        else:
            raise ValueError("method is 'pca' or 'tsne'")
        layers.append(np.round(xy, 4).tolist())
    return {"method": method, "group": groups, "layers": layers}


def save_projection_png(before: dict, after: dict, path, title: str = "") -> None:
    """Grid: one column per layer, rows = before / after the watermark phase."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n_layers = len(before["layers"])
    fig, axes = plt.subplots(2, n_layers, figsize=(3.2 * n_layers, 6.2))
    for row, (label, proj) in enumerate([("before", before), ("after", after)]):
        groups = np.array(proj["group"])
        for col, xy in enumerate(proj["layers"]):
            ax = axes[row, col]
            xy = np.asarray(xy)
            for g, colour in (("target", "#1f77b4"), ("trigger", "#d62728")):
                m = groups == g
                ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.6, c=colour, label=g)
            ax.set_title(f"{LAYERS[col]} — {label}", fontsize=9)
            ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
