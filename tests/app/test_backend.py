"""The app's bridge to the library: preset defaults, config errors, run folders."""
from __future__ import annotations

import pytest

from ewe.config import DATASETS, PRESETS, ConfigError
from ui import backend


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("name", PRESETS + ("tiny",))
def test_fast_preset_defaults_match_the_validated_preset(dataset, name):
    assert backend._fast_defaults(dataset, name) == pytest.approx(backend._validated_defaults(dataset, name))


def test_make_config_says_what_to_change():
    with pytest.raises(ConfigError, match="ratio"):
        backend.make_config("digits", "quick", ratio=0.0)
    with pytest.raises(ConfigError, match="temperature must be positive"):
        backend.make_config("digits", "quick", temperature=[-1.0] * 3)


def test_unzip_refuses_what_is_not_a_run_folder(tmp_path):
    with pytest.raises(backend.UploadError):
        backend.unzip_run(b"plain text", tmp_path / "x")



def test_sweep_points_report_as_parts_of_one_job(app_env, tmp_path):
    """The sweep passes each grid point's events through ewe.callbacks.part_of (tested there): they carry
    the point's index, and the job ends at 100 % with every point's summary."""
    cfg = backend.make_config("digits", "tiny")
    job = app_env["registry"].submit("me", "sweep", backend.sweep_job(
        [({"tau": 1.0, "ratio": 1.0}, cfg), ({"tau": 2.0, "ratio": 1.0}, cfg)], tmp_path / "grid"))
    assert job.status == "finished" and len(job.data["points"]) == 2
    assert {e.get("part") for e in job.events if e.get("kind") == "epoch"} == {0, 1}
    assert job.progress["fraction"] == 1.0
