"""The measured numbers the library and the app read at run time, shipped with the package (``ewe/measured/``,
package data): written by the benches, read only here, never typed by hand.

    published()      what bench/publish.py wrote from stored runs (published.json)
    preset_summary() one of its summaries: a dataset's preset as shipped, under one thief
    side_by_side()   its schemes side by side, per dataset (ewe.results.sidebyside tables)
    study_gains()    the issue-5 study (bench/explore.py rows) as per-seed gains over the no-SNNL ablation
    STAGE_COSTS      seconds per unit of work of each stage (bench/bench_eta.py --calibrate), for the ETA
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MEASURED = Path(__file__).resolve().parents[1] / "measured"
PUBLISHED = MEASURED / "published.json"
STAGE_COSTS = MEASURED / "stage_costs.json"


def published(path: Path = PUBLISHED) -> dict[str, Any]:
    """What bench/publish.py wrote from stored runs (victims x thieves per setting and thief, the verdict
    checks, the SNNL study's gains): the Learn page's numbers. Empty when the file is missing."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def preset_summary(summaries: list[dict], dataset: str, variant: str, preset: str = "quick") -> dict | None:
    """Of the published victims x thieves ``summaries`` (``published()["summaries"]``), the one of ``dataset``'s
    ``preset`` as shipped (not a study's variation of it: other schemes, another target) under the thief
    ``variant`` ("same-hard", "fresh-hard", ...); None when not published."""
    return next((r for r in summaries or []
                 if (r.get("dataset"), r.get("preset"), r["variant"]) == (dataset, preset, variant)
                 and r.get("preset_setting")), None)


def side_by_side(path: Path = PUBLISHED) -> dict[str, dict[str, Any]]:
    """Per dataset, the published table of every scheme under each kind of thief (``bench/publish.py --runs``;
    rows as ``ewe.results.sidebyside.scheme_tables``); empty when not published."""
    return published(path).get("schemes_side_by_side") or {}


def study_gains(path: Path = PUBLISHED) -> list[dict[str, Any]]:
    """The issue-5 study (bench/explore.py rows, ``ewe.results.report.ablation_gains``) as per-seed gains over
    the no-SNNL ablation, as published; empty when not published (the Learn page then says so)."""
    return published(path).get("study_gains") or []
