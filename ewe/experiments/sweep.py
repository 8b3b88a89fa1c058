"""Seeds and sweeps, the one grid runner: every grid point x seed as one ``pipeline.run``, resumable,
summarised in one table (the CLI's ``sweep`` verb is ``ewe.cli.sweep``; the app's trade-off sweep is
``ui.work.sweep_job``, the inline backend with a runner that reports each point to its live panel).

    python -m ewe sweep --dataset digits --preset quick --grid temperature=0.5,1,2 --grid ratio=1,2 \\
        --seeds 0,1,2 --out DIR [--backend local|ray|inline] [--workers N] [--threads T] [any run option]

Layout::

    DIR/sweep_spec.json               what was asked (dataset, preset, grid, seeds, fixed overrides)
    DIR/points/<key>/s<seed>/         one run folder per point and seed (see docs/CONTRACT.md)
    DIR/sweep.json                    per point: parameters, per-seed values and mean/std/min/max of METRICS
    DIR/sweep.csv                     the same as one flat table (one row per point)

``<key>`` is ``name=value`` joined by ``,`` in grid order (``base`` without a grid); per-layer values are
written ``a:b:c``. A point whose ``result.json`` says ``"status": "finished"`` is kept and skipped when the
sweep is started again; anything else in its folder (a run that was interrupted, stopped or failed) is
deleted and run again.

Grid values are parsed by the RunConfig field's type (int, float, bool, str, ``none`` for optional
fields). ``temperature`` and ``kappa`` take one float for all three SNNL layers or ``a:b:c`` (or ``a/b/c``)
per layer; ``reference_T`` / ``reference_kappa`` are accepted too and converted (tau = 100 / T,
kappa = reference kappa / batch size).

Backends: ``local`` (default) is a ``ProcessPoolExecutor`` with the spawn start method; ``ray`` runs the
same function as Ray tasks (``ray.init()`` joins the cluster in ``RAY_ADDRESS`` or starts a local one; on a
real cluster ``ewe`` must be importable on every node and DIR on a shared file system); ``inline`` runs the
points one after the other in this process. Runs are deterministic given the seed and the number of torch
threads, so every point's thread count is fixed in its config: ``--threads`` or, by default,
``max(1, cpus // workers)``. The same ``--workers`` / ``--threads`` give the same numbers on every backend.
"""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import os
import shutil
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..results.runs import Run
from ..results.schema import METRICS, metric_values

BACKENDS = ("local", "ray", "inline")

STATS = ("mean", "std", "min", "max", "n")


class SweepError(ValueError):
    """A sweep that cannot run as asked; the message says what to change."""


# ---------------------------------------------------------------------------------------------------
# grid parsing

def _field_types() -> dict[str, Any]:
    from ..config import RunConfig
    hints = typing.get_type_hints(RunConfig)
    types = {}
    for f in dataclasses.fields(RunConfig):
        hint, optional = hints[f.name], False
        if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            hint, optional = args[0], True
        types[f.name] = (hint, optional)
    types["reference_T"] = (list[float], False)
    types["reference_kappa"] = (list[float], False)
    return types


def parse_value(name: str, text: str) -> Any:
    """One grid value, typed as the RunConfig field ``name``."""
    types = _field_types()
    if name not in types:
        raise SweepError(f"unknown setting {name!r} in the grid; use RunConfig names "
                         f"(e.g. temperature, kappa, ratio, seed-independent options)")
    if name in ("dataset", "preset", "seed"):
        raise SweepError(f"{name} is not a grid setting: use --dataset / --preset / --seeds")
    kind, optional = types[name]
    text = text.strip()
    if optional and text.lower() in ("none", "null", ""):
        return None
    try:
        if kind is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if typing.get_origin(kind) is list:
            parts = [p for p in text.replace("/", ":").split(":") if p]
            values = [float(p) for p in parts]
            if len(values) not in (1, 3):
                raise ValueError(text)
            return values * 3 if len(values) == 1 else values
        if kind is int:
            f = float(text)
            if f != int(f):
                raise ValueError(text)
            return int(f)
        if kind is float:
            return float(text)
        return text
    except ValueError:
        want = {bool: "true/false", int: "an integer", float: "a number"}.get(kind, "one number or a:b:c")
        raise SweepError(f"grid value {text!r} for {name} is not {want}") from None


