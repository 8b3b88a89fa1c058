"""Write tiny MNIST-format (IDX) datasets for tests; no network, no shared data.

    from idx_files import write_idx_dataset     # tests/ is on sys.path under pytest
    folder = write_idx_dataset(tmp_path, "mnist", n_train=40, n_test=20, seed=0)
    # -> tmp_path/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz ; use data_dir=tmp_path

Labels cycle through 0..9 (shuffled), so every class is present once n >= 10. Images are random
uint8 noise plus a bright class-dependent 4x4 block, so a tiny model can learn something.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array (rank 1 = labels, rank 3 = images)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + a.tobytes()


def make_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, 28, 28], labels uint8 [n])."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(y)
    x = rng.integers(0, 128, size=(n, 28, 28), dtype=np.uint8)
    for i, c in enumerate(y):
        r, col = 2 + 6 * (int(c) // 4), 2 + 6 * (int(c) % 4)
        x[i, r:r + 4, col:col + 4] = 255
    return x, y


def write_idx_dataset(root, name: str = "mnist", n_train: int = 40, n_test: int = 20, seed: int = 0,
                      *, gz: bool = True) -> Path:
    """Write ``root/<name>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``; return the folder."""
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        x, y = make_arrays(n, s)
        for stem, arr in zip(STEMS[split], (x, y)):
            data = idx_bytes(arr)
            if gz:
                (folder / (stem + ".gz")).write_bytes(gzip.compress(data, mtime=0))
            else:
                (folder / stem).write_bytes(data)
    return folder
