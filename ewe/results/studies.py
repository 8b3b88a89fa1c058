"""The committed bench results the app shows (bench/results/): read only, never typed by hand.

    published()      what bench/publish.py wrote from stored runs (published.json)
    side_by_side()   its schemes side by side, per dataset (ewe.results.sidebyside tables)
    study_gains()    the issue-5 study (bench/explore.py rows) as per-seed gains over the no-SNNL ablation
    STAGE_COSTS      seconds per unit of work of each stage (bench/bench_eta.py --calibrate)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .report import ablation_gains

BENCH_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
STUDY_FILES = ("explore_grid.jsonl", "explore_paper.jsonl")


def published(folder: Path = BENCH_RESULTS) -> dict[str, Any]:
    """What bench/publish.py wrote from stored runs (victims x thieves per setting and thief, the verdict
    checks): the Learn page's numbers. Empty when the file is missing."""
    try:
        return json.loads((folder / "published.json").read_text())
    except (OSError, ValueError):
        return {}


def side_by_side(folder: Path = BENCH_RESULTS) -> dict[str, dict[str, Any]]:
    """Per dataset, the published table of every scheme under each kind of thief (``bench/publish.py --runs``;
    rows as ``ewe.results.sidebyside.scheme_tables``); empty when not published."""
    return published(folder).get("schemes_side_by_side") or {}


def study_gains(folder: Path = BENCH_RESULTS) -> list[dict[str, Any]]:
    """The committed issue-5 study (bench/explore.py rows) as per-seed gains over the no-SNNL ablation;
    empty when the files are missing or unreadable (the Learn page then says so)."""
    rows = []
    for name in STUDY_FILES:
        try:
            rows += [json.loads(line) for line in (folder / name).read_text().splitlines() if line.strip()]
        except (OSError, ValueError):
            continue
    return ablation_gains(rows)
