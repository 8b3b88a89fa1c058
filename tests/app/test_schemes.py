"""Issue 18 in the app: the Train page picks the watermarking schemes, the Attack and Runs pages show every
copy a run has (MEA-Defender's too), the Verify page judges a suspect on every key the run holds."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.app.conftest import TINY
from tests.app.helpers import click, no_exception, page, plotly_charts, texts

SID = "schemes-session"


@pytest.fixture(scope="session")
def mea_run(tmp_path_factory) -> Path:
    """One real tiny run that trains EWE and MEA-Defender (so it holds the "composite" key), stolen and judged."""
    from ewe.config import preset
    from ewe.experiments import pipeline
    out = tmp_path_factory.mktemp("mea") / "run"
    result = pipeline.run(preset("digits", "quick", **TINY, schemes=["defended", "mea_defender"]), out)
    assert result["status"] == "finished" and "mea_extracted" in result["verification"], result
    return out


@pytest.fixture()
def mea_workspace(app_env, mea_run) -> Path:
    """The MEA run as a run of this test's workspace (as if trained here)."""
    dest = app_env["runs"] / SID / "20260101-000000-000-digits-mea-s0"
    shutil.copytree(mea_run, dest)
    return dest


def _train_config(app_env):
    return [c for c in app_env["pipeline"].calls if c[0] == "train"][-1][1]


def test_the_picker_lists_the_registry_and_leaves_the_default_runs_config_as_before(app_env):
    from ewe.watermarks.schemes import SCHEMES, check_schemes
    at = page("train", query={"preset": "tiny"})
    no_exception(at)
    picker = at.multiselect(key="schemes")
    assert picker.options == [SCHEMES[n].label for n in SCHEMES]          # every registered scheme, by label
    assert picker.value == check_schemes("default")
    assert not [w for w in at.multiselect if w.key == "mea_sources"]       # MEA's setting only once it is picked
    click(at, "Start training")
    assert _train_config(app_env).schemes is None                          # the default ones: the config of old


def test_the_picker_puts_the_chosen_schemes_and_meas_sources_into_the_config(app_env):
    at = page("train", query={"preset": "tiny"})
    at.multiselect(key="schemes").set_value(["defended", "mea_defender"]).run()
    no_exception(at)
    at.multiselect(key="mea_sources").set_value([3, 5]).run()
    no_exception(at)
    assert not at.error
    click(at, "Start training")
    cfg = _train_config(app_env)
    assert cfg.schemes == ["defended", "mea_defender"] and cfg.mea_sources == [3, 5]
    assert "MEA-Defender" in app_env["registry"].jobs(kind="train")[0].label
    assert at.query_params["schemes"] in ("defended,mea_defender", ["defended,mea_defender"])   # the link keeps it


def test_schemes_from_the_link_and_bad_choices_give_one_error(app_env):
    at = page("train", query={"preset": "tiny", "schemes": "mea_defender", "mea_sources": "6"})
    no_exception(at)
    assert at.multiselect(key="schemes").value == ["mea_defender"]
    # one source class (and the target, 6, at that): the library's ConfigError, once
    errors = texts(at, "error")
    assert len(errors) == 1 and "mea_sources" in errors[0]
    assert [b for b in at.button if b.label == "Start training"][0].disabled
    at.multiselect(key="schemes").set_value([]).run()
    errors = texts(at, "error")
    assert len(errors) == 1 and "schemes lists no scheme" in errors[0]
    bad = page("train", sid="bad-link", query={"preset": "tiny", "schemes": "nonsense"})
    no_exception(bad)
    assert "unknown scheme 'nonsense'" in " ".join(texts(bad, "warning"))   # replaced by the default ones


