"""Does the defence hold over victims x thieves? The table behind the presets and the demo (issue 16).

    # train 5 victims, steal each with 5 thieves of every variant, print the table (resumable):
    python bench/demo_reliability.py --dataset digits --victims 0-4 --thieves 5 --variants same-hard,same-soft
    python bench/demo_reliability.py --dataset mnist --data-dir ../shared/data --victims 0-4 --thieves 5
    # only the table, from what is stored:
    python bench/demo_reliability.py --dataset digits --victims 0-4 --thieves 5 --summary-only
    # the same victims' clean models served through a DAWN API flipping 0.5 % of answers:
    python bench/demo_reliability.py --dataset fashion-mnist --victims 0-4 --thieves 5 --dawn-rate 0.005

A variant is a thief (and, for ``disjoint``, the victims it needs: trained on one half of the data, the
thief querying the other). Victims are run folders ``OUT/<dataset>-<preset>[-disjoint]-s<seed>``; every
thief is an entry of the folder's thieves.json, which keeps each copy's answers on the held-out triggers,
so the verdicts below are recomputed from stored predictions (``ewe.experiments.verdicts.verify_run``) with the run's
innocent population (``innocents.json``). Per variant and scheme (EWE, the classic watermark, the no-SNNL
ablation) the table gives: proven (p < alpha on every held-out query) and proven within 100 queries, with
exact 95 % intervals; the watermark the copies keep; the median queries to proof; the accuracy cost of
the defended model against the clean one; EWE minus ablation paired by thief (same student start); and
whether any innocent model was accused. JSON lines go to ``--results``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]

from ewe.experiments import pipeline  # noqa: E402
from ewe.data import splits  # noqa: E402
from ewe.results import runs  # noqa: E402
from ewe.results import verdicts  # noqa: E402
from ewe.malloc import apply_unless_disabled  # noqa: E402
from ewe.config import preset  # noqa: E402
from ewe.results.runs import THIEVES_FILE  # noqa: E402
from ewe.results.schema import is_proven  # noqa: E402
from ewe.watermarks.schemes import SCHEMES as REGISTRY  # noqa: E402
from ewe.verify import population_null, set_target, verify  # noqa: E402

# thief settings by name; "victims" are overrides the victims need (the thief's data split is fixed when
# they are trained)
VARIANTS = {
    "same-hard": {"thief": {"extract_labels": "hard"}, "victims": {}},
    "same-soft": {"thief": {"extract_labels": "soft", "distill_temperature": 1.0}, "victims": {}},
    # distillation at a temperature: the victim's softened answers expose how it ranks every class
    "same-soft2": {"thief": {"extract_labels": "soft", "distill_temperature": 2.0}, "victims": {}},
    "same-soft5": {"thief": {"extract_labels": "soft", "distill_temperature": 5.0}, "victims": {}},
    "disjoint-soft5": {"thief": {"extract_labels": "soft", "distill_temperature": 5.0},
                       "victims": {"attacker_data": "disjoint"}},
    "fresh-soft5": {"thief": {"extract_labels": "soft", "distill_temperature": 5.0, "attacker_data": "fresh"},
                    "victims": {}},
    "disjoint-hard": {"thief": {"extract_labels": "hard"}, "victims": {"attacker_data": "disjoint"}},
    "disjoint-soft": {"thief": {"extract_labels": "soft", "distill_temperature": 1.0},
                      "victims": {"attacker_data": "disjoint"}},
    # the thief's own data, never seen by the owner (subset presets: the next train_size images)
    "fresh-hard": {"thief": {"extract_labels": "hard", "attacker_data": "fresh"}, "victims": {}},
    "fresh-soft": {"thief": {"extract_labels": "soft", "distill_temperature": 1.0, "attacker_data": "fresh"},
                   "victims": {}},
    # a thief that trains until it fits its queries (30 epochs; the quick presets' thieves stop at 3 on MNIST and
    # Fashion-MNIST, 10 on digits): DAWN's flipped answers survive only in a copy that memorises its labels
    "same-hard-e30": {"thief": {"extract_labels": "hard", "extract_epochs": 30}, "victims": {}},
    "fresh-hard-e30": {"thief": {"extract_labels": "hard", "attacker_data": "fresh", "extract_epochs": 30},
                       "victims": {}},
    "same-soft5-e30": {"thief": {"extract_labels": "soft", "distill_temperature": 5.0, "extract_epochs": 30},
                       "victims": {}},
    # H2: victims trained with the reference code's clean-data schedule, the reference thief
    "refsched-hard": {"thief": {"extract_labels": "hard"}, "victims": {"clean_schedule": "reference"}},
    "refsched-soft5": {"thief": {"extract_labels": "soft", "distill_temperature": 5.0},
                       "victims": {"clean_schedule": "reference"}},
}
# (stolen copy, the scheme's short word) in registry order: the summaries' rows are keyed by the short word
# (publish.py reads them back by it); a scheme a run lacks has no rows
SCHEMES = tuple((s.stolen, s.short) for s in REGISTRY.values())
WITHIN = 100


def seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def run_dir(out: Path, dataset: str, preset_name: str, victim_overrides: dict, seed: int, tag: str) -> Path:
    split = "-disjoint" if victim_overrides.get("attacker_data") == "disjoint" else ""
    split += "-refsched" if victim_overrides.get("clean_schedule") == "reference" else ""
    return out / f"{dataset}-{preset_name}{tag}{split}-s{seed}"


def ensure_victim(path: Path, cfg) -> None:
    done = path / "result.json"
    if done.exists() and json.loads(done.read_text()).get("status") in ("trained", "finished"):
        return
    if path.exists():
        import shutil
        shutil.rmtree(path)
    t0 = time.perf_counter()
    res = pipeline.train_victims(cfg, path)
    print(f"  trained {path.name} in {time.perf_counter() - t0:.0f} s: status {res['status']}", flush=True)


def thief_key(thief: dict) -> dict:
    return {"labels": thief["labels"], "seed": thief["seed"], "data": thief.get("attacker_data", "same")}


def default_epochs(path: Path) -> int:
    """The run's own thief's training epochs (a variant may set others with extract_epochs)."""
    from ewe.config import saved_config
    saved = json.loads((path / "config.json").read_text())
    return saved_config(saved).extraction_epochs


def matches(recorded: dict, thief: dict, epochs: int | None = None) -> bool:
    """Was this thieves.json entry made by ``thief`` (settings, any seed)? ``epochs``: the run's own thief's,
    which a variant without extract_epochs trains for."""
    want = thief.get("extract_epochs", epochs)
    if want is not None and recorded.get("epochs") != want:
        return False
    data = thief.get("attacker_data")
    same_data = (data is None and recorded.get("attacker_data") in ("same", "disjoint", None)
                 or recorded.get("attacker_data") == data)
    temperature = thief.get("distill_temperature", 1.0) if thief["extract_labels"] == "soft" else None
    same_temperature = temperature is None or float(recorded.get("distill_temperature") or 1.0) == temperature
    return recorded["labels"] == thief["extract_labels"] and same_data and same_temperature


def ensure_thief(path: Path, thief: dict, seed: int) -> None:
    draws = json.loads((path / THIEVES_FILE).read_text()) if (path / THIEVES_FILE).exists() else []
    if any(matches(d["thief"], thief, default_epochs(path)) and d["thief"]["seed"] == seed for d in draws):
        return
    t0 = time.perf_counter()
    res = pipeline.steal(path, {**thief, "thief_seed": seed})
    print(f"  {path.name} thief {thief['extract_labels']} seed {seed}: {time.perf_counter() - t0:.0f} s, "
          + ", ".join(f"{lab} {res['models'][k]['watermark_success']:.2f}"
                      f"{'*' if is_proven(res['verification'].get(k)) else ''}" for k, lab in SCHEMES
                      if k in res["models"]), flush=True)      # the schemes this run trained


def footprint(path: Path) -> dict:
    """The watermark's trace in what the thief receives (hypothesis H1): on the thief's queries, how often
    each victim answers the target class where the truth is another class, and its mean probability of
    the target on those inputs (what soft labels carry)."""
    import torch
    from ewe.config import saved_config
    from ewe.train import predict, predict_proba
    saved = json.loads((path / "config.json").read_text())
    cfg = saved_config(saved)
    data = splits.load_data(cfg)
    models = runs.Run.open(path).load_models([*VICTIM_OF.values(), "clean"])
    other = data.y_attack != cfg.target
    out = {}
    for name, model in models.items():
        pred = predict(model, data.x_attack)
        prob = predict_proba(model, data.x_attack)[:, cfg.target]
        out[name] = {"false_target": int(((pred == cfg.target) & other).sum()),
                     "errors": int((pred != data.y_attack).sum()), "queries": len(pred),
                     "target_prob_on_others": float(prob[other].mean()),
                     "target_prob_on_others_q99": float(torch.quantile(prob[other], 0.99))}
    return out


VICTIM_OF = {s.short: s.name for s in REGISTRY.values()}
DAWN_FILES = ("config.json", "result.json", "predictions.json", "triggers.pt", "innocents.json",
              "models/clean.pt", "models/independent_clean.pt")


def ensure_dawn(victim: Path, rate: float) -> Path:
    """The victim run's clean model served through a DAWN API with flip rate ``rate``, in a sibling folder
    ``dawn<rate>-<victim>`` (the files DAWN needs, copied: its thieves then never touch the victim's
    thieves.json). The same clean model, test set and innocent population as the watermarked victims. The
    folder name starts with "dawn" so that bench/verdicts.py's globs (digits-*, mnist-*) do not count the copied
    trigger sets twice. The API's cost to honest users is recorded by the first steal (pipeline.steal)."""
    import shutil
    dest = victim.parent / f"dawn{rate:g}-{victim.name}"
    if (dest / "config.json").exists() and json.loads((dest / "config.json").read_text()).get("schemes") == ["dawn_api"]:
        return dest
    for f in DAWN_FILES:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(victim / f, dest / f)
    result = json.loads((dest / "result.json").read_text())
    result["models"] = {k: v for k, v in result["models"].items() if k in ("clean", "independent_clean")}
    result["verification"] = {}
    (dest / "result.json").write_text(json.dumps(result, indent=1))
    strip_to_clean(dest)
    saved = json.loads((dest / "config.json").read_text())
    saved.update(schemes=["dawn_api"], dawn_rate=rate)
    (dest / "config.json").write_text(json.dumps(saved, indent=1))   # last: marks the folder complete
    return dest


