"""Where does the entanglement go? Per-layer trigger/target geometry of every model in finished run folders.

    EWE_DATA_DIR=../shared/data python bench/geometry.py runs/bench-quiet/mnist-quick-s0 runs/paper/*-s*

For each run and model (victims, stolen copies, clean models) prints the gap between triggers and
target-class test samples in each SNNL layer (``ewe.watermarks.diagnostics.layer_geometry``: mean between-group
cosine distance minus the mean within-group distance; 0 = fully mixed) and the model's held-out watermark
success. Each model is measured on the trigger set it is judged on (optimised, or classic for the plain
watermark and its copy). Runs made before the stolen copies' geometry was recorded are covered too: this
recomputes everything from the checkpoints.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from ewe.config import saved_config  # noqa: E402
from ewe.experiments import pipeline  # noqa: E402
from ewe.data import splits  # noqa: E402
from ewe.results import runs  # noqa: E402
from ewe.results import schema  # noqa: E402
from ewe.watermarks.diagnostics import layer_geometry  # noqa: E402
from ewe.train import watermark_success  # noqa: E402
from ewe.malloc import apply_unless_disabled  # noqa: E402

apply_unless_disabled()   # this process trains: reuse freed memory (ewe.malloc; EWE_MALLOC=0 turns it off)

ORDER = ["clean", "independent_clean", "plain_watermark", "plain_extracted", "ablation_no_snnl",
         "ablation_extracted", "defended", "extracted"]
HEADER = "| model | gap layer 1 | gap layer 2 | gap layer 3 | held-out watermark |\n|---|---|---|---|---|"


def run_geometry(run_dir: Path) -> dict[str, dict]:
    saved = json.loads((run_dir / "config.json").read_text())
    cfg = saved_config(saved)
    data = splits.load_data(cfg)
    target_samples = data.x_test[data.y_test == cfg.target]
    tensors = torch.load(run_dir / "triggers.pt", weights_only=True)
    sets = {"optimised": tensors["heldout"], "classic": tensors["raw_heldout"]}
    out = {}
    for name, model in runs.Run.open(run_dir).load_models(ORDER).items():
        triggers = sets[schema.TRIGGER_SET[name]]
        out[name] = {"gaps": [g["gap"] for g in layer_geometry(model, triggers, target_samples)],
                     "watermark": watermark_success(model, triggers, cfg.target)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write every run's numbers here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    per_run = {}
    for run_dir in args.runs:
        if not (run_dir / "models").is_dir():
            print(f"skipping {run_dir}: no models/ folder", file=sys.stderr)
            continue
        per_run[str(run_dir)] = geo = run_geometry(run_dir)
        print(f"\n{run_dir}\n{HEADER}")
        for name in ORDER:
            if name in geo:
                g = geo[name]
                print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in g["gaps"]) + f" | {g['watermark']:.3f} |")
    if len(per_run) > 1:
        print(f"\nmean over runs (min..max)\n{HEADER}")
        for name in ORDER:
            rows = [g[name] for g in per_run.values() if name in g]
            if not rows:
                continue
            cols = [[r["gaps"][i] for r in rows] for i in range(3)] + [[r["watermark"] for r in rows]]
            print(f"| {name} | " + " | ".join(f"{statistics.mean(c):.3f} ({min(c):.3f}..{max(c):.3f})"
                                             for c in cols) + " |")
    if args.json:
        args.json.write_text(json.dumps(per_run, indent=1))


if __name__ == "__main__":
    main()
