"""The job registry on its own: queue positions, cancel, failures, isolation, synchronous mode."""
from __future__ import annotations

import threading
import time

from ui.jobs import JobRegistry


def _blocking(gate: threading.Event, result=None):
    def fn(ctx):
        ctx.listener({"kind": "progress", "fraction": 0.5, "eta": 3.0, "elapsed": 1.0, "stage": "pretrain"})
        ctx.listener({"kind": "epoch", "model": "pretrain", "epoch": 1, "epochs": 1, "metrics": {}})
        while not gate.is_set():
            if ctx.stop.is_set():
                return {"status": "stopped"}
            time.sleep(0.01)
        return result or {"status": "finished"}
    return fn


def test_queue_positions_and_bounded_concurrency():
    reg = JobRegistry(max_running=1)
    gate = threading.Event()
    a = reg.submit("s1", "train", _blocking(gate))
    b = reg.submit("s2", "train", _blocking(gate))
    c = reg.submit("s3", "train", _blocking(gate))
    deadline = time.time() + 5
    while a.status != "running" and time.time() < deadline:
        time.sleep(0.01)
    assert (a.status, b.status, c.status) == ("running", "queued", "queued")
    assert reg.queue_position(b.id) == 1 and reg.queue_position(c.id) == 2
    assert reg.counts() == {"running": 1, "queued": 2}
    assert a.progress["fraction"] == 0.5 and len(a.events) == 1      # progress kept apart from events
    gate.set()
    for j in (a, b, c):
        assert reg.wait(j.id, 5).status == "finished"


def test_cancel_running_and_queued():
    reg = JobRegistry(max_running=1)
    gate = threading.Event()
    a = reg.submit("s1", "train", _blocking(gate))
    b = reg.submit("s1", "train", _blocking(gate))
    while a.status != "running":
        time.sleep(0.01)
    assert not reg.cancel(a.id, owner="intruder")                   # only the owner may cancel
    assert reg.cancel(b.id, owner="s1") and b.status == "cancelled"
    assert reg.cancel(a.id, owner="s1")
    assert reg.wait(a.id, 5).status == "stopped"


def test_failure_is_a_message_not_a_crash():
    from ewe.config import ConfigError
    reg = JobRegistry(synchronous=True)

    def bad(ctx):
        raise ConfigError("ratio must be positive")

    def worse(ctx):
        raise RuntimeError("boom")

    assert reg.submit("s", "train", bad).error == "ratio must be positive"
    j = reg.submit("s", "train", worse)
    assert j.status == "failed" and j.error == "RuntimeError: boom"
    ok = reg.submit("s", "train", lambda ctx: {"status": "finished"})     # the registry keeps working
    assert ok.status == "finished"


def test_sessions_are_isolated():
    reg = JobRegistry(synchronous=True)
    mine = reg.submit("me", "train", lambda ctx: None)
    reg.submit("you", "train", lambda ctx: None)
    assert reg.jobs(owner="me") == [mine]
    assert reg.get(mine.id, owner="you") is None


def test_old_finished_jobs_are_trimmed():
    reg = JobRegistry(synchronous=True, keep_per_owner=3)
    for _ in range(6):
        reg.submit("me", "train", lambda ctx: None)
    assert len(reg.jobs(owner="me")) <= 4


def test_runs_get_every_core_shared_among_the_runs_allowed_at_once(monkeypatch):
    from ui import jobs
    monkeypatch.delenv("EWE_APP_TORCH_THREADS", raising=False)
    monkeypatch.delenv("EWE_APP_MAX_RUNS", raising=False)
    monkeypatch.setattr(jobs.os, "cpu_count", lambda: 2)
    assert jobs.default_torch_threads() == 2             # the 2-core target: both cores for the one run
    monkeypatch.setenv("EWE_APP_MAX_RUNS", "2")
    assert jobs.default_torch_threads() == 1
    monkeypatch.setenv("EWE_APP_MAX_RUNS", "4")
    assert jobs.default_torch_threads() == 1             # never below one thread
    monkeypatch.setenv("EWE_APP_TORCH_THREADS", "3")
    assert jobs.default_torch_threads() == 3
    monkeypatch.setattr(jobs.os, "cpu_count", lambda: None)
    monkeypatch.delenv("EWE_APP_TORCH_THREADS")
    monkeypatch.delenv("EWE_APP_MAX_RUNS")
    assert jobs.default_torch_threads() == 1


def test_live_panels_poll_less_often_on_a_busy_server():
    """Each live job is a panel rerunning on the server: alone a running job's panel polls every 1.5 s, a
    waiting one's every 3 s; thirty live jobs (a class) stretch every panel's interval so that the server
    does about PANEL_RERUNS_PER_SECOND reruns a second in all; an ended job's panel does not poll."""
    from ui.widgets import PANEL_RERUNS_PER_SECOND, POLL_SECONDS, poll_seconds
    reg = JobRegistry(max_running=1)
    gate = threading.Event()
    jobs = [reg.submit(f"s{i}", "train", _blocking(gate)) for i in range(30)]
    while jobs[0].status != "running":
        time.sleep(0.01)
    assert reg.live() == 30
    assert poll_seconds(jobs[0], 1) == POLL_SECONDS and poll_seconds(jobs[1], 1) == 2 * POLL_SECONDS
    assert poll_seconds(jobs[0], reg.live()) == poll_seconds(jobs[1], reg.live()) == 30 / PANEL_RERUNS_PER_SECOND
    gate.set()
    for j in jobs:
        reg.wait(j.id, 5)
    assert reg.live() == 0 and poll_seconds(jobs[0], 0) is None
