"""Schemes side by side (ewe.results.sidebyside) on small synthetic run folders: json files only."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from scipy import stats

from ewe.config import from_dict, preset_values
from ewe.results import sidebyside as sb
from ewe.watermarks import schemes

HARD = {"labels": "hard", "distill_temperature": 1.0, "attacker_data": "same", "student": "conv2"}
SOFT5 = {"labels": "soft", "distill_temperature": 5.0, "attacker_data": "same", "student": "conv2"}
FRESH = {"labels": "hard", "distill_temperature": 1.0, "attacker_data": "fresh", "student": "conv2"}


def copy(proven: bool, kept: float, q: int | None = None) -> dict:
    return {"accuracy": 0.9, "watermark_success": kept, "proven": proven,
            "queries_for_95": q if proven else None, "p_value": 0.01 if proven else 0.5}


def make_run(root, name, seed=0, thieves=(), models=None, verification=None, drop=(), **cfg):
    """A run folder as the pipeline leaves it (config.json: the whole preset), without its models."""
    run = root / name
    run.mkdir(parents=True)
    dataset = cfg.pop("dataset", "digits")
    config = from_dict({**preset_values(dataset, "quick"), "dataset": dataset, "seed": seed, **cfg},
                       check=False).to_dict()
    config = {k: v for k, v in config.items() if k not in drop}     # an older run without later settings
    models = models or {"clean": {"accuracy": 0.98}, "defended": {"accuracy": 0.97},
                        "plain_watermark": {"accuracy": 0.96}}
    verification = verification or {"clean": {"proven": False}, "clean_classic": {"proven": False}}
    (run / "config.json").write_text(json.dumps(config))
    (run / "result.json").write_text(json.dumps({"models": models, "verification": verification}))
    (run / "thieves.json").write_text(json.dumps(
        [{"thief": {**t, "seed": 100 * seed + i}, "copies": c} for i, (t, c) in enumerate(thieves)]))
    return run


def rows_by(table):
    return {(r["thief"], r["scheme"]): r for r in table["rows"]}


def test_proven_counts_intervals_and_thief_kinds(tmp_path):
    make_run(tmp_path, "a-s0", 0, [(HARD, {"extracted": copy(True, 0.6, 40), "plain_extracted": copy(False, 0.1)}),
                                   (HARD, {"extracted": copy(True, 0.8, 150), "plain_extracted": copy(False, 0.0)}),
                                   (SOFT5, {"extracted": copy(True, 0.9, 3)})])
    make_run(tmp_path, "a-s1", 1, [(HARD, {"extracted": copy(False, 0.2), "plain_extracted": copy(True, 0.5, 60)}),
                                   (HARD, {"extracted": copy(True, 0.7, 20)}),
                                   (FRESH, {"extracted": copy(False, 0.3)})],
             models={"clean": {"accuracy": 0.90}, "defended": {"accuracy": 0.86}})
    [table] = sb.scheme_tables(sb.run_folders(tmp_path), root=tmp_path)
    assert table["runs"] == ["a-s0", "a-s1"] and table["victim_seeds"] == [0, 1]
    # owner's images before the thief's own, hard before soft; registry order within a thief kind
    assert [(r["thief"], r["scheme"]) for r in table["rows"]] == [
        ("hard, owner's images", "defended"), ("hard, owner's images", "plain_watermark"),
        ("soft T=5, owner's images", "defended"), ("hard, thief's own images", "defended")]
    ewe = rows_by(table)[("hard, owner's images", "defended")]
    assert (ewe["victims"], ewe["thieves_per_victim"], ewe["copies"]) == (2, 2, 4)
    assert (ewe["proven"], ewe["proven_100"]) == (3, 2)            # one proven only after 150 queries
    lo, hi = stats.beta.ppf(0.025, 3, 2), stats.beta.ppf(0.975, 4, 1)   # Clopper-Pearson for 3 of 4
    assert ewe["proven_ci"] == pytest.approx([lo, hi])
    assert ewe["queries_median"] == 40                              # among the proven: 20, 40, 150
    assert ewe["kept_median"] == pytest.approx(0.65) and ewe["kept_q1"] < 0.65 < ewe["kept_q3"]
    # victims' costs 0.01 and 0.04: the median of the two
    assert ewe["accuracy_cost_median"] == pytest.approx(0.025)
    plain = rows_by(table)[("hard, owner's images", "plain_watermark")]
    assert (plain["copies"], plain["victims"], plain["thieves_per_victim"]) == (3, 2, "1-2")
    assert plain["accuracy_cost_median"] == pytest.approx(0.02)    # the second run has no such victim
    assert plain["proven_ci"][0] > 0 and plain["proven_ci"][1] < 1
    text = sb.markdown(table)
    assert "| hard, owner's images | EWE (defended) | 2 × 2 | 3/4 [19–99 %] | 2/4 |" in text
    # the runs judged the innocent model on the optimised and classic sets only: no verdict on a third
    assert (ewe["innocents_accused"], ewe["innocent_tests"]) == (0, 2)


def test_like_with_like_seed_and_thief_settings_merge_victim_settings_do_not(tmp_path):
    t = [(HARD, {"extracted": copy(True, 0.5, 10)})]
    make_run(tmp_path, "x-s0", 0, t)
    make_run(tmp_path, "x-s1", 1, t, extract_labels="hard", attacker_data="fresh", data_dir="/d")  # thief only
    make_run(tmp_path, "x-s2", 2, t, drop=("clean_schedule", "schemes"))   # older: today's defaults
    make_run(tmp_path, "y-s0", 0, t, target=7)                       # another victim setting
    make_run(tmp_path, "z-s0", 0, t, attacker_data="disjoint")       # victims trained on half the data
    make_run(tmp_path / "side", "x-s0", 0, t)                        # a side study's own folder
    tables = {tb["setting"]: tb for tb in sb.scheme_tables(sb.run_folders(tmp_path), root=tmp_path)}
    assert set(tables) == {"digits quick", "digits quick (target 7)", "digits quick (attacker_data disjoint)",
                           "digits quick [side]"}
    assert tables["digits quick"]["runs"] == ["x-s0", "x-s1", "x-s2"]
    assert tables["digits quick"]["rows"][0]["copies"] == 3


def test_a_new_scheme_appears_as_rows_with_its_own_cost_and_innocent(tmp_path, monkeypatch):
    # a DAWN-like API scheme registered after the others: its copy, its set's innocent verdict, its cost
    dawn = SimpleNamespace(name="dawn_api", stolen="dawn_extracted", trigger_set="dawn", label="DAWN (API)")
    monkeypatch.setitem(schemes.SCHEMES, dawn.name, dawn)
    monkeypatch.setitem(schemes.VICTIMS, dawn.name, dawn.stolen)
    monkeypatch.setitem(schemes.TRIGGER_SET, dawn.stolen, "dawn")
    models = {"clean": {"accuracy": 0.98}, "defended": {"accuracy": 0.97},
              "dawn_api": {"accuracy": 0.93, "model_accuracy": 0.98, "flip_rate": 0.05}}
    make_run(tmp_path, "d-s0", 0, [(SOFT5, {"extracted": copy(True, 0.9, 5), "dawn_extracted": copy(True, 0.8, 30)})],
             models=models, verification={"clean": {"proven": False}, "clean_dawn": {"proven": True}},
             schemes=["default", "dawn_api"])
    make_run(tmp_path, "d-s1", 1, [(SOFT5, {"dawn_extracted": copy(False, 0.2)})], models=models,
             verification={"clean": {"proven": False}, "clean_dawn": {"proven": False}},
             schemes=["default", "dawn_api"])
    [table] = sb.scheme_tables(sb.run_folders(tmp_path))
    row = rows_by(table)[("soft T=5, owner's images", "dawn_api")]
    assert (row["scheme_label"], row["proven"], row["copies"]) == ("DAWN (API)", 1, 2)
    assert row["accuracy_cost_median"] == pytest.approx(0.05)      # the model's own minus the API's
    assert (row["innocents_accused"], row["innocent_tests"]) == (1, 2)     # judged on its own set
    ewe = rows_by(table)[("soft T=5, owner's images", "defended")]
    assert (ewe["innocents_accused"], ewe["innocent_tests"]) == (0, 1)      # EWE's set accused no one
    assert (table["innocents_accused_any"], table["innocent_runs"]) == (1, 2)   # any set, per run
    assert "DAWN (API)" in sb.markdown(table)


def test_side_by_side_takes_the_setting_with_the_most_schemes(tmp_path):
    make_run(tmp_path, "a-s0", 0, [(HARD, {"extracted": copy(True, 0.5, 1)})] * 5)
    make_run(tmp_path, "b-s0", 0, [(HARD, {"extracted": copy(True, 0.5, 1), "plain_extracted": copy(False, 0.0)})],
             target=7)
    make_run(tmp_path, "c-s0", 0, [(HARD, {"extracted": copy(True, 0.5, 1)})], dataset="mnist")
    make_run(tmp_path, "d-s0", 0, [])                                # never stolen: no table
    best = sb.side_by_side(sb.scheme_tables(sb.run_folders(tmp_path)))
    assert list(best) == ["digits", "mnist"]
    assert best["digits"]["runs"] == ["b-s0"]


def test_thief_kind_names_temperature_data_and_an_unusual_student():
    assert sb.thief_kind(HARD, "conv2")[1] == "hard, owner's images"
    assert sb.thief_kind({**SOFT5, "attacker_data": "disjoint"}, "conv2")[1] == "soft T=5, the other half of the data"
    assert sb.thief_kind({**HARD, "student": "mlp", "query_budget": 500}, "conv2")[1] == \
        "hard, owner's images, student mlp, 500 queries"
    assert sb.thief_kind({"labels": "soft"})[1] == "soft T=1, owner's images"   # older entries: no temperature


def test_a_scheme_whose_innocent_was_never_judged_shows_a_dash(tmp_path):
    make_run(tmp_path, "a-s0", 0, [(HARD, {"plain_extracted": copy(False, 0.1)})],
             verification={"clean": {"proven": True}})              # no verdict on the classic triggers
    [table] = sb.scheme_tables(sb.run_folders(tmp_path))
    assert table["rows"][0]["innocent_tests"] == 0
    assert sb.display_rows(table)[0]["innocent model accused"] == "—"
    assert (table["innocents_accused_any"], table["innocent_runs"]) == (1, 1)


def test_a_dawn_only_run_joins_its_source_setting_and_its_innocent_is_judged_per_thief(tmp_path):
    """bench/demo_reliability.py --dawn-rate serves a victim run's clean model through DAWN in a folder of its
    own: its rows belong beside the victim run's schemes, its thieves' registers each judge the innocent once,
    and a thief that trained longer than the run's own is named."""
    make_run(tmp_path, "fashion-s0", 0, [(HARD, {"extracted": copy(True, 0.6, 40)})])
    long_hard = {**HARD, "epochs": 30}
    make_run(tmp_path, "dawn0.005-fashion-s0", 0, [(HARD, {"dawn_extracted": copy(False, 0.0)}),
                                                   (long_hard, {"dawn_extracted": copy(True, 0.8, 20)})],
             schemes=["dawn_api"],
             models={"clean": {"accuracy": 0.9}, "dawn_api": {"accuracy": 0.895, "model_accuracy": 0.9}},
             verification={"clean": {"proven": True}, "clean_dawn": {"proven": False}})
    draws = json.loads((tmp_path / "dawn0.005-fashion-s0" / "thieves.json").read_text())
    for d, accused in zip(draws, (True, False)):
        d["innocent_verdicts"] = {"clean_dawn": accused}
    (tmp_path / "dawn0.005-fashion-s0" / "thieves.json").write_text(json.dumps(draws))
    [table] = sb.scheme_tables(sb.run_folders(tmp_path), root=tmp_path)
    rows = rows_by(table)
    epochs = from_dict({**preset_values("digits", "quick")}, check=False).extraction_epochs
    assert HARD.get("epochs") is None and epochs != 30
    dawn_short = rows[("hard, owner's images", "dawn_api")]
    dawn_long = rows[("hard, owner's images, 30 epochs", "dawn_api")]
    assert (dawn_short["proven"], dawn_long["proven"]) == (0, 1)
    assert (dawn_short["innocents_accused"], dawn_short["innocent_tests"]) == (1, 1)     # its own thief's verdict
    assert (dawn_long["innocents_accused"], dawn_long["innocent_tests"]) == (0, 1)
    assert dawn_short["accuracy_cost_median"] == pytest.approx(0.005)
    # the copied "clean" verdict of the DAWN folder is the source run's: not counted a second time
    assert table["innocent_runs"] == 2 and table["innocents_accused_any"] == 0