def test_the_picker_puts_dawns_flip_rate_into_the_config(app_env):
    at = page("train", query={"preset": "tiny"})
    at.multiselect(key="schemes").set_value(["defended", "dawn_api"]).run()
    at.number_input(key="dawn_rate").set_value(0.9).run()
    errors = texts(at, "error")
    assert len(errors) == 1 and "dawn_rate" in errors[0]                # the library's check, once
    at.number_input(key="dawn_rate").set_value(0.02).run()
    no_exception(at)
    assert not at.error
    click(at, "Start training")
    cfg = _train_config(app_env)
    assert "dawn_api" in cfg.schemes and cfg.dawn_rate == pytest.approx(0.02)


def test_scheme_settings_reach_the_config_only_for_a_chosen_scheme():
    from ui import state
    assert state.scheme_overrides({"schemes": ["defended"], "mea_sources": [3, 5]}) == {"schemes": ["defended"]}
    assert state.scheme_overrides({"schemes": ["mea_defender"], "mea_sources": []}) == {"schemes": ["mea_defender"]}
    assert state.scheme_overrides({"schemes": ["mea_defender"], "mea_sources": [3, 5], "dawn_rate": 0.1}) == {
        "schemes": ["mea_defender"], "mea_sources": [3, 5]}
    assert state.scheme_overrides({"schemes": ["defended", "dawn_api"], "mea_sources": [3, 5], "dawn_rate": 0.1}) == {
        "schemes": ["defended", "dawn_api"], "dawn_rate": 0.1}


def test_attack_and_runs_list_the_mea_copy(app_env, mea_workspace, tiny_run):
    at = page("attack", sid=SID)
    no_exception(at)
    models = list(at.dataframe[0].value["model"])
    assert {"MEA-Defender", "stolen from MEA-Defender", "defended (EWE)", "stolen from defended"} <= set(models)

    runs = page("runs", sid=SID)
    no_exception(runs)
    table = runs.dataframe[0].value
    assert table["watermark stolen from MEA-Defender"].iloc[0] == pytest.approx(
        json.loads((mea_workspace / "result.json").read_text())["models"]["mea_extracted"]["watermark_success"])
    bars = json.loads(plotly_charts(runs)[0].proto.spec)
    assert "stolen from MEA-Defender, watermark" in {t["name"] for t in bars["data"]}

    # a workspace without rival schemes keeps the three built-in columns only
    shutil.copytree(tiny_run, app_env["runs"] / "plain-session" / "20260101-000000-000-digits-tiny-s0")
    plain = page("runs", sid="plain-session")
    no_exception(plain)
    assert not [c for c in plain.dataframe[0].value.columns if "MEA" in c]
    assert {"defended accuracy", "watermark in stolen copy", "queries for 95 %"} <= set(plain.dataframe[0].value.columns)


def _key_cards(at) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("Suspect: **") and ", against " in m.value]


def test_verify_judges_a_suspect_on_every_key_the_run_holds(app_env, mea_workspace):
    at = page("verify", sid=SID)
    no_exception(at)
    md = " ".join(m.value for m in at.markdown)
    assert "the stolen copy of the MEA-Defender model" in md          # the rival copy's own card
    assert "classic watermark model" not in md + " ".join(texts(at, "info"))   # a scheme this run did not choose
    assert _key_cards(at) == []                                        # nothing tested yet
    up = at.get("file_uploader")[0]
    up.set_value(("mea.pt", (mea_workspace / "models" / "mea_extracted.pt").read_bytes(), "application/octet-stream"))
    at.run()
    no_exception(at)
    cards = _key_cards(at)
    assert len(cards) == 3                                             # optimised, classic, composite
    assert all("the uploaded suspect model" in c for c in cards)
    assert any("composite triggers" in c for c in cards) and any("optimised triggers" in c for c in cards)
    # the card on the composite key is the run's own verdict of that copy (same answers, same settings)
    stored = json.loads((mea_workspace / "result.json").read_text())["verification"]["mea_extracted"]
    composite = next(c for c in cards if "composite triggers" in c)
    assert f"p = **{stored['binomial_p']:.2g}**" in composite and f"rank p = {stored['rank_p']:.2g}" in composite
    lines = {t["name"] for t in json.loads(plotly_charts(at)[0].proto.spec)["data"]}
    assert {"suspect, composite triggers", "suspect, optimised triggers"} <= lines

    # one of the run's own models, with its own architecture
    at.radio(key="keep_suspect_source").set_value("run").run()
    [pick] = [s for s in at.selectbox if s.key.startswith("keep_suspect_model_")]
    assert "mea_extracted" in pick.options or "stolen from MEA-Defender" in pick.options
    pick.set_value("mea_defender").run()
    no_exception(at)
    cards = _key_cards(at)
    assert len(cards) == 3 and all("this run's model “MEA-Defender”" in c for c in cards)


