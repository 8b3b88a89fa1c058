"""Identical requests computed once (issue 25): the Train and Attack pages submit through here.

A request becomes two jobs. The computation is a hidden job in the registry's queue (owner ``SHARED``, which no
workspace id can be), writing into a private folder of the run cache (ewe.results.cache) and publishing it
there when it finishes. Every requester, the first one included, gets its own job in its workspace that runs
beside the queue (``JobRegistry.run_beside``): it serves a finished entry at once, or follows the computation
of its key while it trains (the same progress, events and curves: the same lists), then checks the entry out
into the requester's run folder (hard links) with a ``reuse.json`` saying which key it holds and, when another
workspace asked first, which run it was reused from and when that started. Cancel stops only the requester's
job; the computation stops when nobody follows it any more. A computation that was stopped or failed is
not published; its followers see its error, or start it again when it was stopped while they joined.

Where the pages find nothing to key (an uploaded run, a folder made before the cache), an attack runs in the
folder as before.
"""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ewe.config import RunConfig
from ewe.results import cache as rc
from ui.work import attack_job, train_job
from ui.workspaces import run_cache, run_cache_enabled
from ui.jobs import Job, JobContext, JobRegistry

SHARED = ".shared"             # the computations' owner: a workspace id never has a dot (ui/state.py)
POLL = 0.2                     # seconds between two looks at the computation a request follows

_lock = threading.RLock()       # re-entered when a synchronous registry runs a computation inside submit
_inflight: dict[tuple[int, str], Job] = {}        # (registry, key) -> the computation of that key


def submit_train(reg: JobRegistry, owner: str, cfg: RunConfig, out_dir: Path, *, label: str,
                 meta: dict[str, Any] | None = None) -> Job:
    """Train ``cfg``'s victims for ``owner`` into ``out_dir``: from the cache, by following an identical run, or
    by queueing the computation. Without the cache (EWE_APP_RUN_CACHE=0), the plain job as before."""
    if not run_cache_enabled():
        return reg.submit(owner, "train", train_job(cfg, out_dir), label=label, out_dir=out_dir, meta=meta)
    key = rc.run_key(cfg, threads=reg.torch_threads)

    def compute(work: Path):
        return train_job(cfg, work)
    return _request(reg, owner, "train", key, compute, out_dir, label, meta)


def submit_attack(reg: JobRegistry, owner: str, run_dir: Path, kinds: list[dict[str, Any]], thieves: int, *,
                  label: str, meta: dict[str, Any] | None = None) -> Job:
    """Steal from the run in ``run_dir`` with ``thieves`` thieves of each kind (thief settings): keyed by the
    folder's state and the thieves."""
    state = rc.read_state(run_dir) if run_cache_enabled() else None
    if state is None:
        return reg.submit(owner, "attack", attack_job(run_dir, kinds, thieves), label=label,
                          out_dir=run_dir, meta=meta)
    # one kind keeps the key it had before kinds existed
    key = rc.steal_key(state["key"], kinds[0] if len(kinds) == 1 else {"kinds": kinds}, thieves)

    def compute(work: Path):
        rc.link_tree(Path(run_dir), work)        # the state every folder with this key holds
        return attack_job(work, kinds, thieves)
    return _request(reg, owner, "attack", key, compute, run_dir, label, meta)


def computation_id(job: Job) -> str:
    """The computation a job shows: the shared one it follows, else its own. Everyone following one computation
    sees the same live curves, so their figures are built once (ui.charts.cached keyed by this)."""
    return job.meta.get("follows") or job.id


def live_folder(reg: JobRegistry, job: Job) -> Path | None:
    """Where ``job``'s files are being written now: the shared computation's own folder while it follows one
    (its workspace folder gets them only when the computation ends), else the job's folder."""
    shared = reg.get(job.meta["follows"]) if job.meta.get("follows") else None
    work = shared.meta.get("work") if shared is not None and shared.active else None
    return Path(work) if work is not None else job.out_dir


def reused_from(run_dir: str | Path) -> dict[str, Any] | None:
    """Where a run folder's content came from when another request computed it: {"run", "started"}."""
    return (rc.read_state(run_dir, checked=False) or {}).get("reused_from")


def reuse_text(run_dir: str | Path) -> str | None:
    """The sentence the pages show beside a reused run, so nobody takes it for a computation of their own."""
    src = reused_from(run_dir)
    if not src:
        return None
    return (f"Reused from an identical run (started {time.strftime('%H:%M', time.localtime(src['started']))}): "
            "the same settings, data and code, computed once for everyone who asked.")


# ---- internals ------------------------------------------------------------------------------------
def _request(reg: JobRegistry, owner: str, kind: str, key: str, compute: Callable[[Path], Callable],
             out_dir: Path, label: str, meta: dict[str, Any] | None) -> Job:
    return reg.run_beside(owner, kind, _serve(reg, kind, key, compute, Path(out_dir)), label=label, out_dir=out_dir,
                          meta={**(meta or {}), "cache_key": key})


