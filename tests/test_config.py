"""Presets load and validate; bad parameters get specific messages."""
import pytest

from ewe.config import DATASETS, PRESETS, ConfigError, from_dict, preset


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_validates(dataset, name):
    cfg = preset(dataset, name)
    assert cfg.dataset == dataset and cfg.preset == name
    assert len(cfg.kappa) == 3 and len(cfg.temperature) == 3


def test_reference_preset_converts_reference_parameters():
    cfg = preset("mnist", "reference")
    assert cfg.temperature == [100.0] * 3               # reference T = 1 -> tau = 100
    assert cfg.kappa == pytest.approx([32 / 512] * 3)   # summed CE -> mean CE
    assert cfg.batch_size == 512 and cfg.epochs == 10 and cfg.source == 1 and cfg.target == 7
    speech = preset("speech-commands", "reference")
    assert speech.temperature == pytest.approx([100 / 30] * 3) and speech.trigger == "in"


def test_aliases_and_scalars():
    cfg = from_dict({"reference_T": 100, "reference_kappa": 64, "batch_size": 128})
    assert cfg.temperature == [1.0] * 3 and cfg.kappa == [0.5] * 3
    assert preset("mnist", "quick").replace(kappa=2.0).kappa == [2.0] * 3


@pytest.mark.parametrize("change,words", [
    (dict(ratio=0), "ratio"), (dict(temperature=[0.0]), "temperature must be positive"),
    (dict(trigger="in", source=7, target=7), "source and target"), (dict(batch_size=3), "even"),
    (dict(target=12), "target class"), (dict(metric="manhattan"), "metric"),
    (dict(kappa=[1, 2]), "three"), (dict(model="resnet99"), "unknown model"),
    (dict(bogus=1), "unknown setting"), (dict(thief_seed=-1), "thief_seed"),
])
def test_bad_values_say_what_to_change(change, words):
    with pytest.raises(ConfigError, match=words):
        preset("mnist", "quick", **change)


def test_unknown_dataset_and_preset():
    with pytest.raises(ConfigError, match="unknown dataset"):
        preset("cifar", "quick")
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("mnist", "huge")


def test_every_bad_setting_is_named_at_once_in_one_line():
    with pytest.raises(ConfigError) as err:
        preset("mnist", "quick", temperature=[-1.0], ratio=0, target=12)
    message = str(err.value)
    assert message.startswith("3 settings need a change: ") and "\n" not in message
    assert "temperature must be positive" in message and "ratio" in message and "target class" in message
    words = set()
    for tau in (0.0, -1.0):                           # tau 0 and tau -1: the same words
        with pytest.raises(ConfigError) as one:
            preset("mnist", "quick", temperature=[tau])
        words.add(str(one.value).split(" (got")[0])
    assert words == {"temperature must be positive"}


def test_saved_config_reads_a_run_folders_config_json():
    """``saved_config``: the one reader of config.json's layout (its fields plus derived notes). A folder written
    before the precision setting existed reads as fp32 (what it ran with), whatever a preset now says."""
    from ewe.config import preset, saved_config
    cfg = preset("digits", "quick")
    saved = {**cfg.to_dict(), "effective": {"tau": cfg.temperature}}
    assert saved_config(saved) == cfg
    assert saved_config(saved, extract_labels="hard", seed=3) == cfg.replace(extract_labels="hard", seed=3)
    old = {k: v for k, v in saved.items() if k != "precision"}
    assert cfg.precision == "auto" and saved_config(old).precision == "fp32"


def test_a_callers_limits_are_checked_with_the_rest():
    """A shared server's upper bounds (the app's) are validate's too: named with every other problem, a
    list field by its largest value; without limits the same values pass."""
    big = dict(epochs=500, temperature=[1.0, 2.0, 20_000.0])
    assert preset("digits", "quick", **big).epochs == 500
    with pytest.raises(ConfigError) as err:
        preset("digits", "quick", limits={"epochs": 200, "temperature": 10_000.0}, ratio=0, **big)
    message = str(err.value)
    assert message.startswith("3 settings need a change: ")
    assert "epochs is at most 200 here, got 500" in message and "temperature is at most 10000 here, got 20000" in message
