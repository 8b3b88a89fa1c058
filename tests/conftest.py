"""Shared fixtures: tiny generated datasets only (no ../shared, no network), one torch thread."""
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Nothing a test builds (innocent populations, data caches) lands in the user's ~/.cache/ewe; tests
    that need their own cache still set EWE_CACHE_DIR themselves. Subprocesses (the app) inherit it."""
    old = os.environ.get("EWE_CACHE_DIR")
    os.environ["EWE_CACHE_DIR"] = str(tmp_path_factory.mktemp("ewe-cache"))
    yield
    if old is None:
        os.environ.pop("EWE_CACHE_DIR", None)
    else:
        os.environ["EWE_CACHE_DIR"] = old


@pytest.fixture
def tiny_data_dir(tmp_path, monkeypatch):
    """A data dir with tiny MNIST and Fashion-MNIST look-alikes (IDX files), and no download possible."""
    from idx_files import write_idx_dataset
    root = tmp_path / "data"
    write_idx_dataset(root, "mnist", n_train=240, n_test=80, seed=0)
    write_idx_dataset(root, "fashion-mnist", n_train=240, n_test=80, seed=1)
    monkeypatch.setenv("EWE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EWE_DATA_DIR", raising=False)
    import ewe.data
    monkeypatch.setattr(ewe.data, "_download", lambda *a, **k: (_ for _ in ()).throw(OSError("offline (test)")))
    return root


def tiny_config(data_dir, **overrides):
    from ewe.config import preset
    values = dict(data_dir=str(data_dir), batch_size=32, epochs=1, w_epochs=1, n_triggers=32, n_heldout=8,
                  maxiter=1, extract_epochs=1, train_size=None, test_size=None, threads=1, query_draws=20, innocents=4)
    values.update(overrides)
    return preset(values.pop("dataset", "mnist"), values.pop("preset", "quick"), **values)
