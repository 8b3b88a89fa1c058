"""The work the pages start: the functions a job of the registry (ui/jobs.py) runs, a training, an attack by
several thieves, a trade-off sweep, and the settings they are given. A job function runs in a worker thread
(or a Ray task) and talks only to the library and to its ``JobContext``. No Streamlit.

Tests may replace ``PIPELINE`` with a fake module that has the same ``train_victims`` / ``steal_each`` /
``thief_seeds`` / ``run`` signatures.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ewe.callbacks import part_of
from ewe.config import RunConfig
from ewe.watermarks.schemes import STOLEN_COPIES
from ui.jobs import Job, JobRegistry
from ui.naming import stolen_copies
from ui.presets import make_config
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


def sweep_configs(dataset: str, preset_name: str, overrides: dict[str, Any],
                  grid: list[tuple[float, float]]) -> list[tuple[dict[str, Any], RunConfig]]:
    """The trade-off sweep's points: for each (tau, ratio) of ``grid``, its settings and the validated config of
    the preset with ``overrides`` (the Train page's settings), that temperature on every layer and that ratio.
    Raises ConfigError saying what to change."""
    return [({"tau": tau, "ratio": ratio},
             make_config(dataset, preset_name, **{**overrides, "temperature": [tau] * 3, "ratio": ratio}))
            for tau, ratio in grid]


def submit_sweep(reg: JobRegistry, owner: str, cfgs: list[tuple[dict[str, Any], RunConfig]],
                 grid: list[tuple[float, float]], dataset: str, preset_name: str) -> Job:
    """Start ``owner``'s next sweep (its number counts the owner's sweeps) in a new folder of the workspace."""
    n = len(reg.jobs(owner=owner, kind="sweep")) + 1
    base = new_run_dir(owner, cfgs[0][1], f"sweep{n}")
    return reg.submit(owner, "sweep", sweep_job(cfgs, base), label=f"Sweep #{n} ({dataset}, {preset_name})",
                      out_dir=base, meta={"grid": grid})


def sweep_job(cfgs: list[tuple[dict[str, Any], RunConfig]], base_dir: Path):
    """Each grid point is a full run (train, steal, verify) in its own sub-folder, in turn through the grid
    runner's loop (ewe.experiments.sweep.run_in_turn); points are appended to ``ctx.data["points"]`` as they
    finish so the page can plot them as they arrive. The grid ends at a point that did not finish."""
    pipeline()

    def fn(ctx):
        from ewe.callbacks import Reporter, Stopped
        from ewe.experiments.sweep import run_in_turn
        started = time.perf_counter()
        points = ctx.data.setdefault("points", [])
        ctx.data["total"] = len(cfgs)

        def folder(i: int, settings: dict) -> Path:
            return base_dir / f"point{i + 1:02d}-tau{settings['tau']:g}-r{settings['ratio']:g}"

        def run_one(i, job):
            settings, cfg = job
            ctx.data["current"] = {**settings, "index": i + 1}
            out = folder(i, settings)
            result = pipeline().run(cfg, out, listeners=[part_of(ctx.listener, i, len(cfgs), started)],
                                    stop=ctx.stop)
            return {"result": result, "out": out}

        def finished(job, info) -> bool:
            if info["result"].get("status") != "finished":
                return False
            points.append(point_summary(job[0], info["result"], info["out"]))
            return True
        try:
            run_in_turn(cfgs, run_one, reporter=Reporter([], ctx.stop), finished=finished,
                        label=lambda job: (f"tau{job[0]['tau']:g}-r{job[0]['ratio']:g}", "sweep"))
        except Stopped:
            pass
        return {"status": "stopped" if ctx.stop.is_set() else "finished", "points": list(points)}
    return fn


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
