"""The paper CNN: channels-last for speed, same function as the NCHW layout, old checkpoints still load."""
import torch

from ewe.models import build_model, load_state


def test_convnet_is_channels_last_and_computes_what_the_nchw_layout_computes():
    torch.manual_seed(0)
    model = build_model("conv2", (1, 28, 28))
    assert model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(8, 1, 28, 28)
    logits, hidden = model.features(x)
    assert hidden[0].is_contiguous(memory_format=torch.channels_last)   # the activations follow
    nchw = build_model("conv2", (1, 28, 28)).to(memory_format=torch.contiguous_format)
    nchw.load_state_dict(model.state_dict())
    ref_logits, ref_hidden = nchw.features(x)
    assert torch.allclose(logits, ref_logits, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(hidden, ref_hidden))


def test_a_checkpoint_saved_in_nchw_layout_loads(tmp_path):
    torch.manual_seed(0)
    old = build_model("conv2", (1, 28, 28)).to(memory_format=torch.contiguous_format)
    torch.save(old.state_dict(), tmp_path / "old.pt")
    new = load_state(build_model("conv2", (1, 28, 28)), tmp_path / "old.pt")
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(new(x), old(x), atol=1e-5)
    assert new.conv2.weight.is_contiguous(memory_format=torch.channels_last)
