"""MNIST and Fashion-MNIST from IDX files (``load_idx_dataset``; the registry in ``ewe.data`` calls it).

Where MNIST / Fashion-MNIST come from, in order:

1. an explicit data dir: the ``data_dir`` argument, else ``$EWE_DATA_DIR``, laid out like
   ``DIR/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` and ``DIR/fashion-mnist/...``
   (torchvision's ``DIR/MNIST/raw/`` and ``DIR/FashionMNIST/raw/`` are accepted too);
2. the per-user cache ``$EWE_CACHE_DIR`` or ``~/.cache/ewe`` (same layouts);
3. a download through ``torchvision.datasets.MNIST`` / ``FashionMNIST`` into the cache, when
   ``download`` is true.

If none works, ONE :class:`DataError` lists every place tried, why it failed, and how to fix it.
A folder that holds all four files but whose files are broken (truncated, corrupt gzip, wrong magic
number, label/image count mismatch, labels outside 0..9) or hold the *other* dataset (the reference
code's issue #6: "Fashion-MNIST" files that are really MNIST) is refused at once with a specific
message; bad data is never skipped silently.

IDX files are parsed here with numpy (gzip or raw, detected from the content). torchvision's
``read_sn3_pascalvincent_tensor`` was weighed and left out: it opens a path (no gzip, no bytes already read
for the SHA-256 check) and fails with bare asserts, so the checks behind the clear errors below would stay
anyway and it would replace one ``np.frombuffer`` line at the cost of reading every file twice.

Caching: parsed files are kept in-process (``functools.lru_cache`` keyed on the dataset name, the
resolved folder and the files' size/mtime) as uint8. Every call returns *fresh* float tensors, so the
caller may modify them in place without affecting later calls.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np
import torch

from .base import _PRETTY, DataError, Dataset, Split, cache_dir, class_names, data_dir_from_env

_OTHER = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}
_TV_CLASS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}  # torchvision class = folder name

_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_ALL_STEMS = (*_STEMS["train"], *_STEMS["test"])


def _find_files(folder: Path) -> tuple[dict[str, Path] | None, str]:
    """The four IDX files in ``folder`` (raw preferred over .gz), or None and why not."""
    if not folder.is_dir():
        return None, "folder does not exist"
    found, missing = {}, []
    for stem in _ALL_STEMS:
        for cand in (folder / stem, folder / (stem + ".gz")):
            if cand.is_file():
                found[stem] = cand
                break
        else:
            missing.append(stem + "[.gz]")
    if missing:
        return None, "missing " + ", ".join(missing)
    return found, ""


def _candidate_folders(root: Path, key: str) -> list[Path]:
    return [root / key, root / _TV_CLASS[key] / "raw"]


def _sibling(folder: Path, key: str) -> Path | None:
    """The other dataset's folder in the same data dir (same layout), if this folder has a known layout."""
    other = _OTHER[key]
    if folder.name == key:
        return folder.parent / other
    if folder.name == "raw" and folder.parent.name == _TV_CLASS[key]:
        return folder.parent.parent / _TV_CLASS[other] / "raw"
    return None


# ----------------------------------------------------------------------------------------------
# IDX parsing

_IDX_KIND = {3: "image", 1: "label"}


