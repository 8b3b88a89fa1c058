"""Google Speech Commands v0.02 (10 keywords): loader, speaker-disjoint split and log-mel features.

Where the clips come from, first hit wins:

1. ``DIR/speech_commands/<word>/<speaker>_nohash_<n>.wav`` with DIR = ``data_dir`` or ``$EWE_DATA_DIR``
   (``DIR`` itself may also be the ``speech_commands`` folder);
2. the per-user cache ``$EWE_CACHE_DIR`` (or ``~/.cache/ewe``) ``/speech_commands``;
3. with ``download=True``: the official test archive (``speech_commands_test_set_v0.02.tar.gz``, about
   110 MB, the same 4,074 keyword clips as the shared offline copy) fetched and unpacked into the cache.
   ``torchaudio.datasets.SPEECHCOMMANDS(subset="testing")`` was not used: it fetches the full 2.3 GB
   archive even for the test subset.

Otherwise one :class:`~ewe.data.base.DataError` lists every place tried and how to fix it.

Audio is read with ``scipy.io.wavfile``: torchaudio 2.9+ moved ``torchaudio.load`` to TorchCodec (not a
dependency here, and it needs FFmpeg libraries), while scipy reads the dataset's PCM WAVs offline with no
extra backend. Clips are 16 kHz mono, zero-padded at the end or centre-cropped to exactly 1 s (the
reference code crops / pads at random; a fixed crop keeps features cacheable and runs reproducible).
Files at another sample rate are resampled (``torchaudio.functional.resample``) and counted; unreadable
or truncated files are skipped and counted. Both counts go into ``Dataset.source``.

Features follow the reference code's kapre pipeline (spec A5): magnitude mel spectrogram (n_fft 1024,
hop 128, 80 mels, 40-8000 Hz), decibels, per-clip normalisation to zero mean / unit std, laid out as
``[N, 1, 125, 80]`` (time x mel). They are cached on disk keyed by a hash of the file list (path, size,
mtime) and the feature parameters, so only the first load pays for the extraction.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torchaudio
from scipy.io import wavfile

from .base import DataError, Dataset, Split, cache_dir, data_dir_from_env

__all__ = ["KEYWORDS", "SAMPLE_RATE", "N_FRAMES", "N_MELS", "TEST_ARCHIVE_URL",
           "load_speech_commands", "logmel", "speaker_split", "speaker_of", "read_clip", "fix_length",
           "features_to_audio"]

KEYWORDS = ["left", "right", "up", "down", "yes", "no", "on", "off", "stop", "go"]  # 0..9, paper order
SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE  # exactly 1 s
N_FRAMES = 125
N_MELS = 80
TEST_ARCHIVE_URL = "https://storage.googleapis.com/download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz"

# Mel spectrogram as the reference code's kapre layer: n_dft 1024, hop 128, 80 mels, 40-8000 Hz, power 1.
MEL_PARAMS = dict(sample_rate=SAMPLE_RATE, n_fft=1024, hop_length=128, n_mels=N_MELS,
                  f_min=40.0, f_max=8000.0, power=1.0)
# kapre's amplitude_to_decibel computes 10*log10(magnitude) and clips at 80 dB below the clip's maximum,
# i.e. a magnitude ratio of 1e-8. AmplitudeToDB(stype="magnitude") uses 20*log10, so the same floor is
# top_db=160. (The factor 10 vs 20 itself disappears in the per-clip normalisation.) Without a floor,
# the zero padding of short clips (-200 dB at amin=1e-10) would dominate each clip's mean and std.
TOP_DB = 160.0
FEATURE_VERSION = 1  # bump when the feature code changes, so old caches are ignored

_transforms: dict[str, torch.nn.Module] = {}


# ----------------------------------------------------------------------------------------------- split

def speaker_of(path: str | os.PathLike) -> str:
    """Speaker id of a Speech Commands file name ``<speaker>_nohash_<n>.wav`` (the stem if no ``_nohash_``)."""
    name = Path(path).name
    if "_nohash_" in name:
        return name.split("_nohash_")[0]
    return Path(name).stem


def _speaker_in_test(speaker: str, test_fraction: float) -> bool:
    # sha1 of the id, not hash(): stable across runs, processes (PYTHONHASHSEED) and machines.
    return int(hashlib.sha1(speaker.encode("utf-8")).hexdigest(), 16) % 1000 < 1000 * test_fraction


def speaker_split(files: Iterable[str | os.PathLike], test_fraction: float) -> tuple[list, list]:
    """Split files by a hash of their speaker id: stable everywhere, and no speaker on both sides.

    Returns ``(train_files, test_files)``, each in the input order. About ``test_fraction`` of the
    *speakers* land in test (the clip fraction varies with how many clips each speaker recorded).
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    train, test = [], []
    for f in files:
        (test if _speaker_in_test(speaker_of(f), test_fraction) else train).append(f)
    return train, test


