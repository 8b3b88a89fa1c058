"""Watermarking schemes: the three of the paper by name, and a new one plugging into the pipeline without a
change to it (a tiny real digits run)."""
import pytest

from ewe.config import RunConfig, tiny
from ewe.train import entangled_step, plain_step
from ewe.watermarks import schemes
from ewe.watermarks.schemes import SCHEMES, Scheme


def test_the_papers_three_schemes():
    # the training order; MEA-Defender, DAWN, MBW and dataset inference are registered but used only when a run
    # lists them
    assert list(SCHEMES) == ["defended", "plain_watermark", "ablation_no_snnl", "mea_defender", "dawn_api", "mbw",
                            "dataset_inference"]
    ewe, classic, ablation, mea, dawn, mbw, di = SCHEMES.values()
    assert di.own_test and not di.serves_api and not any(s.own_test for s in (ewe, classic, ablation, mea, dawn, mbw))
    assert dawn.serves_api and not any(s.serves_api for s in (ewe, classic, ablation, mea, mbw))
    assert (ewe.stolen, ewe.trigger_set, ewe.baseline) == ("extracted", "optimised", False)
    assert (classic.stolen, classic.trigger_set) == ("plain_extracted", "classic")
    assert (ablation.stolen, ablation.trigger_set) == ("ablation_extracted", "optimised")
    on, off = RunConfig(snnl=True), RunConfig(snnl=False)
    assert ewe.step(on) is entangled_step and ewe.step(off) is plain_step       # EWE follows the run's snnl
    assert classic.step(on) is plain_step and ablation.step(on) is plain_step
    assert [s.name for s in schemes.schemes_for(RunConfig(train_baselines=False))] == ["defended"]
    assert [s.name for s in schemes.schemes_for(RunConfig())] == ["defended", "plain_watermark", "ablation_no_snnl"]
    assert schemes.TRIGGER_SET["plain_extracted"] == "classic" and schemes.TRIGGER_SET["clean"] == "optimised"


def test_names_are_checked():
    with pytest.raises(ValueError, match="already taken"):
        schemes.register(Scheme("mine", "extracted", "optimised", "x", snnl=True))
    with pytest.raises(ValueError, match="trigger_set"):
        Scheme("mine", "mine_stolen", "raw", "x", snnl=True)


@pytest.fixture
def classic_with_snnl():
    """A fourth scheme for one test: the raw (classic) triggers trained with the SNNL term."""
    scheme = schemes.register(Scheme("classic_snnl", "classic_snnl_extracted", "classic", "classic + SNNL",
                                     snnl=True))
    yield scheme
    del schemes.SCHEMES[scheme.name], schemes.VICTIMS[scheme.name]
    del schemes.TRIGGER_SET[scheme.name], schemes.TRIGGER_SET[scheme.stolen]


def test_a_new_scheme_is_trained_stolen_and_judged_by_the_unchanged_pipeline(classic_with_snnl, tmp_path):
    from ewe.experiments import pipeline
    events = []
    result = pipeline.run(tiny("digits", innocents=0, threads=1), tmp_path / "run", [events.append])
    assert result["status"] == "finished"
    assert {"classic_snnl", "classic_snnl_extracted"} <= set(result["models"])
    assert result["verification"]["classic_snnl_extracted"]["trigger_set"] == "classic"
    assert result["diagnostics"]["classic_snnl"]["trigger_set"] == "classic"
    assert (tmp_path / "run" / "models" / "classic_snnl_extracted.pt").exists()
    snnl_epochs = [e for e in events if e["kind"] == "epoch" and e["stage"] == "classic_snnl"]
    assert snnl_epochs and all("snnl" in e["metrics"] for e in snnl_epochs)       # it ran the entangled step


def test_the_registry_holds_every_word_for_its_schemes_and_models(classic_with_snnl):
    """One vocabulary (issue 35): each scheme carries its label, short column word, victim's and copy's words;
    the clean models' words sit beside them; a scheme registered later is named at once, without a table."""
    words = {s.name: (s.label, s.short, s.victim_label, s.copy_label) for s in schemes.SCHEMES.values()}
    assert words["plain_watermark"] == ("classic watermark", "classic", "classic watermark",
                                        "stolen from classic watermark")
    assert words["defended"] == ("EWE (defended)", "EWE", "defended (EWE)", "stolen from defended")
    assert words["ablation_no_snnl"][:2] == ("no-SNNL ablation", "ablation")
    assert not any("plain" in w for ws in words.values() for w in ws)        # "classic", never "plain"
    assert schemes.model_label("plain_extracted") == "stolen from classic watermark"
    assert schemes.model_label("independent_clean") == "independent clean"  # the clean models: BASE_LABELS
    assert schemes.model_label("nobody") == "nobody"
    # the fixture's scheme: its words by default, from its label
    assert schemes.MODEL_LABELS["classic_snnl"] == "classic + SNNL"
    assert schemes.MODEL_LABELS["classic_snnl_extracted"] == "stolen from classic + SNNL"
    assert schemes.owner("classic_snnl_extracted") is classic_with_snnl and schemes.owner("clean") is None
    assert schemes.scheme_label("classic_snnl") == "classic + SNNL"
    assert schemes.scheme_label("retired", "its stored label") == "its stored label"


def test_a_scheme_removed_from_the_registry_leaves_no_words_behind():
    scheme = schemes.register(Scheme("tmp_scheme", "tmp_scheme_extracted", "optimised", "temporary", snnl=False))
    assert "tmp_scheme_extracted" in schemes.MODEL_LABELS
    del schemes.SCHEMES[scheme.name], schemes.VICTIMS[scheme.name]
    del schemes.TRIGGER_SET[scheme.name], schemes.TRIGGER_SET[scheme.stolen]
    assert "tmp_scheme_extracted" not in schemes.MODEL_LABELS        # the words are read live, no copy kept
