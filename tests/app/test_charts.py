"""The entanglement figures and their one-line reading, on constructed diagnostics."""
from __future__ import annotations

from ui import charts, widgets


def geo(*gaps: float) -> dict:
    return {"trigger_set": "optimised",
            "geometry": [{"within_triggers": 0.1, "within_target": 0.1, "between": 0.1 + g, "gap": g}
                         for g in gaps]}


DIAG = {"before": geo(0.3, 0.4, 0.2), "defended": geo(0.2, 0.1, 0.0), "extracted": geo(0.3, 0.35, 0.1)}


def test_geometry_figure_draws_each_models_gaps_and_skips_missing_ones():
    fig = charts.geometry_figure(DIAG, ["before", "defended", "ablation_no_snnl", "extracted"])
    bars = {t.name: list(t.y) for t in fig.data}
    assert bars == {"pre-trained (before watermarking)": [0.3, 0.4, 0.2], "defended (EWE)": [0.2, 0.1, 0.0],
                    "stolen from defended": [0.3, 0.35, 0.1]}
    assert list(fig.data[0].x) == ["layer 1", "layer 2", "layer 3"]


def test_geometry_figure_without_diagnostics_says_so():
    fig = charts.geometry_figure({}, ["defended"])
    assert not fig.data and "no diagnostics" in fig.layout.annotations[0].text


def test_projection_figure_has_both_groups_per_layer_and_phase():
    proj = {"method": "pca", "group": ["trigger", "target", "target"],
            "layers": [[[0, 0], [1, 1], [2, 2]]] * 3}
    fig = charts.projection_figure(proj, proj, "defended (EWE)")
    assert len(fig.data) == 2 * 2 * 3
    triggers = [t for t in fig.data if t.name == "triggers"]
    assert all(list(t.x) == [0] for t in triggers) and len(triggers) == 6
    assert sum(t.showlegend for t in fig.data) == 2          # one legend entry per group
    only_after = charts.projection_figure(None, proj, "x")
    assert len(only_after.data) == 2 * 3


def test_entanglement_summary_reports_the_share_of_the_closing_the_copy_kept():
    text = widgets.entanglement_summary(DIAG)
    # SNNL closed 0.2 - 0.0 = 0.2 of the last layer's gap; the copy is at 0.1, so it kept half of that
    assert "closed 0.200" in text and "kept 50%" in text
    assert widgets.entanglement_summary({}) == ""


def test_study_figure_has_seeds_and_means_per_dataset_and_the_bar():
    gains = [{"dataset": "mnist", "variant": "kappa=1.0", "seed": s, "gain": g, "stolen_wm": 0.5,
              "ablation_wm": 0.4, "base": "", "preset": "quick"} for s, g in ((0, 10.0), (1, -4.0))]
    gains.append({**gains[0], "dataset": "fashion-mnist", "variant": "preset", "preset": "paper", "gain": 30.0})
    fig = charts.study_figure(gains)
    traces = {t.name: (list(t.x), list(t.y)) for t in fig.data}
    assert traces["mnist, per seed"] == (["κ 1.0", "κ 1.0"], [10.0, -4.0])
    assert traces["mnist, mean"] == (["κ 1.0"], [3.0])
    assert traces["fashion-mnist, mean"] == (["EWE preset (paper)"], [30.0])
    assert [s.y0 for s in fig.layout.shapes] == [0, 20.0]


def test_study_figure_without_results_says_so():
    assert any("no study results" in a.text for a in charts.study_figure([]).layout.annotations)


def test_pvalue_figure_names_mea_defenders_copy_and_the_innocent_on_its_triggers():
    from ui.charts import pvalue_figure
    curve = {"queries": [1, 2, 4], "p_median": [0.5, 0.1, 0.01]}
    fig = pvalue_figure({"mea_extracted": {"curve": curve}, "clean_composite": {"curve": curve}})
    assert {t.name for t in fig.data} >= {"stolen copy of the MEA-Defender model", "innocent model, composite triggers"}


def _table(tmp_path):
    """A side-by-side table built by the library from two synthetic run folders."""
    from ewe.results import sidebyside
    from tests.results.test_sidebyside import HARD, SOFT5, copy, make_run
    models = {"clean": {"accuracy": 0.98}, "defended": {"accuracy": 0.97}, "mea_defender": {"accuracy": 0.95}}
    verification = {"clean": {"proven": False}, "clean_composite": {"proven": False}}
    for seed in (0, 1):
        make_run(tmp_path, f"r-s{seed}", seed, models=models, verification=verification, thieves=[
            (HARD, {"extracted": copy(seed == 0, 0.4, 30), "mea_extracted": copy(True, 0.3, 60)}),
            (SOFT5, {"extracted": copy(True, 0.9, 3), "mea_extracted": copy(False, 0.2)})])
    [table] = sidebyside.scheme_tables(sidebyside.run_folders(tmp_path))
    return table


