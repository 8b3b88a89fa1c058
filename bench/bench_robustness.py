"""Robustness bench: removal attacks (fine-tuning, pruning, fine-pruning) on trained run folders.

    # on existing runs (e.g. MNIST / Fashion-MNIST paper runs, several seeds):
    python bench/bench_robustness.py RUN_DIR... --threads 1 [--report bench/results/robustness.md]
    # or train them first (one sweep folder per dataset, resumable), then attack them:
    python bench/bench_robustness.py --train mnist,fashion-mnist --preset paper --seeds 0,1,2 \
        --out bench/results/robustness --threads 1 --workers 1

Writes ``robustness.json`` into every run folder (``ewe.attacks.removal.run_suite``), prints each run's
table and a summary per dataset (every attack's strongest point, mean and min–max over seeds, EWE against
the classic watermark), and optionally the markdown report with the curves (``ewe.results.report``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from ewe.malloc import apply_unless_disabled  # noqa: E402

apply_unless_disabled()   # this process trains: reuse freed memory (ewe.malloc; EWE_MALLOC=0 turns it off)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", help="run folders, sweep folders or folders of run folders")
    p.add_argument("--train", help="datasets to train first, comma-separated (e.g. mnist,fashion-mnist)")
    p.add_argument("--preset", default="paper")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default="bench/results/robustness", help="where --train puts its sweeps")
    p.add_argument("--workers", type=int, default=1, help="parallel training runs for --train")
    p.add_argument("--data-dir")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--victims", default="defended,plain_watermark")
    p.add_argument("--attacks", help="comma-separated subset of: fine_tune_last, fine_tune_all, prune, "
                   "prune_finetune, fine_prune (default: all)")
    p.add_argument("--ratios", type=_floats, help="pruning ratios without fine-tuning (default 0.1..0.9)")
    p.add_argument("--finetune-ratios", type=_floats, help="ratios for pruning / fine-pruning + fine-tuning")
    p.add_argument("--finetune-epochs", type=float)
    p.add_argument("--finetune-lr", type=float)
    p.add_argument("--attacker-size", type=int)
    p.add_argument("--labels", choices=("victim", "true"))
    p.add_argument("--scope", choices=("global", "layer"), help="magnitude pruning over all layers or each")
    p.add_argument("--skip-existing", action="store_true", help="keep a finished robustness.json")
    p.add_argument("--report", help="also write this markdown report (curves as PNG beside it)")
    return p.parse_args(argv)


def settings_from_args(args) -> dict:
    s = {"victims": args.victims.split(","), "threads": args.threads}
    for key, value in (("attacks", args.attacks and args.attacks.split(",")), ("ratios", args.ratios),
                       ("finetune_ratios", args.finetune_ratios), ("finetune_epochs", args.finetune_epochs),
                       ("finetune_lr", args.finetune_lr), ("attacker_size", args.attacker_size),
                       ("labels", args.labels), ("prune_scope", args.scope)):
        if value is not None:
            s[key] = value
    return s


def train(args) -> list[Path]:
    from ewe.experiments import sweep
    outs = []
    for dataset in args.train.split(","):
        out = Path(args.out) / dataset
        overrides = {"data_dir": args.data_dir} if args.data_dir else {}
        spec = sweep.SweepSpec(dataset=dataset, preset=args.preset, seeds=sweep.parse_seeds(args.seeds),
                               overrides=overrides, workers=args.workers, threads=args.threads)
        print(f"training {dataset} ({args.preset}, seeds {args.seeds}) into {out}", flush=True)
        summary = sweep.run_sweep(spec, out, backend="local" if args.workers > 1 else "inline")
        print(sweep.format_summary(summary), flush=True)
        outs.append(out)
    return outs


def summary_lines(runs) -> list[str]:
    """Per dataset: each attack's strongest point, mean [min–max] over seeds, per victim."""
    from ewe.attacks.removal import ATTACK_LABELS, X_AXIS
    from ewe.results.report import ATTACK_ORDER, robustness_curves
    by_dataset: dict[str, list] = {}
    for run in runs:
        by_dataset.setdefault(f"{run.config['dataset']} ({run.config['preset']})", []).append(run)
    lines = []
    for name, members in sorted(by_dataset.items()):
        curves = robustness_curves(members)
        n = sum(1 for r in members if r.robustness)
        lines += ["", f"== {name}: {n} run(s) with robustness.json ==",
                  f"{'attack':<26} {'victim':<16} {'point':>10}  {'accuracy':>22}  {'watermark success':>22}"]
        for attack in [a for a in ATTACK_ORDER if a in curves]:
            for victim, per in sorted(curves[attack].items()):
                acc, wm = per.get("accuracy", {}), per.get("watermark_success", {})
                if not acc:
                    continue
                x0, x1 = min(acc), max(acc)

                def cell(d, x):
                    v = d[x]
                    m = sum(v) / len(v)
                    return f"{m:.3f} [{min(v):.3f}-{max(v):.3f}]" if len(v) > 1 else f"{m:.3f}"
                unit = "ratio" if X_AXIS[attack] == "ratio" else "ep"
                lines.append(f"{ATTACK_LABELS[attack]:<26} {victim:<16} {unit + ' ' + format(x1, 'g'):>10}  "
                             f"{cell(acc, x0) + ' -> ' + cell(acc, x1):>22}  {cell(wm, x0) + ' -> ' + cell(wm, x1):>22}")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from ewe.experiments.robustness import format_table, run_suite
    from ewe.results.report import build_report, find_runs
    paths = list(args.runs)
    if args.train:
        paths += [str(p) for p in train(args)]
    if not paths:
        print("give run folders (or --train DATASETS)", file=sys.stderr)
        return 2
    runs = [r for r in find_runs(paths) if r.finished]
    if not runs:
        print("no finished run folders found", file=sys.stderr)
        return 2
    settings = settings_from_args(args)
    t_all = time.perf_counter()
    for run in runs:
        if args.skip_existing and run.robustness and run.robustness.get("status") == "finished":
            print(f"\n# {run.path}: robustness.json kept", flush=True)
            continue
        print(f"\n# {run.path}  ({run.config['dataset']}, {run.config['preset']}, seed {run.seed})", flush=True)
        t0 = time.perf_counter()
        rob = run_suite(run.path, settings)
        run.robustness = rob
        print(format_table(rob))
        print(f"{rob['status']} in {time.perf_counter() - t0:.1f} s  (per attack: "
              + ", ".join(f"{k} {v:.1f}s" for k, v in rob["seconds"].items() if k != "total") + ")", flush=True)
    print("\n".join(summary_lines(runs)))
    print(f"\ntotal {time.perf_counter() - t_all:.1f} s, {len(runs)} run(s), threads {args.threads}")
    if args.report:
        info = build_report(paths, args.report)
        print(f"report: {args.report} ({len(info['images'])} figure(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
