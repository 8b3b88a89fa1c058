"""Do innocent models trained on the owner's own data answer a run's triggers like other innocents?

Trains fresh re-runs of the owner's recipe (the victim's architecture and the clean model's budget, new
seeds): half on the run's own training data, half on other seeded draws of the same size (presets with a
train_size subset), and prints each one's target rate on the run's held-out triggers next to the run's
population (innocents.json). The probe behind the population's mix (docs/history/2026-11-29-verdicts-and-demo.md).

    python bench/innocent_tail.py runs/reliability/mnist-quick-s1 --models 4
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ewe.callbacks import Reporter
from ewe.config import saved_config
from ewe.models import build_model
from ewe.data.splits import load_data
from ewe.train import predict, train_clean


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--models", type=int, default=4, help="re-runs per data source")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    saved = json.loads((run / "config.json").read_text())
    cfg = saved_config(saved)
    target = json.loads((run / "predictions.json").read_text())["target"]
    triggers = torch.load(run / "triggers.pt", weights_only=True)
    sets = {"optimised": triggers["heldout"], "classic": triggers["raw_heldout"]}
    inn = json.loads((run / "innocents.json").read_text()) if (run / "innocents.json").exists() else None
    if inn:
        for name, models in inn["sets"].items():
            rates = sorted(float(np.mean(np.asarray(p) == target)) for p in models.values())
            print(f"population ({len(rates)}) on {name}: median {np.median(rates):.3f}, top three {rates[-3:]}")
    epochs = cfg.epochs + max(1, round(cfg.w_epochs))
    for label in ("own data", "other draw"):
        for i in range(args.models):
            seed = 70_000 + i
            data = load_data(cfg if label == "own data" else cfg.replace(seed=seed))
            model = build_model(cfg.model, tuple(data.x_train.shape[1:]), seed=seed).to(cfg.device)
            train_clean(model, data.x_train, data.y_train, epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                        seed=seed, reporter=Reporter([]), stage="innocent", name="innocent")
            rates = {k: float((predict(model, x.to(cfg.device)).cpu().numpy() == target).mean())
                     for k, x in sets.items()}
            print(f"{label:<10} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
