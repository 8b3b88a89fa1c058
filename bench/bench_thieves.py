"""Thief variants against trained run folders, over seeds: who still gets caught, and what it cost the thief.

    # steal every run with every variant (each in a copy of the run folder; finished copies are kept):
    EWE_DATA_DIR=../shared/data python bench/bench_thieves.py runs/paper/*-paper-s? --out runs/thief
    # only summarise what is there:
    python bench/bench_thieves.py runs/paper/*-paper-s? --out runs/thief --summary-only

A variant's copy is ``OUT/<run>-<variant>``. The default thief (hard labels, same architecture, the whole
attacker set) is the run folder itself. Per dataset and variant the summary gives, for the stolen copies of
the EWE, the no-SNNL ablation and the classic watermark model: accuracy, watermark success and how many
seeds were proven (p < alpha within the held-out triggers, with the run's verification margin), plus the
thief's accuracy loss against the default thief on the same seed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "budget10k": ["--query-budget", "10000"],
    "mlp": ["--student", "mlp"],
    "wide": ["--student", "conv2_wide"],       # about 4x the CNN's compute: 12 min a paper run here
    "narrow": ["--student", "conv2_narrow"],
    "soft": ["--extract-labels", "soft"],
}
SEED_VARIANT = "seed"   # "seed<N>": the default thief with another seed (--thief-seed N): the thief's luck


def is_seed_variant(variant: str) -> bool:
    return variant.startswith(SEED_VARIANT) and variant[len(SEED_VARIANT):].isdigit()


def variant_args(variant: str) -> list[str]:
    if is_seed_variant(variant):
        return ["--thief-seed", variant[len(SEED_VARIANT):]]
    return VARIANTS[variant]


COPIES = (("extracted", "EWE"), ("ablation_extracted", "ablation"), ("plain_extracted", "classic"))


def steal(run: Path, out: Path, variant: str, threads: int | None = None) -> Path:
    dst = out / f"{run.name}-{variant}"
    if (dst / ".done").exists():
        return dst
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("robustness.json", "robustness*.png"))
    print(f"steal {dst} {' '.join(variant_args(variant))}", flush=True)
    with open(dst / "steal.log", "w") as log, open(dst / "stderr.log", "w") as err:
        code = subprocess.call([sys.executable, "-m", "ewe", "steal", str(dst), *variant_args(variant),
                                *(["--threads", str(threads)] if threads else [])],
                               stdout=log, stderr=err, cwd=ROOT)
    if code == 0:
        (dst / ".done").touch()
    else:
        print(f"  failed (exit {code}): see {dst / 'stderr.log'}", flush=True)
    return dst


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    m = statistics.mean(values)
    return f"{m:.3f}" if len(values) == 1 else f"{m:.3f} [{min(values):.3f}–{max(values):.3f}]"


def summarise(runs: list[Path], out: Path, variants: list[str]) -> list[str]:
    rows: dict[tuple[str, str], list[tuple[dict, dict]]] = {}
    for run in runs:
        base = json.loads((run / "result.json").read_text())
        for variant in ["default", *variants]:
            folder = run if variant == "default" else out / f"{run.name}-{variant}"
            if variant != "default" and not (folder / ".done").exists():
                continue
            res = json.loads((folder / "result.json").read_text())
            rows.setdefault((base["dataset"], variant), []).append((res, base))
    lines = [f"{'dataset':<14} {'thief':<10} {'seeds':>5}  {'thief acc loss':>14}  " +
             "  ".join(f"{label + ': wm, proven':>32}" for _, label in COPIES) +
             "  innocent accused (optimised / classic triggers)"]
    for (dataset, variant), members in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] != "default",
                                                                             kv[0][1])):
        loss = [b["models"]["extracted"]["accuracy"] - r["models"]["extracted"]["accuracy"] for r, b in members]
        cells = []
        for key, _ in COPIES:
            wm = [r["models"][key]["watermark_success"] for r, _ in members if key in r["models"]]
            ver = [r["verification"].get(key, {}) for r, _ in members]
            proven = [str(v["queries_for_95"]) if v.get("queries_for_95") is not None else "—" for v in ver]
            cells.append(f"{_cell(wm)}, {'/'.join(proven)}")
        accused = [sum(r["verification"].get(k, {}).get("queries_for_95") is not None for r, _ in members)
                   for k in ("clean", "clean_classic")]
        lines.append(f"{dataset:<14} {variant:<10} {len(members):>5}  {_cell(loss):>14}  " +
                     "  ".join(f"{c:>32}" for c in cells) + f"  {accused[0]} / {accused[1]} of {len(members)}")
    lines.append("wm: watermark success of the stolen copy, mean [min–max] over seeds; proven: queries for "
                 "95 % per seed (— = not proven); thief acc loss: default thief's accuracy minus this one's")
    return lines


def lottery(runs: list[Path], out: Path, variants: list[str]) -> list[str]:
    """Victim luck against thief luck: each victim stolen by several thieves that differ only by their seed.

    Per victim and copy: the watermark kept over its thieves and how many were proven. Per copy: how much of
    the variance is between victims (ICC(1) from a one-way ANOVA, scipy's F-test p). Then EWE against the
    ablation thief by thief: with the same seed the two students start from the same weights, so the thief's
    luck cancels out of the difference."""
    import numpy as np
    from scipy import stats
    seeds = [v for v in variants if is_seed_variant(v)]
    table: dict[str, dict[str, list[tuple[float, bool]]]] = {}   # victim -> copy -> [(wm, proven)] per thief
    for run in runs:
        folders = [run] + [out / f"{run.name}-{v}" for v in seeds]
        done = [f for f in folders if f == run or (f / ".done").exists()]
        for folder in done:
            res = json.loads((folder / "result.json").read_text())
            for key, label in COPIES:
                if key in res["models"]:
                    q = res["verification"].get(key, {}).get("queries_for_95")
                    table.setdefault(run.name, {}).setdefault(label, []).append(
                        (res["models"][key]["watermark_success"], q is not None and q <= 100))
    labels = [label for _, label in COPIES]
    lines = [f"{'victim':<24} {'thieves':>7}  " + "  ".join(f"{label + ': wm, proven <=100 q':>34}"
                                                            for label in labels)]
    for victim, copies in table.items():
        cells = []
        for label in labels:
            got = copies.get(label, [])
            wm = [w for w, _ in got]
            cells.append(f"{_cell(wm)}, {sum(p for _, p in got)}/{len(got)}")
        lines.append(f"{victim:<24} {len(copies.get('EWE', [])):>7}  " + "  ".join(f"{c:>34}" for c in cells))
    lines.append("")
    for label in labels:
        groups = [np.array([w for w, _ in table[v][label]]) for v in table if len(table[v].get(label, [])) >= 2]
        if len(groups) < 2:
            continue
        k, n = len(groups), float(np.mean([len(g) for g in groups]))
        msb = n * np.var([g.mean() for g in groups], ddof=1)
        msw = np.mean([g.var(ddof=1) for g in groups])
        icc = (msb - msw) / (msb + (n - 1) * msw) if msb + (n - 1) * msw > 0 else float("nan")
        p = stats.f_oneway(*groups).pvalue if msw > 0 else float("nan")
        within = np.mean([g.std(ddof=1) for g in groups])
        lines.append(f"{label:<9} victims {k}, thieves each {n:.0f}: ICC(1) {icc:.2f} (share of the variance "
                     f"between victims), ANOVA p {p:.2g}; spread within a victim (mean SD) {within:.3f}, "
                     f"of the victims' means (SD) {np.std([g.mean() for g in groups], ddof=1):.3f}")
    diffs = {v: [e - a for (e, _), (a, _) in zip(c.get("EWE", []), c.get("ablation", []))] for v, c in table.items()}
    per_victim = [float(np.mean(d)) for d in diffs.values() if d]
    if len(per_victim) >= 2:
        pairs = [x for d in diffs.values() for x in d]
        w = stats.wilcoxon(per_victim) if any(per_victim) else None
        lines.append(f"EWE - ablation, same thief: {len(pairs)} pairs, mean {np.mean(pairs):+.3f} "
                     f"[{min(pairs):+.3f}..{max(pairs):+.3f}], EWE ahead in {sum(x > 0 for x in pairs)}, behind "
                     f"in {sum(x < 0 for x in pairs)}; per victim (mean over its thieves): "
                     + " ".join(f"{x:+.3f}" for x in per_victim)
                     + (f"; Wilcoxon over victims p {w.pvalue:.2g}" if w is not None else ""))
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="finished run folders (e.g. runs/paper/*-paper-s?)")
    p.add_argument("--out", default="runs/thief", help="where the variants' copies go")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"subset of {','.join(VARIANTS)}, or seed<N> (the default thief with seed N)")
    p.add_argument("--threads", type=int, help="CPU threads per steal (default: each run's)")
    p.add_argument("--summary-only", action="store_true")
    p.add_argument("--lottery", action="store_true",
                   help="with seed<N> variants: victim luck against thief luck (per victim, ICC, paired EWE-ablation)")
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = {v for v in variants if v not in VARIANTS and not is_seed_variant(v)}
    if unknown:
        p.error(f"unknown variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)} or seed<N>")
    runs = [Path(r) for r in args.runs if (Path(r) / "result.json").exists()
            and (json.loads((Path(r) / "result.json").read_text()).get("verification") or {}).get("extracted")]
    if not runs:
        p.error("no finished run folder among the arguments")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        for run in runs:
            for variant in variants:
                steal(run, out, variant, args.threads)
    print("\n".join(lottery(runs, out, variants) if args.lottery else summarise(runs, out, variants)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
