"""Training steps: a chunked plain step is the whole-batch step up to rounding; batch-norm models and
small batches are never chunked."""
import copy

import pytest
import torch

from ewe.models import build_model
from ewe.train import CHUNK, chunk_size, make_optimizer, plain_step


def _step_both(model, x, y, chunk, soft=False):
    """The same Adam step from the same weights, whole batch vs chunked: (loss, loss, weights, weights)."""
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    la = plain_step(a, make_optimizer(a), x, y, len(x))
    lb = plain_step(b, make_optimizer(b), x, y, chunk)
    return la, lb, a.state_dict(), b.state_dict()


@pytest.mark.parametrize("soft", [False, True])
def test_chunked_step_matches_the_whole_batch_step(soft):
    torch.manual_seed(0)
    model = build_model("conv2", (1, 28, 28))
    x = torch.rand(40, 1, 28, 28)
    y = torch.softmax(torch.randn(40, 10), 1) if soft else torch.randint(0, 10, (40,))
    la, lb, wa, wb = _step_both(model, x, y, chunk=16)   # 16 + 16 + 8: an uneven last chunk
    assert la == pytest.approx(lb, rel=1e-5)
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k
    # and the step did move the weights (a no-op would also "match")
    assert not torch.equal(wa["conv1.weight"], model.state_dict()["conv1.weight"])


def test_chunk_size_only_splits_large_batches_of_models_without_batch_norm():
    conv = build_model("conv2", (1, 28, 28))
    assert chunk_size(conv, 256) == CHUNK and chunk_size(conv, 64) == 64
    audio = build_model("audio_cnn", (1, 125, 80))     # batch norm: statistics of the whole batch
    assert chunk_size(audio, 256) == 256
