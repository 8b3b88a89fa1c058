"""Where a quick run's time goes, as multiples of a plain PyTorch epoch (issue 34, part 1): a figure that means
the same on any machine.

    python bench/bench_stages.py --dataset mnist --data-dir ../shared/data [--seed 0] [--threads 2]
                                 [--empty-cache] [--json bench/results/stages_mnist.json]

In one process: one epoch of the textbook loop (Adam, cross-entropy, the victim's CNN, the preset's batch size,
every training image once; ``bench_population.plain_epoch_seconds``) is the unit; then ``pipeline.run`` of the
quick preset (train, the preset's thief, verdicts) in a throw-away folder. Prints each stage's seconds (the
run's result.json) and seconds / plain epoch, the innocent models the run trained itself (their manifest's
seconds: only with --empty-cache, or when the task's population was not cached yet), the total, and the process's
peak resident memory. Prints numbers; it is not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench_population import plain_epoch_seconds  # noqa: E402  (beside this script)
from ewe.config import ConfigError, preset
from ewe.data.splits import load_data
from ewe.experiments import pipeline
from ewe.innocents import population_dir, trained_models, trained_references
from ewe.malloc import apply_unless_disabled

apply_unless_disabled()


def rss_mib() -> tuple[int, int]:
    """(resident now, peak so far) of this process, MiB (/proc: Linux)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            fields[line.split(":")[0]] = int(line.split()[1]) // 1024
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


class MemoryByStage:
    """A run listener: the process's resident memory when each stage starts and ends, and the peak reached by
    then, so the stage that raises the peak shows (issue 34, part 4)."""

    def __init__(self):
        self.rows: list[tuple[str, str, int, int]] = []

    def __call__(self, event: dict) -> None:
        if event["kind"] in ("stage_start", "stage_end", "run_end"):
            self.rows.append((event["kind"], event.get("stage", ""), *rss_mib()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--data-dir", default=os.environ.get("EWE_DATA_DIR"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--empty-cache", action="store_true", help="a fresh cache: the run builds its innocent population")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON here")
    args = ap.parse_args(argv)
    if args.empty_cache:
        os.environ["EWE_CACHE_DIR"] = tempfile.mkdtemp(prefix="ewe-bench-stages-cache-")
    try:
        cfg = preset(args.dataset, args.preset, seed=args.seed, data_dir=args.data_dir, threads=args.threads)
    except ConfigError as exc:
        print(f"bench_stages: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    def population() -> dict:   # the innocents and the task's two reference models (clean, independent clean)
        return {**trained_models(population_dir(cfg)), **trained_references(population_dir(cfg))}
    before = set(population())
    memory = MemoryByStage()
    memory.rows.append(("start", "imports", *rss_mib()))
    plain = plain_epoch_seconds(cfg, load_data(cfg))
    memory.rows.append(("end", "plain epoch", *rss_mib()))
    print(f"plain epoch: {plain:.2f} s ({cfg.dataset}, batch {cfg.batch_size}, {args.threads} threads)", flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ewe-bench-stages-") as out:
        result = pipeline.run(cfg, out, listeners=[memory])
    total = time.perf_counter() - t0
    if result.get("status") != "finished":
        print(f"bench_stages: the run ended {result.get('status')!r}", file=sys.stderr)
        return 1
    stages = {k: v for k, v in (result.get("seconds") or {}).items() if isinstance(v, (int, float))}
    built = {name: m.get("seconds", 0.0) for name, m in population().items() if name not in before}
    rows = {**stages, **({"population (built in the run)": sum(built.values())} if built else {})}
    width = max(len(k) for k in rows)
    for name, sec in rows.items():
        print(f"  {name:<{width}}  {sec:7.1f} s  {sec / plain:6.2f} plain epochs")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  {'run, wall clock':<{width}}  {total:7.1f} s  {total / plain:6.2f} plain epochs")
    print(f"peak RSS {peak_mib:.0f} MiB; population models trained in the run: {len(built)}")
    print("resident memory (MiB) at each stage boundary, and the peak so far:")
    last_peak = 0
    for kind, stage, now, peak in memory.rows:
        if kind != "stage_start" or peak > last_peak:
            print(f"  {kind:<11} {stage:<24} {now:6d}  peak {peak:6d}{'  <- raised' if peak > last_peak else ''}")
        last_peak = peak
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "dataset": cfg.dataset, "preset": args.preset, "seed": args.seed, "threads": args.threads,
            "plain_epoch_s": round(plain, 3), "stages_s": rows, "total_s": round(total, 2),
            "total_plain_epochs": round(total / plain, 2), "innocents_built": len(built),
            "peak_rss_mib": round(peak_mib), "cpus": os.cpu_count(), "torch": torch.__version__,
            "rss_by_stage_mib": [list(r) for r in memory.rows],
            "load_average": Path("/proc/loadavg").read_text().split()[:3]}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