def test_settings_that_differ_only_in_the_schemes_trained_are_merged_without_counting_a_copy_twice(tmp_path):
    make_run(tmp_path, "fashion-s0", 0, [(HARD, {"extracted": copy(True, 0.6, 40)}),
                                         (HARD, {"extracted": copy(True, 0.7, 40)})])
    make_run(tmp_path, "fashion-mea-s0", 0, [(HARD, {"extracted": copy(True, 0.6, 40),
                                                     "mea_extracted": copy(False, 0.3)})],
             schemes=["default", "mea_defender"],
             models={"clean": {"accuracy": 0.9}, "defended": {"accuracy": 0.88}, "mea_defender": {"accuracy": 0.89}})
    make_run(tmp_path, "dawn0.005-fashion-s0", 0, [(HARD, {"dawn_extracted": copy(False, 0.0)})],
             schemes=["dawn_api"], models={"clean": {"accuracy": 0.9},
                                           "dawn_api": {"accuracy": 0.895, "model_accuracy": 0.9}})
    make_run(tmp_path, "fashion-long-s0", 0, [(HARD, {"extracted": copy(True, 0.9, 4)})], epochs=9)
    tables = sb.scheme_tables(sb.run_folders(tmp_path), root=tmp_path)
    assert len(tables) == 3                       # quick + DAWN, with MEA-Defender, another budget
    [chosen] = sb.side_by_side(tables).values()
    rows = rows_by(chosen)
    assert [r["scheme"] for r in chosen["rows"]] == ["defended", "mea_defender", "dawn_api"]
    assert rows[("hard, owner's images", "defended")]["copies"] == 2      # from the folder with more, not 2 + 1
    assert rows[("hard, owner's images", "mea_defender")]["copies"] == 1
    assert "fashion-long-s0" not in chosen["runs"] and len(chosen["sources"]) == 2