def parse_grid(specs: Iterable[str]) -> dict[str, list[Any]]:
    """``["temperature=0.5,1,2", "ratio=1,2"]`` -> {"temperature": [[.5]*3, [1]*3, [2]*3], "ratio": [1.0, 2.0]}."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not values.strip():
            raise SweepError(f"--grid {spec!r}: write NAME=V1,V2,... (e.g. temperature=0.5,1,2)")
        if name in grid:
            raise SweepError(f"{name} appears twice in the grid")
        grid[name] = [parse_value(name, v) for v in values.split(",")]
    return grid


def format_value(value: Any) -> str:
    if isinstance(value, list):
        return format_value(value[0]) if len(set(value)) == 1 else ":".join(format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def point_key(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={format_value(v)}" for k, v in params.items()) or "base"


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def parse_seeds(text: str | Iterable[int]) -> list[int]:
    if not isinstance(text, str):
        return [int(s) for s in text]
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            a, b = part.split("-", 1)
            seeds.extend(range(int(a), int(b) + 1))
        else:
            seeds.append(int(part))
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds {text!r}: give distinct seeds >= 0, e.g. 0,1,2 or 0-4")
    return seeds


# ---------------------------------------------------------------------------------------------------
# the spec and its jobs

def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


@dataclass
class SweepSpec:
    dataset: str
    preset: str = "quick"
    grid: dict[str, list[Any]] = field(default_factory=dict)    # parsed values (see parse_grid)
    seeds: list[int] = field(default_factory=lambda: [0])
    overrides: dict[str, Any] = field(default_factory=dict)     # fixed RunConfig settings for every point
    workers: int | None = None                                  # None = cpus
    threads: int | None = None                                  # None = max(1, cpus // workers)
    limits: dict[str, float] | None = None                      # a caller's upper bounds (RunConfig.validate)

    def n_workers(self) -> int:
        return max(1, self.workers or cpu_count())

    def n_threads(self) -> int:
        return self.threads or self.overrides.get("threads") or max(1, cpu_count() // self.n_workers())

    def config(self, params: dict[str, Any], seed: int):
        """The validated RunConfig of one point and seed (threads pinned, reference aliases converted)."""
        from ..config import preset, tiny
        values = {**self.overrides, **params}
        for a, b in (("temperature", "reference_T"), ("kappa", "reference_kappa")):
            if a in values and b in values:
                raise SweepError(f"{a} and {b} are the same setting in two forms; give only one")
        ref_T = values.pop("reference_T", None)
        ref_kappa = values.pop("reference_kappa", None)
        if ref_T is not None:
            values["temperature"] = [100.0 / t for t in ref_T]
        values["threads"] = self.n_threads()
        if self.preset == "tiny":       # ewe.config.TINY (tests, the app's test mode): its folders say "custom"
            cfg = tiny(self.dataset, seed=seed, limits=self.limits, **values)
        else:
            cfg = preset(self.dataset, self.preset, seed=seed, limits=self.limits, **values)
        if ref_kappa is not None:
            cfg = cfg.replace(kappa=[k / cfg.batch_size for k in ref_kappa])
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Job:
    key: str
    seed: int
    params: dict[str, Any]
    config: dict[str, Any]
    out_dir: str

    @property
    def name(self) -> str:
        return f"{self.key}/s{self.seed}"


SPEC_FILE = "sweep_spec.json"


def is_sweep(folder: str | Path) -> bool:
    """Whether ``folder`` is a sweep's (it holds the spec the sweep was started with)."""
    return (Path(folder) / SPEC_FILE).is_file()


