"""Job registry: runs execute in worker threads, pages only read snapshots.

Plain threading, no Streamlit here: worker code never calls ``st.*``. One registry per process (the page
layer keeps it in ``st.cache_resource``); each job belongs to one workspace (``owner``, the ``ws`` id in the
URL), so workspaces only see their own jobs, and a reload or a second tab of a workspace finds its jobs again.
Finished jobs are bounded per workspace and over all workspaces (``keep_total``); runs live on in their run
folders. At most ``max_running`` jobs train at once; the rest wait in a FIFO queue whose
positions are visible to the pages. ``torch.set_num_threads`` is set once so concurrent runs do not
oversubscribe the cores.

A job is a function ``fn(ctx: JobContext) -> dict | None``. ``ctx.listener`` is the event listener to pass
to ``ewe.experiments.pipeline`` (it records events and the latest progress), ``ctx.stop`` the ``threading.Event``
that ends the run at the next batch, and ``ctx.data`` a dict the job may fill with partial results (e.g.
the points of a sweep as they arrive).

``synchronous=True`` runs every job inside ``submit`` (tests: AppTest pages see finished jobs at once).
``executor`` is where a job's function runs (ui/executors.py): in the worker thread itself (default), or as a
Ray task the worker thread waits for, its events streamed back into the same ``JobContext``.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("ewe.app.jobs")

# OpenMP threads that wait by sleeping, not spinning. Beside another busy process on the 2-core machine,
# spinning threads burn the CPU time their partner thread needs and every parallel region waits for a
# thread that was pushed off its core: 60 training steps took 31-50 s with 2 spinning threads, 2-5 s with
# 2 passive ones and 6-7 s with 1 thread, a whole digits quick run 779 s against 140 s (docs/RESULTS.md
# §5; docs/history/2026-11-29-app-threads-and-eta.md). The wait policy does not change the arithmetic (the
# thread count would), so runs keep matching the CLI. It is read once, when torch loads OpenMP: this module
# is imported by the app before anything imports torch. Set OMP_WAIT_POLICY to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TERMINAL = ("finished", "stopped", "failed", "cancelled")


@dataclass
class Job:
    id: str
    owner: str
    kind: str                       # train | attack | run | sweep
    label: str
    out_dir: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)     # what the page needs to show it (config, ...)
    status: str = "queued"          # queued | running | finished | stopped | failed | cancelled
    events: list[dict[str, Any]] = field(default_factory=list)
    progress: dict[str, Any] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    stop: threading.Event = field(default_factory=threading.Event, repr=False)
    fn: Callable[["JobContext"], Any] | None = field(default=None, repr=False)
    beside: bool = False            # runs beside the queue (JobRegistry.run_beside): takes no training slot

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def active(self) -> bool:
        return not self.done


class JobContext:
    """What a job function gets: the listener for ewe events, the stop flag, a dict for partial data."""

    def __init__(self, job: Job):
        self.job = job
        self.stop = job.stop
        self.data = job.data
        self.out_dir = job.out_dir

    def listener(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        job = self.job
        if kind == "progress":
            job.progress = dict(event)          # only the latest one is kept
            return
        if kind == "message" and event.get("text"):
            job.messages.append(str(event["text"]))
        if kind == "run_end":
            job.progress = {**job.progress, "fraction": 1.0 if event.get("status") == "finished"
                            else job.progress.get("fraction", 0.0), "eta": 0}
        job.events.append(event)

    def message(self, text: str) -> None:
        self.listener({"kind": "message", "text": text})


class JobRegistry:
    def __init__(self, max_running: int = 1, torch_threads: int | None = None, synchronous: bool = False,
                 keep_per_owner: int = 50, keep_total: int | None = None, executor=None):
        from ui.executors import LocalExecutor
        self.executor = executor or LocalExecutor()
        self.max_running = max(1, int(max_running))
        self.synchronous = synchronous
        self.keep_per_owner = keep_per_owner
        self.keep_total = default_keep_total() if keep_total is None else max(0, int(keep_total))
        self._jobs: dict[str, Job] = {}
        self._queue: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._workers: list[threading.Thread] = []
        self.torch_threads = torch_threads
        if not synchronous:
            for i in range(self.max_running):
                t = threading.Thread(target=self._work, name=f"ewe-job-worker-{i}", daemon=True)
                t.start()
                self._workers.append(t)

    # ---- submitting and stopping ------------------------------------------------------------------
    def submit(self, owner: str, kind: str, fn: Callable[[JobContext], Any], *, label: str = "",
               out_dir: str | Path | None = None, meta: dict[str, Any] | None = None) -> Job:
        with self._lock:
            job = self._register(owner, kind, fn, label, out_dir, meta)
            if not self.synchronous:
                self._queue.append(job.id)
                self._wake.notify_all()
        if self.synchronous:
            self._execute(job)
        return job

    def run_beside(self, owner: str, kind: str, fn: Callable[[JobContext], Any], *, label: str = "",
                   out_dir: str | Path | None = None, meta: dict[str, Any] | None = None) -> Job:
        """A job that computes nothing itself (a run served from the run cache, or one following an identical
        run that trains in the queue: ui/reuse.py) starts at once in its own thread instead of waiting for a
        training slot; the workspace sees it like any job (status, progress, Cancel)."""
        with self._lock:
            job = self._register(owner, kind, fn, label, out_dir, meta, beside=True)
        if self.synchronous:
            self._execute(job)
        else:
            threading.Thread(target=self._execute, args=(job,), name=f"ewe-beside-{job.id}", daemon=True).start()
        return job

    def _register(self, owner, kind, fn, label, out_dir, meta, beside: bool = False) -> Job:
        """A new job in the registry (under the lock)."""
        job_id = f"{kind}-{next(self._ids)}-{int(time.time() * 1000) % 100000:05d}"
        job = Job(id=job_id, owner=owner, kind=kind, label=label or job_id, beside=beside,
                  out_dir=Path(out_dir) if out_dir else None, meta=dict(meta or {}), fn=fn)
        self._jobs[job_id] = job
        self._trim(owner)
        return job

    def cancel(self, job_id: str, owner: str | None = None) -> bool:
        """Stop a running job at its next batch (keeps what finished) or drop a queued one."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or (owner is not None and job.owner != owner) or job.done:
                return False
            job.stop.set()
            if job.status == "queued" and job_id in self._queue:
                self._queue.remove(job_id)
                job.status, job.ended = "cancelled", time.time()
                job.error = None
            return True

    # ---- reading ----------------------------------------------------------------------------------
    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            return None
        return job

    def jobs(self, owner: str | None = None, kind: str | None = None) -> list[Job]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [j for j in jobs if (owner is None or j.owner == owner) and (kind is None or j.kind == kind)]

    def queue_position(self, job_id: str) -> int | None:
        """1-based position among waiting jobs (1 = next to start), None when not waiting."""
        with self._lock:
            return self._queue.index(job_id) + 1 if job_id in self._queue else None

    def live(self) -> int:
        """Jobs queued or running, followers of a shared computation included: each is a live panel polling
        on somebody's page."""
        return sum(j.active for j in self.jobs())

    def counts(self) -> dict[str, int]:
        jobs = [j for j in self.jobs() if not j.beside]     # what trains or waits for a slot
        return {"running": sum(j.status == "running" for j in jobs),
                "queued": sum(j.status == "queued" for j in jobs)}

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Block until the job is done (tests, benchmarks)."""
        t0 = time.time()
        job = self._jobs[job_id]
        while not job.done and time.time() - t0 < timeout:
            time.sleep(0.05)
        return job

    def shutdown(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.stop.set()
            self._queue.clear()
            self._wake.notify_all()

    # ---- internals --------------------------------------------------------------------------------
    def _trim(self, owner: str | None = None) -> None:
        """Memory bound: forget the oldest finished jobs of an owner beyond ``keep_per_owner``, and the oldest
        over all owners beyond ``keep_total``. A forgotten job loses only its in-memory copy (events, live
        data): its run folder stays on disk, where the pages read runs from."""
        done = [j for j in self._jobs.values() if j.done]
        mine = [j for j in done if j.owner == owner]
        old = sorted(mine, key=lambda j: j.created)[: max(0, len(mine) - self.keep_per_owner)]
        gone = {j.id for j in old}
        rest = sorted((j for j in done if j.id not in gone), key=lambda j: j.created)
        for job in old + rest[: max(0, len(rest) - self.keep_total)]:
            self._jobs.pop(job.id, None)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._wake.wait()
                job = self._jobs.get(self._queue.pop(0))
            if job is not None and job.status == "queued":
                self._execute(job)

    def _execute(self, job: Job) -> None:
        # torch's intra-op thread count is per calling thread (OpenMP): set it in the thread that trains
        if self.torch_threads:
            _set_torch_threads(self.torch_threads)
        ctx = JobContext(job)
        job.status, job.started = "running", time.time()
        try:
            result = self.executor.run(job.fn, ctx) if job.fn else None
            if isinstance(result, dict):
                job.result = result
            status = (result or {}).get("status") if isinstance(result, dict) else None
            job.status = "stopped" if (status == "stopped" or job.stop.is_set()) else "finished"
        except Exception as exc:  # the page shows job.error; the traceback goes to the server log only
            job.error = _describe(exc)
            job.status = "stopped" if job.stop.is_set() and _is_stop(exc) else "failed"
            if job.status == "failed":
                log.error("job %s failed:\n%s", job.id, traceback.format_exc())
        finally:
            job.ended = time.time()
            job.fn = None   # drop the closure (configs, tensors) once done
            with self._lock:
                self._trim(job.owner)   # the bound holds once jobs end, not only when new ones arrive


def _is_stop(exc: BaseException) -> bool:
    return type(exc).__name__ == "Stopped"


def _describe(exc: BaseException) -> str:
    """A message for the page: the library's own errors say what to change; others get their type."""
    name = type(exc).__name__
    text = str(exc).strip() or name
    if name in ("ConfigError", "DataError", "RunFolderError", "CheckpointError", "ValueError"):
        return text
    return f"{name}: {text}"