def strip_to_clean(dest: Path) -> None:
    """Only the clean models' answers stay in a DAWN folder's predictions.json: the watermarked victims and their
    copies are not in it, so no verdict about them may appear there."""
    preds = json.loads((dest / "predictions.json").read_text())
    for models in preds["sets"].values():
        for name in [n for n in models if n not in ("clean", "independent_clean") and not n.startswith("dawn")]:
            del models[name]
    (dest / "predictions.json").write_text(json.dumps(preds))


def population_loo(path: Path, set_name: str) -> tuple[int, int]:
    """(accused, tests): every model of the run's innocent population judged on ``set_name`` by the run's
    exact test with a null calibrated on the other models only (leave one out)."""
    preds = json.loads((path / "predictions.json").read_text())
    innocents = json.loads((path / "innocents.json").read_text())["sets"].get(set_name) or {}
    target = set_target(preds, set_name)
    accused = 0
    for name, pred in innocents.items():
        others = [p for o, p in innocents.items() if o != name]
        accused += bool(verify(pred, target, draws=1, null=population_null(others, target, ""))["proven"])
    return accused, len(innocents)


def interval(k: int, n: int) -> str:
    if n == 0:
        return "—"
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k}/{n} [{100 * ci.low:.0f}–{100 * ci.high:.0f} %]"


