"""Right-sizing the digits demo (issue 34, part 3): scikit-learn's 8x8 digits are computed at MNIST's 28x28,
12x their pixels. What would a smaller side, or fewer epochs at 28x28, cost in accuracy and in verdicts?

    python bench/bench_digits_size.py --seeds 0 1 2 3 4 [--variants side28 side16 side8 half-epochs] \
                                      [--out bench/results/digits_size.jsonl]

Each variant is the digits quick preset with one change: ``side`` (``ewe.data.digits.SIDE``: the digits and the
photo patches that are their triggers, bilinear as today; the CNN's first dense layer follows the input's
size) or the owner's and thief's epochs halved. A variant gets its own empty cache folder, so its innocent
population (and its two reference models) is built for it, timed, then every victim seed's whole run (train,
the preset's distilling thief, the verdicts against that population) in a throw-away folder, one after the
other in this process. Each run appends one line to ``--out``; a line already there is not run again
(resumable: a population is rebuilt only when a variant still has seeds to run). Prints per variant: the
population's build, the run's seconds (train + first thief, the demo's bar), victims' and copies' accuracy and
watermark success (mean, sd over seeds), copies proven and the independent clean model never proven.
Prints numbers; not a test.
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

import torch

from ewe import innocents
from ewe.config import preset
from ewe.data import digits, registry, splits
from ewe.malloc import apply_unless_disabled
from bench_precision import COPIES, one_run as precision_run  # noqa: E402  (beside this script)
from publish import mean_sd, read_measured  # noqa: E402

apply_unless_disabled()
# variant -> (side, preset overrides)
VARIANTS = {
    "side28": (28, {}),
    "side16": (16, {}),
    "side8": (8, {}),
    "half-epochs": (28, {"epochs": 4, "w_epochs": 3, "extract_epochs": 5}),
}


def use_side(side: int) -> None:
    """Every in-process memo that holds digits at the old side forgets them."""
    digits.SIDE = side
    registry.clear_cache()
    splits._FINGERPRINTS.clear()
    innocents._CHECKED.clear()


def one_run(cfg) -> dict:
    """bench_precision's whole quick run, and the demo's bar: training plus the first thief."""
    row = precision_run(cfg)
    row.pop("precision", None)
    row["train_and_first_thief_s"] = round(row["train_s"] + row["stages_s"].get("steal_defended", 0), 2)
    return row


def summary(rows: list[dict], variants: list[str]) -> None:
    for v in variants:
        pops = [r for r in rows if r["variant"] == v and r.get("kind") == "population"]
        rs = sorted((r for r in rows if r["variant"] == v and r.get("kind") == "run"), key=lambda r: r["seed"])
        if not rs:
            continue
        print(f"\n{v}: {len(rs)} victim seeds ({', '.join(str(r['seed']) for r in rs)})"
              + (f"; population of {pops[-1]['models']} models built in {pops[-1]['seconds']:.1f} s" if pops else ""))
        print(f"  run {mean_sd([r['wall_s'] for r in rs])} s; train + first thief "
              f"{mean_sd([r['train_and_first_thief_s'] for r in rs])} s")
        for victim, copy in COPIES.items():
            print(f"  {victim:<17} accuracy {mean_sd([r['accuracy'].get(victim) for r in rs], scale=100)} %  "
                  f"watermark {mean_sd([r['watermark_success'].get(victim) for r in rs], scale=100)} %")
            print(f"  {copy:<17} accuracy {mean_sd([r['accuracy'].get(copy) for r in rs], scale=100)} %  "
                  f"watermark {mean_sd([r['watermark_success'].get(copy) for r in rs], scale=100)} %  proven "
                  f"{sum(r['proven'].get(copy, False) for r in rs)}/{len(rs)}")
        print(f"  clean model accuracy {mean_sd([r['accuracy'].get('clean') for r in rs], scale=100)} %; independent "
              f"clean model proven {sum(r['proven'].get('clean', False) for r in rs)}/{len(rs)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "digits_size.jsonl",
                    help="JSONL of one line per run or population build (resumable)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = read_measured(args.out) if args.out.exists() else []
    for variant in args.variants:
        side, overrides = VARIANTS[variant]
        done = {r["seed"] for r in rows if r["variant"] == variant and r.get("kind") == "run"}
        todo = [s for s in args.seeds if s not in done]
        if not todo:
            continue
        use_side(side)
        base = preset("digits", "quick", threads=args.threads).replace(**overrides)
        cache = Path(tempfile.mkdtemp(prefix=f"ewe-bench-digits-{variant}-"))
        os.environ["EWE_CACHE_DIR"] = str(cache)    # its own population: the key does not name the side
        try:
            print(f"{variant}: building its innocent population", flush=True)
            t0 = time.perf_counter()     # built, not taken from the lab's shipped one: its cost is measured too
            folder = innocents.build_population(base, n=base.innocents)
            lines = [{"variant": variant, "kind": "population", "side": side, **overrides,
                      "seconds": round(time.perf_counter() - t0, 2),
                      "models": len(innocents.trained_models(folder)) + len(innocents.trained_references(folder))}]
            for i, seed in enumerate(todo, 1):
                print(f"[{variant} {i}/{len(todo)}] seed {seed}", flush=True)
                lines.append({"variant": variant, "kind": "run", "side": side, **overrides,
                              **one_run(base.replace(seed=seed))})
                print(f"  {lines[-1]['wall_s']:.1f} s", flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("a") as fh:      # the population's line with its variant's first run
                    fh.writelines(json.dumps(line) + "\n" for line in lines)
                rows.extend(lines)
                lines = []
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    summary(rows, args.variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