def _read_bytes(path: Path) -> bytes:
    """File content, gunzipped if it is gzip (detected from the content, not the name)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except EOFError as exc:
        raise DataError(f"{path} is a truncated gzip file ({len(data):,} bytes; the compressed stream "
                        f"ends early: {exc}). Copy or download it again.") from exc
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path} is a corrupt gzip file ({exc}). Copy or download it again.") from exc


def _parse_idx(path: Path, data: bytes, ndim: int) -> np.ndarray:
    """Check an IDX file's header and size exactly; return a uint8 array of the header's shape."""
    kind = _IDX_KIND[ndim]
    want_magic = 0x0800 + ndim
    if len(data) < 4:
        raise DataError(f"{path}: only {len(data)} bytes, not an IDX {kind} file (truncated or empty)")
    magic = int.from_bytes(data[:4], "big")
    if magic != want_magic:
        hint = ""
        if data[:3] == b"\x00\x00\x08" and data[3] in _IDX_KIND:
            hint = f" (this is an IDX {_IDX_KIND[data[3]]} file: images and labels swapped?)"
        elif data[:2] == b"\x00\x00":
            hint = " (an IDX file, but not of unsigned bytes / the expected rank)"
        raise DataError(f"{path}: bad magic number 0x{magic:08X}, expected 0x{want_magic:08X} for an "
                        f"IDX {kind} file{hint}. The file is not a valid MNIST-format {kind} file.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header ({len(data)} bytes, need {header})")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        what = "truncated: short data" if len(data) < expected else "has trailing bytes"
        raise DataError(f"{path} is {what}: the header says {' x '.join(map(str, dims))} "
                        f"({expected:,} bytes with header) but the content has {len(data):,} bytes. "
                        "Copy or download it again.")
    if dims[0] == 0:
        raise DataError(f"{path}: the file holds 0 {kind}s")
    if ndim == 3 and dims[1:] != [28, 28]:
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]} pixels; EWE's image models need 28x28")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


# SHA-256 of the *decompressed* content of the real files (computed from the official copies).
KNOWN_SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

# Statistics of the full-size sets (60,000 train), used when the digests are unknown.
_STATS = {"mnist": 0.131, "fashion-mnist": 0.286}
_MEAN_TOL = 0.04


def _swap_message(folder: Path, key: str, other: str, why: str) -> str:
    return (f"the files in {folder} are {_PRETTY[other]} files, not {_PRETTY[key]} ({why}). "
            f"This is the reference code's issue #6 trap. Put the real {_PRETTY[key]} files there "
            f"(or delete the folder so the cache / download is used).")


def _looks_like(train_x: np.ndarray, train_y: np.ndarray, test_y: np.ndarray) -> tuple[str | None, str]:
    """For full-size sets: which dataset the statistics say this is (or None), and the evidence."""
    if train_x.shape[0] != 60000:
        return None, ""
    tr = np.bincount(train_y, minlength=10)
    te = np.bincount(test_y, minlength=10)
    balanced = bool((tr == 6000).all()) and (test_y.shape[0] != 10000 or bool((te == 1000).all()))
    mean = float(train_x.mean(dtype=np.float64)) / 255.0
    evidence = (f"train class counts {tr.tolist()}, mean pixel {mean:.3f}; MNIST has unequal class "
                f"counts and mean ~0.131, Fashion-MNIST exactly 6,000 per class and mean ~0.286")
    if balanced and abs(mean - _STATS["fashion-mnist"]) < _MEAN_TOL:
        return "fashion-mnist", evidence
    if not balanced and abs(mean - _STATS["mnist"]) < _MEAN_TOL:
        return "mnist", evidence
    return None, evidence


def _check_sibling(folder: Path, key: str, digests: dict[str, str]) -> None:
    """Refuse when the other dataset's folder in the same data dir holds identical content."""
    sib = _sibling(folder, key)
    if sib is None:
        return
    sib_files, _ = _find_files(sib)
    if sib_files is None:
        return
    # cheapest first: the label files (a few KB); stop at the first difference
    for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "train-images-idx3-ubyte"):
        try:
            if hashlib.sha256(_read_bytes(sib_files[stem])).hexdigest() != digests[stem]:
                return
        except DataError:
            return  # a broken sibling is reported when *it* is loaded
    ident = ""
    for name, table in KNOWN_SHA256.items():
        if all(digests[s] == table[s] for s in _ALL_STEMS):
            ident = f" (the content is {_PRETTY[name]})"
    raise DataError(f"{folder} and {sib} hold identical content{ident}: MNIST and Fashion-MNIST cannot "
                    "both be right. This is the reference code's issue #6 trap (Fashion-MNIST files that "
                    "are really MNIST). Replace the wrong folder with the real files.")