def test_verify_a_run_without_rival_schemes_has_its_two_keys(app_env, tiny_run):
    shutil.copytree(tiny_run, app_env["runs"] / "two-keys" / "20260101-000000-000-digits-tiny-s0")
    at = page("verify", sid="two-keys")
    no_exception(at)
    at.radio(key="keep_suspect_source").set_value("run").run()
    no_exception(at)
    cards = _key_cards(at)
    assert len(cards) == 2 and not any("composite" in c for c in cards)


def _families(at) -> str:
    return " ".join(m.value for m in at.markdown if any(
        head in m.value for head in ("In the model's weights", "At the API", "What this lab measured")))


def test_learn_compares_the_families_with_numbers_only_from_published_results(app_env, monkeypatch):
    from ui import measured

    def row(scheme, thief, proven, cost):
        return {"thief": thief, "scheme": scheme, "copies": 9, "proven_100": proven, "accuracy_cost_median": cost}
    table = {"dataset": "digits", "setting": "toy setting", "rows": [
        row("defended", "hard, owner's images", 2, 0.012), row("mea_defender", "hard, owner's images", 7, 0.004),
        row("defended", "soft T=5, owner's images", 9, 0.012), row("mea_defender", "soft T=5, owner's images", 8, 0.004)]}
    monkeypatch.setattr(measured, "schemes_side_by_side", lambda: {"digits": table})
    at = page("learn", sid="learn-1")
    no_exception(at)
    text = _families(at)
    assert "a register of every client's queries" in text and "victim's accuracy drop" in text
    assert "DAWN (API)" in text and "MEA-Defender" in text.split("At the API")[0]     # families from the registry
    assert "EWE (defended) +1.2, MEA-Defender +0.4" in text
    assert "thief *hard, owner's images*: EWE (defended) 2/9, MEA-Defender 7/9" in text
    assert "DAWN (API): not in the published runs yet" in text     # its words, without a number
    assert "margin-based (MBW)" in text.split("At the API")[0]
    dawn = {**table, "rows": table["rows"] + [row("dawn_api", "hard, owner's images", 5, 0.006),
                                              row("mbw", "hard, owner's images", 1, 0.002)]}
    monkeypatch.setattr(measured, "schemes_side_by_side", lambda: {"digits": dawn})
    at = page("learn", sid="learn-2")
    assert "DAWN (API) 5/9" in _families(at) and "DAWN (API) +0.6" in _families(at)
    assert "margin-based (MBW) 1/9" in _families(at) and "margin-based (MBW) +0.2" in _families(at)
    assert "DAWN (API): not in the published runs yet" not in _families(at)
    assert "margin-based (MBW): not in the published runs yet" not in _families(at)
    monkeypatch.setattr(measured, "schemes_side_by_side", lambda: {})     # nothing published: the words alone
    at = page("learn", sid="learn-3")
    no_exception(at)
    measured = _families(at).split("What this lab measured")[1]
    assert measured.count("not in the published runs yet") == 3      # MEA-Defender's, DAWN's, dataset inference's
    assert not any(ch.isdigit() for ch in measured.replace("§1", ""))


