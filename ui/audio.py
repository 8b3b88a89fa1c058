"""Audio helpers for Speech Commands pages: example clips, a triggered clip's audio, a spectrogram figure.

Pure functions (no Streamlit calls): they return WAV bytes for ``st.audio`` and plotly figures for
``st.plotly_chart``, plus a message when there is nothing to show (no data offline, an image run, ...).

    clips = source_target_clips(run_dir)                 # or dataset_clips(source, target)
    for side in ("source", "target"):
        st.markdown(f"**{clips[side]['label']}**")
        for name, wav in clips[side]["clips"]:
            st.audio(wav, format="audio/wav")
    if clips["message"]:
        st.info(clips["message"])

    trig = trigger_example(run_dir, index=0)            # None for runs without speech triggers
    if trig:
        st.plotly_chart(trig["figure"]); st.audio(trig["wav"], format="audio/wav"); st.caption(trig["caption"])

Trigger tensors in ``triggers.pt`` are log-mel features ``[N, 1, time, mel]``; ``result.json`` has
``"patch": [row, col]`` (row = time frame, col = mel bin) for in-distribution triggers: a 3x3 patch in
channel 0. ``features_to_audio`` (Griffin-Lim) turns features back into an approximate, robotic waveform.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ewe.results.runs import Run
from ui.judging import load_triggers

SPEECH = "speech-commands"
PATCH = 3
SAMPLE_RATE = 16000
TRIGGER_SETS = {"heldout": "optimised, held out", "train": "optimised, training",
                "raw_heldout": "before optimisation (classic), held out",
                "raw_train": "before optimisation (classic), training"}

__all__ = ["wav_bytes", "word_files", "word_clips", "dataset_clips", "source_target_clips",
           "spectrogram_figure", "trigger_features", "trigger_audio", "trigger_figure", "trigger_example"]


# ------------------------------------------------------------------------------------------- encoding

def wav_bytes(wave: Any, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A mono waveform (tensor / array in [-1, 1]) as 16-bit PCM WAV bytes for ``st.audio``."""
    from scipy.io import wavfile
    a = np.asarray(wave.detach().cpu().numpy() if hasattr(wave, "detach") else wave, dtype=np.float32)
    a = np.nan_to_num(a.reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
    pcm = (np.clip(a, -1.0, 1.0) * 32767.0).astype(np.int16)
    buf = io.BytesIO()
    wavfile.write(buf, int(sample_rate), pcm)
    return buf.getvalue()


# ------------------------------------------------------------------------------------- dataset clips

def _words() -> list[str]:
    from ewe.data.speech import KEYWORDS
    return list(KEYWORDS)


def _speech_root(data_dir: str | os.PathLike | None) -> Path | None:
    """The speech_commands folder the loader would use, without downloading (None if there is none)."""
    from ewe.data.speech import _locate
    try:
        return _locate(data_dir, download=False)
    except Exception:   # DataError when nothing is found offline
        return None


def word_files(word: str, data_dir: str | os.PathLike | None = None, n: int = 3) -> list[Path]:
    """Up to ``n`` WAV files of ``word`` (sorted names, so the same clips every time); [] if no data."""
    root = _speech_root(data_dir)
    if root is None or not (root / word).is_dir():
        return []
    files = sorted(p for p in (root / word).iterdir() if p.suffix.lower() == ".wav" and p.is_file())
    return files[: max(0, n)]


def word_clips(word: str, data_dir: str | os.PathLike | None = None, n: int = 3,
               max_bytes: int = 2_000_000) -> list[tuple[str, bytes]]:
    """``[(file name, WAV bytes)]`` for up to ``n`` clips of ``word`` (the original files, unchanged).
    Unreadable or oversized files are skipped."""
    out = []
    for p in word_files(word, data_dir, n * 2):
        try:
            if p.stat().st_size > max_bytes:
                continue
            data = p.read_bytes()
        except OSError:
            continue
        if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
            out.append((p.name, data))
        if len(out) >= n:
            break
    return out


def dataset_clips(source: int, target: int, data_dir: str | os.PathLike | None = None, n: int = 3) -> dict:
    """Example clips of the source word (the triggers are made from it) and the target word.

    Returns ``{"source": {"class", "word", "label", "clips": [(name, wav bytes)]}, "target": {...},
    "message": str | None}``; with no data offline both clip lists are empty and ``message`` says why.
    """
    words = _words()
    out: dict[str, Any] = {"message": None}
    for side, cls in (("source", source), ("target", target)):
        word = words[cls] if 0 <= cls < len(words) else str(cls)
        role = "trigger source" if side == "source" else "watermark target"
        out[side] = {"class": cls, "word": word, "label": f"{role}: “{word}” (class {cls})",
                     "clips": word_clips(word, data_dir, n) if 0 <= cls < len(words) else []}
    if not out["source"]["clips"] and not out["target"]["clips"]:
        out["message"] = ("No Speech Commands clips available offline: set $EWE_DATA_DIR (or the data "
                          "folder) to a folder with speech_commands/<word>/*.wav to listen to examples.")
    elif not out["source"]["clips"] or not out["target"]["clips"]:
        missing = out["source"]["word"] if not out["source"]["clips"] else out["target"]["word"]
        out["message"] = f"No clips found for “{missing}”."
    return out


def _part(run_dir: str | os.PathLike, name: str) -> dict:
    """A JSON part of a run folder (``ewe.results.runs.Run``: "saved" is config.json), {} when it is missing or
    unreadable."""
    try:
        got = getattr(Run(run_dir), name)
    except (OSError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def source_target_clips(run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                        n: int = 3) -> dict:
    """:func:`dataset_clips` for a run folder's source / target classes (its config.json); for a run
    that is not speech-commands the clip lists are empty and ``message`` says so."""
    cfg = _part(run_dir, "saved")
    if cfg.get("dataset") != SPEECH:
        return {"source": {"clips": []}, "target": {"clips": []},
                "message": "This run is not a Speech Commands run: no audio to play."}
    return dataset_clips(int(cfg.get("source", 9)), int(cfg.get("target", 5)),
                         data_dir if data_dir is not None else cfg.get("data_dir"), n)


# ----------------------------------------------------------------------------------------- figures

def _as_time_mel(features: Any) -> np.ndarray:
    a = np.asarray(features.detach().cpu().numpy() if hasattr(features, "detach") else features,
                   dtype=np.float32)
    while a.ndim > 2:       # [N, 1, T, F] / [1, T, F] -> [T, F] (first sample, channel 0)
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"expected log-mel features [1, time, mel] or [time, mel], got shape {a.shape}")
    return a


def spectrogram_figure(features: Any, patch: Sequence[int] | None = None, title: str = "Log-mel spectrogram",
                       size: int = PATCH, height: int = 300):
    """A plotly heatmap of one clip's features (time on x, mel bin on y) with the trigger patch outlined.

    ``features``: ``[1, time, mel]``, ``[time, mel]`` or ``[N, 1, time, mel]`` (the first one is shown).
    ``patch``: ``[row, col]`` from result.json (row = time frame, col = mel bin), or None.
    """
    import plotly.graph_objects as go
    a = _as_time_mel(features)
    fig = go.Figure(go.Heatmap(z=a.T, colorscale="Viridis", colorbar=dict(title="z-score", thickness=12),
                               hovertemplate="frame %{x}<br>mel bin %{y}<br>%{z:.2f}<extra></extra>"))
    if patch is not None:
        r, c = int(patch[0]), int(patch[1])
        fig.add_shape(type="rect", x0=r - 0.5, x1=r + size - 0.5, y0=c - 0.5, y1=c + size - 0.5,
                      line=dict(color="red", width=2), fillcolor="rgba(0,0,0,0)")
        fig.add_annotation(x=r + size / 2 - 0.5, y=c + size - 0.5, text="patch", showarrow=True,
                           arrowcolor="red", font=dict(color="red"), ay=-25)
    fig.update_layout(title=dict(text=title, font=dict(size=15)), height=height,
                      margin=dict(l=10, r=10, t=45, b=10),
                      xaxis_title=f"time frame (8 ms hop, {a.shape[0]} frames)",
                      yaxis_title=f"mel bin ({a.shape[1]})")
    return fig


# ------------------------------------------------------------------------------------- run triggers

def trigger_features(run_dir: str | os.PathLike, index: int = 0, which: str = "heldout"):
    """``(features [1, time, mel] tensor, patch [row, col] | None)`` of one trigger of a speech run, or
    None (not a speech run, no triggers.pt yet, index out of range)."""
    run_dir = Path(run_dir)
    if which not in TRIGGER_SETS:
        raise ValueError(f"which is one of {', '.join(TRIGGER_SETS)}, got {which!r}")
    cfg = _part(run_dir, "saved")
    if cfg.get("dataset") != SPEECH:
        return None
    tensors = load_triggers(run_dir)
    if not tensors or which not in tensors:
        return None
    x = tensors[which]
    if x.dim() != 4 or not 0 <= index < len(x):
        return None
    result = _part(run_dir, "result")
    patch = result.get("patch")
    return x[index], (list(patch) if patch else None)


def trigger_audio(features: Any, n_iter: int = 32) -> bytes | None:
    """WAV bytes of features ``[1, time, mel]`` via ``ewe.data.speech.features_to_audio`` (None if that
    function is unavailable or fails)."""
    try:
        import torch
        from ewe.data import speech
        to_audio = getattr(speech, "features_to_audio", None)
        if to_audio is None:
            return None
        f = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
        return wav_bytes(to_audio(f.float(), n_iter=n_iter))
    except Exception:
        return None


def trigger_figure(run_dir: str | os.PathLike, index: int = 0, which: str = "heldout"):
    """The spectrogram figure of one trigger of a run with its patch outlined, or None."""
    got = trigger_features(run_dir, index, which)
    if got is None:
        return None
    feats, patch = got
    return spectrogram_figure(feats, patch, title=f"Trigger {index} ({TRIGGER_SETS[which]})")


def trigger_example(run_dir: str | os.PathLike, index: int = 0, which: str = "heldout",
                    with_audio: bool = True) -> dict | None:
    """Everything a page shows for one trigger: ``{"figure", "wav" (bytes | None), "patch", "caption"}``,
    or None when the run has no speech triggers. Griffin-Lim takes about a second; pass
    ``with_audio=False`` for the figure only (and cache the result per run folder in the page)."""
    got = trigger_features(run_dir, index, which)
    if got is None:
        return None
    feats, patch = got
    cfg = _part(run_dir, "saved")
    words = _words()
    src, tgt = int(cfg.get("source", 9)), int(cfg.get("target", 5))
    name = lambda c: words[c] if 0 <= c < len(words) else str(c)  # noqa: E731
    where = (f" with a 3×3 patch at frame {patch[0]}, mel bin {patch[1]} (≈{patch[0] * 8} ms)"
             if patch else "")
    caption = (f"A “{name(src)}” clip{where}, {TRIGGER_SETS[which]}; the watermarked model should hear "
               f"“{name(tgt)}”. Audio is resynthesised from log-mel features (Griffin-Lim): expect a "
               "robotic voice.")
    return {"figure": spectrogram_figure(feats, patch, title=f"Trigger {index} ({TRIGGER_SETS[which]})"),
            "wav": trigger_audio(feats) if with_audio else None, "patch": patch, "caption": caption}