def test_schemes_figure_has_one_bar_trace_per_scheme_with_its_interval(tmp_path):
    table = _table(tmp_path)
    fig = charts.schemes_figure(table)
    assert [t.name for t in fig.data] == ["EWE (defended)", "MEA-Defender"]
    ewe = fig.data[0]
    assert list(ewe.x) == ["hard, owner's images", "soft T=5, owner's images"] and list(ewe.y) == [0.5, 1.0]
    hard = table["rows"][0]                       # EWE under the hard-label thief: 1 of 2 proven
    assert ewe.error_y.array[0] == hard["proven_ci"][1] - 0.5 and ewe.error_y.arrayminus[0] == 0.5 - hard["proven_ci"][0]
    assert ewe.error_y.arrayminus[1] == 1.0 - table["rows"][2]["proven_ci"][0]
    hover = dict(zip(sidebyside_columns(table), ewe.customdata[0]))
    assert hover["accuracy cost, median"] == "1.00 pts" and "accuracy cost, median" in ewe.hovertemplate
    assert hover["proven (95 % CI)"].startswith("1/2 [")
    mea = dict(zip(sidebyside_columns(table), fig.data[1].customdata[0]))
    assert mea["innocent model accused"] == "0 of 2"          # the innocent model on MEA-Defender's set


def sidebyside_columns(table):
    from ewe.results.sidebyside import display_rows
    return list(display_rows(table)[0])


def test_schemes_figure_without_a_table_says_so():
    assert "no published runs" in charts.schemes_figure({}).layout.annotations[0].text


def test_pvalue_figure_draws_the_binomial_part_and_marks_where_proof_starts():
    from ui.charts import pvalue_caption, pvalue_figure, pvalue_names
    copy = {"proven": True, "queries_for_95": 4, "n_queries": 6,
            "curve": {"queries": [2, 3, 4, 5, 6], "p_median": [0.3, 0.1, 0.04, 0.04, 0.04],
                      "binomial_median": [0.2, 0.06, 0.01, 0.002, 0.0004]}}
    innocent = {"proven": False, "queries_for_95": None, "n_queries": 6,
                "curve": {"queries": [2, 3, 4, 5, 6], "p_median": [1.0] * 5, "binomial_median": [0.9] * 5}}
    ver = {"extracted": copy, "clean": innocent}
    fig = pvalue_figure(ver)
    lines = {t.name: list(t.y) for t in fig.data if t.mode == "lines"}
    assert lines["stolen copy of the defended (EWE) model"] == [0.2, 0.06, 0.01, 0.002, 0.0004]
    [diamond] = [t for t in fig.data if t.mode == "markers"]
    assert list(diamond.x) == [4] and list(diamond.y) == [0.01]             # only the proven copy gets one
    assert "binomial" in fig.layout.yaxis.title.text
    caption = pvalue_caption(ver, pvalue_names(ver))
    assert "stolen copy of the defended (EWE) model is proven from **4 queries**" in caption
    assert "independent clean model (innocent) is not accused" in caption


def test_the_apps_words_for_models_are_the_registrys():
    """ui.naming keeps no table of its own (issue 35): MODEL_LABELS is the registry's live mapping, and every
    chart, card and stage label of a scheme's model reads its words from the registry."""
    from ewe.watermarks import schemes
    from ui import naming
    assert naming.MODEL_LABELS is schemes.MODEL_LABELS
    assert naming.MODEL_LABELS.get("plain_extracted") == "stolen from classic watermark"
    assert widgets.verdict_subject("plain_extracted") == "the stolen copy of the classic watermark model"
    assert widgets.verdict_subject("defended") == "the defended (EWE) model itself"
    assert widgets.verdict_subject("clean_classic") == "the same innocent model, on the classic watermark's triggers"
    assert widgets.verdict_subject("clean_composite") == "the same innocent model, on MEA-Defender's composite triggers"
    assert widgets.stage_label("steal_ablation_no_snnl") == "stealing the no-SNNL ablation model"
    assert widgets.stage_label("mbw") == "training margin-based (MBW)" and widgets.stage_label("nope") is None
    names = charts.pvalue_names({})
    assert names["plain_extracted"] == "stolen copy of the classic watermark model"
    assert names["mbw_extracted"] == "stolen copy of the margin-based (MBW) model"


def test_thieves_recorded_before_proven_existed_read_the_same():
    """A thieves.json copy written before "proven" existed has "verified" alone: the dots, the sentence and the
    summary read it through schema.is_proven like a new one."""
    def draws(keys):
        return [{"thief": {"seed": s}, "copies": {"extracted": {"watermark_success": 0.5, "queries_for_95": 7,
                                                                **{k: s == 1 for k in keys}}}} for s in (1, 2)]
    new, old = draws(("proven", "verified")), draws(("verified",))
    symbols = [list(charts.thieves_figure(d).data[0].marker.symbol) for d in (new, old)]
    assert symbols[0] == symbols[1] == ["circle", "circle-open"]
    assert widgets.thieves_sentence(new) == widgets.thieves_sentence(old)
    assert "stolen from defended: proven for 1 of 2 thieves" in widgets.thieves_sentence(old)
    assert widgets.thieves_summary(new) == widgets.thieves_summary(old)
