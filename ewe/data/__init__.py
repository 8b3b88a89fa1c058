"""Datasets: IDX files (MNIST, Fashion-MNIST), the built-in digits, Speech Commands, one registry of names,
and a run's splits (training / test / the thief's queries).

    base.py      Split, Dataset, DataError, class names, data dir and cache
    idx.py       MNIST / Fashion-MNIST IDX files: the source chain and the issue-#6 guards
    digits.py    scikit-learn's digits (offline) and its photo-patch OOD pool
    speech.py    Speech Commands and its log-mel features
    registry.py  load_dataset(name), load_ood_source(name), clear_cache()
    splits.py    load_data(cfg) -> Data, check_device()

Submodules import each other, never this package's names (no import circle through ``__init__``).
"""
from .base import IMAGE_DATASETS, DataError, Dataset, Split, cache_dir, class_names, data_dir_from_env
from .registry import clear_cache, load_dataset, load_ood_source
from .splits import Data, check_device, load_data

__all__ = ["Split", "Dataset", "DataError", "IMAGE_DATASETS", "load_dataset", "load_ood_source", "class_names",
           "data_dir_from_env", "cache_dir", "clear_cache", "Data", "load_data", "check_device"]