def point_dirs(out: str | Path) -> list[Path]:
    """The run folders of the sweep in ``out`` that hold a result (finished or not), in the grid's order (the
    spec's; by name where the spec is unreadable) and seed by seed."""
    found = [p for p in Path(out).glob("points/*/s*") if p.is_dir() and _read_result(p) is not None]
    try:
        spec = json.loads((Path(out) / SPEC_FILE).read_text())
        order = {point_key(params): i for i, params in enumerate(grid_points(spec["grid"]))}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        order = {}
    return sorted(found, key=lambda p: (order.get(p.parent.name, len(order)), p.parent.name,
                                        int(p.name[1:]) if p.name[1:].isdigit() else -1, p.name))


def run_status(run_dir: str | Path) -> str | None:
    """The status in a point's result.json (None when there is none or it is unreadable)."""
    result = _read_result(run_dir)
    return result.get("status") if isinstance(result, dict) else None


def plan_jobs(spec: SweepSpec, out: str | Path) -> tuple[list[Job], list[Job]]:
    """(jobs to run, jobs already finished). Builds every config first so a bad grid fails at once."""
    out = Path(out)
    todo, done = [], []
    for params in grid_points(spec.grid) or [{}]:
        key = point_key(params)
        for seed in spec.seeds:
            cfg = spec.config(params, seed)
            job = Job(key, seed, params, cfg.to_dict(), str(out / "points" / key / f"s{seed}"))
            (done if run_status(job.out_dir) == "finished" else todo).append(job)
    return todo, done


def run_point(config: dict, out_dir: str, threads: int | None = None, *, run: Callable | None = None,
              listeners: Iterable[Callable] = (), stop=None) -> dict:
    """One point and seed: a whole ``pipeline.run`` into ``out_dir`` (the function every backend runs; the app's
    sweep passes its ``listeners`` and ``stop``, and ``run``, a replaceable pipeline's, for its tests)."""
    import torch
    from ..config import from_dict
    if run is None:
        from .pipeline import run
    if threads:
        torch.set_num_threads(threads)
    out = Path(out_dir)
    if out.exists():            # an interrupted or failed earlier attempt: start clean
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        result = run(from_dict(config), out, listeners=list(listeners), stop=stop)
        return {"out_dir": out_dir, "status": result.get("status"), "seconds": time.perf_counter() - t0}
    except Exception as exc:  # a failed point is reported; the sweep goes on with the others
        return {"out_dir": out_dir, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                "seconds": time.perf_counter() - t0}


def _init_worker(threads: int) -> None:
    import torch

    from ..malloc import apply_unless_disabled
    apply_unless_disabled()     # a worker process of ours, like the CLI's (EWE_MALLOC=0 turns it off)
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------
# running

