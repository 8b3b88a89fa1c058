"""ewe.data.speech on tiny WAV folders written here (no /work/shared, no network)."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from ewe.data import speech
from ewe.data import DataError
from ewe.data.speech import KEYWORDS, fix_length, load_speech_commands, logmel, speaker_of, speaker_split

# sha1(id) % 1000: spk00 -> 196 and spk03 -> 135 (test at 0.2), spk01 -> 241 and spk02 -> 635 (train)
SPEAKERS = {"spk00": 12000, "spk01": 12000, "spk02": 20000, "spk03": 16000}  # speaker -> clip length
TEST_SPEAKERS = {"spk00", "spk03"}


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Never touch the user's cache or $EWE_DATA_DIR, never reach the network."""
    monkeypatch.setenv("EWE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EWE_DATA_DIR", raising=False)
    monkeypatch.setattr(speech, "TEST_ARCHIVE_URL", (tmp_path / "no-such-archive.tar.gz").as_uri())


def _write(path: Path, n: int, freq: float, sr: int = 16000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, sr, (wave * 32767).astype(np.int16))


def make_corpus(root: Path) -> Path:
    """root/speech_commands/<word>/<speaker>_nohash_0.wav: 10 words x 4 speakers, lengths 0.75/1/1.25 s."""
    sc = root / "speech_commands"
    for k, word in enumerate(KEYWORDS):
        for j, (spk, n) in enumerate(SPEAKERS.items()):
            _write(sc / word / f"{spk}_nohash_0.wav", n, 200 + 150 * k, seed=10 * k + j)
    return sc


@pytest.fixture
def corpus(tmp_path) -> Path:
    return make_corpus(tmp_path / "data")


# ------------------------------------------------------------------------------------------ split

def test_speaker_split_is_disjoint_stable_and_hash_based():
    files = [f"{w}/{s:04x}beef_nohash_{n}.wav" for s in range(300) for w in ("yes", "no") for n in range(2)]
    train, test = speaker_split(files, 0.2)
    assert (train, test) == speaker_split(list(files), 0.2)           # same result twice
    assert sorted(train + test) == sorted(files)
    assert train == [f for f in files if f in set(train)]               # input order kept
    tr_spk, te_spk = {speaker_of(f) for f in train}, {speaker_of(f) for f in test}
    assert not tr_spk & te_spk                                          # no speaker on both sides
    assert 0.12 < len(te_spk) / 300 < 0.28
    # stable across machines and processes: fixed by sha1, not Python's salted hash()
    assert speaker_split(["a/spk00_nohash_0.wav", "b/spk01_nohash_3.wav", "spk03_nohash_1.wav"], 0.2) == (
        ["b/spk01_nohash_3.wav"], ["a/spk00_nohash_0.wav", "spk03_nohash_1.wav"])
    assert speaker_split(files, 0.0) == (files, []) and speaker_split(files, 1.0) == ([], files)
    with pytest.raises(ValueError):
        speaker_split(files, 1.5)


def test_speaker_of():
    assert speaker_of("/x/yes/022cd682_nohash_3.wav") == "022cd682"
    assert speaker_of(Path("odd.wav")) == "odd"


# ----------------------------------------------------------------------------------------- loader

def test_loader_shapes_labels_and_speaker_split(corpus):
    ds = load_speech_commands(corpus.parent, download=False)
    assert ds.name == "speech-commands" and ds.classes == KEYWORDS
    for split, n in ((ds.train, 20), (ds.test, 20)):
        assert split.x.shape == (n, 1, 125, 80) and split.x.dtype == torch.float32
        assert split.y.dtype == torch.int64
        assert torch.equal(split.y.bincount(minlength=10), torch.full((10,), 2))  # 2 speakers a word
    # the label is the folder: word k is a tone of 200 + 150 k Hz, so its loudest mel band (over the
    # first 90 frames, before any zero padding) is the same for a word's clips and rises with k
    for split in (ds.train, ds.test):
        band = split.x[:, 0, :90, :].mean(dim=1).argmax(dim=1)
        order = split.y.argsort(stable=True)
        band, y = band[order].view(10, 2), split.y[order].view(10, 2)
        assert torch.equal(y[:, 0], torch.arange(10)) and torch.equal(band[:, 0], band[:, 1])
        assert torch.all(band[1:, 0] > band[:-1, 0])
    assert "40 clips" in ds.source and "4 speakers" in ds.source
    assert "20 train / 20 test (2 / 2 speakers" in ds.source and "0 files skipped" in ds.source
    # same split on a second load (through the feature cache)
    again = load_speech_commands(corpus.parent, download=False)
    assert torch.equal(again.train.y, ds.train.y) and torch.equal(again.test.x, ds.test.x)


