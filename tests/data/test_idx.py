"""ewe.data: IDX parsing, the source chain, the issue-#6 guards, digits, OOD pools.

Everything runs on tiny files written to tmp_path; /work/shared and the network are never touched
(EWE_DATA_DIR / EWE_CACHE_DIR point into tmp_path and the download function is replaced).
"""
from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
import torch

from ewe import data
from ewe.data import idx
from ewe.data import DataError, Split, load_dataset, load_ood_source

try:
    from idx_files import STEMS, idx_bytes, make_arrays, write_idx_dataset
except ImportError:  # tests/ imported as a package
    from tests.idx_files import STEMS, idx_bytes, make_arrays, write_idx_dataset

TRAIN_IMG, TRAIN_LAB = STEMS["train"]
TEST_IMG, TEST_LAB = STEMS["test"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No shared data, an empty private cache, no network, a cold in-process cache."""
    monkeypatch.delenv("EWE_DATA_DIR", raising=False)
    monkeypatch.setenv("EWE_CACHE_DIR", str(tmp_path / "cache"))
    calls = []

    def no_download(key, root):
        calls.append((key, root))
        raise OSError("network disabled in tests")

    monkeypatch.setattr(idx, "_download", no_download)
    data.clear_cache()
    yield calls
    data.clear_cache()


def _error(*args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("gz", [True, False])
def test_round_trip_shapes_dtypes_values(tmp_path, gz):
    write_idx_dataset(tmp_path / "d", "mnist", n_train=40, n_test=20, seed=3, gz=gz)
    ds = load_dataset("mnist", tmp_path / "d", download=False)
    assert ds.name == "mnist" and ds.classes == [str(i) for i in range(10)]
    assert ds.train.x.shape == (40, 1, 28, 28) and ds.test.x.shape == (20, 1, 28, 28)
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    x, y = make_arrays(40, 3)
    assert torch.equal(ds.train.x[:, 0], torch.from_numpy(x).float() / 255)
    assert torch.equal(ds.train.y, torch.from_numpy(y.astype(np.int64)))
    xt, yt = make_arrays(20, 4)
    assert torch.equal(ds.test.y, torch.from_numpy(yt.astype(np.int64)))
    assert 0.0 <= float(ds.train.x.min()) and float(ds.train.x.max()) <= 1.0
    assert str(tmp_path / "d" / "mnist") in ds.source and "not the official files" in ds.source


def test_env_data_dir_and_fashion_class_names(tmp_path, monkeypatch):
    write_idx_dataset(tmp_path / "d", "fashion-mnist", 30, 10, seed=1)
    monkeypatch.setenv("EWE_DATA_DIR", str(tmp_path / "d"))
    ds = load_dataset("fashion-mnist")
    assert len(ds.train) == 30 and ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert "EWE_DATA_DIR" in ds.source


def test_torchvision_layout_is_accepted(tmp_path):
    folder = write_idx_dataset(tmp_path / "d", "mnist", 20, 10, gz=False)
    folder.rename(tmp_path / "d" / "raw")
    (tmp_path / "d" / "MNIST").mkdir()
    (tmp_path / "d" / "raw").rename(tmp_path / "d" / "MNIST" / "raw")
    assert len(load_dataset("mnist", tmp_path / "d", download=False).train) == 20


def test_per_user_cache_is_second(tmp_path):
    write_idx_dataset(tmp_path / "cache", "mnist", 20, 10)
    ds = load_dataset("mnist", tmp_path / "nowhere", download=False)
    assert len(ds.train) == 20 and "per-user cache" in ds.source


def test_download_fills_cache_and_is_parsed(tmp_path, monkeypatch):
    def fake_download(key, root):
        assert key == "mnist" and root == tmp_path / "cache"
        folder = write_idx_dataset(root / "MNIST", "raw", 20, 10)
        assert folder == root / "MNIST" / "raw"

    monkeypatch.setattr(idx, "_download", fake_download)
    ds = load_dataset("mnist")
    assert len(ds.train) == 20 and "downloaded" in ds.source


def test_returned_tensors_are_fresh_copies(tmp_path):
    write_idx_dataset(tmp_path / "d", "mnist", 20, 10)
    a = load_dataset("mnist", tmp_path / "d")
    a.train.x.zero_()
    a.train.y.fill_(7)
    b = load_dataset("mnist", tmp_path / "d")
    assert float(b.train.x.max()) > 0 and not bool((b.train.y == 7).all())


@pytest.mark.parametrize("attacker_data", ["same", "fresh", "disjoint"])
def test_draws_from_raw_pixels_equal_draws_from_floats(tmp_path, attacker_data):
    """load_data indexes the shared uint8 pixels and makes floats of its draw alone (the population build's
    memory): the numbers must be exactly those of a draw from the float dataset, for every thief's data."""
    from ewe.config import RunConfig
    from ewe.data.splits import load_data, load_source

    write_idx_dataset(tmp_path / "d", "mnist", n_train=60, n_test=20, seed=5)
    cfg = RunConfig(dataset="mnist", data_dir=str(tmp_path / "d"), train_size=24, test_size=10, seed=3,
                    attacker_data=attacker_data)
    raw = load_source(cfg, raw=True)
    assert raw.train.x.dtype == torch.uint8
    a, b = load_data(cfg, raw), load_data(cfg, load_source(cfg))
    for name in ("x_train", "y_train", "x_test", "y_test", "x_attack", "y_attack"):
        ta, tb = getattr(a, name), getattr(b, name)
        assert ta.dtype == tb.dtype and torch.equal(ta, tb), name
    assert a.x_train.dtype == torch.float32 and float(a.x_train.max()) <= 1.0
    before = raw.train.x.clone()
    a.x_train.zero_()
    a.x_attack.zero_()
    assert torch.equal(load_source(cfg, raw=True).train.x, before)   # the shared pixels stay untouched


# ---------------------------------------------------------------------------------------------- refusals

def test_truncated_file(tmp_path):
    folder = write_idx_dataset(tmp_path / "d", "mnist", 20, 10, gz=False)
    p = folder / TRAIN_IMG
    p.write_bytes(p.read_bytes()[:-100])
    msg = _error("mnist", tmp_path / "d")
    assert "truncated" in msg and TRAIN_IMG in msg and "header says" in msg


def test_truncated_gzip(tmp_path):
    folder = write_idx_dataset(tmp_path / "d", "mnist", 20, 10)
    p = folder / (TRAIN_IMG + ".gz")
    p.write_bytes(p.read_bytes()[:-300])
    msg = _error("mnist", tmp_path / "d")
    assert "truncated gzip" in msg and TRAIN_IMG in msg


def test_corrupt_gzip_crc(tmp_path):
    folder = write_idx_dataset(tmp_path / "d", "mnist", 20, 10)
    p = folder / (TRAIN_LAB + ".gz")
    raw = bytearray(p.read_bytes())
    raw[-8] ^= 0xFF  # CRC32 field of the gzip trailer
    p.write_bytes(bytes(raw))
    msg = _error("mnist", tmp_path / "d")
    assert "corrupt gzip" in msg and "CRC" in msg and TRAIN_LAB in msg


def test_bad_magic(tmp_path):
    folder = write_idx_dataset(tmp_path / "d", "mnist", 20, 10, gz=False)
    p = folder / TEST_IMG
    p.write_bytes(b"\x12\x34\x56\x78" + p.read_bytes()[4:])
    msg = _error("mnist", tmp_path / "d")
    assert "bad magic number 0x12345678" in msg and TEST_IMG in msg


def test_images_and_labels_swapped(tmp_path):
    folder = write_idx_dataset(tmp_path / "d", "mnist", 20, 10, gz=False)
    img, lab = (folder / TEST_IMG).read_bytes(), (folder / TEST_LAB).read_bytes()
    (folder / TEST_IMG).write_bytes(lab)
    (folder / TEST_LAB).write_bytes(img)
    msg = _error("mnist", tmp_path / "d")
    assert "bad magic" in msg and "swapped" in msg


def test_label_count_mismatch(tmp_path):
    folder = write_idx_dataset(tmp_path / "d", "mnist", 20, 10, gz=False)
    (folder / TRAIN_LAB).write_bytes(idx_bytes(np.zeros(19, np.uint8)))
    msg = _error("mnist", tmp_path / "d")
    assert "20 images but 19 labels" in msg


def test_labels_out_of_range(tmp_path):
    folder = write_idx_dataset(tmp_path / "d", "mnist", 20, 10, gz=False)
    (folder / TEST_LAB).write_bytes(idx_bytes(np.full(10, 12, np.uint8)))
    msg = _error("mnist", tmp_path / "d")
    assert "outside 0..9" in msg and TEST_LAB in msg


def test_wrong_image_size(tmp_path):
    folder = write_idx_dataset(tmp_path / "d", "mnist", 20, 10, gz=False)
    (folder / TRAIN_IMG).write_bytes(idx_bytes(np.zeros((20, 8, 8), np.uint8)))
    assert "8x8" in _error("mnist", tmp_path / "d")


def test_identical_mnist_and_fashion_folders_refused_both_ways(tmp_path):
    write_idx_dataset(tmp_path / "d", "mnist", 20, 10, seed=5)
    write_idx_dataset(tmp_path / "d", "fashion-mnist", 20, 10, seed=5)
    for name in ("mnist", "fashion-mnist"):
        msg = _error(name, tmp_path / "d")
        assert "identical content" in msg and "issue #6" in msg
    # different content in the two folders is fine
    write_idx_dataset(tmp_path / "d", "fashion-mnist", 20, 10, seed=6)
    data.clear_cache()
    assert len(load_dataset("mnist", tmp_path / "d").train) == 20


def test_known_digest_swap_detected(tmp_path, monkeypatch):
    folder = write_idx_dataset(tmp_path / "d", "fashion-mnist", 20, 10, seed=2)
    digests = {s: hashlib.sha256(gzip.decompress((folder / (s + ".gz")).read_bytes())).hexdigest()
               for s in (*STEMS["train"], *STEMS["test"])}
    table = {"mnist": digests, "fashion-mnist": {s: "0" * 64 for s in digests}}
    monkeypatch.setattr(idx, "KNOWN_SHA256", table)
    msg = _error("fashion-mnist", tmp_path / "d")
    assert f"files in {folder} are MNIST files" in msg and "SHA-256" in msg
    # the same files loaded as MNIST are verified
    (tmp_path / "d" / "fashion-mnist").rename(tmp_path / "d" / "mnist")
    assert "SHA-256 verified" in load_dataset("mnist", tmp_path / "d").source


def test_statistics_check_on_full_size_arrays():
    rng = np.random.default_rng(0)
    y_fashion = np.repeat(np.arange(10, dtype=np.uint8), 6000)
    y_fashion_test = np.repeat(np.arange(10, dtype=np.uint8), 1000)
    x_fashion = np.full((60000, 1, 1), 73, np.uint8)  # mean 73/255 = 0.286
    assert idx._looks_like(x_fashion, y_fashion, y_fashion_test)[0] == "fashion-mnist"
    y_mnist = rng.integers(0, 10, 60000).astype(np.uint8)
    x_mnist = np.full((60000, 1, 1), 33, np.uint8)  # 0.129
    guess, evidence = idx._looks_like(x_mnist, y_mnist, y_fashion_test)
    assert guess == "mnist" and "unequal class counts" in evidence
    assert idx._looks_like(x_mnist[:100], y_mnist[:100], y_fashion_test)[0] is None  # small: no opinion


def test_nothing_found_lists_every_source(tmp_path, isolated):
    msg = _error("mnist", tmp_path / "empty")
    for words in (f"data dir {tmp_path / 'empty'}", f"cache {tmp_path / 'cache' / 'mnist'}",
                  f"cache {tmp_path / 'cache' / 'MNIST' / 'raw'}", "torchvision.datasets.MNIST",
                  "network disabled in tests", "--data-dir", "EWE_DATA_DIR", "go online", "digits"):
        assert words in msg, words
    assert isolated == [("mnist", tmp_path / "cache")]
    msg = _error("fashion-mnist", download=False)
    assert "none given" in msg and "download=False" in msg and "FashionMNIST" in msg


def test_data_dir_pointing_at_the_mnist_folder_gets_a_hint(tmp_path):
    write_idx_dataset(tmp_path / "d", "mnist", 20, 10)
    msg = _error("mnist", tmp_path / "d" / "mnist", download=False)
    assert f"use --data-dir {tmp_path / 'd'}" in msg


def test_unknown_name():
    assert "choose one of" in _error("cifar10")


# ---------------------------------------------------------------------------------------------- OOD

def test_ood_source_of_mnist_is_fashion(tmp_path):
    write_idx_dataset(tmp_path / "d", "mnist", 20, 10, seed=0)
    write_idx_dataset(tmp_path / "d", "fashion-mnist", 30, 12, seed=9)
    train, test = load_ood_source("mnist", tmp_path / "d")
    assert isinstance(train, Split) and len(train) == 30 and len(test) == 12
    train, test = load_ood_source("fashion-mnist", tmp_path / "d")
    assert len(train) == 20 and len(test) == 10


def test_ood_missing_explains_and_suggests_trigger_in(tmp_path):
    write_idx_dataset(tmp_path / "d", "mnist", 20, 10)
    with pytest.raises(DataError) as info:
        load_ood_source("mnist", tmp_path / "d", download=False)
    msg = str(info.value)
    assert "OOD triggers of MNIST come from Fashion-MNIST" in msg and "--trigger in" in msg
    assert "Tried, in order" in msg


# ---------------------------------------------------------------------------------------------- digits

def test_digits_offline(isolated):
    ds = load_dataset("digits")
    assert ds.train.x.shape == (1437, 1, 28, 28) and ds.test.x.shape == (360, 1, 28, 28)
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    assert 0.0 <= float(ds.train.x.min()) and float(ds.train.x.max()) <= 1.0
    assert torch.bincount(ds.test.y).tolist() == torch.bincount(ds.test.y, minlength=10).tolist()
    assert int(torch.bincount(ds.test.y).min()) >= 35  # stratified: ~36 per class
    assert "1,797" in ds.source and "offline" in ds.source
    assert torch.equal(load_dataset("digits").train.y, ds.train.y)  # deterministic split
    assert isolated == []


def test_digits_ood_patches():
    train, test = load_ood_source("digits")
    assert train.x.shape == (3000, 1, 28, 28) and test.x.shape == (1000, 1, 28, 28)
    assert train.x.dtype == torch.float32 and int(train.y.abs().sum()) == 0 and train.y.dtype == torch.int64
    assert 0.0 <= float(train.x.min()) and float(train.x.max()) <= 1.0
    assert float(train.x.std()) > 0.05
    data.clear_cache()
    assert torch.equal(load_ood_source("digits")[1].x, test.x)  # seeded


def test_class_names():
    assert data.class_names("mnist") == [str(i) for i in range(10)]
    assert data.class_names("fashion-mnist")[1] == "Trouser"
    with pytest.raises(DataError):
        data.class_names("nope")
