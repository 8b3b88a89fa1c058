"""Regenerate assets/trigger_examples.png from the built-in offline data (no downloads).

    .venv/bin/python assets/make_assets.py
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ewe.data import load_dataset, load_ood_source  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    ds = load_dataset("digits")
    ood, _ = load_ood_source("digits")
    n = 8
    normal = torch.stack([ds.train.x[ds.train.y == c][0] for c in range(n)])
    patched = ds.train.x[ds.train.y == 1][:n].clone()
    patched[:, 0, 2:5, 22:25] = 1.0
    rows = [("normal digits", normal), ("OOD triggers\n(photo patches)", ood.x[:n]),
            ("in-distribution\n(digit 1 + patch)", patched)]
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 1.1, len(rows) * 1.25))
    for r, (label, x) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(x[c, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "trigger_examples.png", dpi=90)
    print("wrote", HERE / "trigger_examples.png")


if __name__ == "__main__":
    main()
