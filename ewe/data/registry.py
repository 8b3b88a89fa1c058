"""The one registry of datasets: name -> loader, and name -> where its out-of-distribution triggers come from.

    load_dataset(name, data_dir=None, *, download=True, raw=False) -> Dataset   # raises DataError
    load_ood_source(dataset_name, data_dir=None, *, download=True) -> (Split, Split)
    class_names(name) -> list[str]

Speech Commands is imported only when asked for (torchaudio is a slow import).
"""
from __future__ import annotations

import os

import torch

from . import digits, idx
from .base import _PRETTY, DataError, Dataset, Split, _canon, _known_names


def _load_speech(data_dir, download: bool) -> Dataset:
    from .speech import load_speech_commands

    return load_speech_commands(data_dir, download=download)


# the names are ewe.data.base's (and config.DATASETS)
# name -> loader(data_dir, download, raw); raw matters only where the files hold uint8 pixels
LOADERS = {
    "mnist": lambda data_dir, download, raw: idx.load_idx_dataset("mnist", data_dir, download, raw),
    "fashion-mnist": lambda data_dir, download, raw: idx.load_idx_dataset("fashion-mnist", data_dir, download,
                                                                          raw),
    "digits": lambda data_dir, download, raw: digits.load_digits(),
    "speech-commands": lambda data_dir, download, raw: _load_speech(data_dir, download),
}


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True,
                 raw: bool = False) -> Dataset:
    """Load a dataset by name: "mnist", "fashion-mnist", "digits", "speech-commands".

    Returned tensors are fresh copies: modifying them does not affect later calls. ``raw=True``: MNIST's and
    Fashion-MNIST's images stay the shared uint8 pixels (read-only; ``splits.load_data`` indexes them, then
    makes floats of the draw alone); other datasets are float either way.
    Raises DataError with what was tried and how to fix it.
    """
    key = _canon(name)
    if key not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(_known_names())}")
    return LOADERS[key](data_dir, download, raw)


def load_ood_source(dataset_name: str, data_dir: str | os.PathLike | None = None, *,
                    download: bool = True) -> tuple[Split, Split]:
    """The out-of-distribution pool for OOD triggers, as (train, test) Splits.

    mnist -> Fashion-MNIST, fashion-mnist -> MNIST (same data dir / cache / download chain);
    digits -> 3,000 train + 1,000 test 28x28 grayscale patches of scikit-learn's sample photos, all
    labelled 0 (a single OOD class; no download needed). The caller picks the class, e.g.
    ``split.x[split.y == c]``.
    """
    key = _canon(dataset_name)
    if key == "digits":
        xtr, xte = (t.clone() for t in digits.photo_patches())
        return (Split(xtr, torch.zeros(len(xtr), dtype=torch.int64)),
                Split(xte, torch.zeros(len(xte), dtype=torch.int64)))
    if key in idx._OTHER:
        other = idx._OTHER[key]
        try:
            ds = idx.load_idx_dataset(other, data_dir, download)
        except DataError as exc:
            raise DataError(
                f"The OOD triggers of {_PRETTY[key]} come from {_PRETTY[other]}, which could not be "
                f"loaded. Provide {_PRETTY[other]} too, or use in-distribution triggers instead "
                f"(--trigger in), which need no second dataset.\n{exc}") from exc
        return ds.train, ds.test
    if key == "speech-commands":
        raise DataError("speech-commands has no out-of-distribution trigger source; use in-distribution "
                        "triggers (--trigger in)")
    raise DataError(f"unknown dataset {dataset_name!r}; choose one of {', '.join(_known_names())}")


def clear_cache() -> None:
    """Forget the in-process caches (parsed IDX files, digits, photo patches)."""
    idx._parse_folder.cache_clear()
    digits._digits_tensors.cache_clear()
    digits.photo_patches.cache_clear()
