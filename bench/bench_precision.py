"""The run's own models in fp32 against bf16 autocast (issue 34, part 3): time per stage, accuracy, watermark
success and verdicts, victim seed by victim seed, so a change of precision is weighed against the seeds' spread.

    python bench/bench_precision.py --dataset mnist --data-dir ../shared/data --seeds 0 1 2 3 4 \
                                    [--out bench/results/precision_mnist.jsonl]

For each victim seed and each precision (``RunConfig.precision``: fp32, bf16), one whole quick run (train, the
preset's thief, verdicts) in a throw-away folder, one after the other in this process; the task's innocent
population (and its two reference models) is built first, outside the timing, so every run finds it cached.
Each finished run appends one line to ``--out``; a line already there is not run again (resumable). Then prints,
per precision: the run's seconds and its train / steal parts, the victims' and copies' test accuracy and
watermark success (mean, sd over seeds), the copies proven (p < alpha) and the independent clean model
never proven; and per seed the differences bf16 - fp32 next to the seeds' own sd. Prints numbers; not a test.
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

from ewe.callbacks import Reporter
from ewe.config import ConfigError, preset
from ewe.experiments import pipeline
from ewe.malloc import apply_unless_disabled
from publish import read_measured  # noqa: E402  (beside this script)

apply_unless_disabled()
PRECISIONS = ("fp32", "bf16")
COPIES = {"defended": "extracted", "plain_watermark": "plain_extracted", "ablation_no_snnl": "ablation_extracted"}


def one_run(cfg) -> dict:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ewe-bench-precision-") as out:
        result = pipeline.run(cfg, out)
    if result.get("status") != "finished":
        raise RuntimeError(f"seed {cfg.seed} {cfg.precision}: the run ended {result.get('status')!r}")
    models, ver, sec = result["models"], result["verification"], result["seconds"]
    return {"seed": cfg.seed, "precision": cfg.precision, "wall_s": round(time.perf_counter() - t0, 2),
            "train_s": sec.get("train_total"), "steal_s": sec.get("steal_total"),
            "stages_s": {k: v for k, v in sec.items() if isinstance(v, (int, float))},
            "accuracy": {n: models[n]["accuracy"] for n in (*COPIES, *COPIES.values(), "clean") if n in models},
            "watermark_success": {n: models[n]["watermark_success"] for n in (*COPIES, *COPIES.values())
                                  if n in models},
            "p_value": {n: v["p_value"] for n, v in ver.items()},
            "proven": {n: bool(v["proven"]) for n, v in ver.items()}}


def summary(rows: list[dict]) -> None:
    def ms(values):
        values = [v for v in values if v is not None]
        if not values:
            return "—"
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {sd:.3f}"
    by = {p: sorted((r for r in rows if r["precision"] == p), key=lambda r: r["seed"]) for p in PRECISIONS}
    for p, rs in by.items():
        if not rs:
            continue
        print(f"\n{p}: {len(rs)} victim seeds ({', '.join(str(r['seed']) for r in rs)})")
        print(f"  run {ms([r['wall_s'] for r in rs])} s (train {ms([r['train_s'] for r in rs])}, "
              f"steal {ms([r['steal_s'] for r in rs])})")
        for victim, copy in COPIES.items():
            print(f"  {victim:<17} accuracy {ms([r['accuracy'].get(victim) for r in rs])}  "
                  f"watermark {ms([r['watermark_success'].get(victim) for r in rs])}")
            print(f"  {copy:<17} accuracy {ms([r['accuracy'].get(copy) for r in rs])}  "
                  f"watermark {ms([r['watermark_success'].get(copy) for r in rs])}  proven "
                  f"{sum(r['proven'].get(copy, False) for r in rs)}/{len(rs)}")
        print(f"  independent clean model proven {sum(r['proven'].get('clean', False) for r in rs)}/{len(rs)}")
    pairs = [(a, b) for a in by["fp32"] for b in by["bf16"] if a["seed"] == b["seed"]]
    if pairs:
        print("\nbf16 - fp32, paired by seed (mean ± sd of the differences):")
        for what, key in (("accuracy", "accuracy"), ("watermark", "watermark_success")):
            for name in (*COPIES, *COPIES.values()):
                d = [b[key][name] - a[key][name] for a, b in pairs if name in a[key] and name in b[key]]
                if d:
                    print(f"  {name:<17} {what:<9} {ms(d)}")
        print(f"  run seconds ratio bf16/fp32: {ms([b['wall_s'] / a['wall_s'] for a, b in pairs])}")
        stages = [k for k in pairs[0][0]["stages_s"] if all(k in a["stages_s"] and k in b["stages_s"]
                                                             and a["stages_s"][k] > 0.5 for a, b in pairs)]
        print("  per stage, seconds ratio bf16/fp32: " + ", ".join(
            f"{k} {statistics.median(b['stages_s'][k] / a['stages_s'][k] for a, b in pairs):.2f}" for k in stages))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--data-dir", default=os.environ.get("EWE_DATA_DIR"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="JSONL of one line per run (resumable)")
    args = ap.parse_args(argv)
    out = args.out or Path(__file__).parent / "results" / f"precision_{args.dataset}.jsonl"
    try:
        base = preset(args.dataset, args.preset, data_dir=args.data_dir, threads=args.threads)
    except ConfigError as exc:
        print(f"bench_precision: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    rows = read_measured(out) if out.exists() else []
    done = {(r["seed"], r["precision"]) for r in rows}
    pipeline.innocent_population(base, Reporter())     # built (or found) before any timing
    todo = [(s, p) for s in args.seeds for p in PRECISIONS if (s, p) not in done]
    for i, (seed, precision) in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] seed {seed} {precision}", flush=True)
        row = {"dataset": args.dataset, "preset": args.preset, **one_run(base.replace(seed=seed, precision=precision))}
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        rows.append(row)
        print(f"  {row['wall_s']:.1f} s", flush=True)
    summary([r for r in rows if r["seed"] in args.seeds and r.get("preset") == args.preset])
    return 0


if __name__ == "__main__":
    sys.exit(main())
