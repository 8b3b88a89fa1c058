"""Why does (or does not) a stolen copy inherit the margin-based watermark's key? Measured on stored run folders
that trained it (bench/demo_reliability.py --set 'schemes=["defended","mbw"]'); no training.

    python bench/mbw_mechanism.py runs/reliability/digits-quick-schemesdefended+mbw-*s? \\
        --out bench/results/mbw_mechanism_digits.json

Per victim run:
- the victim's hold on its key: the share of key inputs it answers with their key label, and the share it
  keeps within the radius after a 10-step attack (``ewe.watermarks.mbw.key_margin``);
- how far the thief's queries are from the key: each key input's L-infinity distance to the nearest query,
  against the radius (a query inside the margin ball would hand a hard-label thief a key label);
- what a hard-label thief is told that a clean model would not tell it: the queries on which the MBW victim's
  top class differs from the run's clean model's, and for a distilling thief the mean total-variation distance
  of their probabilities at temperature 5, each beside the same for the independent clean model (what two
  models that never saw the key differ by);
- what the copies kept: the key rate of every stored copy per kind of thief, beside the highest key rate of
  any innocent model of the population.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from ewe.config import saved_config  # noqa: E402
from ewe.data.splits import load_data  # noqa: E402
from ewe.results.runs import THIEVES_FILE, Run  # noqa: E402
from ewe.results.sidebyside import thief_kind  # noqa: E402
from ewe.watermarks.mbw import key_margin, radius  # noqa: E402
from ewe.watermarks.triggers import value_range  # noqa: E402


def measure(path: Path) -> dict:
    import torch
    import torch.nn.functional as F
    saved = json.loads((path / "config.json").read_text())
    cfg = saved_config(saved)
    data = load_data(cfg)
    tensors = torch.load(path / "triggers.pt", weights_only=True)
    preds = json.loads((path / "predictions.json").read_text())
    key, labels = tensors["margin_heldout"], torch.tensor(preds["set_targets"]["margin"])
    models = Run.open(path).load_models(("mbw", "clean", "independent_clean"))
    victim, clean, other = models["mbw"].eval(), models["clean"].eval(), models["independent_clean"].eval()
    span = value_range(cfg, data)
    eps = radius(cfg.mbw_eps, span)
    with torch.no_grad():
        held = float((victim(key).argmax(1) == labels).float().mean())
        q = data.x_attack.flatten(1)
        nearest = torch.stack([(q - k.flatten()).abs().max(1).values.min() for k in key])
        lv, lc = victim(data.x_attack), clean(data.x_attack)
        lo = other(data.x_attack)
        differs = int((lv.argmax(1) != lc.argmax(1)).sum())
        clean_differs = int((lo.argmax(1) != lc.argmax(1)).sum())

        def tv(a, b):
            return float(0.5 * (F.softmax(a / 5, 1) - F.softmax(b / 5, 1)).abs().sum(1).mean())
    innocents = json.loads((path / "innocents.json").read_text())["sets"]["margin"]
    inn_rates = [sum(p == t for p, t in zip(pred, labels.tolist())) / len(labels) for pred in innocents.values()]
    kept: dict[str, list[float]] = {}
    for d in json.loads((path / THIEVES_FILE).read_text()) if (path / THIEVES_FILE).exists() else []:
        c = d["copies"].get("mbw_extracted")
        if c:
            kept.setdefault(thief_kind(d["thief"], cfg.model)[1], []).append(c["watermark_success"])
    return {"run": path.name, "eps": cfg.mbw_eps, "victim_key_rate": held,
            "victim_held_within_radius": key_margin(victim, key, labels, eps, value_range=span)["held"],
            "query_distance_to_key": {"min": float(nearest.min()), "median": float(nearest.median())},
            "key_inputs_with_a_query_within_radius": int((nearest <= eps).sum()),
            "queries": len(data.x_attack), "queries_where_victim_differs_from_clean": differs,
            # the same for two clean models (the independent one against the reference): what any model differs by
            "queries_where_independent_clean_differs_from_clean": clean_differs,
            "tv_distance_T5_victim_vs_clean": tv(lv, lc), "tv_distance_T5_independent_clean_vs_clean": tv(lo, lc),
            "innocent_key_rate_max": max(inn_rates), "innocent_key_rate_median": statistics.median(inn_rates),
            "copies_key_rate": {k: {"n": len(v), "mean": statistics.mean(v), "max": max(v)} for k, v in kept.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    rows = []
    for r in args.runs:
        path = Path(r)
        if not (path / "models" / "mbw.pt").exists():
            print(f"{path.name}: no mbw victim, skipped", flush=True)
            continue
        rows.append(measure(path))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
