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
