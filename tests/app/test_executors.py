"""The job registry on a Ray cluster (ui/executors.py): a local multi-worker Ray started here, real tiny
digits runs as Ray tasks, their events streamed back, a Cancel that reaches the worker's training loop."""
from __future__ import annotations

import json
import time

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (optional: pip install -r requirements-ray.txt)")

from ewe.config import ConfigError  # noqa: E402
from ui import executors, presets, work  # noqa: E402
from ui.jobs import JobContext, JobRegistry  # noqa: E402

# digits, a few epochs on a few hundred images: seconds per run, long enough for two to overlap
RUN = dict(epochs=3, w_epochs=1, n_triggers=32, n_heldout=16, train_size=256, test_size=64, batch_size=32,
           threads=1)


def test_an_unreachable_cluster_is_one_line_not_a_traceback():
    with pytest.raises(ConfigError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:9"):
        executors.from_settings(argv=["--ray-address", "127.0.0.1:9"])
    with pytest.raises(ConfigError, match="not host:port"):
        executors.from_settings(argv=["--ray-address=nowhere"])


def test_nothing_set_keeps_local_threads(monkeypatch):
    monkeypatch.delenv("EWE_RAY_ADDRESS", raising=False)
    assert executors.ray_address([]) is None
    assert isinstance(JobRegistry(synchronous=True).executor, executors.LocalExecutor)
    monkeypatch.setenv("EWE_RAY_ADDRESS", "10.0.0.5:6379")
    assert executors.ray_address([]) == "10.0.0.5:6379"
    assert executors.ray_address(["--ray-address", "127.0.0.1:6379"]) == "127.0.0.1:6379"   # option wins


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray with 3 worker CPUs; the workers see this process's EWE_* settings (cache, runs)."""
    if ray.is_initialized():
        ray.shutdown()
    # "local": a new instance, never one that happens to run on this machine (ray.init would join it)
    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": executors._worker_env()})
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def arrivals(monkeypatch):
    """(job id, event kind) in the order the registry's contexts received them."""
    seen: list[tuple[str, str]] = []
    original = JobContext.listener

    def recording(self, event):
        seen.append((self.job.id, event.get("kind")))
        original(self, event)
    monkeypatch.setattr(JobContext, "listener", recording)
    return seen


def _registry(address: str) -> JobRegistry:
    return JobRegistry(max_running=2, torch_threads=1, executor=executors.RayExecutor(address, threads=1))


def test_two_runs_progress_at_once_on_ray_workers(cluster, arrivals, tmp_path):
    reg = _registry(cluster)
    jobs = [reg.submit("ws", "train", work.train_job(presets.make_config("digits", "quick", seed=s, **RUN),
                                                        tmp_path / f"run{s}"), out_dir=tmp_path / f"run{s}")
            for s in (0, 1)]
    for job in jobs:
        assert reg.wait(job.id, 240).status == "finished", job.error
    ids = [job.id for job in jobs]
    # up to the last event of the run that ended first (train_victims emits no run_end)
    first_end = min(max(i for i, (j, _) in enumerate(arrivals) if j == job_id) for job_id in ids)
    before = arrivals[:first_end]
    # both runs' training progress reached the app before either run ended, and interleaved
    for job_id in ids:
        assert any(j == job_id and k in ("progress", "epoch") for j, k in before), (job_id, before)
    switches = sum(1 for a, b in zip(before, before[1:]) if a[0] != b[0])
    assert switches >= 2, before
    for job in jobs:     # the same events as a local run: epochs of the defended model, the data source
        assert any(e["kind"] == "epoch" and e["model"] == "defended" for e in job.events)
        assert any("Data:" in m for m in job.messages)
        assert 0 < job.progress["fraction"] <= 1
        on_disk = json.loads((job.out_dir / "result.json").read_text())
        assert on_disk["status"] == job.result["status"] == "trained"     # train_victims' word for done


def test_cancel_reaches_the_worker_and_keeps_what_finished(cluster, arrivals, tmp_path):
    reg = _registry(cluster)
    out = tmp_path / "long"
    cfg = presets.make_config("digits", "quick", seed=3, **{**RUN, "epochs": 200})
    job = reg.submit("ws", "train", work.train_job(cfg, out), out_dir=out)
    deadline = time.time() + 120
    while not any(e["kind"] == "epoch" for e in job.events) and time.time() < deadline:   # training on the worker
        time.sleep(0.05)
    assert any(e["kind"] == "epoch" for e in job.events), (job.status, job.error)
    cancelled = time.time()
    assert reg.cancel(job.id, owner="ws")
    assert reg.wait(job.id, 60).status == "stopped", job.error
    # the worker's own loop stopped (the pipeline wrote its stopped result), well before ray.cancel's grace
    assert time.time() - cancelled < executors.CANCEL_GRACE_S / 2
    assert job.result["status"] == "stopped"
    assert json.loads((out / "result.json").read_text())["status"] == "stopped"
    assert (out / "config.json").exists()
    epochs = [e["epoch"] for e in job.events if e["kind"] == "epoch" and e["model"] == "pretrain"]
    assert epochs and max(epochs) < 200      # ended early, with the epochs it finished recorded


def test_worker_context_sends_its_data_and_reads_the_cancel_flag(cluster):
    """The sweep's partial points (ctx.data) travel too, and the flag sets the worker's threading.Event."""
    channel = ray.remote(num_cpus=0)(executors._Channel).remote()
    ctx = executors._WorkerContext(channel, None)
    ctx.data["points"] = [{"tau": 1.0}]
    ctx.message("hello")
    ctx.exchange()
    events, data = ray.get(channel.drain.remote())
    assert events == [{"kind": "message", "text": "hello"}] and data == {"points": [{"tau": 1.0}]}
    ctx.exchange()                                   # unchanged data is not sent again
    assert ray.get(channel.drain.remote()) == ([], None)
    assert not ctx.stop.is_set()
    ray.get(channel.cancel.remote())
    ctx.exchange()
    assert ctx.stop.is_set()
    ray.kill(channel)


def test_a_failing_job_on_ray_is_its_own_message(cluster, tmp_path):
    """The library's error raised on the worker reaches the page as its own one line, as with threads."""
    reg = _registry(cluster)

    def bad(ctx):            # nested: Ray ships it by value (this test module is not importable there)
        raise ValueError("ratio must be positive (raised on the worker)")

    def unshippable(ctx):   # calls a function of this module, shipped by name: the worker cannot import it
        return _by_name(ctx)
    job = reg.submit("ws", "train", bad)
    assert reg.wait(job.id, 60).status == "failed"
    assert job.error == "ratio must be positive (raised on the worker)"
    job = reg.submit("ws", "train", unshippable)
    assert reg.wait(job.id, 60).status == "failed"
    assert job.error.startswith("RayJobError: ") and "\n" not in job.error


def _by_name(ctx):
    return {"status": "finished"}


def test_the_app_says_in_one_line_that_the_cluster_is_unreachable(monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.app.helpers import ROOT
    from ui import state
    monkeypatch.setenv("EWE_RAY_ADDRESS", "127.0.0.1:9")
    state._process_registry.clear()
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    finally:
        state._process_registry.clear()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("cannot reach the Ray cluster at 127.0.0.1:9") and "\n" not in error


def test_the_warm_up_build_runs_on_a_ray_worker(cluster):
    """The innocent population's warm-up goes through executor.call: a Ray task in another process."""
    import os
    ex = executors.RayExecutor(cluster, threads=1)
    assert ex.call(lambda: os.getpid()) != os.getpid()
    assert ex.call(lambda xs, reverse: sorted(xs, reverse=reverse), [3, 1, 2], reverse=True) == [3, 2, 1]
    assert ex.slots() == 3
