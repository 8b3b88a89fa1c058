"""Where the job registry's jobs execute: in the registry's own worker thread (default), or as Ray tasks on a
cluster named by ``EWE_RAY_ADDRESS`` or the app's ``--ray-address`` start option (docs/CLASS.md).

An executor runs ``fn(ctx)`` for a job and returns its result; the registry's worker thread calls it and
keeps the queue, the statuses and the bounds (ui/jobs.py). With Ray the worker thread only waits: the job
function is shipped to a Ray worker, which gets a stand-in context whose listener batches the events and
whose ``stop`` is a real ``threading.Event``. Every ``EXCHANGE_S`` a thread in the Ray task hands the batch
(and a copy of ``ctx.data``) to a small per-job actor and reads back the cancel flag; the registry's thread
drains the actor into the job's own context, so the pages' live charts see the same events as with local
threads, and a Cancel click sets the flag the training loop reads at its next batch (it keeps what
finished, as a local cancel does). ``ray.cancel`` is the fallback for a task that does not stop in
``CANCEL_GRACE_S``.

Results are written by the Ray worker to the job's run folder: the paths are the app's, so on more than one
machine the runs folder (and the cache of innocent populations, ``EWE_CACHE_DIR``) must be shared storage
mounted at the same path on every node. Nothing is shipped back but the events and the result dict.
"""
from __future__ import annotations

import contextlib
import copy
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ewe.config import ConfigError

EXCHANGE_S = 0.2          # how often a Ray task hands over its events and reads the cancel flag
CANCEL_GRACE_S = 60.0     # a task still running this long after Cancel is ended by ray.cancel
ROOT = Path(__file__).resolve().parents[1]


class LocalExecutor:
    """Today's behaviour: the job runs in the registry's worker thread."""
    name = "local"

    def run(self, fn: Callable, ctx) -> Any:
        return fn(ctx)

    def call(self, fn: Callable, *args, **kwargs) -> Any:
        return fn(*args, **kwargs)

    def slots(self) -> int | None:
        return None


def ray_address(argv: list[str] | None = None) -> str | None:
    """The Ray cluster to use: ``--ray-address ADDR`` among the app's start options (``streamlit run app.py
    -- --ray-address ADDR``), else ``EWE_RAY_ADDRESS``; None (local threads) when neither is set."""
    args = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(args):
        if arg == "--ray-address" and i + 1 < len(args):
            return args[i + 1].strip() or None
        if arg.startswith("--ray-address="):
            return arg.split("=", 1)[1].strip() or None
    return os.environ.get("EWE_RAY_ADDRESS", "").strip() or None


