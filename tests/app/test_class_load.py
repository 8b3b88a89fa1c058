"""The class on one server, short (issue 25; the measurement is bench/bench_class.py): three real Chromium
sessions, each in its own workspace, start the same tiny demo at once while a fourth visitor switches pages.
All three reach a verdict, the training and the steal are computed once (the workspaces' files are hard links
to one cache entry), the two that did not ask first are told their results were reused, and each workspace
holds exactly its own run."""
from __future__ import annotations

import os

import pytest

from tests.browser import browser_missing

reason = browser_missing()
if reason and os.environ.get("CI", "").lower() == "true":
    raise RuntimeError(f"CI must run the browser tests, but {reason}: .ci/run installs both")
pytestmark = [pytest.mark.skipif(reason is not None, reason=reason or ""), pytest.mark.class_load]


def test_three_identical_demo_starts_compute_once_and_stay_private(tmp_path):
    from bench import bench_class
    got = bench_class.serve(3, False, "tiny", 300, True, "ci", runs=tmp_path / "runs")
    summary = bench_class.summary(got)
    assert summary["with_verdict"] == 3, got["outcomes"]
    assert summary["isolation"]["ok"], summary["isolation"]["problems"]
    assert summary["trainings_computed"] == 1 and summary["steals_computed"] == 1, summary
    assert summary["train_said_reused"] == 2 and summary["attack_said_reused"] == 2, got["outcomes"]
    assert summary["page_switches"] >= 1 and summary["server_peak_mib"] > 0, summary