def test_learn_lists_dataset_inference_as_a_family_without_a_watermark(app_env, monkeypatch):
    from ui import measured
    monkeypatch.setattr(measured, "schemes_side_by_side", lambda: {})
    at = page("learn", sid="learn-di")
    no_exception(at)
    unmarked = next(m.value for m in at.markdown if m.value.startswith("**No watermark at all**"))
    assert "(dataset inference: Maini" in unmarked and "Szyller" in unmarked
    assert "dataset inference" not in _families(at).split("At the API")[0]   # not among the watermarks
    assert "dataset inference: not in the published runs yet" in _families(at)


def test_the_picker_puts_dataset_inferences_m_into_the_config(app_env):
    at = page("train", query={"preset": "tiny"})
    at.multiselect(key="schemes").set_value(["defended", "dataset_inference"]).run()
    at.number_input(key="di_samples").set_value(1).run()
    errors = texts(at, "error")
    assert len(errors) == 1 and "di_samples" in errors[0]               # the library's check, once
    at.number_input(key="di_samples").set_value(30).run()
    no_exception(at)
    assert not at.error
    click(at, "Start training")
    cfg = _train_config(app_env)
    assert "dataset_inference" in cfg.schemes and cfg.di_samples == 30


@pytest.fixture(scope="session")
def di_run(tmp_path_factory) -> Path:
    """One real tiny run of dataset inference beside EWE, stolen and judged."""
    from ewe.config import preset
    from ewe.experiments import pipeline
    out = tmp_path_factory.mktemp("di") / "run"
    result = pipeline.run(preset("digits", "quick", **TINY, schemes=["defended", "dataset_inference"],
                                 di_samples=20), out)
    assert result["status"] == "finished" and "di_extracted" in result["verification"], result
    return out


def test_verify_judges_a_suspect_with_dataset_inferences_own_test(app_env, di_run):
    dest = app_env["runs"] / "di-keys" / "20260101-000000-000-digits-di-s0"
    shutil.copytree(di_run, dest)
    at = page("verify", sid="di-keys")
    no_exception(at)
    md = " ".join(m.value for m in at.markdown)
    assert "the stolen copy of the dataset inference model" in md
    at.radio(key="keep_suspect_source").set_value("run").run()
    [pick] = [s for s in at.selectbox if s.key.startswith("keep_suspect_model_")]
    pick.set_value("di_extracted").run()
    no_exception(at)
    cards = _key_cards(at)
    assert len(cards) == 3 and any("dataset inference's test on the owner's private points" in c for c in cards)
    stored = json.loads((dest / "result.json").read_text())["verification"]["di_extracted"]
    card = next(c for c in cards if "dataset inference's test" in c)
    assert f"p = **{stored['p_value']:.2g}**" in card



def test_a_tradeoff_point_keeps_the_rival_copys_watermark_and_the_chart_draws_it(mea_run, tiny_run):
    from ui import charts, work
    result = json.loads((mea_run / "result.json").read_text())
    point = work.point_summary({"tau": 1.0, "ratio": 2.0}, result, mea_run)
    assert point["rivals"] == {"mea_extracted": result["models"]["mea_extracted"]["watermark_success"]}
    plain = work.point_summary({"tau": 4.0, "ratio": 2.0}, json.loads((tiny_run / "result.json").read_text()),
                                  tiny_run)
    assert plain["rivals"] == {}
    fig = charts.tradeoff_figure([point, plain])
    [trace] = [t for t in fig.data if t.name == "MEA-Defender, stolen (same run)"]
    assert list(trace.y) == [point["rivals"]["mea_extracted"]]


@pytest.fixture(scope="session")
def dawn_run(tmp_path_factory) -> Path:
    """A real tiny run with DAWN's API beside EWE: its "dawn" key is the thief's register of flipped queries."""
    from ewe.config import preset
    from ewe.experiments import pipeline
    out = tmp_path_factory.mktemp("dawn") / "run"
    result = pipeline.run(preset("digits", "quick", **TINY, schemes=["defended", "dawn_api"], dawn_rate=0.05), out)
    assert result["status"] == "finished" and "dawn_extracted" in result["verification"], result
    return out