def test_loader_accepts_the_folder_itself_and_env_var(corpus, monkeypatch):
    assert load_speech_commands(corpus, download=False).test.x.shape[0] == 20
    monkeypatch.setenv("EWE_DATA_DIR", str(corpus.parent))
    assert str(corpus) in load_speech_commands(download=False).source


def test_cache_folder_is_used(tmp_path):
    make_corpus(tmp_path / "cache")   # $EWE_CACHE_DIR/speech_commands/<word>/...
    ds = load_speech_commands(download=False)
    assert str(tmp_path / "cache" / "speech_commands") in ds.source


def test_feature_cache_hit_and_invalidation(corpus, tmp_path):
    first = load_speech_commands(corpus, download=False)
    assert "feature cache" not in first.source
    assert len(list((tmp_path / "cache" / "speech_commands_features").glob("*.npz"))) == 1
    second = load_speech_commands(corpus, download=False)
    assert "feature cache" in second.source
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.test.y, second.test.y)
    # a changed file changes the key: recomputed, not served stale
    _write(corpus / "yes" / "spk01_nohash_0.wav", 16000, 999.0, seed=7)
    third = load_speech_commands(corpus, download=False)
    assert "feature cache" not in third.source
    assert not torch.equal(third.train.x, first.train.x)
    assert "feature cache" not in load_speech_commands(corpus, download=False, use_cache=False).source


def test_pad_and_centre_crop_to_one_second():
    w = torch.arange(10.0)
    assert torch.equal(fix_length(w, 14), torch.cat([w, torch.zeros(4)]))   # zeros at the end
    assert torch.equal(fix_length(w, 4), torch.tensor([3.0, 4.0, 5.0, 6.0]))  # centre
    assert torch.equal(fix_length(w, 10), w)
    assert fix_length(torch.randn(20000)).shape == (16000,)


def test_loader_pads_and_crops_clips(tmp_path):
    sc = tmp_path / "speech_commands"
    short, long_ = np.full(8000, 1000, np.int16), np.zeros(32000, np.int16)
    long_[8000:24000] = 1000       # the centre second of a 2 s clip is constant, its edges silent
    for word in KEYWORDS:
        for spk in SPEAKERS:
            _write(sc / word / f"{spk}_nohash_0.wav", 16000, 300)
    wavfile.write(sc / "yes" / "spk01_nohash_1.wav", 16000, short)
    wavfile.write(sc / "yes" / "spk02_nohash_1.wav", 16000, long_)
    wave, sr = speech.read_clip(sc / "yes" / "spk02_nohash_1.wav")
    assert sr == 16000 and torch.all(fix_length(wave) == 1000 / 32768)
    wave, _ = speech.read_clip(sc / "yes" / "spk01_nohash_1.wav")
    fixed = fix_length(wave)
    assert fixed.shape == (16000,) and torch.all(fixed[8000:] == 0) and torch.all(fixed[:8000] > 0)
    ds = load_speech_commands(tmp_path, download=False)
    assert ds.train.x.shape == (22, 1, 125, 80)


def test_bad_files_are_skipped_and_counted(corpus):
    (corpus / "no" / "spk01_nohash_9.wav").write_bytes(b"this is not a wav file" * 20)
    good = (corpus / "no" / "spk01_nohash_0.wav").read_bytes()
    (corpus / "up" / "spk02_nohash_9.wav").write_bytes(good[:3000])            # truncated data chunk
    _write(corpus / "go" / "spk01_nohash_8.wav", 8000, 500, sr=8000)             # 8 kHz, 1 s
    ds = load_speech_commands(corpus, download=False, max_bad_fraction=0.1)
    assert len(ds.train.y) == 21 and len(ds.test.y) == 20                        # 8 kHz clip kept
    assert (ds.train.y == KEYWORDS.index("go")).sum() == 3
    assert "2 files skipped" in ds.source
    assert "no/spk01_nohash_9.wav" in ds.source and "up/spk02_nohash_9.wav" in ds.source
    assert "1 resampled to 16 kHz (from 8000 Hz)" in ds.source
    with pytest.raises(DataError, match="2 of 43 files"):
        load_speech_commands(corpus, download=False, max_bad_fraction=0.04)      # 2/43 > 4 %