# ----------------------------------------------------------------------------------------------- audio

def read_clip(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """Read a PCM / float WAV as a mono float32 waveform in [-1, 1] and its sample rate.

    Raises ``ValueError`` for unreadable, truncated or empty files.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            sr, data = wavfile.read(os.fspath(path))
        except Exception as e:  # scipy raises ValueError, struct.error, EOFError, OSError...
            raise ValueError(f"unreadable ({type(e).__name__}: {e})") from None
    for w in caught:
        if "EOF" in str(w.message):
            raise ValueError(f"truncated ({w.message})")
    if data.size == 0:
        raise ValueError("no samples")
    if data.dtype == np.int16:
        audio = data.astype(np.float32) / 32768.0
    elif data.dtype == np.int32:
        audio = data.astype(np.float32) / 2147483648.0
    elif data.dtype == np.uint8:
        audio = (data.astype(np.float32) - 128.0) / 128.0
    elif data.dtype in (np.float32, np.float64):
        audio = data.astype(np.float32)
    else:
        raise ValueError(f"unsupported sample type {data.dtype}")
    if audio.ndim == 2:  # [samples, channels]: mix down to mono
        audio = audio.mean(axis=1)
    if not np.isfinite(audio).all():
        raise ValueError("non-finite samples")
    return torch.from_numpy(np.ascontiguousarray(audio)), int(sr)


def fix_length(wave: torch.Tensor, length: int = CLIP_SAMPLES) -> torch.Tensor:
    """Zero-pad at the end, or centre-crop, a 1-D waveform to exactly ``length`` samples."""
    n = wave.shape[-1]
    if n < length:
        return torch.nn.functional.pad(wave, (0, length - n))
    start = (n - length) // 2
    return wave[..., start:start + length]


# -------------------------------------------------------------------------------------------- features

def _get_transforms() -> tuple[torch.nn.Module, torch.nn.Module]:
    if not _transforms:
        _transforms["mel"] = torchaudio.transforms.MelSpectrogram(**MEL_PARAMS)
        _transforms["db"] = torchaudio.transforms.AmplitudeToDB(stype="magnitude", top_db=TOP_DB)
    return _transforms["mel"], _transforms["db"]


@torch.no_grad()
def logmel(waveforms: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Log-mel features of 1 s, 16 kHz clips: ``[N, 16000]`` (or ``[16000]``) -> float32 ``[N, 1, 125, 80]``.

    Each clip is normalised to zero mean and unit std over all its values (kapre ``Normalization2D``,
    ``int_axis=0``); a constant (silent) clip gives all zeros.
    """
    if waveforms.dim() == 1:
        waveforms = waveforms.unsqueeze(0)
    if waveforms.dim() != 2 or waveforms.shape[1] != CLIP_SAMPLES:
        raise ValueError(f"logmel expects [N, {CLIP_SAMPLES}] waveforms, got {list(waveforms.shape)}")
    mel, to_db = _get_transforms()
    out = torch.empty(waveforms.shape[0], 1, N_FRAMES, N_MELS, dtype=torch.float32)
    for i in range(0, waveforms.shape[0], batch_size):
        w = waveforms[i:i + batch_size].to("cpu", torch.float32)   # the transforms live on the CPU
        # STFT with center=True gives 1 + 16000 // 128 = 126 frames; center=False would give only
        # 1 + (16000 - 1024) // 128 = 118. kapre's 'same' padding gives ceil(16000 / 128) = 125, so we keep
        # center=True and take the first 125 frames.
        m = mel(w)[..., :N_FRAMES]                       # [B, 80, 125]
        # [B, 1, 80, T]: AmplitudeToDB applies top_db per item of the leading dim only for 4-D input
        # (for 3-D input it would take the max over the whole batch).
        d = to_db(m.unsqueeze(1))
        mean = d.mean(dim=(1, 2, 3), keepdim=True)
        std = d.std(dim=(1, 2, 3), keepdim=True)
        d = (d - mean) / std.clamp_min(1e-6)
        out[i:i + w.shape[0]] = d.transpose(2, 3)        # [B, 1, 125, 80]: time x mel
    return out


# Typical per-clip dB statistics are lost by the normalisation; features_to_audio re-scales with these.
_AUDIO_DB_STD = 20.0
_AUDIO_DB_MAX = 0.0


@torch.no_grad()
def features_to_audio(features: torch.Tensor, n_iter: int = 32, db_std: float = _AUDIO_DB_STD) -> torch.Tensor:
    """Approximate waveform(s) from normalised log-mel features, for listening (Griffin-Lim).

    ``[1, 125, 80]``, ``[125, 80]`` or ``[N, 1, 125, 80]`` -> ``[16000]`` or ``[N, 16000]``, peak 0.9.
    The per-clip normalisation discarded the loudness and dynamic range; ``db_std`` (dB per unit) sets
    the dynamic range back to a typical value. Expect a recognisable but robotic voice.
    """
    single = features.dim() <= 3
    x = features.detach().reshape(-1, N_FRAMES, N_MELS).to("cpu", torch.float32)   # CPU transforms
    db = x * db_std
    db = db - db.amax(dim=(1, 2), keepdim=True) + _AUDIO_DB_MAX
    mag = torch.pow(10.0, db / 20.0).transpose(1, 2)                 # [N, 80, 125] magnitude mel
    n_stft = MEL_PARAMS["n_fft"] // 2 + 1
    inv = torchaudio.transforms.InverseMelScale(n_stft=n_stft, n_mels=N_MELS, sample_rate=SAMPLE_RATE,
                                                f_min=MEL_PARAMS["f_min"], f_max=MEL_PARAMS["f_max"])
    spec = inv(mag).clamp_min(0.0)                                   # [N, 513, 125]
    spec = torch.nn.functional.pad(spec, (0, 1), mode="replicate")   # back to the 126 STFT frames
    gl = torchaudio.transforms.GriffinLim(n_fft=MEL_PARAMS["n_fft"], hop_length=MEL_PARAMS["hop_length"],
                                          power=1.0, n_iter=n_iter, length=CLIP_SAMPLES)
    wave = gl(spec)
    wave = 0.9 * wave / wave.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
    return wave[0] if single else wave


# ------------------------------------------------------------------------------------------- locations

def _cache_root() -> Path:
    return cache_dir()  # $EWE_CACHE_DIR or ~/.cache/ewe, shared with ewe.data


def _keyword_files(folder: Path) -> dict[str, list[Path]]:
    """``{word: sorted wav paths}`` for the keyword folders present under ``folder``."""
    found = {}
    for word in KEYWORDS:
        d = folder / word
        if d.is_dir():
            wavs = sorted(p for p in d.iterdir() if p.suffix.lower() == ".wav" and p.is_file())
            if wavs:
                found[word] = wavs
    return found


def _candidate(base: Path) -> Path | None:
    """The Speech Commands folder under ``base`` (``base/speech_commands`` or ``base`` itself), if any."""
    for folder in (base / "speech_commands", base):
        if folder.is_dir() and _keyword_files(folder):
            return folder
    return None


def _download(dest: Path, url: str | None = None, timeout: float = 30.0) -> None:
    """Fetch the official test archive and unpack its 10 keyword folders into ``dest``."""
    url = url or TEST_ARCHIVE_URL
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".sc-download-") as tmp:
        archive = Path(tmp) / "speech_commands_test_set_v0.02.tar.gz"
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(archive, "wb") as out:
            shutil.copyfileobj(resp, out, length=1 << 20)
        staging = Path(tmp) / "speech_commands"
        n = 0
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = Path(member.name).parts
                parts = tuple(p for p in parts if p not in (".", ""))
                # only <word>/<file>.wav of the 10 keywords; nothing else (no links, no path tricks)
                if (member.isfile() and len(parts) == 2 and parts[0] in KEYWORDS
                        and parts[1].endswith(".wav") and "/" not in parts[1] and ".." not in parts):
                    target = staging / parts[0] / parts[1]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    assert src is not None
                    with src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
                    n += 1
        if n == 0:
            raise DataError(f"the archive from {url} holds no <keyword>/<file>.wav entries")
        dest.mkdir(parents=True, exist_ok=True)
        for word_dir in staging.iterdir():
            target = dest / word_dir.name
            if target.exists():
                shutil.rmtree(target)
            shutil.move(str(word_dir), str(target))