@functools.lru_cache(maxsize=8)
def _parse_folder(key: str, folder: str, stamp: tuple) -> tuple[dict[str, torch.Tensor], str]:
    """Parse and validate the four files of ``folder``; uint8 tensors + a note on verification.

    ``stamp`` (paths, sizes, mtimes) is only part of the cache key, so changed files are re-read.
    """
    path = Path(folder)
    files, why = _find_files(path)
    if files is None:
        raise DataError(f"{path}: {why}")
    raw = {stem: _read_bytes(p) for stem, p in files.items()}
    digests = {stem: hashlib.sha256(b).hexdigest() for stem, b in raw.items()}
    other = _OTHER[key]
    for stem in _ALL_STEMS:  # (a) known digests of the other dataset
        if digests[stem] == KNOWN_SHA256[other][stem]:
            raise DataError(_swap_message(path, key, other,
                                          f"{stem} has the SHA-256 of {_PRETTY[other]}'s {stem}"))
    _check_sibling(path, key, digests)  # (b) identical mnist / fashion-mnist folders

    arrays = {}
    for split, (img_stem, lab_stem) in _STEMS.items():
        x = _parse_idx(files[img_stem], raw[img_stem], 3)
        y = _parse_idx(files[lab_stem], raw[lab_stem], 1)
        if x.shape[0] != y.shape[0]:
            raise DataError(f"{path}: {split} split has {x.shape[0]:,} images but {y.shape[0]:,} labels "
                            f"({files[img_stem].name} vs {files[lab_stem].name}); the files do not belong "
                            "together")
        if y.max() > 9:
            bad = int((y > 9).sum())
            raise DataError(f"{files[lab_stem]}: {bad:,} labels outside 0..9 (max {int(y.max())}); "
                            "not an MNIST-style label file")
        arrays[split] = (x, y)

    verified = all(digests[s] == KNOWN_SHA256[key][s] for s in _ALL_STEMS)
    if verified:
        note = "SHA-256 verified against the official files"
    else:  # (c) statistics, for full-size sets
        guess, evidence = _looks_like(arrays["train"][0], arrays["train"][1], arrays["test"][1])
        if guess == other:
            raise DataError(_swap_message(path, key, other, "statistics: " + evidence))
        note = "not the official files (unknown content, accepted)"
    out = {}
    for split, (x, y) in arrays.items():
        out[f"{split}_x"] = torch.from_numpy(x.copy())
        out[f"{split}_y"] = torch.from_numpy(y.astype(np.int64))
    return out, note