def summarise(paths: list[Path], variant: str, thief: dict, thief_seeds: list[int]) -> dict:
    rows = {lab: {"proven": 0, "within": 0, "n": 0, "kept": [], "queries": [], "cost": []} for _, lab in SCHEMES}
    paired, costs, accused, innocent_tests, nulls = [], [], 0, 0, []
    loo_accused = loo_tests = 0
    di_innocents = []                             # dataset inference: its innocents per victim
    traces = {lab: [] for _, lab in SCHEMES}     # (victim's footprint, mean kept by its thieves)
    counted = []                                  # thieves per victim actually stored
    for path in paths:
        result = verdicts.verify_run(path)      # re-judges every stored thief with today's test
        kept_here = {lab: [] for _, lab in SCHEMES}
        draws = [d for d in json.loads((path / THIEVES_FILE).read_text())
                 if matches(d["thief"], thief, default_epochs(path)) and d["thief"]["seed"] in thief_seeds]
        if not draws:              # this victim was not stolen by this thief (a run stopped for time)
            continue
        counted.append(len(draws))
        fp = footprint(path)
        m = result["models"]
        if "defended" in m:      # a run may train other schemes only (--set schemes='["mea_defender"]')
            costs.append(m["clean"]["accuracy"] - m["defended"]["accuracy"])
        for lab, victim in VICTIM_OF.items():   # each scheme's accuracy cost against the clean model
            if victim in m and "accuracy" in m[victim]:
                rows[lab]["cost"].append(m["clean"]["accuracy"] - m[victim]["accuracy"])
        if "dawn_api" in m:   # DAWN: the independent clean model judged on each thief's own register, and
            for d in draws:   # each innocent of the population against the others (leave-one-out)
                for v in d.get("innocent_verdicts", {}).values():
                    innocent_tests += 1
                    accused += bool(v)
                register = d["copies"].get("dawn_extracted", {}).get("register") or {}
                models = register.get("innocents") or {}
                for name, pred in models.items():
                    others = [p for o, p in models.items() if o != name]
                    v = verify(pred, np.asarray(register["labels"]), draws=1,
                               null=population_null(others, np.asarray(register["labels"]), ""))
                    loo_tests += 1
                    loo_accused += bool(v["proven"])
        else:
            for k in ("clean", "clean_classic", "clean_composite", "clean_margin"):   # the last two only in runs
                v = result["verification"].get(k)                                    # with MEA-Defender / MBW
                if v:
                    innocent_tests += 1
                    accused += is_proven(v)
        if "mbw" in m:        # MBW: each innocent of the population judged on this victim's key against the others
            k, n = population_loo(path, "margin")
            loo_accused, loo_tests = loo_accused + k, loo_tests + n
        if "dataset_inference" in m:
            di_innocents.append(di_innocents_of(path, result))
        nulls.append(result["verification"].get("extracted", {}).get("null_rate"))
        for d in draws:
            for key, lab in SCHEMES:
                c = d["copies"].get(key)
                if not c:
                    continue
                r = rows[lab]
                r["n"] += 1
                r["proven"] += is_proven(c)
                q = c.get("queries_for_95")
                r["within"] += q is not None and q <= WITHIN
                r["kept"].append(c["watermark_success"])
                kept_here[lab].append(c["watermark_success"])
                if q is not None:
                    r["queries"].append(q)
            if "extracted" in d["copies"] and "ablation_extracted" in d["copies"]:
                paired.append(d["copies"]["extracted"]["watermark_success"]
                              - d["copies"]["ablation_extracted"]["watermark_success"])
        for lab, kept in kept_here.items():
            if kept and VICTIM_OF[lab] in fp:
                traces[lab].append({**fp[VICTIM_OF[lab]], "kept_mean": statistics.mean(kept), "victim": path.name})
        if "clean" in fp:
            traces.setdefault("clean model", []).append({**fp["clean"], "victim": path.name})
    out = {"variant": variant, "victims": len(counted),
           "thieves_per_victim": f"{min(counted)}-{max(counted)}" if counted and min(counted) != max(counted)
           else (counted[0] if counted else 0),
           "accuracy_cost_mean": statistics.mean(costs) if costs else None,
           "accuracy_cost_max": max(costs) if costs else None,
           "innocents_accused": accused, "innocent_tests": innocent_tests,
           "population_accused_loo": loo_accused, "population_tests_loo": loo_tests,
           "null_rate_optimised": [n for n in nulls if n is not None],
           "ewe_minus_ablation_mean": statistics.mean(paired) if paired else None,
           "ewe_ahead_pairs": sum(p > 0 for p in paired), "pairs": len(paired), "schemes": {},
           "footprint": traces}
    if di_innocents:
        out["dataset_inference_innocents"] = pool_di_innocents(di_innocents)
    for lab, r in rows.items():
        out["schemes"][lab] = {
            "n": r["n"], "proven": r["proven"], "proven_within_100": r["within"],
            "kept_mean": statistics.mean(r["kept"]) if r["kept"] else None,
            "kept_min": min(r["kept"]) if r["kept"] else None, "kept_max": max(r["kept"]) if r["kept"] else None,
            "median_queries": statistics.median(r["queries"]) if r["queries"] else None,
            "accuracy_cost_mean": statistics.mean(r["cost"]) if r["cost"] else None}
    return out


