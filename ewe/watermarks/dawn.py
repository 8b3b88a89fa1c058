"""DAWN (Szyller et al., "DAWN: Dynamic Adversarial Watermarking of Neural Networks", ACM MM 2021) as a
scheme of this lab: a watermark put in by the prediction API, not trained into the model.

The owner serves an unwatermarked model (here: the run's clean model) behind an API that, for a keyed
pseudo-random fraction ``rate`` of inputs, answers a wrong label. Which inputs are flipped, and to which
label, comes from a keyed hash (HMAC-SHA256) of the input's bytes, so the same input always gets the same
answer however often, in whatever batch, it is sent: a thief cannot average the flips away by asking again,
and honest users see a consistent service. The owner keeps a register of every flipped (input, answer) pair
of each client; a suspect model is tested on its client's register: a copy trained on the API's answers
has learnt some of the wrong labels, an innocent model answers them only by chance (it would have to make
the very error the hash chose).

What is implemented, read from the paper (written anew):
- the flip decision: u = first 8 bytes of HMAC(key, input) / 2**64, flipped when u < rate;
- the wrong label: the model's answer shifted by 1 + (the next 7 bytes mod (K - 1)) classes, so it is never the
  model's own answer and is spread evenly over the other classes;
- soft answers (a thief that asks for probabilities): for a flipped input the probabilities of the model's
  class and of the wrong label swap places, so the answer's top class is the wrong label;
- the register per client (one ``DawnApi`` per thief here), without repeats.
Left out: the paper's mapping of similar inputs to the same decision (an LSH-like feature hash), which
guards against a thief that perturbs its queries slightly; the lab's thieves resend exact inputs.

The key. A real owner draws a random secret (``secrets.token_bytes(32)``); the lab derives it from the run's
dataset and seed (``lab_key``) so that a run folder can be stolen from again and give the same register.
The cost to honest users is the flip rate: that share of their answers is wrong (result.json
"models"."dawn_api": accuracy with the flips, the model's own accuracy, and the flipped share of test
answers).
"""
from __future__ import annotations

import hashlib
import hmac

import torch

from ..attacks.extraction import QueryCounter
from ..train import predict, predict_proba

DEFAULT_RATE = 0.005     # the paper's range is below 0.5 % of queries


def lab_key(dataset: str, seed: int) -> bytes:
    """The run's DAWN key (see the module docstring: a real owner uses a random secret)."""
    return hashlib.sha256(f"ewe-lab-dawn:{dataset}:{seed}".encode()).digest()


def key_id(key: bytes) -> str:
    """A short public name of a key (not the key): which register belongs to which API."""
    return hashlib.sha256(b"id:" + key).hexdigest()[:12]


def keyed_draws(x: torch.Tensor, key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """Per input: a uniform number in [0, 1) and an integer, both from HMAC-SHA256(key, the input's bytes):
    the same input gives the same pair whatever batch it comes in."""
    flat = x.detach().to("cpu", torch.float32).contiguous().reshape(len(x), -1).numpy()
    u, offset = [], []
    for row in flat:
        d = hmac.new(key, row.tobytes(), hashlib.sha256).digest()
        u.append(int.from_bytes(d[:8], "big") / 2.0 ** 64)
        offset.append(int.from_bytes(d[8:15], "big"))   # 7 bytes: fits an int64
    return torch.tensor(u, dtype=torch.float64), torch.tensor(offset, dtype=torch.int64)


def flips(x: torch.Tensor, answers: torch.Tensor, key: bytes, rate: float, n_classes: int):
    """(which inputs are flipped, the wrong label of every input): the wrong label is never ``answers``."""
    u, offset = keyed_draws(x, key)
    wrong = (answers.cpu() + 1 + offset % (n_classes - 1)) % n_classes
    return (u < rate).to(answers.device), wrong.to(answers.device)


class DawnApi(QueryCounter):
    """The model behind a DAWN API, for one client: answers like ``QueryCounter`` with the keyed flips, and
    keeps the client's register of flipped (input, answer) pairs."""

    def __init__(self, model: torch.nn.Module, key: bytes, rate: float = DEFAULT_RATE, record: bool = True):
        super().__init__(model)
        if not 0 < rate <= 0.5:
            raise ValueError(f"the DAWN flip rate is in (0, 0.5], got {rate}")
        self.key, self.rate, self.record = key, rate, record
        self._register: dict[bytes, tuple[torch.Tensor, int]] = {}
        self.flipped = 0

    @property
    def model(self) -> torch.nn.Module:
        return self._model

    def _flip(self, x: torch.Tensor, proba: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        answers = proba.argmax(1)
        mask, wrong = flips(x, answers, self.key, self.rate, proba.shape[1])
        self.flipped += int(mask.sum())
        if self.record:
            for xi, yi in zip(x[mask], wrong[mask]):
                self._register.setdefault(xi.cpu().numpy().tobytes(), (xi.detach().cpu(), int(yi)))
        return mask, wrong

    def hard_labels(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        proba = predict_proba(self._model, x)
        mask, wrong = self._flip(x, proba)
        return torch.where(mask, wrong, proba.argmax(1))

    def soft_labels(self, x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        self.queries += len(x)
        proba = predict_proba(self._model, x, temperature).clone()
        mask, wrong = self._flip(x, proba)
        rows = mask.nonzero().flatten()
        top, bad = proba[rows].argmax(1), wrong[rows]
        p_top, p_bad = proba[rows, top].clone(), proba[rows, bad].clone()
        proba[rows, top], proba[rows, bad] = p_bad, p_top
        return proba

    def register(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The client's flipped inputs (in the order first answered) and the labels the API gave them."""
        if not self._register:
            return torch.empty(0), torch.empty(0, dtype=torch.int64)
        xs, ys = zip(*self._register.values())
        return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


def api_figures(model: torch.nn.Module, key: bytes, rate: float, x_test: torch.Tensor,
                y_test: torch.Tensor) -> dict:
    """What the API costs an honest user on the test set: its accuracy with the flips, the model's own, and
    the share of answers flipped."""
    api = DawnApi(model, key, rate, record=False)
    answers = api.hard_labels(x_test)
    own = predict(model, x_test)
    return {"accuracy": (answers == y_test).float().mean().item(),
            "model_accuracy": (own == y_test).float().mean().item(),
            "flip_rate": (answers != own).float().mean().item(), "rate": rate, "key_id": key_id(key)}