def run_sweep(spec: SweepSpec, out: str | Path, *, backend: str = "local",
              listeners: Iterable[Callable] | None = None, stop=None,
              runner: Callable[[dict, str, int], dict] | None = None) -> dict:
    """Run every unfinished point x seed of ``spec`` into ``out``; write and return the summary.

    ``stop`` (a threading.Event) ends the sweep: nothing new starts, running points are abandoned (their
    folders are rerun next time). ``runner`` replaces :func:`run_point` (tests).
    """
    from ..callbacks import Reporter, Stopped
    if backend not in BACKENDS:
        raise SweepError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo, done = plan_jobs(spec, out)
    _write_json(out / SPEC_FILE, spec.to_dict())
    rep = Reporter(list(listeners or []), stop)
    rep.set_plan({j.name: 1.0 for j in todo})
    rep.emit("run_start", stages=[j.name for j in todo],
             config={"sweep": spec.to_dict(), "backend": backend, "skipped": [j.name for j in done]})
    if done:
        rep.message(f"{len(done)} finished point(s) kept: {', '.join(j.name for j in done)}")
    for job in todo:            # interrupted, stopped or failed attempts start again from nothing
        if Path(job.out_dir).exists():
            shutil.rmtree(job.out_dir)
    runner = runner or run_point
    threads = spec.n_threads()
    failures: dict[str, str] = {}
    status = "finished"

    def finished(job: Job, info: dict) -> None:
        rep.advance(job.name, 1.0)
        if info.get("status") != "finished":
            failures[job.name] = info.get("error") or f"status {info.get('status')}"
        metrics = metric_values(_read_result(job.out_dir)) if info.get("status") == "finished" else {}
        rep.emit("stage_end", stage=job.name, model=job.key, seconds=round(info.get("seconds", 0.0), 2),
                 metrics={"status": info.get("status"), **{k: v for k, v in metrics.items()
                                                           if k in ("defended_accuracy", "extracted_watermark")}})
    try:
        if todo:
            if backend == "inline":
                _run_inline(todo, runner, threads, rep, finished)
            elif backend == "local":
                _run_pool(todo, runner, threads, min(spec.n_workers(), len(todo)), rep, finished)
            else:
                _run_ray(todo, runner, threads, spec.n_workers(), rep, finished)
    except Stopped:
        status = "stopped"
    except KeyboardInterrupt:   # Ctrl-C: keep the table of what finished, then let the caller see it
        summarise(spec, out, backend=backend, status="stopped", failures=failures)
        rep.emit("run_end", status="stopped", result=None)
        raise
    if failures and status == "finished":
        status = "incomplete"
    summary = summarise(spec, out, backend=backend, status=status, failures=failures)
    rep.emit("run_end", status=status, result={"points": len(summary["points"]), "failures": failures})
    return summary


def run_in_turn(jobs: Sequence[Any], run_one: Callable[[int, Any], dict], *, reporter,
                finished: Callable[[Any, dict], bool | None],
                label: Callable[[Any], tuple[str, str]] = lambda job: (str(job), str(job))) -> None:
    """The grid runner's in-process loop (the inline backend): the jobs one after the other
    (``run_one(index, job)`` -> its info), a stop request honoured before each (``reporter.check()`` raises
    Stopped), ``finished(job, info)`` after each; it returns False to end the grid there. ``label(job)``: the
    (stage, model) of the job's stage_start event."""
    for i, job in enumerate(jobs):
        reporter.check()
        stage, model = label(job)
        reporter.emit("stage_start", stage=stage, model=model, epochs=0)
        if finished(job, run_one(i, job)) is False:
            return


def _run_inline(jobs, runner, threads, rep, finished) -> None:
    import torch
    before = torch.get_num_threads()
    try:
        run_in_turn(jobs, lambda i, job: runner(job.config, job.out_dir, threads), reporter=rep,
                    finished=finished, label=lambda job: (job.name, job.key))
    finally:
        torch.set_num_threads(before)


def _run_pool(jobs, runner, threads, workers, rep, finished) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,))
    futures = {}
    try:
        for job in jobs:
            futures[ex.submit(runner, job.config, job.out_dir, threads)] = job
            rep.emit("stage_start", stage=job.name, model=job.key, epochs=0)
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for f in done:
                finished(futures[f], f.result())
            rep.check()
    except BaseException:
        for f in futures:
            f.cancel()
        for p in list(getattr(ex, "_processes", {}).values()):   # abandon running points now
            p.terminate()
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


