"""Where is dataset inference's membership signal lost? Measured on stored run folders that trained it
(bench/demo_reliability.py --set 'schemes=["dataset_inference"]'); no training.

    python bench/di_signal.py runs/reliability/speech-commands-quick-schemesdataset_inference-s? \\
        --out bench/results/di_signal_speech.json

Per victim run, on the owner's model and its revealed points (m private from its training set, m public from
the test set, ``ewe.watermarks.dataset_inference.run_points``), the AUC with which each embedding tells the
two apart (0.5: not at all; above: training points look "farther from the boundary"):
- the lab's blind walk (label-only), as its scorer sees it: the scorer fitted on the fitting points
  (``fit_scorer``), scored on the revealed points (what the test is run on);
- the white-box logit margin (true class minus the best other): what the blind walk tries to estimate;
- the loss of the true class from the probabilities: what a soft-label API would hand the owner.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from ewe.config import saved_config
from ewe.data.splits import load_data
from ewe.results.runs import Run
from ewe.train import logit_margins
from ewe.watermarks import dataset_inference as di


def _auc(members, others) -> float:
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score([1] * len(members) + [0] * len(others), [*members, *others]))


def measure(path: Path) -> dict:
    import torch
    import torch.nn.functional as F
    cfg = saved_config(json.loads((path / "config.json").read_text()))
    stored = json.loads((path / di.EVIDENCE_FILE).read_text())
    points = di.run_points(cfg, load_data(cfg))
    owner = Run.open(path).load_models((di.TEST_NAME,))[di.TEST_NAME].eval()
    scorer = di.fit_scorer(stored["owner"], stored["seed"])
    # the scorer's score is high for "looks public": negate it so that members score high, like the margins
    walk = {k: -scorer.decision_function(di.features(stored["owner"][f"test_{k}"])) for k in ("private", "public")}
    with torch.no_grad():
        logits = {k: owner(points[f"test_{k}"][0]) for k in ("private", "public")}
    margin, loss = {}, {}
    for k, z in logits.items():
        y = points[f"test_{k}"][1]
        margin[k] = logit_margins(z, y).tolist()
        loss[k] = (-F.cross_entropy(z, y, reduction="none")).tolist()      # negated: members have low loss
    return {"run": path.name, "points": len(walk["private"]),
            "auc_blind_walk_scorer": _auc(walk["private"], walk["public"]),
            "auc_white_box_margin": _auc(margin["private"], margin["public"]),
            "auc_soft_label_loss": _auc(loss["private"], loss["public"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    rows = [measure(p) for p in args.runs if (p / di.EVIDENCE_FILE).exists()]
    if not rows:
        print("no run folder with dataset inference's evidence", file=sys.stderr)
        return 2
    for r in rows:
        print(f"{r['run']}: AUC blind walk {r['auc_blind_walk_scorer']:.2f}, white-box margin "
              f"{r['auc_white_box_margin']:.2f}, soft-label loss {r['auc_soft_label_loss']:.2f} "
              f"({r['points']} + {r['points']} points)")
    keys = ("auc_blind_walk_scorer", "auc_white_box_margin", "auc_soft_label_loss")
    summary = {k: {"mean": statistics.mean(r[k] for r in rows), "min": min(r[k] for r in rows),
                   "max": max(r[k] for r in rows)} for k in keys}
    print("mean over victims: " + ", ".join(f"{k} {v['mean']:.2f} [{v['min']:.2f}..{v['max']:.2f}]"
                                            for k, v in summary.items()))
    if args.out:
        args.out.write_text(json.dumps({"runs": rows, "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
