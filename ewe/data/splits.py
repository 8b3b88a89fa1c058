"""A run's tensors: the training, test and thief's sets drawn from a dataset with the run's seeds.

    load_data(cfg[, source])   training subset (seed s), test subset (s + 1), the thief's queries
                               ("same": the training set; "disjoint": a seeded half, s + 2; "fresh": the
                               next samples of the training draw), all on cfg.device
    check_device(name)         a ConfigError line before anything is loaded when torch cannot use it
    data_fingerprint(cfg)      SHA-256 of the tensors a run of cfg reads (its dataset and OOD pool)
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

import torch

from ..config import ConfigError, RunConfig
from . import registry
from .base import data_dir_from_env


@dataclass
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_attack: torch.Tensor      # the thief's query set
    source: str
    classes: list[str]
    y_attack: torch.Tensor | None = None   # true labels of the thief's set (for removal attacks with labels)


def _subset(x, y, n, seed):
    if n is None or n >= len(x):
        return x, y
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]


def check_device(device: str) -> str:
    """``device`` when torch can use it on this machine; otherwise one ConfigError line, raised before any
    data are loaded or files written (a missing GPU would otherwise fail minutes later, mid-run)."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was asked for, but torch finds no usable CUDA GPU on this "
                              "machine: use --device cpu (or auto)")
        n = torch.cuda.device_count()
        if d.index is not None and d.index >= n:
            raise ConfigError(f"device {device!r}: this machine has {n} CUDA GPU(s), cuda:0 to cuda:{n - 1}")
    elif d.type != "cpu":
        raise ConfigError(f"device {device!r} is not supported: use cpu, cuda or cuda:N")
    return device


def load_source(cfg: RunConfig, raw: bool = False):
    """The whole dataset ``cfg`` draws from (``registry.load_dataset``, or Speech Commands): fresh tensors, or
    with ``raw`` the shared uint8 images where the files hold them (for ``load_data``, which copies its draw)."""
    if cfg.dataset == "speech-commands":
        from .speech import load_speech_commands
        return load_speech_commands(cfg.data_dir)
    return registry.load_dataset(cfg.dataset, cfg.data_dir, raw=raw)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1]: uint8 pixels (a raw source's draw) divided by 255, exactly as the float loader does."""
    return x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x


def load_data(cfg: RunConfig, source=None) -> Data:
    """``source``: the dataset already loaded by ``load_source(cfg, raw=True)``, for a caller that draws
    several seeds' subsets of it (the innocent population: one load instead of one per member). The draws are
    indexed from the uint8 pixels and only they become floats (a float copy of the whole of MNIST is 220 MB
    held while the run's own models are alive). A float source's tensors may be shared with the result."""
    check_device(cfg.device)
    ds = source if source is not None else load_source(cfg, raw=True)
    x_train, y_train = _subset(ds.train.x, ds.train.y, cfg.train_size, cfg.seed)
    x_test, y_test = _subset(ds.test.x, ds.test.y, cfg.test_size, cfg.seed + 1)
    x_train, x_test = _as_float(x_train), _as_float(x_test)
    x_attack, y_attack = x_train, y_train
    if cfg.attacker_data == "fresh":
        # the thief's own data from the task distribution: as many other training images as the owner has,
        # never seen by the owner (the next ones of the same seeded draw); needs a train_size subset
        n = cfg.train_size or len(ds.train.x)
        if 2 * n > len(ds.train.x):
            raise ConfigError(f"attacker_data 'fresh' needs twice the owner's {n:,} training samples, but "
                              f"{cfg.dataset} has {len(ds.train.x):,}: set a smaller train_size, or use "
                              "'disjoint' (the owner's data split in halves)")
        perm = torch.randperm(len(ds.train.x), generator=torch.Generator().manual_seed(cfg.seed))
        x_attack, y_attack = _as_float(ds.train.x[perm[n:2 * n]]), ds.train.y[perm[n:2 * n]]
    if cfg.attacker_data == "disjoint":
        # a fixed seeded split: the defender trains on one half, the thief queries with the other
        perm = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(cfg.seed + 2))
        half = len(x_train) // 2
        x_attack, y_attack = x_train[perm[half:]], y_train[perm[half:]]
        x_train, y_train = x_train[perm[:half]], y_train[perm[:half]]
    dev = torch.device(cfg.device)
    return Data(x_train.to(dev), y_train.to(dev), x_test.to(dev), y_test.to(dev), x_attack.to(dev),
                ds.source, list(ds.classes), y_attack.to(dev))


_FINGERPRINTS: dict[tuple, str] = {}
_FINGERPRINT_LOCK = threading.Lock()


def data_fingerprint(cfg: RunConfig, ood: bool | None = None) -> str:
    """SHA-256 of the data a run of ``cfg`` is drawn from: the dataset's full training and test tensors and,
    for out-of-distribution triggers, the pool they come from (subsets, splits and seeds are in the config).
    Two runs with one configuration read the same numbers only if this matches (the run cache's key,
    ewe.results.cache). ``ood=False``: the dataset alone (what an innocent population is trained on,
    ewe.innocents). Kept per process by dataset, data dir and pool: hashing full MNIST costs about a second,
    and a data folder does not change under a running server."""
    folder, _ = data_dir_from_env(cfg.data_dir)
    if ood is None:
        ood = cfg.trigger == "ood"
    ood = ood and cfg.dataset != "speech-commands"
    memo = (cfg.dataset, str(folder), ood)
    with _FINGERPRINT_LOCK:      # two page clicks at once hash once
        if memo not in _FINGERPRINTS:
            ds = load_source(cfg)
            tensors = [ds.train.x, ds.train.y, ds.test.x, ds.test.y]
            if ood:
                tensors += [t for split in registry.load_ood_source(cfg.dataset, cfg.data_dir) for t in (split.x, split.y)]
            h = hashlib.sha256(cfg.dataset.encode())
            for t in tensors:
                t = t.detach().cpu().contiguous()
                h.update(f"{t.dtype}{tuple(t.shape)}".encode())
                h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            _FINGERPRINTS[memo] = h.hexdigest()
        return _FINGERPRINTS[memo]