# models trained with true labels on the thief's own data (never the owner's points), walked by dataset inference
# in the victim's folder: the independent models of the same distribution Szyller et al. (TMLR 2023) found it
# accuses. Their evidence is kept under these names in dataset_inference.json.
OWN_DATA_INDEPENDENT = "own_data_independent"


def ensure_di_independents(path: Path, k: int) -> int:
    """``k`` models of the victim's architecture and clean budget trained on the thief's own data of this
    victim (attacker_data disjoint or fresh: none of the owner's training points) with the true labels, each
    walked by dataset inference on the victim's points (resumable). Returns how many the folder has."""
    from ewe.callbacks import Reporter
    from ewe.config import saved_config
    from ewe.models import build_model
    from ewe.train import train_clean
    from ewe.watermarks import dataset_inference as di
    saved = json.loads((path / "config.json").read_text())
    cfg = saved_config(saved)
    if cfg.attacker_data == "same":   # the thief's own data of the "fresh" thieves (subset presets), if any
        if not cfg.train_size:
            return 0      # the thief's data is the owner's: no independent data to train on
        cfg = cfg.replace(attacker_data="fresh")
    stored = json.loads((path / di.EVIDENCE_FILE).read_text())
    data = splits.load_data(cfg)
    for i in range(k):
        name = f"{OWN_DATA_INDEPENDENT}{i}"
        if name in stored["models"]:
            continue
        t0 = time.perf_counter()
        model = build_model(cfg.model, tuple(data.x_attack.shape[1:]), seed=60_000 + i).to(cfg.device)
        train_clean(model, data.x_attack, data.y_attack, epochs=cfg.epochs + max(1, round(cfg.w_epochs)),
                    batch_size=cfg.batch_size, lr=cfg.lr, reporter=Reporter([]), stage=name, name=name,
                    seed=60_000 + i)
        di.record_model(path, cfg, data, name, model, owner=False)
        stored = json.loads((path / di.EVIDENCE_FILE).read_text())
        print(f"  {path.name}: {name} trained and walked in {time.perf_counter() - t0:.0f} s", flush=True)
    return sum(n.startswith(OWN_DATA_INDEPENDENT) for n in stored["models"])