def test_too_many_bad_files_raise(tmp_path):
    sc = tmp_path / "speech_commands"
    for word in KEYWORDS:
        _write(sc / word / "spk01_nohash_0.wav", 16000, 300)
        _write(sc / word / "spk00_nohash_0.wav", 16000, 300)
        (sc / word / "spk02_nohash_0.wav").write_bytes(b"RIFF....garbage")
    with pytest.raises(DataError, match="unreadable"):
        load_speech_commands(tmp_path, download=False)


def test_nothing_found_lists_places_tried(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as err:
        load_speech_commands(empty, download=False)
    msg = str(err.value)
    assert str(empty / "speech_commands") in msg
    assert str(tmp_path / "cache" / "speech_commands") in msg
    assert "download=False" in msg and "EWE_DATA_DIR" in msg
    with pytest.raises(DataError) as err:                 # download tried, fails (unreachable archive)
        load_speech_commands(empty, download=True)
    assert "download of" in str(err.value) and "failed" in str(err.value)


def test_missing_keyword_raises(corpus):
    for f in (corpus / "stop").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="stop"):
        load_speech_commands(corpus, download=False)


def test_download_unpacks_the_archive_into_the_cache(tmp_path, monkeypatch):
    src = make_corpus(tmp_path / "src")
    (src / "_unknown_").mkdir()
    (src / "_unknown_" / "bed_nohash_0.wav").write_bytes((src / "yes" / "spk00_nohash_0.wav").read_bytes())
    archive = tmp_path / "speech_commands_test_set_v0.02.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=".")                      # the official archive's ./<word>/... layout
    monkeypatch.setattr(speech, "TEST_ARCHIVE_URL", archive.as_uri())
    ds = load_speech_commands(tmp_path / "nowhere", download=True)
    cache = tmp_path / "cache" / "speech_commands"
    assert str(cache) in ds.source and len(ds.train.y) + len(ds.test.y) == 40
    assert sorted(p.name for p in cache.iterdir()) == sorted(KEYWORDS)   # _unknown_ not unpacked


# --------------------------------------------------------------------------------------- features

def test_logmel_shape_and_per_sample_normalisation():
    torch.manual_seed(0)
    t = torch.arange(16000) / 16000
    loud = torch.sin(2 * torch.pi * 440 * t) * 0.8
    quiet = torch.randn(16000) * 1e-3
    quiet[8000:] = 0                                     # zero padding, as a short clip gets
    silent = torch.zeros(16000)
    f = logmel(torch.stack([loud, quiet, silent]))
    assert f.shape == (3, 1, 125, 80) and f.dtype == torch.float32 and torch.isfinite(f).all()
    m, s = f[:2].mean(dim=(1, 2, 3)), f[:2].std(dim=(1, 2, 3))
    assert torch.allclose(m, torch.zeros(2), atol=1e-4) and torch.allclose(s, torch.ones(2), atol=1e-4)
    assert torch.all(f[2] == 0)
    # each clip is treated alone: batching must not change a clip's features (dB floor per clip)
    assert torch.allclose(logmel(quiet), f[1:2], atol=1e-4)
    assert torch.allclose(logmel(loud.unsqueeze(0), batch_size=1), f[:1], atol=1e-4)
    # time x mel: a 440 Hz tone lights up the same low mel band in every frame
    band = f[0, 0].mean(dim=0).argmax()
    assert band < 40 and torch.all(f[0, 0, :, band] > 1)
    with pytest.raises(ValueError):
        logmel(torch.zeros(2, 8000))


def test_features_to_audio_round_trip():
    t = torch.arange(16000) / 16000
    wave = torch.sin(2 * torch.pi * 600 * t) * torch.exp(-3 * t)
    feats = logmel(wave)
    audio = speech.features_to_audio(feats[0])
    assert audio.shape == (16000,) and torch.isfinite(audio).all()
    assert abs(audio.abs().max().item() - 0.9) < 1e-4
    again = logmel(audio)
    assert torch.nn.functional.cosine_similarity(feats.flatten(), again.flatten(), dim=0) > 0.9
    assert speech.features_to_audio(feats.repeat(2, 1, 1, 1)).shape == (2, 16000)