def from_settings(threads: int = 1, argv: list[str] | None = None):
    """The executor the app's start-up settings ask for (raises ConfigError when the cluster is unreachable)."""
    address = ray_address(argv)
    return RayExecutor(address, threads=threads) if address else LocalExecutor()


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """A plain TCP connect to the head's port first: ray.init on a dead address retries for a minute."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"EWE_RAY_ADDRESS / --ray-address {address!r} is not host:port (e.g. 10.0.0.5:6379)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start it with "
                          "`ray start --head` there, or unset EWE_RAY_ADDRESS to train on this machine") from None


def _worker_env() -> dict[str, str]:
    """The app's EWE_* settings (runs folder, cache, data, thread policy) and its code on the workers' path."""
    env = {k: v for k, v in os.environ.items() if k.startswith("EWE_") or k == "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return env


class RayExecutor:
    """Jobs as Ray tasks on the cluster at ``address``, ``threads`` CPUs (and torch threads) each."""
    name = "ray"

    def __init__(self, address: str, threads: int = 1, init_kwargs: dict[str, Any] | None = None):
        try:
            import ray
        except ImportError:
            raise ConfigError("EWE_RAY_ADDRESS is set but Ray is not installed: "
                              "pip install -r requirements-ray.txt") from None
        self.ray, self.address, self.threads = ray, address, max(1, int(threads))
        check_reachable(address)
        if not ray.is_initialized():
            try:
                ray.init(address=address, runtime_env={"env_vars": _worker_env()}, log_to_driver=False,
                         **(init_kwargs or {}))
            except Exception as exc:  # noqa: BLE001 - one line for the page, not Ray's traceback
                raise ConfigError(f"cannot join the Ray cluster at {address}: {_first_line(exc)} (a cluster with "
                                  "token authentication needs its RAY_AUTH_TOKEN here too; docs/CLASS.md)") from None
        self._task = ray.remote(num_cpus=self.threads, max_retries=0)(_run_on_worker)
        self._channel = ray.remote(num_cpus=0)(_Channel)

    def slots(self) -> int:
        """Jobs that fit on the cluster at once (its CPUs divided by the CPUs a job asks for)."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)) // self.threads)

    def call(self, fn: Callable, *args, **kwargs) -> Any:
        """A plain function on the cluster (the warm-up's innocent population), its result back."""
        return self.ray.get(self.ray.remote(num_cpus=self.threads, max_retries=0)(fn).remote(*args, **kwargs))

    def run(self, fn: Callable, ctx) -> Any:
        ray = self.ray
        channel = self._channel.remote()
        ref = self._task.remote(fn, channel, self.threads, str(ctx.out_dir) if ctx.out_dir else None)
        cancelled_at = None
        try:
            while True:
                ready, _ = ray.wait([ref], timeout=EXCHANGE_S)
                self._drain(channel, ctx)
                if ctx.stop.is_set() and cancelled_at is None:
                    cancelled_at = time.monotonic()
                    channel.cancel.remote()
                if ready:
                    break
                if cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_GRACE_S:
                    ray.cancel(ref, force=True)
                    cancelled_at = float("inf")      # once
            self._drain(channel, ctx)
            try:
                result, data = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:   # the job's own error, as the page shows it locally
                cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                if isinstance(cause, ray.exceptions.RayError):
                    raise RayJobError(_first_line(cause)) from None
                raise cause from None
            except (ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError):
                if ctx.stop.is_set():
                    return {"status": "stopped"}
                raise RayJobError("the Ray worker running this job died (see the cluster's logs)") from None
            except ray.exceptions.RayError as exc:     # Ray's own failures: one line for the page
                raise RayJobError(_first_line(exc)) from None
            _replace(ctx.data, data)
            return result
        finally:
            with contextlib.suppress(Exception):   # the cluster may be gone; the job's outcome is set already
                ray.kill(channel)

    def _drain(self, channel, ctx) -> None:
        try:
            events, data = self.ray.get(channel.drain.remote())
        except self.ray.exceptions.RayError as exc:   # the mailbox's node died: one line for the page
            raise RayJobError(_first_line(exc)) from None
        for event in events:
            ctx.listener(event)
        if data is not None:
            _replace(ctx.data, data)


class RayJobError(RuntimeError):
    """A job that Ray itself could not run (its worker died, its function could not be unpickled there)."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _replace(target: dict, new: dict) -> None:
    """Update in place: a page may hold the job's data dict."""
    target.clear()
    target.update(new)


class _Channel:
    """One job's mailbox between its Ray task and the app (a Ray actor): events out, the cancel flag in."""

    def __init__(self):
        self.events: list[dict] = []
        self.data: dict | None = None
        self.cancelled = False

    def exchange(self, events: list[dict], data: dict | None) -> bool:
        self.events.extend(events)
        if data is not None:
            self.data = data
        return self.cancelled

    def drain(self) -> tuple[list[dict], dict | None]:
        events, data, self.events, self.data = self.events, self.data, [], None
        return events, data

    def cancel(self) -> None:
        self.cancelled = True


class _WorkerContext:
    """What a job function gets on a Ray worker: the JobContext's attributes, events batched to the app."""

    def __init__(self, channel, out_dir: str | None):
        self.channel = channel
        self.stop = threading.Event()
        self.data: dict[str, Any] = {}
        self.out_dir = Path(out_dir) if out_dir else None
        self._events: list[dict] = []
        self._sent_data: str | None = None
        self._lock = threading.Lock()

    def listener(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(event)

    def message(self, text: str) -> None:
        self.listener({"kind": "message", "text": text})

    def exchange(self) -> None:
        import ray
        with self._lock:
            events, self._events = self._events, []
            data = copy.deepcopy(self.data)
        shown = repr(data)
        changed = shown != self._sent_data
        self._sent_data = shown
        if ray.get(self.channel.exchange.remote(events, data if changed else None)):
            self.stop.set()


def _run_on_worker(fn: Callable, channel, threads: int, out_dir: str | None):
    """The Ray task: run the job with a worker context; a side thread exchanges events and the cancel flag."""
    import torch
    torch.set_num_threads(threads)
    ctx = _WorkerContext(channel, out_dir)
    done = threading.Event()

    def pump():
        while not done.wait(EXCHANGE_S):
            ctx.exchange()
    pumper = threading.Thread(target=pump, name="ewe-ray-events", daemon=True)
    pumper.start()
    try:
        result = fn(ctx)
    finally:
        done.set()
        pumper.join()
        ctx.exchange()          # the last events are in the mailbox before the result is
    return result, ctx.data