def di_innocents_of(path: Path, result: dict) -> dict:
    """Dataset inference's innocents of one victim: the run's two clean models (trained on the owner's very
    points), the innocent population (each judged alone: the test calibrates nothing on the others, so every
    verdict is out of sample) and the models trained on the thief's own data (``ensure_di_independents``)."""
    from ewe.watermarks import dataset_inference as di
    stored = json.loads((path / di.EVIDENCE_FILE).read_text())
    alpha = result["verification"].get("di_extracted", {}).get("alpha", 0.05)
    scorer = di.fit_scorer(stored["owner"])
    pop = di.population_rate(stored, alpha, scorer)
    kinds = stored.get("innocents_models", {})
    own = [di.judge(stored["owner"], ev, alpha=alpha, draws=1, scorer=scorer)["p_value"]
           for n, ev in stored["models"].items() if n.startswith(OWN_DATA_INDEPENDENT)]
    # the best any copy could do: the owner's own model judged on its revealed points, and how well its scores
    # tell them apart (AUC 0.5: the margins carry nothing of who was trained on)
    from sklearn.metrics import roc_auc_score
    s_private = scorer.decision_function(di.features(stored["owner"]["test_private"]))
    s_public = scorer.decision_function(di.features(stored["owner"]["test_public"]))
    owner_auc = float(roc_auc_score(np.r_[np.zeros(len(s_private)), np.ones(len(s_public))], np.r_[s_private, s_public]))
    return {"victim": path.name,
            "owner_p": float(di.di_p(s_private, s_public)), "owner_auc": owner_auc,
            "clean_models": {n: di.judge(stored["owner"], stored["models"][n], alpha=alpha, draws=1, scorer=scorer)["p_value"]
                             for n in di.WALKED if n in stored["models"]},
            "population": {n: {"p": p, **kinds.get(n, {})} for n, p in pop["innocent_p"].items()},
            "own_data": own, "n_train": result.get("n_train"), "margin_gap": margin_gap(path)}