def _set_torch_threads(n: int) -> None:
    try:
        import torch
        torch.set_num_threads(int(n))
    except Exception:  # pragma: no cover - torch missing is reported elsewhere
        pass


def default_keep_total() -> int:
    """Finished jobs kept in memory over all workspaces (``EWE_APP_KEEP_JOBS``, default 200): a job holds its
    events and live data, up to a few MB for a long run; older ones live on in their run folders."""
    return max(0, int(os.environ.get("EWE_APP_KEEP_JOBS", "200")))


def default_max_running() -> int:
    return max(1, int(os.environ.get("EWE_APP_MAX_RUNS", "1")))


def default_torch_threads() -> int:
    """Threads per run: the cores divided among the runs allowed at once (at least 1). No core is kept
    for the web server: measured on the 2-core target machine (bench/bench_app.py, retired: docs/history/2026-12-07-retired-bench-scripts.md),
    2 threads train a digits quick run in 72-74 s against 100-109 s with 1, and page clicks during
    training stay as fast (median 0.25 s against 0.28 s). There it is also the CLI's default (torch's), and
    the thread count changes the arithmetic: with 1 thread the app's runs differed from the CLI's for the
    same seed, with 2 they match to the digit."""
    env = os.environ.get("EWE_APP_TORCH_THREADS")
    if env:
        return max(1, int(env))
    return max(1, (os.cpu_count() or 1) // default_max_running())
