"""Identical requests from several workspaces (ui/reuse.py): one computation, every workspace its own entry;
a request for a key in training attaches to it live; a finished key is served at once and says so."""
from __future__ import annotations

import json
import threading
import time

from tests.app.helpers import click, no_exception, page, run_folder, texts, wait_until


def _blocked(monkeypatch, tiny_run):
    from tests.app.conftest import FakePipeline
    from ui import state, work
    from ui.jobs import JobRegistry
    block = threading.Event()
    fake = FakePipeline(tiny_run, block=block)
    monkeypatch.setattr(work, "PIPELINE", fake)
    reg = JobRegistry(max_running=1)
    state.set_registry(reg)
    return reg, fake, block


def test_a_second_request_attaches_live_and_a_third_is_served_at_once(app_env, monkeypatch, tiny_run):
    reg, fake, block = _blocked(monkeypatch, tiny_run)
    click(page("train", sid="student-a", query={"preset": "tiny"}), "Start training")
    first = reg.jobs(owner="student-a")[0]
    wait_until(lambda: first.status == "running" and first.events is not None)
    click(page("train", sid="student-b", query={"preset": "tiny"}), "Start training")
    second = reg.jobs(owner="student-b")[0]
    wait_until(lambda: second.meta.get("follows") == first.meta.get("follows"))
    assert second.status == "running"                          # not queued behind the identical run
    assert reg.counts() == {"running": 1, "queued": 0}         # one computation for both
    block.set()
    for j in (first, second):
        assert reg.wait(j.id, 10).status == "finished"
    assert [c[0] for c in fake.calls] == ["train"]             # trained once
    def curves(job):
        return [e for e in job.events if e.get("kind") == "epoch"]
    assert curves(second) and curves(second) == curves(first)   # the same curves
    a, b = run_folder(app_env["runs"], "student-a"), run_folder(app_env["runs"], "student-b")
    assert json.loads((a / "result.json").read_text()) == json.loads((b / "result.json").read_text())
    assert (b / "models" / "defended.pt").stat().st_ino == (a / "models" / "defended.pt").stat().st_ino  # one copy
    assert "reused_from" not in json.loads((a / "reuse.json").read_text())     # student a's request computed it
    source = json.loads((b / "reuse.json").read_text())["reused_from"]
    assert source["run"] == a.name and "student-a" not in json.dumps(source)   # no other workspace's id leaks
    at = page("train", sid="student-b", query={"preset": "tiny"})
    no_exception(at)
    hhmm = time.strftime("%H:%M", time.localtime(source["started"]))
    assert f"Reused from an identical run (started {hhmm})" in " ".join(texts(at, "info"))

    click(page("train", sid="student-c", query={"preset": "tiny"}), "Start training")   # finished: at once
    third = reg.jobs(owner="student-c")[0]
    assert reg.wait(third.id, 5).status == "finished" and [c[0] for c in fake.calls] == ["train"]
    assert json.loads((run_folder(app_env["runs"], "student-c") / "reuse.json").read_text())["reused_from"]
    for ws in ("student-a", "student-b", "student-c"):         # each sees its own run only
        assert [j.owner for j in reg.jobs(owner=ws)] == [ws]
        assert len([d for d in (app_env["runs"] / ws).iterdir()]) == 1

    click(page("train", sid="student-c", query={"preset": "tiny", "seed": "4"}), "Start training")   # other seed
    reg.wait(reg.jobs(owner="student-c")[-1].id, 10)
    assert [c[0] for c in fake.calls] == ["train", "train"]


def test_cancel_leaves_the_others_training_and_the_last_one_stops_it(app_env, monkeypatch, tiny_run):
    reg, fake, block = _blocked(monkeypatch, tiny_run)
    for ws in ("student-a", "student-b", "student-c"):
        click(page("train", sid=ws, query={"preset": "tiny"}), "Start training")
    a, b, c = (reg.jobs(owner=ws)[0] for ws in ("student-a", "student-b", "student-c"))
    wait_until(lambda: all(j.meta.get("follows") for j in (a, b, c)))
    shared = reg.get(a.meta["follows"])
    reg.cancel(a.id, "student-a")
    assert reg.wait(a.id, 5).status == "stopped"
    assert shared.active and not shared.stop.is_set()          # b and c still follow it
    reg.cancel(b.id, "student-b")
    reg.cancel(c.id, "student-c")
    for j in (b, c):
        assert reg.wait(j.id, 5).status == "stopped"
    assert reg.wait(shared.id, 5).done and shared.stop.is_set()   # nobody left: the computation stopped
    assert reg.counts() == {"running": 0, "queued": 0}
    block.set()
    cache = app_env["runs"] / ".run-cache" / "entries"
    assert not cache.exists() or not any(cache.iterdir())      # a stopped run is not published


def test_attacks_with_the_same_thief_on_reused_runs_are_stolen_once(app_env):
    for ws in ("student-a", "student-b"):
        click(page("train", sid=ws, query={"preset": "tiny"}), "Start training")
        at = click(page("attack", sid=ws), "Start the attack")
        no_exception(at)
        assert "Victims and their stolen copies" in [e.value for e in at.subheader]
    steals = [c for c in app_env["pipeline"].calls if c[0] == "steal"]
    assert len(steals) == 2                                    # the default pair of thieves, once for both workspaces
    a, b = (run_folder(app_env["runs"], ws) for ws in ("student-a", "student-b"))
    assert json.loads((a / "thieves.json").read_text()) == json.loads((b / "thieves.json").read_text())
    ver = page("verify", sid="student-b")
    no_exception(ver)
    assert any("Ownership proven with" in e.value or "Not proven" in e.value for e in ver.markdown)