def margin_gap(path: Path, m: int = 50, draws: int = 200) -> dict:
    """Why dataset inference finds (or not) the owner's points, measured with the white-box margin (the true
    class's logit minus the largest other; the paper's premise is that training points sit farther inside):
    per model of the victim's folder, training and test accuracy, the AUC of training over test margins, the
    effect size (Cohen's d) and the share of one-sided Welch t-tests on m training vs m test points that reject
    at 0.05 (the power a perfect embedding would give the test with m points)."""
    import torch
    from ewe.config import saved_config
    from ewe.train import logit_margins
    saved = json.loads((path / "config.json").read_text())
    cfg = saved_config(saved)
    data = splits.load_data(cfg)
    rng = np.random.default_rng(0)
    out = {}
    for name, model in runs.Run.open(path).load_models(("dataset_inference", "di_extracted", "independent_clean")).items():
        with torch.no_grad():
            def margins(x, y):
                return logit_margins(model(x), y).cpu().numpy()
            a, b = margins(data.x_train, data.y_train), margins(data.x_test, data.y_test)
        auc = stats.mannwhitneyu(a, b).statistic / (len(a) * len(b))
        power = np.mean([stats.ttest_ind(rng.choice(a, m, replace=False), rng.choice(b, m, replace=False),
                                         equal_var=False, alternative="greater").pvalue < 0.05 for _ in range(draws)])
        out[name] = {"train_accuracy": float((a > 0).mean()), "test_accuracy": float((b > 0).mean()),
                     "margin_auc": float(auc), "cohen_d": float((a.mean() - b.mean()) / np.sqrt((a.var() + b.var()) / 2)),
                     "power_at_m": float(power), "m": m}
    return out


def pool_di_innocents(per_victim: list[dict], alpha: float = 0.05) -> dict:
    """Accused / judged with exact 95 % intervals, pooled over victims, per kind of innocent: the clean
    models, the population by the data it saw (all of the owner's training draw, half of it, another draw),
    and the models of the thief's own data."""
    from ewe.watermarks.dataset_inference import clopper_pearson
    groups: dict[str, list[float]] = {"owner's own model (not an innocent: the best case)": [],
                                      "clean models": [], "own-data independents": []}
    for r in per_victim:
        groups["owner's own model (not an innocent: the best case)"].append(r["owner_p"])
        groups["clean models"] += list(r["clean_models"].values())
        groups["own-data independents"] += r["own_data"]
        for info in r["population"].values():
            groups.setdefault(f"population ({info.get('data', '?')} data)", []).append(info["p"])
            groups.setdefault("population (all)", []).append(info["p"])
    out = {}
    for name, ps in groups.items():
        k = sum(p < alpha for p in ps)
        out[name] = {"accused": k, "judged": len(ps), "ci": clopper_pearson(k, len(ps)) if ps else None,
                     "median_p": float(np.median(ps)) if ps else None}
    aucs = [r["owner_auc"] for r in per_victim]
    return {"alpha": alpha, "groups": out, "owner_auc_mean": float(np.mean(aucs)), "owner_auc_range": [min(aucs), max(aucs)],
            "victims": per_victim}