def _run_ray(jobs, runner, threads, workers, rep, finished) -> None:
    try:
        import ray
    except ImportError:
        raise SweepError("the ray backend needs Ray: pip install -r requirements-ray.txt") from None
    started = False
    if not ray.is_initialized():
        root = str(Path(__file__).resolve().parents[2])   # the repository: ewe importable on every node
        env = {"PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        kw: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False}
        if not os.environ.get("RAY_ADDRESS"):
            kw.update(num_cpus=workers * threads, include_dashboard=False)
        ray.init(**kw)
        started = True
    task = ray.remote(num_cpus=threads, max_retries=0)(runner)
    refs = {}
    try:
        for job in jobs:
            refs[task.remote(job.config, job.out_dir, threads)] = job
            rep.emit("stage_start", stage=job.name, model=job.key, epochs=0)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for r in done:
                finished(refs[r], ray.get(r))
            rep.check()
    except BaseException:
        for r in refs:
            try:
                ray.cancel(r, force=True)
            except Exception:
                pass
        raise
    finally:
        if started:
            ray.shutdown()


# ---------------------------------------------------------------------------------------------------
# summary

def _read_result(run_dir: str | Path) -> dict | None:
    try:
        return Run(run_dir).result
    except (OSError, ValueError):      # unreadable: RunFolderError is a ValueError
        return None


def stats(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """mean, sample std (0 for one value), min, max and n over the values that are not None.

    For queries_for_95 a None means "not reached with the held-out triggers": those seeds are left out
    of the statistics and ``n`` says how many reached it.
    """
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not xs:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(xs), "max": max(xs), "n": len(xs)}


def summarise_results(results: list[dict]) -> dict[str, dict]:
    """Per metric: stats over the given result.json dicts, plus the per-seed values."""
    per_seed = [metric_values(r) for r in results]
    return {name: {**stats(v[name] for v in per_seed), "values": [v[name] for v in per_seed]}
            for name in METRICS}


def summarise(spec: SweepSpec, out: str | Path, *, backend: str | None = None, status: str = "finished",
              failures: dict | None = None) -> dict:
    """Read every point's seeds and write sweep.json and sweep.csv."""
    out = Path(out)
    points = []
    for params in grid_points(spec.grid) or [{}]:
        key = point_key(params)
        results, finished_seeds = [], []
        for seed in spec.seeds:
            r = _read_result(out / "points" / key / f"s{seed}")
            if r and r.get("status") == "finished":
                results.append(r)
                finished_seeds.append(seed)
        points.append({"key": key, "params": {k: format_value(v) for k, v in params.items()},
                       "params_typed": params, "seeds": list(spec.seeds), "finished_seeds": finished_seeds,
                       "metrics": summarise_results(results)})
    summary = {"dataset": spec.dataset, "preset": spec.preset, "status": status, "backend": backend,
               "spec": spec.to_dict(), "failures": failures or {}, "metrics": list(METRICS),
               "points": points}
    _write_json(out / "sweep.json", summary)
    _write_csv(out / "sweep.csv", spec, points)
    return summary


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def _write_csv(path: Path, spec: SweepSpec, points: list[dict]) -> None:
    names = list(spec.grid)
    header = ["point", *names, "seeds", "finished"] + [f"{m}_{s}" for m in METRICS for s in STATS]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for p in points:
            row = [p["key"], *[p["params"][n] for n in names], len(p["seeds"]), len(p["finished_seeds"])]
            for m in METRICS:
                st = p["metrics"][m]
                row += ["" if st[s] is None else (st[s] if s == "n" else f"{st[s]:.6g}") for s in STATS]
            w.writerow(row)
    tmp.replace(path)


def load_sweep(out: str | Path) -> dict:
    path = Path(out) / "sweep.json"
    if not path.exists():
        raise FileNotFoundError(f"{out} has no sweep.json (not a sweep folder, or not summarised yet)")
    return json.loads(path.read_text())


def format_summary(summary: dict, metrics: Iterable[str] = ("defended_accuracy", "clean_accuracy",
                                                              "extracted_watermark",
                                                              "plain_extracted_watermark",
                                                              "extracted_queries_for_95")) -> str:
    metrics = list(metrics)
    width = max([5] + [len(p["key"]) for p in summary["points"]])
    lines = [f"{'point':<{width}}  seeds  " + "  ".join(f"{m:>26}" for m in metrics)]
    for p in summary["points"]:
        cells = []
        for m in metrics:
            st = p["metrics"][m]
            cells.append(f"{'-':>26}" if st["mean"] is None else
                         f"{st['mean']:>10.4g} ± {st['std']:<7.3g} n={st['n']:<2}".rjust(26))
        lines.append(f"{p['key']:<{width}}  {len(p['finished_seeds'])}/{len(p['seeds'])}    " + "  ".join(cells))
    return "\n".join(lines)