def test_dawns_copy_is_listed_and_judged_on_the_register(app_env, dawn_run):
    shutil.copytree(dawn_run, app_env["runs"] / "dawn" / "20260101-000000-000-digits-dawn-s0")
    at = page("attack", sid="dawn")
    no_exception(at)
    assert {"DAWN (API)", "stolen from DAWN (API)"} <= set(at.dataframe[0].value["model"])
    ver = page("verify", sid="dawn")
    no_exception(ver)
    md = " ".join(m.value for m in ver.markdown)
    assert "the stolen copy of the DAWN (API) model" in md and "whose answers the owner's API had flipped" in md
    ver.radio(key="keep_suspect_source").set_value("run").run()
    [pick] = [s for s in ver.selectbox if s.key.startswith("keep_suspect_model_")]
    assert "DAWN (API)" not in pick.options and "stolen from DAWN (API)" in pick.options   # the API has no .pt
    pick.set_value("dawn_extracted").run()
    no_exception(ver)
    cards = _key_cards(ver)
    assert len(cards) == 3 and sum("dawn triggers" in c for c in cards) == 1
    stored = json.loads((dawn_run / "result.json").read_text())["verification"]["dawn_extracted"]
    assert f"p = **{stored['p_value']:.2g}**" in next(c for c in cards if "dawn triggers" in c)


def test_the_picker_puts_the_margin_radius_into_the_config(app_env):
    at = page("train", query={"preset": "tiny"})
    at.multiselect(key="schemes").set_value(["defended", "mbw"]).run()
    at.number_input(key="mbw_eps").set_value(0.9).run()
    errors = texts(at, "error")
    assert len(errors) == 1 and "mbw_eps" in errors[0]                  # the library's check, once
    at.number_input(key="mbw_eps").set_value(0.03).run()
    no_exception(at)
    assert not at.error
    click(at, "Start training")
    cfg = _train_config(app_env)
    assert "mbw" in cfg.schemes and cfg.mbw_eps == pytest.approx(0.03)


@pytest.fixture(scope="session")
def mbw_run(tmp_path_factory) -> Path:
    """A real tiny run with the margin-based watermark beside EWE: its "margin" key has a label per input."""
    from ewe.config import preset
    from ewe.experiments import pipeline
    out = tmp_path_factory.mktemp("mbw") / "run"
    result = pipeline.run(preset("digits", "quick", **TINY, schemes=["defended", "mbw"]), out)
    assert result["status"] == "finished" and "mbw_extracted" in result["verification"], result
    return out


def test_the_margin_copy_is_listed_and_judged_on_its_own_labels(app_env, mbw_run):
    shutil.copytree(mbw_run, app_env["runs"] / "mbw" / "20260101-000000-000-digits-mbw-s0")
    at = page("attack", sid="mbw")
    no_exception(at)
    assert {"margin-based (MBW)", "stolen from margin-based (MBW)"} <= set(at.dataframe[0].value["model"])
    ver = page("verify", sid="mbw")
    no_exception(ver)
    md = " ".join(m.value for m in ver.markdown)
    assert "the stolen copy of the margin-based (MBW) model" in md and "each with its own random label" in md
    ver.radio(key="keep_suspect_source").set_value("run").run()
    [pick] = [s for s in ver.selectbox if s.key.startswith("keep_suspect_model_")]
    pick.set_value("mbw_extracted").run()
    no_exception(ver)
    cards = _key_cards(ver)
    assert len(cards) == 3 and sum("margin triggers" in c for c in cards) == 1     # optimised, classic, margin
    stored = json.loads((mbw_run / "result.json").read_text())["verification"]["mbw_extracted"]
    assert f"p = **{stored['p_value']:.2g}**" in next(c for c in cards if "margin triggers" in c)