def table(summary: dict) -> str:
    lines = [f"### {summary['variant']}: {summary['victims']} victims x {summary['thieves_per_victim']} thieves",
             "", "| scheme | proven within 100 queries (95 % CI) | proven | watermark kept mean [min..max] | "
             "median queries | accuracy cost (victim vs clean) |", "|---|---|---|---|---|---|"]
    for lab, s in summary["schemes"].items():
        if not s["n"]:
            continue
        cost = "—" if s["accuracy_cost_mean"] is None else f"{100 * s['accuracy_cost_mean']:.2f} points"
        kept = "—" if s["kept_mean"] is None else f"{s['kept_mean']:.3f} [{s['kept_min']:.3f}..{s['kept_max']:.3f}]"
        lines.append(f"| {lab} | {interval(s['proven_within_100'], s['n'])} | {interval(s['proven'], s['n'])} | "
                     f"{kept} | {s['median_queries'] if s['median_queries'] is not None else '—'} | "
                     f"{cost} |")
    d = summary["ewe_minus_ablation_mean"]
    cost = ("—" if summary["accuracy_cost_mean"] is None else      # no EWE victim in the run
            f"{100 * summary['accuracy_cost_mean']:.2f} points (max {100 * summary['accuracy_cost_max']:.2f})")
    nulls = summary["null_rate_optimised"]
    null_range = f"{min(nulls):.3f}..{max(nulls):.3f}" if nulls else "—"
    lines += ["", f"EWE minus ablation, paired by thief: {'—' if d is None else f'{100 * d:+.1f} points'} "
              f"(EWE ahead in {summary['ewe_ahead_pairs']} of {summary['pairs']}); defended accuracy cost {cost}; "
              f"innocent models accused: {summary['innocents_accused']} of {summary['innocent_tests']}"
              + (f" (and of the population, each against the others: {summary['population_accused_loo']} of "
                 f"{summary['population_tests_loo']})" if summary.get("population_tests_loo") else "") + "; "
              f"null rate on the optimised triggers {null_range}", "",
              "The victim's footprint on the thief's queries (mean over victims): answers of the target class "
              "where the truth is another class, and the mean target probability on those inputs; "
              "Spearman correlation with the watermark its copies keep:", ""]
    for lab, rows in summary["footprint"].items():
        if not rows:
            continue
        ft = [r["false_target"] for r in rows]
        pr = [r["target_prob_on_others"] for r in rows]
        line = (f"- {lab}: {statistics.mean(ft):.1f} false-target answers of {rows[0]['queries']} "
                f"(errors {statistics.mean(r['errors'] for r in rows):.1f}); target probability on other "
                f"classes {statistics.mean(pr):.4f}")
        if "kept_mean" in rows[0] and len(rows) >= 3:
            kept = [r["kept_mean"] for r in rows]
            with warnings.catch_warnings():     # a constant column (no copy kept anything) gives nan: shown
                warnings.simplefilter("ignore", stats.ConstantInputWarning)
                rho_f = stats.spearmanr(ft, kept).statistic
                rho_p = stats.spearmanr(pr, kept).statistic
            line += f"; rho(false-target, kept) {rho_f:+.2f}, rho(probability, kept) {rho_p:+.2f}"
        lines.append(line)
    lines.append("")
    di = summary.get("dataset_inference_innocents")
    if di:
        lines += ["Dataset inference's innocents (each judged by its own t-test at alpha "
                  f"{di['alpha']:g}; accused / judged, exact 95 % interval, median p):", ""]
        for name, g in di["groups"].items():
            if g["judged"]:
                lines.append(f"- {name}: {interval(g['accused'], g['judged'])}, median p {g['median_p']:.3g}")
        lo, hi = di["owner_auc_range"]
        lines.append(f"- the owner's scorer on its own model's revealed points: AUC {di['owner_auc_mean']:.3f} "
                     f"[{lo:.3f}..{hi:.3f}] (0.5: private and public points look alike)")
        gaps = [v["margin_gap"] for v in di["victims"] if v.get("margin_gap")]
        for name in dict.fromkeys(n for g in gaps for n in g):
            rows = [g[name] for g in gaps if name in g]
            lines.append(f"- white-box logit margins of {name}: train / test accuracy "
                         f"{np.mean([r['train_accuracy'] for r in rows]):.3f} / {np.mean([r['test_accuracy'] for r in rows]):.3f}, "
                         f"AUC train over test {np.mean([r['margin_auc'] for r in rows]):.3f}, Cohen's d "
                         f"{np.mean([r['cohen_d'] for r in rows]):.2f}, a t-test on {rows[0]['m']} + {rows[0]['m']} points "
                         f"rejects in {100 * np.mean([r['power_at_m'] for r in rows]):.0f} % of draws")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--data-dir")
    ap.add_argument("--victims", default="0-4", help="victim seeds, e.g. 0-4 or 0,2,5")
    ap.add_argument("--thieves", type=int, default=5, help="thief seeds per victim: 0..N-1 (+ 100 x victim)")
    ap.add_argument("--variants", default="same-hard,same-soft")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="victim setting overrides (a JSON value), e.g. --set kappa=4; tags the run folders")
    ap.add_argument("--dawn-rate", type=float, default=None,
                    help="steal each victim's clean model through a DAWN API with this flip rate instead "
                         "(folders dawn<rate>-<victim>, next to the victims)")
    ap.add_argument("--di-independents", type=int, default=0,
                    help="dataset inference: train this many models on each victim's thief data (true labels; "
                         "variants with their own data only) and judge them")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "runs" / "reliability"))
    ap.add_argument("--results", default=None, help="JSON lines file for the summaries")
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--note", default="", help="words naming the setting in the tables (e.g. what the preset "
                    "was when these runs were made)")
    args = ap.parse_args(argv)
    apply_unless_disabled()   # this process trains: reuse freed memory (ewe.malloc); not on import (publish.py)
    import torch
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    overrides = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        overrides[k] = json.loads(v)
    # a list (e.g. schemes) is tagged by its items: schemes=["default","mea_defender"] -> -schemesdefault+mea_defender
    tag = "".join(f"-{k}{'+'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in sorted(overrides.items()))
    victims = seeds(args.victims)
    started = time.perf_counter()
    summaries = []
    for variant in args.variants.split(","):
        spec = VARIANTS[variant]
        paths = []
        for vs in victims:
            cfg = preset(args.dataset, args.preset, seed=vs, data_dir=args.data_dir, threads=args.threads,
                         **overrides, **spec["victims"])
            path = run_dir(out, args.dataset, args.preset, spec["victims"], vs, tag)
            if args.dawn_rate is not None:
                path = path.parent / f"dawn{args.dawn_rate:g}-{path.name}"
            paths.append(path)
            # thief seeds differ between victims so that no two victims share a thief's luck
            thief_seeds = [100 * vs + t for t in range(args.thieves)]
            if args.summary_only:
                continue
            if args.dawn_rate is not None:
                victim = path.parent / path.name.split("-", 1)[1]
                ensure_victim(victim, cfg)
                ensure_dawn(victim, args.dawn_rate)
            else:
                ensure_victim(path, cfg)
            for ts in thief_seeds:
                ensure_thief(path, spec["thief"], ts)
            if args.di_independents and (path / "dataset_inference.json").exists():
                ensure_di_independents(path, args.di_independents)
            print(f"[{time.perf_counter() - started:.0f} s] {variant}: victim {vs} done", flush=True)
        all_seeds = [100 * vs + t for vs in victims for t in range(args.thieves)]
        s = summarise([p for p in paths if (p / THIEVES_FILE).exists()], variant, spec["thief"], all_seeds)
        s.update(dataset=args.dataset, preset=args.preset, overrides=overrides, victim_seeds=victims,
                 note=args.note)
        summaries.append(s)
        print(table(s), flush=True)
    if args.results:
        with open(args.results, "a") as f:
            for s in summaries:
                f.write(json.dumps(s) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
