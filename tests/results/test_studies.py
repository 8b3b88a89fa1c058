"""The shipped measurements (ewe.results.studies) as the app reads them."""
import json

from ewe.results import studies


def test_a_presets_summary_is_its_own_not_a_study_of_the_same_dataset_listed_first(tmp_path):
    def row(setting, preset_setting, proven):
        return {"setting": setting, "dataset": "digits", "preset": "quick", "preset_setting": preset_setting,
                "variant": "same-hard", "ewe_proven_100": proven}
    path = tmp_path / "published.json"
    path.write_text(json.dumps({"summaries": [
        row("digits quick (schemes ['dataset_inference'])", False, None), row("digits quick (target 6)", True, 0.08)]}))
    rows = studies.published(path)["summaries"]
    assert studies.preset_summary(rows, "digits", "same-hard")["ewe_proven_100"] == 0.08
    assert studies.preset_summary(rows, "digits", "same-soft5") is None
    assert studies.preset_summary(rows, "mnist", "same-hard") is None
    missing = studies.published(tmp_path / "missing.json").get("summaries")
    assert studies.preset_summary(missing, "digits", "same-hard") is None


def test_the_shipped_numbers_have_each_presets_summary_under_the_learn_pages_thieves():
    for dataset, variant in (("digits", "same-hard"), ("digits", "same-soft5"), ("fashion-mnist", "fresh-hard"),
                             ("mnist", "fresh-hard")):
        s = studies.preset_summary(studies.published()["summaries"], dataset, variant)
        assert s and s["ewe_proven_100"] is not None and s["accuracy_cost"] is not None, (dataset, variant)