def _locate(data_dir: str | os.PathLike | None, download: bool) -> Path:
    tried: list[str] = []
    base, label = data_dir_from_env(data_dir)
    if base is not None:
        hit = _candidate(base)
        if hit:
            return hit
        tried.append(f"{label}: {base / 'speech_commands'} (no <word>/*.wav folders for {', '.join(KEYWORDS)})")
    else:
        tried.append("data_dir / $EWE_DATA_DIR: not set")
    cache = _cache_root() / "speech_commands"
    if _keyword_files(cache):
        return cache
    tried.append(f"cache: {cache} (no <word>/*.wav folders)")
    if download:
        try:
            _download(cache)
            if _keyword_files(cache):
                return cache
            tried.append(f"download of {TEST_ARCHIVE_URL}: finished but gave no keyword clips")
        except Exception as e:
            tried.append(f"download of {TEST_ARCHIVE_URL} into {cache}: failed ({type(e).__name__}: {e})")
    else:
        tried.append("download: skipped (download=False)")
    raise DataError(
        "Speech Commands not found. Tried:\n  - " + "\n  - ".join(tried) + "\n"
        "Fix: point data_dir (or $EWE_DATA_DIR, or --data-dir) at a folder holding "
        "speech_commands/<word>/<speaker>_nohash_<n>.wav for the words " + ", ".join(KEYWORDS)
        + f"; or copy such a folder to {cache}; or run once with network access and download=True "
        f"(it fetches {TEST_ARCHIVE_URL}).")


