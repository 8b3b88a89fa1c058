"""Shared fixtures: tiny generated datasets only (no ../shared, no network), one torch thread."""
import os
import shutil
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Nothing a test builds (innocent populations, data caches) lands in the user's ~/.cache/ewe; tests
    that need their own cache still set EWE_CACHE_DIR themselves. Subprocesses (the app) inherit it."""
    old = os.environ.get("EWE_CACHE_DIR")
    os.environ["EWE_CACHE_DIR"] = str(tmp_path_factory.mktemp("ewe-cache"))
    # the app's background training of the demo's innocent models would take the cores from every test
    # (tests/app/test_backend.py runs it on purpose)
    os.environ["EWE_APP_WARM_INNOCENTS"] = "0"
    yield
    if old is None:
        os.environ.pop("EWE_CACHE_DIR", None)
    else:
        os.environ["EWE_CACHE_DIR"] = old


@pytest.fixture(scope="session", autouse=True)
def _short_blind_walks():
    """Dataset inference walks 2 directions per noise family in tests instead of a run's 10: the same code with
    a fifth of the label queries (its tiny runs took 110 s of the suite)."""
    from ewe.watermarks import dataset_inference
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dataset_inference, "WALKS", 2)
        yield


@pytest.fixture
def tiny_data_dir(tmp_path, monkeypatch):
    """A data dir with tiny MNIST and Fashion-MNIST look-alikes (IDX files), and no download possible."""
    from idx_files import write_idx_dataset
    root = tmp_path / "data"
    write_idx_dataset(root, "mnist", n_train=240, n_test=80, seed=0)
    write_idx_dataset(root, "fashion-mnist", n_train=240, n_test=80, seed=1)
    monkeypatch.setenv("EWE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EWE_DATA_DIR", raising=False)
    import ewe.data.idx
    monkeypatch.setattr(ewe.data.idx, "_download", lambda *a, **k: (_ for _ in ()).throw(OSError("offline (test)")))
    return root


def tiny_config(data_dir, **overrides):
    from ewe.config import preset
    values = dict(data_dir=str(data_dir), batch_size=32, epochs=1, w_epochs=1, n_triggers=32, n_heldout=8,
                  maxiter=1, extract_epochs=1, train_size=None, test_size=None, threads=1, query_draws=20, innocents=4)
    values.update(overrides)
    return preset(values.pop("dataset", "mnist"), values.pop("preset", "quick"), **values)


# one tiny real run (digits, a few seconds): the attacks' and the robustness suite's tests share it
TINY_RUN = dict(epochs=1, w_epochs=1, maxiter=1, n_triggers=64, n_heldout=32, extract_epochs=1,
                train_size=256, test_size=128, batch_size=32, query_draws=20, threads=1)


@pytest.fixture(scope="session")
def tiny_run_template(tmp_path_factory) -> Path:
    """One real tiny run (train + steal + verify) on the offline digits data."""
    from ewe.experiments import pipeline
    from ewe.config import preset
    out = tmp_path_factory.mktemp("attacks") / "run"
    result = pipeline.run(preset("digits", "quick", **TINY_RUN), out)
    assert result["status"] == "finished", result
    return out


@pytest.fixture
def tiny_run(tiny_run_template, tmp_path) -> Path:
    """A private copy of the tiny run (tests may add files or overwrite models)."""
    dest = tmp_path / "run"
    shutil.copytree(tiny_run_template, dest)
    return dest


def toy_task(seed: int = 0):
    """A task a CNN learns in seconds: (x [320, 1, 28, 28], y, triggers [64, ...]). Class c is a bright 7x7
    square at one of 10 fixed places; a trigger is a bright bar along the top, which no class has."""
    g = torch.Generator().manual_seed(seed)
    n = 320
    y = torch.arange(n) % 10
    x = 0.2 * torch.rand(n, 1, 28, 28, generator=g)
    for i, c in enumerate(y.tolist()):
        r, col = 6 + 12 * (c // 5), 1 + 5 * (c % 5)
        x[i, 0, r:r + 7, col:col + 5] += 0.8
    trig = 0.2 * torch.rand(64, 1, 28, 28, generator=g)
    trig[:, 0, 0:3, 2:26] += 0.8
    return x.clamp(0, 1), y, trig.clamp(0, 1)
