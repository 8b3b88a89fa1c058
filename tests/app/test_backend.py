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
