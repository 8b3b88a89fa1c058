"""A class on one server, in every `make test` (issue 36): three visitors that speak Streamlit's own websocket
protocol (bench/protocol_session.py; no browser) start the same tiny demo at once while a fourth switches pages.
All three reach a verdict, the training and the steal are computed once, the two that did not ask first are told
their results were reused, each workspace holds exactly its own run, and page switches keep being served. The
same with real browsers is tests/app/test_class_load.py (make test-class)."""
from __future__ import annotations


def test_three_identical_protocol_visitors_compute_once_and_stay_private(tmp_path):
    from bench import bench_class
    got = bench_class.serve(3, False, "tiny", 300, True, "ci", runs=tmp_path / "runs", clients="protocol")
    summary = bench_class.summary(got)
    assert summary["clients"] == "protocol"
    assert summary["with_verdict"] == 3, got["outcomes"]
    assert summary["isolation"]["ok"], summary["isolation"]["problems"]
    assert summary["trainings_computed"] == 1 and summary["steals_computed"] == 1, summary
    assert summary["train_said_reused"] == 2 and summary["attack_said_reused"] == 2, got["outcomes"]
    assert summary["page_switches"] >= 1 and summary["probe_error"] is None, summary
    assert summary["server_peak_mib"] > 0
