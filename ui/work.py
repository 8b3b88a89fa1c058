"""The work the pages start: the functions a job of the registry (ui/jobs.py) runs, a training, an attack by
several thieves, a trade-off sweep, and the settings they are given. A job function runs in a worker thread
(or a Ray task) and talks only to the library and to its ``JobContext``. No Streamlit.

Tests may replace ``PIPELINE`` with a fake module that has the same ``train_victims`` / ``steal_each`` /
``thief_seeds`` / ``run`` signatures.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from ewe.callbacks import part_of
from ewe.config import RunConfig
from ewe.experiments.sweep import SweepSpec, grid_points
from ewe.results.runs import Run
from ewe.watermarks.schemes import STOLEN_COPIES
from ui.jobs import Job, JobRegistry
from ui.naming import stolen_copies
from ui.presets import LIMITS
from ui.workspaces import new_run_dir


PIPELINE = None          # None = ewe.experiments.pipeline (imported lazily: it imports torch); tests may swap it


def pipeline():
    global PIPELINE
    if PIPELINE is None:
        from ewe.experiments import pipeline as p
        PIPELINE = p
    return PIPELINE


def train_job(cfg: RunConfig, out_dir: Path):
    pipeline()

    def fn(ctx):
        ctx.message(f"Run folder: {out_dir.name}")     # not its path: that names the workspace (a secret)
        return pipeline().train_victims(cfg, out_dir, listeners=[ctx.listener], stop=ctx.stop)
    return fn


def attack_job(run_dir: Path, kinds: list[dict[str, Any]], thieves: int = 1):
    """``thieves`` thieves of each kind (thief settings), seed by seed (ewe.experiments.pipeline.thief_seeds)."""
    pipeline()

    def fn(ctx):
        p = pipeline()
        return p.steal_each(run_dir, p.thief_seeds(run_dir, kinds, thieves), listeners=[ctx.listener],
                            stop=ctx.stop)
    return fn


# the Attack page's choices of the thief's student: the first stands for the victim's own architecture
STUDENTS = ("same as victim", "conv2_wide", "conv2_narrow", "mlp")
DISTILLER_T = 5.0    # the distilling thief of the lab's tables (docs/RESULTS.md §1: "same-soft5")


def contrast_thief(thief: dict[str, Any]) -> dict[str, Any]:
    """The same thief given the other kind of answer: the top class only (the paper's thief) for one given
    probabilities, probabilities at T = 5 (the distiller) for one given the top class. The lab's tables find
    this decides what a copy keeps; the Attack page steals with both by default."""
    if thief.get("extract_labels") == "soft":
        return {k: v for k, v in {**thief, "extract_labels": "hard"}.items() if k != "distill_temperature"}
    return {**thief, "extract_labels": "soft", "distill_temperature": DISTILLER_T}


def sweep_spec(dataset: str, preset_name: str, overrides: dict[str, Any], taus: list[float],
               ratios: list[float]) -> SweepSpec:
    """The trade-off sweep as the grid runner's spec: the preset with ``overrides`` (the Train page's settings,
    the sidebar's seed as its one seed), every temperature (on all three layers) x ratio, the app's LIMITS, in
    this process (one worker)."""
    fixed = {k: v for k, v in overrides.items() if k not in ("seed", "temperature", "ratio")}
    return SweepSpec(dataset, preset_name, grid={"temperature": [[float(t)] * 3 for t in taus],
                                                 "ratio": [float(r) for r in ratios]},
                     seeds=[int(overrides.get("seed", 0))], overrides=fixed, workers=1, limits=LIMITS)


def sweep_configs(spec: SweepSpec) -> list[RunConfig]:
    """Every point's validated config, in grid order (raises ConfigError saying what to change)."""
    return [spec.config(params, seed) for params in grid_points(spec.grid) for seed in spec.seeds]


def submit_sweep(reg: JobRegistry, owner: str, spec: SweepSpec) -> Job:
    """Start ``owner``'s next sweep (its number counts the owner's sweeps) in a new folder of the workspace, its
    points on as many torch threads as the registry gives every job."""
    if reg.torch_threads:
        spec = dataclasses.replace(spec, threads=reg.torch_threads)
    n = len(reg.jobs(owner=owner, kind="sweep")) + 1
    first = spec.config(grid_points(spec.grid)[0], spec.seeds[0])      # names the folder (dataset, seed)
    base = new_run_dir(owner, first, f"sweep{n}")
    return reg.submit(owner, "sweep", sweep_job(spec, base), label=f"Sweep #{n} ({spec.dataset}, {spec.preset})",
                      out_dir=base)


def sweep_job(spec: SweepSpec, base_dir: Path):
    """The grid runner (ewe.experiments.sweep.run_sweep, in this thread) over ``spec`` into ``base_dir``: each
    point a full run (train, steal, verify) whose events reach the job's panel as part i of n; its summary is
    appended to ``ctx.data["points"]`` as it finishes, so the page plots the points as they arrive. A failed
    point is reported (``ctx.data["failures"]``) and the grid goes on; Cancel ends it."""
    pipeline()

    def fn(ctx):
        from ewe.experiments.sweep import run_sweep
        ctx.data["total"] = len(grid_points(spec.grid)) * len(spec.seeds)
        summary = run_sweep(spec, base_dir, backend="inline", stop=ctx.stop, runner=_SweepPoints(ctx))
        ctx.data["failures"] = summary["failures"]
        return {"status": summary["status"], "points": list(ctx.data.get("points", [])),
                "failures": summary["failures"]}
    return fn


class _SweepPoints:
    """run_sweep's runner for the app: the grid runner's own point (ewe.experiments.sweep.run_point) with the
    job's listener and stop, each finished point's summary added to the job's points."""

    def __init__(self, ctx):
        self.ctx, self.started, self.index = ctx, time.perf_counter(), 0

    def __call__(self, config: dict, out_dir: str, threads: int | None = None) -> dict:
        from ewe.experiments.sweep import run_point
        ctx, i = self.ctx, self.index
        self.index += 1
        settings = {"tau": config["temperature"][0], "ratio": config["ratio"]}
        ctx.data["current"] = {**settings, "index": i + 1}
        info = run_point(config, out_dir, threads, run=pipeline().run, stop=ctx.stop,
                         listeners=[part_of(ctx.listener, i, ctx.data["total"], self.started)])
        if info["status"] == "finished":
            ctx.data.setdefault("points", []).append(point_summary(settings, Run(out_dir).result, Path(out_dir)))
        return info


def point_summary(settings: dict[str, Any], result: dict, out: Path) -> dict[str, Any]:
    m, v = result.get("models", {}), result.get("verification", {})
    return {**settings, "dir": str(out),
            "defended_accuracy": m.get("defended", {}).get("accuracy"),
            "extracted_watermark": m.get("extracted", {}).get("watermark_success"),
            "extracted_accuracy": m.get("extracted", {}).get("accuracy"),
            "plain_extracted_watermark": m.get("plain_extracted", {}).get("watermark_success"),
            "clean_accuracy": m.get("clean", {}).get("accuracy"),
            "p_value": v.get("extracted", {}).get("p_value"),
            "queries_for_95": v.get("extracted", {}).get("queries_for_95"),
            # a rival scheme's copy (when the Train page chose one): the watermark it kept
            "rivals": {c: m[c].get("watermark_success") for c in stolen_copies(m) if c not in STOLEN_COPIES}}