# ------------------------------------------------------------------------------------------ loading

def _cache_key(root: Path, files: Sequence[tuple[str, Path]]) -> str:
    h = hashlib.sha256()
    h.update(repr((FEATURE_VERSION, sorted(MEL_PARAMS.items()), TOP_DB, N_FRAMES, CLIP_SAMPLES,
                   "end-pad/centre-crop", "resample")).encode())
    h.update(str(root.resolve()).encode())
    for word, p in files:
        st = p.stat()
        h.update(f"\n{word}/{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _extract(files: Sequence[tuple[str, Path]], chunk: int = 512):
    """Read, fix and featurise clips. Returns (features, labels, kept indices, bad list, resampled list)."""
    feats, labels, kept = [], [], []
    bad: list[tuple[str, str]] = []
    resampled: list[tuple[str, int]] = []
    waves: list[torch.Tensor] = []

    def flush():
        if waves:
            feats.append(logmel(torch.stack(waves)))
            waves.clear()

    for i, (word, path) in enumerate(files):
        rel = f"{word}/{path.name}"
        try:
            wave, sr = read_clip(path)
        except ValueError as e:
            bad.append((rel, str(e)))
            continue
        if sr != SAMPLE_RATE:
            if sr <= 0:
                bad.append((rel, f"sample rate {sr}"))
                continue
            wave = torchaudio.functional.resample(wave, sr, SAMPLE_RATE)
            resampled.append((rel, sr))
        waves.append(fix_length(wave))
        labels.append(KEYWORDS.index(word))
        kept.append(i)
        if len(waves) >= chunk:
            flush()
    flush()
    x = torch.cat(feats) if feats else torch.empty(0, 1, N_FRAMES, N_MELS)
    return x, torch.tensor(labels, dtype=torch.int64), kept, bad, resampled


def _load_features(root: Path, files: Sequence[tuple[str, Path]], use_cache: bool = True):
    """Features for ``files``, from the on-disk cache when possible. Returns (x, y, kept, bad, resampled, cached)."""
    cache_file = _cache_root() / "speech_commands_features" / f"{_cache_key(root, files)}.npz"
    if use_cache and cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as z:
                x = torch.from_numpy(z["x"])
                y = torch.from_numpy(z["y"]).to(torch.int64)
                kept = z["kept"].tolist()
                bad = list(zip(z["bad_files"].tolist(), z["bad_reasons"].tolist()))
                resampled = list(zip(z["resampled_files"].tolist(), z["resampled_rates"].tolist()))
            if x.shape[1:] == (1, N_FRAMES, N_MELS) and len(x) == len(y) == len(kept):
                return x, y, kept, bad, resampled, True
        except Exception as e:  # a damaged cache is recomputed, never fatal
            warnings.warn(f"ignoring unreadable feature cache {cache_file}: {e}")
    x, y, kept, bad, resampled = _extract(files)
    if use_cache:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache_file.parent, suffix=".npz.tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, x=x.numpy(), y=y.numpy(), kept=np.asarray(kept, dtype=np.int64),
                         bad_files=np.asarray([b[0] for b in bad], dtype=str),
                         bad_reasons=np.asarray([b[1] for b in bad], dtype=str),
                         resampled_files=np.asarray([r[0] for r in resampled], dtype=str),
                         resampled_rates=np.asarray([r[1] for r in resampled], dtype=np.int64))
            os.replace(tmp, cache_file)
        except OSError as e:
            warnings.warn(f"could not write the feature cache {cache_file}: {e}")
    return x, y, kept, bad, resampled, False