def _serve(reg: JobRegistry, kind: str, key: str, compute, out_dir: Path):
    def fn(ctx: JobContext):
        cache = run_cache()
        own = len(ctx.job.messages)
        while True:
            if ctx.stop.is_set():
                return {"status": "stopped"}
            info = cache.info(key) or {}
            first = info.get("requested_by") == ctx.job.id
            source = None if first else {"run": info.get("source"), "started": info.get("started"), "key": key}
            if info and cache.checkout(key, out_dir, reused_from=source):
                ctx.job.events, ctx.job.progress = list(ctx.job.events), {**ctx.job.progress, "fraction": 1.0, "eta": 0}
                ctx.job.meta["reused_from"] = source
                text = reuse_text(out_dir)
                if text:
                    ctx.message(text)
                from ewe.results.runs import Run
                return Run(out_dir).result
            shared = _computation(reg, kind, key, compute, ctx.job, out_dir.name)
            _follow(ctx, shared, own)
            if ctx.stop.is_set():
                _leave(reg, key, shared, ctx.job, out_dir)
                return {"status": "stopped"}
            if shared.status == "failed":      # a ValueError: the page shows the computation's message as it is
                raise ValueError(shared.error or "the computation failed")
            # finished: the entry is there (next turn checks it out); stopped before we joined: start it again
    return fn


def _computation(reg: JobRegistry, kind: str, key: str, compute, follower: Job, source: str) -> Job:
    """The active computation of ``key`` with ``follower`` attached, queued now if there is none."""
    with _lock:
        shared = _inflight.get((id(reg), key))
        if shared is None or shared.done:
            shared = reg.submit(SHARED, kind, _compute(reg, key, compute, follower.id, source),
                                label=f"{kind} {key[:12]} (shared)", meta={"cache_key": key, "followers": set()})
            if not shared.done:               # a synchronous registry has run it already
                _inflight[(id(reg), key)] = shared
        shared.meta["followers"].add(follower.id)
    follower.meta["follows"] = shared.id
    return shared


def _compute(reg: JobRegistry, key: str, compute, requester: str, source: str):
    def fn(ctx: JobContext):
        cache = run_cache()
        work = cache.work_dir(source)
        ctx.job.meta["work"] = work
        try:
            result = compute(work)(ctx)
            if (result or {}).get("status") in ("trained", "finished") and not ctx.stop.is_set():
                cache.publish(key, work, {"source": source, "requested_by": requester,
                                          "started": ctx.job.started or ctx.job.created}, move=True)
            return result
        finally:
            if not ctx.stop.is_set():          # stopped: the last follower takes what finished (_leave)
                shutil.rmtree(work.parent, ignore_errors=True)
            with _lock:
                if _inflight.get((id(reg), key)) is ctx.job:
                    del _inflight[(id(reg), key)]
    return fn


def _follow(ctx: JobContext, shared: Job, own: int) -> None:
    """Mirror the computation into the follower's job until it ends or the follower is cancelled: its
    queue position, progress, events (the same list: the same live curves) and messages."""
    job = ctx.job
    while not shared.done and not ctx.stop.is_set():
        job.status = "queued" if shared.status == "queued" else "running"
        job.progress, job.events = dict(shared.progress), shared.events
        job.messages[own:] = [m for m in shared.messages if not m.startswith("Run folder:")]
        time.sleep(POLL)
    job.status = "running"
    job.events = list(shared.events)
    job.messages[own:] = [m for m in shared.messages if not m.startswith("Run folder:")]


def _leave(reg: JobRegistry, key: str, shared: Job, follower: Job, out_dir: Path) -> None:
    """A follower cancelled: the computation goes on for the others, or stops when nobody is left; the follower
    keeps what it had finished (as a stopped run of its own, no longer anybody's cached state)."""
    with _lock:
        followers = shared.meta["followers"]
        followers.discard(follower.id)
        last = not followers and shared.active
        if last:
            if _inflight.get((id(reg), key)) is shared:
                del _inflight[(id(reg), key)]
            reg.cancel(shared.id)
    if last:
        reg.wait(shared.id, timeout=120)       # it stops at the next batch and leaves its folder (_compute)
    work = shared.meta.get("work")
    if work is not None and Path(work).is_dir() and run_cache().place(work, out_dir) is not None:
        from ewe.results.runs import Run
        run = Run(out_dir)
        try:
            partial = run.result
        except (OSError, ValueError):
            partial = None
        if isinstance(partial, dict) and partial.get("status") == "running":   # it goes on for others
            run.result = {**partial, "status": "stopped"}
            run.save("result")
    if last and work is not None:
        shutil.rmtree(Path(work).parent, ignore_errors=True)