def test_copies_judged_before_proven_existed_count_alike(tmp_path):
    """A thieves.json written before "proven" existed keeps "verified" alone (and "proven": None): counted by
    schema.is_proven like a new one."""
    def old(c: dict) -> dict:
        return {**c, "verified": c["proven"], "proven": None}
    for root, shape in ((tmp_path / "new", lambda c: {**c, "verified": c["proven"]}), (tmp_path / "old", old)):
        make_run(root, "a-s0", 0, [(HARD, {"extracted": shape(copy(True, 0.6, 40))}),
                                   (HARD, {"extracted": shape(copy(False, 0.1))})],
                 verification={"clean": {"verified": True, "proven": None}, "clean_classic": {"verified": False}})
    new, old_ = (sb.scheme_tables(sb.run_folders(r), root=r)[0] for r in (tmp_path / "new", tmp_path / "old"))
    assert [(r["proven"], r["proven_100"], r["queries_median"], r["innocents_accused"]) for r in old_["rows"]] == \
        [(r["proven"], r["proven_100"], r["queries_median"], r["innocents_accused"]) for r in new["rows"]] == \
        [(1, 1, 40, 1)]
    assert old_["innocents_accused_any"] == new["innocents_accused_any"] == 1


def test_a_stored_table_shows_todays_words_for_its_schemes():
    """published.json keeps each row's scheme_label as it was written; the table shows the registry's word for a
    scheme it knows ("plain watermark" was the classic watermark's earlier label), and the stored one otherwise."""
    row = {"thief": "hard, owner's images", "victims": 1, "thieves_per_victim": 1, "copies": 1, "proven": 0,
           "proven_ci": [0, 1], "proven_100": 0, "kept_median": None, "accuracy_cost_median": None,
           "queries_median": None, "innocent_tests": 0}
    table = {"rows": [{**row, "scheme": "plain_watermark", "scheme_label": "plain watermark"},
                      {**row, "scheme": "retired", "scheme_label": "a retired scheme"}]}
    assert [r["scheme"] for r in sb.display_rows(table)] == ["classic watermark", "a retired scheme"]
