"""The Trade-offs page's schemes side by side: a chart and a table per dataset, from what was published."""
from __future__ import annotations

import json

from tests.app.helpers import no_exception, page, plotly_charts, texts
from tests.app.test_charts import _table


def test_tradeoffs_shows_each_datasets_schemes_side_by_side(app_env, monkeypatch, tmp_path):
    from ui import measured
    table = _table(tmp_path)
    monkeypatch.setattr(measured, "schemes_side_by_side", lambda: {"digits": table, "mnist": table})
    at = page("tradeoffs", query={"preset": "tiny"})
    no_exception(at)
    figs = [json.loads(c.proto.spec) for c in plotly_charts(at)]
    side = [f for f in figs if "Stolen copies proven" in f["layout"]["title"]["text"]]
    assert len(side) == 2 and [t["name"] for t in side[0]["data"]] == ["EWE (defended)", "MEA-Defender"]
    assert len(at.dataframe) == 2 and "proven (95 % CI)" in at.dataframe[0].value.columns
    assert any("claimed on some trigger set in 0 of 2 runs" in c for c in texts(at, "caption"))


def test_tradeoffs_without_published_tables_says_how_to_make_them(app_env, monkeypatch):
    from ui import measured
    monkeypatch.setattr(measured, "schemes_side_by_side", lambda: {})
    at = page("tradeoffs", query={"preset": "tiny"})
    no_exception(at)
    assert any("bench/publish.py --runs" in c for c in texts(at, "caption"))
