"""Progress events, history and cancellation: the contract between training code and its watchers.

Training code emits plain-dict events through a ``Reporter``; anything can subscribe (the CLI's tqdm bar,
the app's job registry, a test). Events are JSON-safe so the history can be written as is.

Event kinds (``event["kind"]``):
- ``run_start``  {"stages": [stage names in order], "config": {...}}
- ``stage_start`` {"stage", "model", "epochs"}: a training stage begins (e.g. pretrain / defended)
- ``epoch``       {"stage", "model", "epoch", "epochs", "metrics": {accuracy, watermark_success, loss,
                   snnl: [3], temperature: [3], ...}}: one (pseudo-)epoch finished
- ``stage_end``   {"stage", "model", "metrics": {...}, "seconds"}
- ``progress``    {"fraction", "eta", "elapsed", "stage"}: coarse overall progress, at most ~4 Hz
- ``message``     {"text"}: something a user should read (e.g. data source used)
- ``run_end``     {"status": "finished" | "stopped" | "failed", "result": {...} | None}

Every event also carries ``elapsed`` (seconds since the run started) and ``eta`` (seconds, or None).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

Listener = Callable[[dict[str, Any]], None]


class Stopped(Exception):
    """Raised inside training when the stop flag is set; the pipeline keeps what finished."""


class Reporter:
    """Fans events out to listeners, keeps the history, estimates the ETA, and carries the stop flag.

    ``plan`` maps each stage name to its cost (ewe.experiments.pipeline.stage_plan: expected seconds from measured
    per-batch costs; any relative unit works); progress inside a stage is reported with
    ``advance(stage, fraction)``. The ETA is the planned work left times the seconds per unit of planned
    work measured so far. (Weighting the recent past more was measured too, bench/bench_eta.py: on the
    shared machine's runs the recent speed jumps with other people's load and the ETA got worse.)
    """

    def __init__(self, listeners: list[Listener] | None = None, stop: threading.Event | None = None):
        self.listeners = list(listeners or [])
        self.stop = stop or threading.Event()
        self.history: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()
        self.plan: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self._last_progress = 0.0

    # ---- cancellation -----------------------------------------------------------------------------
    def check(self) -> None:
        """Call once per batch: raises Stopped when a stop was requested."""
        if self.stop.is_set():
            raise Stopped()

    # ---- progress ---------------------------------------------------------------------------------
    def set_plan(self, plan: dict[str, float]) -> None:
        self.plan = dict(plan)
        self.done = {k: 0.0 for k in plan}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def fraction(self) -> float:
        total = sum(self.plan.values())
        if total <= 0:
            return 0.0
        return min(1.0, sum(self.done.get(k, 0.0) * w for k, w in self.plan.items()) / total)

    def eta(self) -> float | None:
        total = sum(self.plan.values())
        f = self.fraction()
        now = self.elapsed()
        if total <= 0 or f <= 0.01 or now < 2.0:
            return None
        if f >= 1.0:
            return 0.0
        return now * (1 - f) / f           # the plan is in measured seconds: its fractions are time

    def advance(self, stage: str, fraction: float) -> None:
        """Record that ``stage`` is ``fraction`` done; emits a throttled progress event."""
        if stage in self.done:
            self.done[stage] = max(self.done[stage], min(1.0, fraction))
        now = self.elapsed()
        if now - self._last_progress >= 0.25 or fraction >= 1.0:
            self._last_progress = now
            self.emit("progress", stage=stage, fraction=self.fraction(),
                      stage_fraction=round(self.done.get(stage, 0.0), 4), record=False)

    # ---- events -----------------------------------------------------------------------------------
    def emit(self, kind: str, record: bool = True, **payload: Any) -> dict[str, Any]:
        event = {"kind": kind, "elapsed": round(self.elapsed(), 3), "eta": _round(self.eta()), **payload}
        if record:
            self.history.append(event)
        for listener in self.listeners:
            listener(event)
        return event

    def message(self, text: str) -> None:
        self.emit("message", text=text)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def part_of(listener: Listener, index: int, count: int, started: float) -> Listener:
    """``listener`` for part ``index`` of ``count`` equal parts of one job (sweep points, several thieves):
    every event gets ``part`` (its index); progress events report the whole job's fraction, elapsed time
    (since ``started``, a perf_counter value) and ETA instead of the part's."""
    def scaled(event: dict[str, Any]) -> None:
        event = {**event, "part": index}
        if event.get("kind") == "progress":
            fraction = (index + float(event.get("fraction") or 0.0)) / count
            elapsed = time.perf_counter() - started
            event = {**event, "fraction": fraction, "elapsed": round(elapsed, 3),
                     "eta": _round(elapsed * (1 - fraction) / fraction) if fraction > 0.01 else None}
        listener(event)
    return scaled
