"""Speech models, speech presets, a tiny end-to-end speech run, and ui.audio, all on generated data
(no /work/shared, no network)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from ewe.data import speech
from ewe.config import PRESETS, preset
from ewe.models import AudioCNN, SpeechLSTM, build_model
from ewe.watermarks.snnl import snnl_layers, Temperatures
from ewe.data.speech import KEYWORDS

# speaker ids whose sha1 puts them in train (spk01, spk02) or test (spk00, spk03) at test_fraction 0.2
SPEAKERS = ("spk00", "spk01", "spk02", "spk03")
CLIPS_PER_SPEAKER = 3


def _write(path: Path, freq: float, seed: int, n: int = 16000, sr: int = 16000) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    wave = 0.3 * np.sin(2 * np.pi * freq * t) * np.hanning(n) + 0.02 * rng.standard_normal(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, sr, (wave * 32767).astype(np.int16))


def make_corpus(root: Path) -> Path:
    """root/speech_commands/<word>/<speaker>_nohash_<i>.wav: 10 words x 4 speakers x 3 clips of tones."""
    sc = root / "speech_commands"
    for k, word in enumerate(KEYWORDS):
        for j, spk in enumerate(SPEAKERS):
            for i in range(CLIPS_PER_SPEAKER):
                _write(sc / word / f"{spk}_nohash_{i}.wav", 200 + 150 * k + 7 * i, seed=100 * k + 10 * j + i)
    return sc


def _isolate(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    mp.setenv("EWE_CACHE_DIR", str(tmp / "cache"))
    mp.delenv("EWE_DATA_DIR", raising=False)
    mp.setattr(speech, "TEST_ARCHIVE_URL", (tmp / "no-such-archive.tar.gz").as_uri())


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    _isolate(monkeypatch, tmp_path)


# ------------------------------------------------------------------------------------------ models

@pytest.mark.parametrize("shape", [(1, 125, 80), (1, 24, 16)])
def test_lstm_representations(shape):
    torch.manual_seed(0)
    model = SpeechLSTM(shape, 10)
    x = torch.randn(3, *shape)
    logits, (h1, h2, h3) = model.features(x)
    assert logits.shape == (3, 10)
    assert h1.shape == (3, 256) and h2.shape == (3, 256) and h3.shape == (3, 128)
    # h1 is the middle time step's output, h2 the last: the middle one does not see later frames
    x2 = x.clone()
    x2[:, :, shape[1] // 2 + 1:] += 1.0
    _, (g1, g2, _) = model.features(x2)
    assert torch.allclose(g1, h1) and not torch.allclose(g2, h2)
    assert torch.allclose(model(x), logits)


@pytest.mark.parametrize("shape", [(1, 125, 80), (1, 24, 16)])
def test_audio_cnn_representations(shape):
    torch.manual_seed(0)
    model = AudioCNN(shape, 10).eval()
    x = torch.randn(3, *shape)
    logits, (s1, s2, s3) = model.features(x)
    t = shape[1]
    assert logits.shape == (3, 10)
    assert s1.shape == (3, 64, t) and s2.shape == (3, 64, t // 2) and s3.shape == (3, 128)
    assert torch.allclose(model(x), logits)
    # fine-pruning acts on the last nn.Conv2d: the model has one
    assert any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def test_audio_cnn_can_be_fine_pruned():
    from ewe.attacks.removal import fine_prune
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 24, 16), torch.randint(0, 10, (16,))
    pruned, info = fine_prune(AudioCNN((1, 24, 16)), x, 0.5, finetune=dict(x=x, y=y, epochs=1, batch_size=8))
    assert info["channels"] == 64 and len(info["pruned_channels"]) == 32
    assert pruned(x).shape == (16, 10)


@pytest.mark.parametrize("name", ["lstm", "audio_cnn"])
def test_snnl_gradient_reaches_every_layer(name):
    torch.manual_seed(0)
    model = build_model(name, (1, 20, 12))
    x = torch.randn(8, 1, 20, 12)
    w = torch.tensor([1.0] * 4 + [0.0] * 4)
    _, hidden = model.features(x)
    total = torch.stack(snnl_layers(hidden, w, Temperatures([0.3] * 3, "fixed"), "cosine")).sum()
    total.backward()
    first = next(model.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------- presets

@pytest.mark.parametrize("name", PRESETS)
def test_speech_presets_validate(name):
    cfg = preset("speech-commands", name)
    assert cfg.trigger == "in" and cfg.model in ("lstm", "audio_cnn")
    assert cfg.source != cfg.target and cfg.target == 5
    assert len(cfg.kappa) == 3 and len(cfg.temperature) == 3
    assert cfg.n_triggers is None or cfg.n_triggers % (cfg.batch_size // 2) == 0
    if name == "reference":   # the reference code's settings: LSTM, go -> no, T = 30 (tau 3.33), t_lr 2
        assert cfg.model == "lstm" and cfg.source == 9 and cfg.batch_size == 128 and cfg.t_lr == 2.0
        assert cfg.temperature == pytest.approx([100 / 30] * 3)
    else:
        assert cfg.model == "audio_cnn"


def test_quick_is_smaller_than_paper():
    q, p = preset("speech-commands", "quick"), preset("speech-commands", "paper")
    assert q.epochs <= p.epochs and q.extraction_epochs <= p.extraction_epochs
    assert q.epochs + q.w_epochs + q.extraction_epochs < p.epochs + p.w_epochs + p.extraction_epochs


# --------------------------------------------------------------------------------- tiny end-to-end

@pytest.fixture(scope="module")
def speech_run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("speech-run")
    _isolate(mp, tmp)
    make_corpus(tmp / "data")
    from ewe.experiments import pipeline
    cfg = preset("speech-commands", "quick", data_dir=str(tmp / "data"), batch_size=8, epochs=1, w_epochs=1,
                 n_triggers=8, n_heldout=4, maxiter=1, extract_epochs=1, threads=1, query_draws=10)
    events: list[dict] = []
    result = pipeline.run(cfg, tmp / "out", [events.append])
    yield tmp / "out", result, events, tmp / "data"
    mp.undo()


def test_tiny_speech_run_finishes(speech_run):
    out, result, events, _ = speech_run
    assert result["status"] == "finished" and result["dataset"] == "speech-commands"
    assert result["input_shape"] == [1, 125, 80]
    assert {"clean", "defended", "extracted", "plain_extracted", "independent_clean"} <= set(result["models"])
    for m in result["models"].values():
        assert 0 <= m["accuracy"] <= 1 and 0 <= m["watermark_success"] <= 1
    row, col = result["patch"]
    assert 0 <= row <= 125 - 3 and 0 <= col <= 80 - 3
    assert {"extracted", "plain_extracted", "clean"} <= set(result["verification"])
    trig = torch.load(out / "triggers.pt", weights_only=True)
    assert trig["heldout"].shape[1:] == (1, 125, 80)
    # speech triggers stay inside the data's value range (not clipped to [0, 1])
    assert float(trig["train"].min()) < 0
    assert any(e.get("kind") == "run_end" for e in events)


# ------------------------------------------------------------------------------------------ ui.audio

def test_wav_bytes_roundtrip():
    from ui.audio import wav_bytes
    wave = 0.5 * np.sin(np.linspace(0, 100, 16000))
    data = wav_bytes(torch.tensor(wave))
    sr, back = wavfile.read(io.BytesIO(data))
    assert sr == 16000 and back.dtype == np.int16 and len(back) == 16000
    assert np.abs(back / 32767 - wave).max() < 1e-3
    assert wavfile.read(io.BytesIO(wav_bytes(np.array([2.0, -2.0, np.nan]))))[1].tolist() == [32767, -32767, 0]


def test_dataset_clips_from_a_folder(tmp_path):
    from ui.audio import dataset_clips
    make_corpus(tmp_path / "data")
    clips = dataset_clips(9, 5, tmp_path / "data", n=2)
    assert clips["message"] is None
    assert clips["source"]["word"] == "go" and clips["target"]["word"] == "no"
    assert len(clips["source"]["clips"]) == 2 and len(clips["target"]["clips"]) == 2
    name, data = clips["source"]["clips"][0]
    assert name.endswith(".wav") and data[:4] == b"RIFF"
    assert wavfile.read(io.BytesIO(data))[0] == 16000


def test_dataset_clips_offline_gives_a_message(tmp_path):
    from ui.audio import dataset_clips
    clips = dataset_clips(9, 5, tmp_path / "nothing-here")
    assert clips["source"]["clips"] == [] and clips["target"]["clips"] == []
    assert "EWE_DATA_DIR" in clips["message"]


def test_spectrogram_figure_outlines_the_patch():
    from ui.audio import spectrogram_figure
    x = torch.zeros(1, 125, 80)
    fig = spectrogram_figure(x, patch=[60, 30])
    z = np.asarray(fig.data[0].z)
    assert z.shape == (80, 125)                          # mel on y, time on x
    rect = [s for s in fig.layout.shapes if s.type == "rect"][0]
    assert (rect.x0, rect.x1, rect.y0, rect.y1) == (59.5, 62.5, 29.5, 32.5)
    assert not spectrogram_figure(x[0]).layout.shapes      # [T, F] input, no patch
    with pytest.raises(ValueError):
        spectrogram_figure(torch.zeros(5))


def test_run_folder_helpers(speech_run, tmp_path):
    from ui.audio import source_target_clips, trigger_example, trigger_features
    out, result, _, data = speech_run
    feats, patch = trigger_features(out, 0)
    assert feats.shape == (1, 125, 80) and patch == result["patch"]
    ex = trigger_example(out, 0)
    assert ex["wav"][:4] == b"RIFF" and ex["patch"] == result["patch"]
    assert "stop" in ex["caption"] or KEYWORDS[preset("speech-commands", "quick").source] in ex["caption"]
    assert [s for s in ex["figure"].layout.shapes if s.type == "rect"]
    assert trigger_example(out, 0, with_audio=False)["wav"] is None
    assert trigger_features(out, 10_000) is None
    clips = source_target_clips(out, data_dir=data, n=1)
    assert len(clips["source"]["clips"]) == 1 and clips["message"] is None
    # an image run (or any folder without speech triggers) gives nothing
    other = tmp_path / "img"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"dataset": "mnist"}))
    assert trigger_example(other) is None
    assert source_target_clips(other)["message"]
