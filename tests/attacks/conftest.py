"""Tiny fixtures for the attack tests: a learnable 10-class image set, a briefly trained CNN (the tiny real run
folder they share with the experiments' tests is tests/conftest.py's)."""
from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

def make_blobs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """1x28x28 images in [0, 1]: class c is a bright 7x7 square at one of 10 fixed places, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = 0.2 * torch.rand(n, 1, 28, 28, generator=g)
    for i, c in enumerate(y.tolist()):
        r, col = 2 + 14 * (c // 5), 1 + 5 * (c % 5)
        x[i, 0, r:r + 7, col:col + 5] += 0.8
    return x.clamp(0, 1), y


@pytest.fixture(scope="session")
def blobs():
    x_train, y_train = make_blobs(320, seed=0)
    x_test, y_test = make_blobs(100, seed=1)
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="session")
def trained_convnet(blobs):
    """The paper's CNN after 2 epochs on the blobs (accuracy well above chance)."""
    from ewe.callbacks import Reporter
    from ewe.models import build_model
    from ewe.train import train_clean
    x, y, _, _ = blobs
    torch.manual_seed(0)
    model = build_model("conv2", (1, 28, 28))
    train_clean(model, x, y, epochs=2, batch_size=32, lr=1e-3, reporter=Reporter(), stage="t", name="t")
    model.eval()
    return model