def load_speech_commands(data_dir: str | os.PathLike | None = None, *, download: bool = True,
                         test_fraction: float = 0.2, max_bad_fraction: float = 0.05,
                         use_cache: bool = True) -> Dataset:
    """Speech Commands (10 keywords) as log-mel features ``[N, 1, 125, 80]``, split by speaker.

    Raises :class:`DataError` when no data is found, a keyword has no clips, more than
    ``max_bad_fraction`` of the files are unreadable, or the speaker split leaves a side empty.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    root = _locate(data_dir, download)
    by_word = _keyword_files(root)
    missing = [w for w in KEYWORDS if w not in by_word]
    if missing:
        raise DataError(f"{root} has no clips for the keyword(s) {', '.join(missing)}; expected "
                        f"{root}/<word>/<speaker>_nohash_<n>.wav for all of {', '.join(KEYWORDS)}")
    files = [(w, p) for w in KEYWORDS for p in by_word[w]]

    x, y, kept, bad, resampled, cached = _load_features(root, files, use_cache)
    if len(bad) > max_bad_fraction * len(files):
        examples = "; ".join(f"{f}: {r}" for f, r in bad[:5])
        raise DataError(f"{len(bad)} of {len(files)} files in {root} are unreadable "
                        f"(more than max_bad_fraction={max_bad_fraction:g}), e.g. {examples}")

    kept_paths = [files[i][1] for i in kept]
    speakers = [speaker_of(p) for p in kept_paths]
    is_test = torch.tensor([_speaker_in_test(s, test_fraction) for s in speakers], dtype=torch.bool)
    test_speakers = {s for s, t in zip(speakers, is_test.tolist()) if t}
    train_speakers = set(speakers) - test_speakers
    n_test = int(is_test.sum())
    n_train = len(kept) - n_test
    if n_train == 0 or n_test == 0:
        raise DataError(f"the speaker split of {len(kept)} clips from {len(set(speakers))} speakers in {root} "
                        f"left {'train' if n_train == 0 else 'test'} empty (test_fraction={test_fraction}); "
                        "more speakers are needed")
    train = Split(x=x[~is_test].contiguous(), y=y[~is_test].contiguous())
    test = Split(x=x[is_test].contiguous(), y=y[is_test].contiguous())

    notes = [f"{len(bad):,} files skipped"
             + (" (" + "; ".join(f"{f}: {r}" for f, r in bad[:3]) + (", ..." if len(bad) > 3 else "") + ")"
                if bad else "")]
    if resampled:
        rates = sorted({r for _, r in resampled})
        notes.append(f"{len(resampled):,} resampled to 16 kHz (from {', '.join(f'{r} Hz' for r in rates)})")
    source = (f"{len(kept):,} clips from {root}, {len(set(speakers))} speakers, split by speaker: "
              f"{n_train:,} train / {n_test:,} test ({len(train_speakers)} / {len(test_speakers)} speakers, "
              f"test_fraction {test_fraction:g}); " + "; ".join(notes)
              + f"; log-mel {N_FRAMES}x{N_MELS}" + (" (feature cache)" if cached else ""))
    return Dataset(name="speech-commands", train=train, test=test, classes=list(KEYWORDS), source=source)
