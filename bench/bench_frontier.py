"""Time against accuracy (issue 34, part 5): how far a quick preset's models are from the task's usual accuracy, and
what more data or more epochs cost in time.

    python bench/bench_frontier.py --dataset mnist --data-dir ../shared/data --seeds 0 1 \
                                   [--points 8000x2 8000x4 16000x2 30000x2 allx2] [--out bench/results/frontier_mnist.jsonl]

A point ``NxE`` is the quick preset with ``train_size`` N ("all": the whole training set) and E clean epochs and E
watermark epochs (the thief's epochs follow: the preset's 3 at E = 2, scaled with E). Each point and seed is one
whole run (train, the preset's thief, verdicts) in a throw-away folder, without the innocent population
(``innocents 0``: its cost depends on the point too, 26 clean models of the point's size, and is reported as that
count); one after the other in this process, one line appended to ``--out`` per finished run (resumable). Prints
per point: the run's seconds and the clean reference's, the EWE victim's and its copy's test accuracy (mean over
seeds). Prints numbers; it is not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from ewe.config import ConfigError, preset
from ewe.experiments import pipeline
from ewe.malloc import apply_unless_disabled
from publish import read_measured  # noqa: E402  (beside this script)

apply_unless_disabled()
DEFAULT_POINTS = ("8000x2", "8000x4", "16000x2", "30000x2", "allx2")


def point_config(base, point: str):
    size, epochs = point.split("x")
    epochs = int(epochs)
    scale = epochs / base.epochs
    return base.replace(train_size=None if size == "all" else int(size), epochs=epochs, w_epochs=epochs,
                        extract_epochs=max(1, round(base.extraction_epochs * scale)), innocents=0)


def one_run(cfg, point: str) -> dict:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ewe-bench-frontier-") as out:
        result = pipeline.run(cfg, out)
    if result.get("status") != "finished":
        raise RuntimeError(f"{point} seed {cfg.seed}: the run ended {result.get('status')!r}")
    models, sec = result["models"], result["seconds"]
    return {"point": point, "seed": cfg.seed, "train_size": cfg.train_size or result.get("n_train"),
            "epochs": cfg.epochs, "precision": cfg.precision, "wall_s": round(time.perf_counter() - t0, 2),
            "clean_s": sec.get("clean"), "steal_s": sec.get("steal_total"),
            "accuracy": {n: models[n]["accuracy"] for n in ("clean", "defended", "extracted", "plain_watermark",
                                                            "independent_clean") if n in models},
            "watermark_success": {n: models[n]["watermark_success"] for n in ("defended", "extracted") if n in models}}


def summary(rows: list[dict], points: list[str]) -> None:
    def mean(values):
        values = [v for v in values if v is not None]
        return statistics.mean(values) if values else float("nan")
    print(f"\n{'point':>10} {'seeds':>5} {'run s':>7} {'clean s':>8} {'clean %':>8} {'EWE victim %':>13} "
          f"{'EWE copy %':>11} {'copy keeps wm %':>16}")
    for point in points:
        rs = [r for r in rows if r["point"] == point]
        if not rs:
            continue
        print(f"{point:>10} {len(rs):>5} {mean([r['wall_s'] for r in rs]):7.1f} {mean([r['clean_s'] for r in rs]):8.1f} "
              f"{100 * mean([r['accuracy'].get('clean') for r in rs]):8.2f} "
              f"{100 * mean([r['accuracy'].get('defended') for r in rs]):13.2f} "
              f"{100 * mean([r['accuracy'].get('extracted') for r in rs]):11.2f} "
              f"{100 * mean([r['watermark_success'].get('extracted') for r in rs]):16.1f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--data-dir", default=os.environ.get("EWE_DATA_DIR"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--points", nargs="+", default=list(DEFAULT_POINTS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    out = args.out or Path(__file__).parent / "results" / f"frontier_{args.dataset}.jsonl"
    try:
        base = preset(args.dataset, args.preset, data_dir=args.data_dir, threads=args.threads)
        configs = {p: point_config(base, p) for p in args.points}
    except (ConfigError, ValueError) as exc:
        print(f"bench_frontier: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    rows = read_measured(out) if out.exists() else []
    done = {(r["point"], r["seed"]) for r in rows}
    todo = [(p, s) for p in args.points for s in args.seeds if (p, s) not in done]
    for i, (point, seed) in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {point} seed {seed}", flush=True)
        row = {"dataset": args.dataset, "preset": args.preset, **one_run(configs[point].replace(seed=seed), point)}
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        rows.append(row)
        print(f"  {row['wall_s']:.1f} s, EWE victim {100 * row['accuracy'].get('defended', float('nan')):.2f} %",
              flush=True)
    summary([r for r in rows if r["seed"] in args.seeds], args.points)
    return 0


if __name__ == "__main__":
    sys.exit(main())
