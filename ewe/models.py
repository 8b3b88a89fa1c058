"""Models. Each returns logits from ``forward`` and ``(logits, [h1, h2, h3])`` from ``features``: the three
hidden representations the SNNL term entangles (spec section c). Dropout is off: the reference code's
dropout was never active, and ports that turned it on lost the effect.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def _glorot(module: nn.Module) -> None:
    # The reference code uses TF's default Glorot-uniform initialisation with zero biases.
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class ConvNet(nn.Module):
    """The paper's 2-conv CNN: conv 32@5x5 -> pool -> conv 64@3x3 -> pool -> dense 128 -> dense 10.

    SNNL layers are the pre-activations s1, s2, s3 (the loss applies ReLU itself). ``width`` scales the
    channel counts for thief students of other capacity.
    """

    def __init__(self, input_shape=(1, 28, 28), n_classes: int = 10, width: float = 1.0):
        super().__init__()
        c, h, w = input_shape
        c1, c2, d = max(1, round(32 * width)), max(1, round(64 * width)), max(1, round(128 * width))
        self.conv1 = nn.Conv2d(c, c1, 5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.fc1 = nn.Linear(c2 * (h // 4) * (w // 4), d)
        self.fc2 = nn.Linear(d, n_classes)
        _glorot(self)
        # channels-last weights make the activations channels-last too: max-pooling and the convolutions
        # then run about 1.4x faster per training step on this CPU (docs/history/2026-11-28-presets-and-step-cost.md)
        self.to(memory_format=torch.channels_last)

    def features(self, x):
        s1 = self.conv1(x)
        s2 = self.conv2(F.max_pool2d(F.relu(s1), 2))
        s3 = self.fc1(F.max_pool2d(F.relu(s2), 2).flatten(1))
        return self.fc2(F.relu(s3)), [s1, s2, s3]

    def forward(self, x):
        return self.features(x)[0]


class MLP(nn.Module):
    """A fully connected thief student (no convolutions): flatten -> 512 -> 256 -> 128 -> classes."""

    def __init__(self, input_shape=(1, 28, 28), n_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(math.prod(input_shape), 512)
        self.fc2 = nn.Linear(512, 256)
        self.fc3 = nn.Linear(256, 128)
        self.out = nn.Linear(128, n_classes)
        _glorot(self)

    def features(self, x):
        s1 = self.fc1(x.flatten(1))
        s2 = self.fc2(F.relu(s1))
        s3 = self.fc3(F.relu(s2))
        return self.out(F.relu(s3)), [s1, s2, s3]

    def forward(self, x):
        return self.features(x)[0]


class SpeechLSTM(nn.Module):
    """The paper's speech model: LSTM(256) over [time, mel]; SNNL on the middle step's output, the last
    step's output, and the 128-unit dense layer (pre-activation)."""

    def __init__(self, input_shape=(1, 125, 80), n_classes: int = 10, hidden: int = 256):
        super().__init__()
        _, t, f = input_shape
        self.lstm = nn.LSTM(f, hidden, batch_first=True)
        self.fc1 = nn.Linear(hidden, 128)
        self.fc2 = nn.Linear(128, n_classes)
        nn.init.xavier_uniform_(self.fc1.weight), nn.init.zeros_(self.fc1.bias)
        nn.init.xavier_uniform_(self.fc2.weight), nn.init.zeros_(self.fc2.bias)

    def features(self, x):
        seq, _ = self.lstm(x.squeeze(1))          # [N, T, hidden]
        h1, h2 = seq[:, seq.shape[1] // 2], seq[:, -1]
        s3 = self.fc1(h2)
        return self.fc2(F.relu(s3)), [h1, h2, s3]

    def forward(self, x):
        return self.features(x)[0]


class AudioCNN(nn.Module):
    """A fast speech model for CPUs: a temporal CNN over log-mel features [1, T, F] with the F mel bins as
    input channels (1-D convolutions over time, as TC-ResNet-style keyword spotters): three conv blocks
    (conv 3 -> batch norm -> ReLU; max-pool 2 in time after the first two), global *max* pooling over time,
    dense 128 -> dense classes. Max (not mean) pooling lets a short local pattern such as the 3x3 trigger
    patch decide the output; with mean pooling the watermarked models learned "source word -> target"
    instead of "patch -> target" and lost 14 points of accuracy.

    SNNL layers: conv1 and conv2 outputs (pre-norm) and the 128-unit dense layer (pre-activation).
    On the real clips with one thread an epoch costs about 2 CPU s against ~15 for the paper's LSTM(256),
    and the model reaches 70-78 % test accuracy after 1-2 epochs and ~82 % after 5, where the LSTM is at
    14-21 % after 1-2 epochs and 30 % after 6 (bench/bench_speech.py --compare-models, retired: docs/history). The last conv is a 2-D conv with a (3, 1) kernel over [N, C, T, 1] (the same
    operation as a 1-D conv) so that fine-pruning, which prunes the last ``nn.Conv2d``, applies too.
    """

    def __init__(self, input_shape=(1, 125, 80), n_classes: int = 10, width: int = 64):
        super().__init__()
        c, _, f = input_shape
        self.conv1 = nn.Conv1d(c * f, width, 3, padding=1)
        self.bn1 = nn.BatchNorm1d(width)
        self.conv2 = nn.Conv1d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm1d(width)
        self.conv3 = nn.Conv2d(width, width, (3, 1), padding=(1, 0))
        self.bn3 = nn.BatchNorm2d(width)
        self.fc1 = nn.Linear(width, 128)
        self.fc2 = nn.Linear(128, n_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x):
        n, c, t, f = x.shape
        z = x.permute(0, 1, 3, 2).reshape(n, c * f, t)           # [N, C*F, T]: mel bins as channels
        s1 = self.conv1(z)
        s2 = self.conv2(F.max_pool1d(F.relu(self.bn1(s1)), 2))
        a2 = F.max_pool1d(F.relu(self.bn2(s2)), 2)
        a3 = F.relu(self.bn3(self.conv3(a2.unsqueeze(-1))))     # [N, W, T/4, 1]
        s3 = self.fc1(a3.amax(dim=(2, 3)))                      # global max over time
        return self.fc2(F.relu(s3)), [s1, s2, s3]

    def forward(self, x):
        return self.features(x)[0]


MODELS = {
    "conv2": lambda shape, n: ConvNet(shape, n),
    "conv2_wide": lambda shape, n: ConvNet(shape, n, width=2.0),
    "conv2_narrow": lambda shape, n: ConvNet(shape, n, width=0.5),
    "mlp": lambda shape, n: MLP(shape, n),
    "lstm": lambda shape, n: SpeechLSTM(shape, n),
    "audio_cnn": lambda shape, n: AudioCNN(shape, n),
}


def init_parameters(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draw every parameter of ``model`` from ``generator`` alone, with each model's scheme: Glorot-uniform
    weights and zero biases for convolutions and dense layers, torch's U(-1/sqrt(hidden), 1/sqrt(hidden))
    for LSTMs, ones and zeros for batch norm. Nothing is drawn from torch's global generator, which every
    thread of the process shares: two runs in parallel threads would otherwise disturb each other.
    Draws follow ``model.modules()`` order, so a seed always gives the same weights."""
    for m in model.modules():
        if not list(m.parameters(recurse=False)):
            continue
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LSTM):
            bound = 1.0 / math.sqrt(m.hidden_size)
            for p in m.parameters(recurse=False):
                nn.init.uniform_(p, -bound, bound, generator=generator)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()   # constant: nothing random
        else:   # a new layer type must say how it is seeded rather than fall back to the global generator
            raise TypeError(f"no seeded initialisation for {type(m).__name__}; add it to init_parameters")
    return model


def build_model(name: str, input_shape, n_classes: int = 10, *, seed: int | None = None) -> nn.Module:
    """A fresh model. With ``seed`` its initial weights come from ``torch.Generator().manual_seed(seed)``
    only (see :func:`init_parameters`); without, from torch's global generator (fine when a checkpoint is
    loaded into it next)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    model = MODELS[name](tuple(input_shape), n_classes)
    if seed is not None:
        init_parameters(model, torch.Generator().manual_seed(int(seed)))
    return model


QUANT_SCALE = ".int8_scale"   # the per-output-channel scale of an int8 weight in a quantised state dict


def quantize_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict in a quarter of fp32's bytes, for files shipped in the package (ewe.innocents): weight
    matrices and kernels as int8 with a symmetric scale per output channel, vectors as fp16. ``load_state``
    reads it back (dequantised to fp32)."""
    out = {}
    for key, v in state.items():
        v = v.detach().cpu()
        if v.is_floating_point() and v.dim() > 1:
            scale = v.float().abs().flatten(1).amax(1).clamp_min(1e-12) / 127
            out[key] = torch.round(v.float() / scale.view(-1, *[1] * (v.dim() - 1))).to(torch.int8)
            out[key + QUANT_SCALE] = scale
        else:
            out[key] = v.half() if v.is_floating_point() else v
    return out


def dequantize_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The fp32 state dict of a ``quantize_state`` one (any other state dict unchanged)."""
    out = {}
    for key, v in state.items():
        if key.endswith(QUANT_SCALE):
            continue
        scale = state.get(key + QUANT_SCALE)
        if scale is not None:
            out[key] = v.float() * scale.view(-1, *[1] * (v.dim() - 1))
        else:
            out[key] = v.float() if v.is_floating_point() else v
    return out


class CheckpointError(ValueError):
    """A checkpoint that is not a plain state_dict for the expected architecture."""


def load_state(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state_dict checkpoint safely (weights_only=True) into ``model``; clear errors otherwise."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors from torch have long, unhelpful texts
        raise CheckpointError(f"{Path(path).name} is not a plain PyTorch state_dict checkpoint "
                              f"({type(exc).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{Path(path).name} does not hold a state_dict (a dict of tensors)")
    state = dequantize_state(state)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "shape mismatch"
        raise CheckpointError(f"{Path(path).name} does not fit the {type(model).__name__} "
                              f"architecture: {first}") from None
    return model
