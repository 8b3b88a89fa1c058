"""scikit-learn's bundled 8x8 digits (upsampled to 28x28): the built-in offline dataset, and the photo
patches that are its out-of-distribution trigger source."""
from __future__ import annotations

import functools

import numpy as np
import torch

from .base import Dataset, Split, class_names


# The side the 8x8 images (and the photo patches) are computed at: MNIST's, so digits runs share its models
# and presets. bench/bench_digits_size.py measures what a smaller side would change.
SIDE = 28


def _upsample(x: torch.Tensor) -> torch.Tensor:
    x = torch.nn.functional.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0)


@functools.lru_cache(maxsize=1)
def _digits_tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # [1797, 1, 8, 8]
    x = _upsample(x)
    y = torch.from_numpy(d.target.astype(np.int64))
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.2, stratify=d.target, random_state=0)
    idx_tr, idx_te = torch.from_numpy(idx_tr), torch.from_numpy(idx_te)
    return x[idx_tr], y[idx_tr], x[idx_te], y[idx_te]


def load_digits() -> Dataset:
    xtr, ytr, xte, yte = (t.clone() for t in _digits_tensors())
    n = len(ytr) + len(yte)
    return Dataset(
        name="digits",
        train=Split(xtr, ytr),
        test=Split(xte, yte),
        classes=class_names("digits"),
        source=(f"scikit-learn bundled 8\u00d78 digits ({n:,} images, upsampled to 28\u00d728; "
                f"stratified 80/20 split, {len(ytr):,} train + {len(yte):,} test) \u2014 built-in offline "
                "demo data"),
    )


_OOD_PATCHES = {"train": 3000, "test": 1000}


@functools.lru_cache(maxsize=1)
def photo_patches() -> tuple[torch.Tensor, torch.Tensor]:
    """28x28 grayscale patches from scikit-learn's sample photos (china.jpg, flower.jpg).

    Each photo's left 75 % gives training patches and its right 25 % test patches, so training and
    held-out triggers never overlap. Patch side is drawn from 28..112 px and resized to 28x28.
    """
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    gen = torch.Generator().manual_seed(0)
    out = {}
    for split, n in _OOD_PATCHES.items():
        chunks = []
        for i, img in enumerate(photos):
            gray = torch.from_numpy(img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
            gray = gray / 255.0
            h, w = gray.shape
            cut = int(w * 0.75)
            region = gray[:, :cut] if split == "train" else gray[:, cut:]
            rh, rw = region.shape
            k = n // len(photos) + (1 if i < n % len(photos) else 0)
            sizes = torch.randint(28, min(112, rh, rw) + 1, (k,), generator=gen)
            patches = []
            for s in sizes.tolist():
                top = int(torch.randint(0, rh - s + 1, (1,), generator=gen))
                left = int(torch.randint(0, rw - s + 1, (1,), generator=gen))
                p = region[top:top + s, left:left + s][None, None]
                if s != SIDE:
                    p = torch.nn.functional.interpolate(p, size=(SIDE, SIDE), mode="bilinear",
                                                        align_corners=False, antialias=True)
                patches.append(p)
            chunks.append(torch.cat(patches))
        out[split] = torch.cat(chunks).clamp_(0.0, 1.0)
    return out["train"], out["test"]


# ----------------------------------------------------------------------------------------------
# public API