def _stamp(files: dict[str, Path]) -> tuple:
    out = []
    for stem in _ALL_STEMS:
        st = files[stem].stat()
        out.append((str(files[stem]), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _to_split(x_u8: torch.Tensor, y: torch.Tensor, raw: bool = False) -> Split:
    if raw:  # the parse cache's own uint8 pixels (no copy): for callers that index them before use
        return Split(x=x_u8.unsqueeze(1), y=y.clone())
    x = x_u8.to(torch.float32).div_(255.0).unsqueeze(1)  # fresh tensor each call
    return Split(x=x, y=y.clone())


# ----------------------------------------------------------------------------------------------
# download

def _download(key: str, root: Path) -> None:
    """Download through torchvision into ``root`` (files land in ``root/<TVClass>/raw``)."""
    import torchvision  # slow import; only when needed

    cls = getattr(torchvision.datasets, _TV_CLASS[key])
    root.mkdir(parents=True, exist_ok=True)
    cls(root=str(root), train=True, download=True)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}"


# ----------------------------------------------------------------------------------------------
# the source chain: data dir, cache, download

# where the four files were found: (folder, the files by stem, how the folder was reached)
_Found = tuple[Path, dict[str, Path], str]


def _dataset_in(key: str, folder: Path, files: dict[str, Path], where: str, raw: bool) -> Dataset:
    tensors, note = _parse_folder(key, str(folder.absolute()), _stamp(files))
    n_tr, n_te = tensors["train_y"].shape[0], tensors["test_y"].shape[0]
    return Dataset(
        name=key,
        train=_to_split(tensors["train_x"], tensors["train_y"], raw),
        test=_to_split(tensors["test_x"], tensors["test_y"], raw),
        classes=class_names(key),
        source=(f"{_PRETTY[key]} IDX files in {folder} ({where}; {n_tr:,} train + {n_te:,} test; "
                f"{note})"),
    )


def _look_in_data_dir(key: str, data_dir) -> tuple[_Found | None, list[str], list[str]]:
    """1. The explicit data dir: (what was found or None, what was tried, hints)."""
    root, origin = data_dir_from_env(data_dir)
    if root is None:
        return None, ["data dir: none given (no --data-dir / data_dir argument, EWE_DATA_DIR unset)"], []
    if not root.is_dir():
        return None, [f"data dir {root} (from {origin}): folder does not exist"], []
    tried = []
    for folder in _candidate_folders(root, key):
        files, why = _find_files(folder)
        if files is not None:
            return (folder, files, f"data dir from {origin}"), tried, []
        tried.append(f"data dir {folder} (from {origin}): {why}")
    hints = []
    if _find_files(root)[0] is not None:     # the files themselves: a data dir one level too deep
        hints.append(f"{root} itself holds IDX files, but the data dir must be the folder *above* "
                     f"{key}/: " + (f"use --data-dir {root.parent}" if root.name in _OTHER
                                    else f"move them into {root / key}"))
    return None, tried, hints


def _look_in_cache(key: str, cache: Path) -> tuple[_Found | None, list[str]]:
    """2. The per-user cache: (what was found or None, what was tried)."""
    tried = []
    for folder in _candidate_folders(cache, key):
        files, why = _find_files(folder)
        if files is not None:
            return (folder, files, "per-user cache"), tried
        tried.append(f"cache {folder}: {why}")
    return None, tried


def _download_to_cache(key: str, cache: Path, download: bool) -> tuple[_Found | None, list[str]]:
    """3. A torchvision download into the cache, if allowed: (what was found or None, what was tried)."""
    tv = f"torchvision.datasets.{_TV_CLASS[key]}(root={cache}, download=True)"
    if not download:
        return None, [f"download via {tv}: not attempted (download=False)"]
    try:
        _download(key, cache)
    except Exception as exc:  # offline machines: URLError / RuntimeError / OSError
        return None, [f"download via {tv}: failed ({_short(exc)})"]
    folder = cache / _TV_CLASS[key] / "raw"
    files, why = _find_files(folder)
    if files is not None:
        return (folder, files, "downloaded by torchvision into the cache"), []
    return None, [f"download via {tv}: finished but {folder}: {why}"]


def _not_found_message(key: str, cache: Path, tried: list[str], hints: list[str]) -> str:
    lines = [f"Could not load {_PRETTY[key]}. Tried, in order:"]
    lines += [f"  {i}. {t}" for i, t in enumerate(tried, 1)]
    lines += [f"Note: {h}" for h in hints]
    lines += [
        "How to fix (any one):",
        f"  - point at a folder holding {key}/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte.gz: "
        f"--data-dir DIR or EWE_DATA_DIR=DIR (on the lab machines: ../shared/data)",
        f"  - go online once: the download fills the cache {cache} (or set EWE_CACHE_DIR)",
        "  - use the built-in offline dataset: digits (scikit-learn's bundled handwritten digits)",
    ]
    return "\n".join(lines)


def load_idx_dataset(key: str, data_dir, download: bool, raw: bool = False) -> Dataset:
    """``raw``: the images as the parse cache's uint8 tensors, shared and not to be modified (a quarter of
    the float copy's memory: 47 MB for MNIST's training set instead of 188 MB)."""
    found, tried, hints = _look_in_data_dir(key, data_dir)
    if found is not None:
        return _dataset_in(key, *found, raw)
    cache = cache_dir()      # only now: an explicit data dir needs no home folder
    found, cache_tried = _look_in_cache(key, cache)
    tried += cache_tried
    if found is None:
        found, download_tried = _download_to_cache(key, cache, download)
        tried += download_tried
    if found is None:
        raise DataError(_not_found_message(key, cache, tried, hints))
    return _dataset_in(key, *found, raw)


# ----------------------------------------------------------------------------------------------
# digits (built-in, offline)

