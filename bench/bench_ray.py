"""The app's jobs on a local Ray cluster against its local threads (issue 37, part 4): ten distinct quick digits
trainings submitted at once to the app's job registry (ui/jobs.py), as ten students with their own seeds would.

    python -m bench.bench_ray [--runs 10] [--json bench/results/ray_local.json]     # from the repository root

(as a module: the app's ``ui`` package is imported from the repository root; it is not installed)

Two ways, one after the other in this process, each from its own empty runs folder (the digits population ships
with the package, so no innocent model is trained):
  threads  the app's default: one run at a time in the registry's worker thread, 2 torch threads
           (EWE_APP_MAX_RUNS 1, default_torch_threads);
  ray      a local Ray started here with 2 worker CPUs (``ray.init(num_cpus=2)``), the registry on it as the app
           makes it with EWE_RAY_ADDRESS set: one CPU and one torch thread a job, as many at once as the
           cluster has CPUs (2).
Prints, per way: the seconds from the submission to the last run finished, each run's own seconds
(result.json's train_total), the first and last finish, and that every run finished with its own numbers
(the two ways' accuracies agree run by run only where the arithmetic matches: threads 2 against 1 differ in the
last digits). On this 2-core machine both have the same two cores: the point is that it works and what the
overhead is, as a ratio. Prints numbers; it is not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ewe.malloc import apply_unless_disabled  # noqa: E402

apply_unless_disabled()


def submit_all(registry, runs: int, root: Path) -> dict:
    from ui import presets, work
    t0, t0_wall = time.perf_counter(), time.time()
    jobs = []
    for seed in range(runs):
        out = root / f"digits-quick-s{seed}"
        cfg = presets.make_config("digits", "quick", seed=seed)
        jobs.append(registry.submit(f"student{seed:02d}", "train", work.train_job(cfg, out), out_dir=out))
    finished = []
    for seed, job in enumerate(jobs):
        done = registry.wait(job.id, 3600)
        finished.append({"seed": seed, "status": done.status, "error": done.error,
                         "finished_after_s": round((done.ended or time.time()) - t0_wall, 1)})
    wall = time.perf_counter() - t0
    per_run = []
    for seed in range(runs):
        try:
            result = json.loads((root / f"digits-quick-s{seed}" / "result.json").read_text())
        except (OSError, ValueError):
            result = {}
        per_run.append({"seed": seed, "status": result.get("status"),
                        "train_total_s": (result.get("seconds") or {}).get("train_total"),
                        "defended_accuracy": ((result.get("models") or {}).get("defended") or {}).get("accuracy")})
    return {"wall_s": round(wall, 1), "jobs": finished, "runs": per_run}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        import ray
    except ImportError:
        print("bench_ray: Ray is not installed (pip install -r requirements-ray.txt)", file=sys.stderr)
        return 2
    from ui import executors
    from ui.jobs import JobRegistry, default_torch_threads
    out: dict = {"runs": args.runs, "cpus": os.cpu_count()}
    for way in ("threads", "ray"):
        root = Path(tempfile.mkdtemp(prefix=f"ewe-bench-ray-{way}-"))
        os.environ["EWE_CACHE_DIR"] = str(root / ".cache")
        if way == "threads":
            registry = JobRegistry(max_running=1, torch_threads=default_torch_threads())
        else:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": executors._worker_env()})
            executor = executors.RayExecutor(ray.get_runtime_context().gcs_address, threads=1)
            registry = JobRegistry(max_running=executor.slots(), torch_threads=1, executor=executor)
        print(f"[{way}] {args.runs} distinct digits quick trainings submitted at once", flush=True)
        got = submit_all(registry, args.runs, root)
        registry.shutdown()
        if way == "ray":
            ray.shutdown()
        ok = sum(r["status"] == "trained" for r in got["runs"])
        own = [r["train_total_s"] for r in got["runs"] if r["train_total_s"]]
        ends = sorted(j["finished_after_s"] for j in got["jobs"])
        print(f"[{way}] all {args.runs} done in {got['wall_s']:.1f} s (first finished after {ends[0]:.1f} s); "
              f"{ok} trained; each run's own seconds {min(own or [0]):.1f}..{max(own or [0]):.1f} "
              f"(sum {sum(own):.0f})", flush=True)
        out[way] = got
        shutil.rmtree(root, ignore_errors=True)
    out["ray_over_threads"] = round(out["ray"]["wall_s"] / out["threads"]["wall_s"], 3)
    print(f"ray / threads, wall clock: {out['ray_over_threads']:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
