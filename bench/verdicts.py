"""How far can the verdicts be trusted? Out-of-sample false accusations, and the verdicts before and after
the exact test, recomputed from stored run folders (no training).

    python bench/verdicts.py runs/reliability/digits-quick-s* --out bench/results/verdicts_digits.json

Needs run folders with innocents.json (the innocent population's answers on the run's held-out triggers;
``python -m ewe nulls RUN...`` adds it) and, for the power table, thieves.json entries that keep each
copy's answers (every steal since the exact test was introduced).

1. **Out-of-sample false accusations.** The population is split in two halves, every kind of innocent
   (architecture, data, training length) in both (``ewe.innocents.halves``). The null rate is calibrated on one half, every
   model of the other half is tested as a suspect with all of a run's held-out triggers, on both trigger
   sets, for every run (victim); then the halves swap. An accusation is p < alpha. The 95 % interval is
   Clopper-Pearson. Tests that share an innocent model (across victims and trigger sets) are correlated:
   the intra-class correlation of the held-out rates grouped by model (one-way ANOVA, ICC(1)) and the
   effective number of independent tests n / (1 + (k - 1) ICC) are reported beside the raw count.
2. **Before / after.** Every stolen copy in thieves.json judged by the old rule (Welch t-test against the
   run's clean model + 0.10 margin, p = 0 for constant samples, queries = first dip of the median curve)
   and by the new one (exact binomial against the whole population; queries = from where the median stays
   below alpha).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]

from ewe.innocents import halves  # noqa: E402
from ewe.experiments.pipeline import TRIGGER_SET  # noqa: E402
from ewe.verify import binomial_p, population_null, query_grid, set_target, verify  # noqa: E402
from ewe.watermarks.schemes import ABLATION, CLASSIC, EWE  # noqa: E402

SCHEMES = tuple((s.stolen, s.short) for s in (EWE, CLASSIC, ABLATION))   # (copy, the registry's short word)
ALPHA = 0.05


def cp(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    return ci.low, ci.high


def icc1(groups: list[list[float]]) -> float:
    """ICC(1) from a one-way ANOVA of equal-sized groups."""
    k = len(groups[0])
    g = np.array(groups)
    msb = k * g.mean(1).var(ddof=1)
    msw = g.var(1, ddof=1).mean()
    return float((msb - msw) / (msb + (k - 1) * msw)) if msb + (k - 1) * msw > 0 else 0.0


def old_verdict(x: np.ndarray, y: np.ndarray, margin: float = 0.10, draws: int = 200, seed: int = 0):
    """The rule before the exact test: Welch on (x - margin) vs y; nan (constant samples) -> p = 0 when the
    suspect's mean is higher; queries = the first n whose median p is below alpha."""
    def welch(a, b, **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return stats.ttest_ind(a, b, equal_var=False, alternative="greater", **kw).pvalue
    xs = x - margin
    p = welch(xs, y)
    p = (0.0 if xs.mean() > y.mean() else 1.0) if np.isnan(p) else float(p)
    rng = np.random.default_rng(seed)
    orders = np.argsort(rng.random((draws, len(x))), axis=1)
    q = None
    for n in query_grid(len(x)):
        idx = orders[:, :n]
        ps = welch(xs[idx], y[idx], axis=1)
        bad = np.isnan(ps)
        ps[bad] = np.where(xs[idx][bad].mean(1) > y[idx][bad].mean(1), 0.0, 1.0)
        if np.median(ps) < ALPHA:
            q = n
            break
    return p < ALPHA, q


def load(path: Path) -> dict | None:
    if not (path / "innocents.json").exists() or not (path / "predictions.json").exists():
        return None
    return {"path": path, "innocents": json.loads((path / "innocents.json").read_text()),
            "preds": json.loads((path / "predictions.json").read_text()),
            "thieves": json.loads((path / "thieves.json").read_text()) if (path / "thieves.json").exists() else [],
            "config": json.loads((path / "config.json").read_text())}


def _tally(results: list[tuple[bool, float]], by_model: dict) -> dict:
    tests = len(results)
    accused = sum(a for a, _ in results)
    groups = list(by_model.values())
    k = min(len(v) for v in groups) if groups else 0
    icc = icc1([v[:k] for v in groups]) if groups and k >= 2 and len(groups) >= 2 else None
    lo, hi = cp(accused, tests) if tests else (None, None)
    n_eff = tests / (1 + (k - 1) * max(0.0, icc)) if icc is not None else None
    return {"tests": tests, "accused": int(accused), "rate": accused / tests if tests else None,
            "ci95": [lo, hi], "smallest_p": float(min(p for _, p in results)) if results else None, "icc": icc,
            "tests_per_model": k, "effective_tests": n_eff,
            "upper_bound_effective": (1 - 0.05 ** (1 / n_eff)) if n_eff and accused == 0 else None}


def out_of_sample(runs: list[dict]) -> dict:
    """Each innocent model judged as a suspect, with every held-out trigger, by a null built without it.
    ``leave_one_out``: the full rule (binomial and rank parts) against the other m - 1 innocents;
    ``binomial_part``: the binomial part alone, calibrated on the other half of the population (the check
    before the rank part existed; halves leave too few models for the rank part to prove anything)."""
    loo, half, by_model = [], [], {}
    for run in runs:
        for set_name, models in run["innocents"]["sets"].items():
            target = set_target(run["preds"], set_name)   # a DAWN register: one label per input
            names = sorted(models)
            for name in names:
                others = [models[o] for o in names if o != name]
                v = verify(models[name], target, null=population_null(others, target, ""), draws=1)
                loo.append((v["proven"], v["p_value"]))
                by_model.setdefault((set_name, name), []).append(v["suspect_rate"])
            a, b = halves(run["innocents"]["models"])
            for cal, held in ((a, b), (b, a)):
                null = population_null([models[n] for n in cal], target, "")
                for name in held:
                    hits = int((np.asarray(models[name]) == target).sum())
                    p = binomial_p(hits, len(models[name]), null.rate)
                    half.append((p < ALPHA, p))
    return {"leave_one_out": _tally(loo, by_model), "binomial_part": _tally(half, by_model)}


def own_innocents(runs: list[dict]) -> dict:
    """The run's own clean reference and independent clean model (never in the population; trained on the
    run's own data), judged by the full rule against the whole population, on both trigger sets."""
    tests = accused = 0
    names = []
    for run in runs:
        for set_name, models in run["preds"]["sets"].items():
            target = set_target(run["preds"], set_name)
            inn = run["innocents"]["sets"].get(set_name) or {}
            if not inn:
                continue
            null = population_null(inn.values(), target, "")
            for name in ("clean", "independent_clean"):
                if name in models:
                    tests += 1
                    v = verify(models[name], target, null=null, draws=1)
                    accused += v["proven"]
                    if v["proven"]:
                        names.append(f"{run['path'].name}/{name}/{set_name} ({100 * v['suspect_rate']:.0f} %)")
    lo, hi = cp(accused, tests) if tests else (None, None)
    return {"tests": tests, "accused": int(accused), "ci95": [lo, hi], "which": names}


def before_after(runs: list[dict]) -> dict:
    out = {lab: {"n": 0, "before_proven": 0, "after_proven": 0, "before_q": [], "after_q": [],
                 "before_in_2": 0, "after_in_2": 0, "after_within_100": 0, "before_within_100": 0}
           for _, lab in SCHEMES}
    for run in runs:
        target = run["preds"]["target"]
        innocents = run["innocents"]
        for d in run["thieves"]:
            for key, lab in SCHEMES:
                c = d.get("copies", {}).get(key)
                if not c or not c.get("predictions") or "register" in c:   # DAWN: no "before" rule to compare
                    continue
                set_name = TRIGGER_SET[key]
                x = np.asarray(c["predictions"]) == target
                ref = np.asarray(run["preds"]["sets"][set_name]["clean"]) == target
                b_proven, b_q = old_verdict(x.astype(float), ref.astype(float), seed=run["config"].get("seed", 0))
                null = population_null(innocents["sets"][set_name].values(), target, "")
                v = verify(c["predictions"], target, null=null, seed=run["config"].get("seed", 0))
                r = out[lab]
                r["n"] += 1
                r["before_proven"] += bool(b_proven)
                r["after_proven"] += bool(v["proven"])
                r["before_in_2"] += b_q == 2
                r["after_in_2"] += v["queries_for_95"] == 2
                r["before_within_100"] += b_q is not None and b_q <= 100
                r["after_within_100"] += v["queries_for_95"] is not None and v["queries_for_95"] <= 100
                if b_q is not None:
                    r["before_q"].append(b_q)
                if v["queries_for_95"] is not None:
                    r["after_q"].append(v["queries_for_95"])
    for r in out.values():
        for k in ("before_q", "after_q"):
            r[k + "_median"] = statistics.median(r[k]) if r[k] else None
            del r[k]
    return out


def _accusations(o: dict) -> str:
    return (f"{o['accused']} of {o['tests']} tests (95 % CI {100 * o['ci95'][0]:.2f}–{100 * o['ci95'][1]:.2f} %)"
            + (f"; each model tested once per victim and trigger set, ICC(1) of its rates across victims "
               f"{o['icc']:.2f}, so about {o['effective_tests']:.0f} independent tests" if o.get("icc") is not None else "")
            + (f" (upper bound {100 * o['upper_bound_effective']:.1f} % with none accused)"
               if o.get("upper_bound_effective") is not None else ""))


def report(res: dict) -> str:
    o = res["out_of_sample"]
    own = res["own_innocents"]
    lines = [f"Runs: {res['runs']} ({', '.join(res['datasets'])}); population: {res['population_size']} innocent "
             "models per run.", "",
             f"- Innocent models judged by the full test against the other {res['population_size'] - 1} "
             f"(leave one out): {_accusations(o['leave_one_out'])}.",
             f"- The binomial part alone, calibrated on the other half: {_accusations(o['binomial_part'])}.",
             f"- The runs' own clean models (trained on the run's data, never in the population) against the "
             f"whole population: {own['accused']} of {own['tests']} accused"
             + (f" ({', '.join(own['which'])})" if own.get("which") else "") + ".", "",
             "| stolen copy | copies | proven before | proven after | within 100 before | within 100 after | "
             "median queries before | after | 'proven in 2 queries' before | after |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for lab, r in res["before_after"].items():
        lines.append(f"| {lab} | {r['n']} | {r['before_proven']} | {r['after_proven']} | {r['before_within_100']} | "
                     f"{r['after_within_100']} | {r['before_q_median'] if r['before_q_median'] is not None else '—'} | "
                     f"{r['after_q_median'] if r['after_q_median'] is not None else '—'} | {r['before_in_2']} | "
                     f"{r['after_in_2']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", help="write the numbers as JSON here")
    args = ap.parse_args(argv)
    runs = [r for r in (load(Path(p)) for p in args.runs) if r]
    if not runs:
        print("no run folder with innocents.json and predictions.json", file=sys.stderr)
        return 2
    res = {"runs": len(runs), "datasets": sorted({r["config"]["dataset"] for r in runs}),
           "run_dirs": [str(r["path"]) for r in runs],
           "population_size": min(len(next(iter(r["innocents"]["sets"].values()))) for r in runs),
           "out_of_sample": out_of_sample(runs), "own_innocents": own_innocents(runs),
           "before_after": before_after(runs)}
    print(report(res))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
