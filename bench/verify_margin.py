"""How the verification margin trades false accusations against queries, on finished run folders.

    python bench/verify_margin.py runs/paper/*-s? [--margins 0,0.02,0.05,0.1]

Recomputes every suspect's test from each run's predictions.json (nothing is retrained, nothing written)
and prints, per margin, the queries for 95 % of every stolen copy and whether an innocent model would be accused:
the independent clean model against the clean reference, and (``swapped``) the reference against the
independent model, on the optimised and on the classic triggers.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from ewe.verify import run_settings, verify, verify_predictions  # noqa: E402
from ewe.malloc import apply_unless_disabled  # noqa: E402

apply_unless_disabled()   # an entry point: reuse freed memory (ewe.malloc; EWE_MALLOC=0 turns it off)

COLUMNS = ("extracted", "ablation_extracted", "plain_extracted", "clean", "clean_classic", "clean_swapped",
           "clean_classic_swapped")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders with predictions.json")
    p.add_argument("--margins", default="0,0.02,0.05,0.1")
    args = p.parse_args(argv)
    margins = [float(m) for m in args.margins.split(",")]
    runs = [Path(r) for r in args.runs if (Path(r) / "predictions.json").exists()]
    if not runs:
        p.error("no run folder with a predictions.json among the arguments")
    cell = {"clean": "innocent", "clean_classic": "innocent (classic)", "clean_swapped": "swapped",
            "clean_classic_swapped": "swapped (classic)"}
    accused = {m: 0 for m in margins}
    for margin in margins:
        print(f"\nmargin {margin:g}: queries for 95 % (— = not proven); innocent: rate vs reference, ACCUSED?")
        print(f"{'run':34} " + " ".join(f"{cell.get(c, c)[:20]:>20}" for c in COLUMNS))
        for run in runs:
            preds = json.loads((run / "predictions.json").read_text())
            cfg = json.loads((run / "config.json").read_text())
            settings = {**run_settings(cfg), "margin": margin}
            ver = verify_predictions(preds, **settings)
            # the two clean models are equally independent: also test the reference as the suspect
            for key, set_name in (("clean_swapped", "optimised"), ("clean_classic_swapped", "classic")):
                s = preds["sets"].get(set_name, {})
                if "independent_clean" in s and "clean" in s:
                    ver[key] = verify(s["clean"], s["independent_clean"], preds["target"], **settings)
            cells = []
            for c in COLUMNS:
                v = ver.get(c)
                if v is None:
                    cells.append("")
                elif c.startswith("clean"):
                    # the app's criterion: some number of queries proves it (or all of them do)
                    hit = bool(v["verified"] or v["queries_for_95"] is not None)
                    flag = "ACCUSED" if hit else "ok"
                    accused[margin] += hit
                    cells.append(f"{v['suspect_rate']:.3f}/{v['reference_rate']:.3f} {flag}")
                else:
                    cells.append(f"{v['suspect_rate']:.3f}: {v['queries_for_95'] or '—'}")
            print(f"{run.name[:34]:34} " + " ".join(f"{x:>20}" for x in cells))
    print("\ninnocent models accused (both trigger sets, both directions): " +
          ", ".join(f"margin {m:g}: {n}" for m, n in accused.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
