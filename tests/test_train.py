"""The watermark phase's clean-data schedule (spec A3 step 5, and the reference code's variant)."""
import pytest
import torch

from ewe.callbacks import Reporter
from ewe.config import RunConfig
from ewe.models import build_model
from ewe.train import train_watermark, watermark_schedule


def _phase(schedule: str):
    """A tiny watermark phase where every clean sample past the reference prefix is NaN: training that
    touches one of them ends with NaN weights."""
    torch.manual_seed(0)
    cfg = RunConfig(batch_size=8, w_epochs=1, ratio=1.0, kappa=[0.0] * 3, snnl=False, clean_schedule=schedule)
    n, n_trig = 64, 8                               # 8 clean batches an epoch, 2 watermark batches a pass
    x = torch.rand(n, 1, 28, 28)
    y = torch.randint(0, 10, (n,))
    passes, w_num_batch, clean_before = watermark_schedule(n, n_trig, cfg.batch_size, cfg.w_epochs, cfg.ratio)
    prefix = sum(clean_before) * cfg.batch_size       # what the reference code's phase revisits each pass
    assert passes > 1 and prefix < n
    x[prefix:] = float("nan")
    model = build_model("conv2", (1, 28, 28), seed=0)
    triggers = torch.rand(n_trig, 1, 28, 28)
    x_target = torch.rand(8, 1, 28, 28)
    train_watermark(model, x, y, triggers, x_target, 7, cfg=cfg, reporter=Reporter(), stage="s", name="s",
                    use_snnl=False, seed=0)
    return all(torch.isfinite(p).all() for p in model.parameters())


def test_reference_schedule_revisits_only_the_first_clean_batches():
    assert _phase("reference")


def test_shuffled_schedule_covers_all_the_data():
    assert not _phase("shuffled")


def test_unknown_schedule_is_refused():
    from ewe.config import ConfigError, from_dict
    with pytest.raises(ConfigError, match="clean_schedule"):
        from_dict({"clean_schedule": "sorted"})
