"""What every dataset loader shares: the tensors' containers, the error, class names, where data live.

A leaf of ``ewe.data``: the loaders (idx, digits, speech) and the registry import from here, never the
other way round.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

IMAGE_DATASETS = ("mnist", "fashion-mnist", "digits")


class DataError(Exception):
    """A dataset could not be loaded; the message says what was tried and how to fix it."""


@dataclass(eq=False)
class Split:
    x: torch.Tensor  # float32 [N, 1, 28, 28] in [0, 1] for images
    y: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __repr__(self) -> str:
        return f"Split(x={tuple(self.x.shape)} {self.x.dtype}, y={tuple(self.y.shape)} {self.y.dtype})"


@dataclass(eq=False)
class Dataset:
    name: str
    train: Split
    test: Split
    classes: list[str]
    source: str  # human-readable: where it came from

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
                f"source={self.source!r})")


# ----------------------------------------------------------------------------------------------
# names

_PRETTY = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "digits": "digits"}

_CLASSES = {
    "mnist": [str(i) for i in range(10)],
    "digits": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    # paper's order (shared/data/README.md); the loader itself lives in ewe.data.speech
    "speech-commands": ["left", "right", "up", "down", "yes", "no", "on", "off", "stop", "go"],
}

_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
            "speech_commands": "speech-commands", "speech": "speech-commands"}



def _canon(name: str) -> str:
    key = str(name).strip().lower()
    return _ALIASES.get(key, key)


def class_names(name: str) -> list[str]:
    """Class names in label order (index i = label i)."""
    key = _canon(name)
    if key not in _CLASSES:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(_known_names())}")
    return list(_CLASSES[key])


def _known_names() -> list[str]:
    return [*IMAGE_DATASETS, "speech-commands"]


# ----------------------------------------------------------------------------------------------
# places

def data_dir_from_env(data_dir: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """The explicit data dir (argument, else ``$EWE_DATA_DIR``) and a note saying where it came from."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser(), "data_dir argument / --data-dir"
    env = os.environ.get("EWE_DATA_DIR", "")
    if env:
        return Path(env).expanduser(), "EWE_DATA_DIR"
    return None, ""


def cache_dir() -> Path:
    """Per-user cache: ``$EWE_CACHE_DIR`` or ``~/.cache/ewe``."""
    env = os.environ.get("EWE_CACHE_DIR", "")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ewe"

