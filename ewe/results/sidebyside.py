"""Every watermarking scheme side by side, per dataset: the stored run folders' thieves summed per scheme and
kind of thief (issue 18). Read only; no torch.

    scheme_tables(run_dirs)   one table per setting (the runs' config apart from seed and thief settings):
                              rows = (thief kind, scheme), from result.json and thieves.json as stored
    side_by_side(tables)      per dataset, the setting with the most schemes (then the most stolen copies)
    markdown(table)           the table for docs/RESULTS.md

A row counts every stolen copy of that scheme made by a thief of that kind (labels, temperature, data; any
seed) from the setting's victims: proven (p < alpha on all held-out queries) with its exact 95 %
(Clopper-Pearson) interval, proven within 100 queries, the watermark the copies kept (median and
interquartile range), the median queries to proof among the proven copies, the victims' accuracy cost
against their run's clean model (median over victims; an API scheme such as DAWN: the model's own accuracy
minus the API's), and the innocent suspect (the run's independent clean model) judged on the scheme's own
trigger set: accused in how many of the victims' runs. Schemes come from the registry
(``ewe.watermarks.schemes.SCHEMES``), so a new scheme's rows appear once runs with its copies exist.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Iterable

from ..config import SAVED_NOTES, ConfigError, preset_values, saved_config
from ..watermarks.schemes import SCHEMES, scheme_label
from .schema import CONFIG_FILE, RESULT_FILE, THIEVES_FILE, is_proven, suspects

WITHIN = 100          # "proven within 100 queries": what a cautious API owner could afford to send
# settings of the run's own thief (each thieves.json entry records its own) or of the machine: runs that
# differ only in these trained the same victims
NOT_VICTIM = ("seed", "data_dir", "device", "threads", "thief_seed", "extract_labels", "distill_temperature",
              "student", "query_budget", "extract_epochs", *SAVED_NOTES)
DATA = {"same": "owner's images", "fresh": "thief's own images", "disjoint": "the other half of the data"}


def thief_kind(thief: dict, victim_model: str | None = None, epochs: int | None = None) -> tuple[tuple, str]:
    """(sort key, label) of a thieves.json thief, any seed: "hard, owner's images", "soft T=5, thief's own
    images" ...; a student other than ``victim_model``, a query budget and training epochs other than the
    run's own thief's ``epochs`` are named."""
    labels = thief.get("labels", "hard")
    t = float(thief.get("distill_temperature") or 1.0) if labels == "soft" else None
    data = thief.get("attacker_data") or "same"
    label = f"{labels}{f' T={t:g}' if t is not None else ''}, {DATA.get(data, data)}"
    extra = [f"student {thief['student']}" if thief.get("student") not in (None, victim_model) else "",
             f"{thief['query_budget']} queries" if thief.get("query_budget") else "",
             f"{thief['epochs']} epochs" if epochs is not None and thief.get("epochs") not in (None, epochs) else ""]
    label += "".join(f", {e}" for e in extra if e)
    order = (list(DATA).index(data) if data in DATA else len(DATA), labels != "hard", t or 0.0, label)
    return order, label


def _normalised(cfg: dict) -> dict:
    """config.json with today's defaults filled in (older runs lack later settings), or as stored."""
    try:
        return saved_config(cfg, check=False).to_dict()
    except (ConfigError, TypeError):
        return dict(cfg)


def _victim_settings(cfg: dict) -> dict:
    out = {k: v for k, v in _normalised(cfg).items() if k not in NOT_VICTIM}
    # the thief's own data changes nothing for the victims; the disjoint split trains them on half the data
    out["attacker_data"] = "disjoint" if out.get("attacker_data") == "disjoint" else "same"
    # a run that only serves its clean model through an API (DAWN: bench/demo_reliability.py --dawn-rate) shares
    # the setting of the run it was made from: same data, clean model and innocents
    if out.get("schemes") and all(n in SCHEMES and SCHEMES[n].serves_api for n in out["schemes"]):
        out["schemes"] = None
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, list):      # kappa [1, 1, 1] -> "1"; schemes ["default", "mea_defender"] -> "default+mea_defender"
        if len({str(x) for x in v}) == 1:
            return _fmt(v[0])
        return ("/" if all(isinstance(x, (int, float)) for x in v) else "+").join(_fmt(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def setting_label(cfg: dict) -> str:
    """"digits quick (schemes default+mea_defender)": the dataset, preset and what differs from today's
    preset among the victims' settings."""
    mine = _victim_settings(cfg)
    try:
        base = _victim_settings({**preset_values(mine["dataset"], mine["preset"]), "dataset": mine["dataset"],
                                 "preset": mine["preset"]})
    except (ConfigError, KeyError):
        base = {}
    diff = [f"{k} {_fmt(v)}" for k, v in sorted(mine.items())
            if k not in ("dataset", "preset") and base and base.get(k) != v]
    return f"{mine.get('dataset', '?')} {mine.get('preset', '?')}" + (f" ({', '.join(diff)})" if diff else "")


def _read(path: Path, name: str):
    try:
        return json.loads((path / name).read_text())
    except (OSError, ValueError):
        return None


def _ci(k: int, n: int) -> list[float] | None:
    if not n:
        return None
    from scipy import stats     # here: the app reads the published tables (display_rows) without scipy
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return [float(ci.low), float(ci.high)]


def _quartiles(xs: list[float]) -> tuple[float, float, float] | tuple[None, None, None]:
    if not xs:
        return None, None, None
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


def _innocent_keys() -> dict[str, str]:
    """trigger set -> result.json's verification key of the independent clean model judged on it."""
    return {s: k for k, (model, s) in suspects().items() if model == "independent_clean"}


def _own_innocent_key(scheme) -> str | None:
    """The verification key of the independent clean model judged by a scheme's own test ("clean_<scheme>":
    dataset inference), None for a scheme judged on its trigger set."""
    return f"clean_{scheme.name}" if getattr(scheme, "own_test", False) else None


def run_folders(root: str | Path) -> list[Path]:
    """The run folders under ``root`` (and one level deeper: side studies kept in folders of their own) that
    have been stolen from (thieves.json)."""
    root = Path(root)
    return sorted({p.parent for pattern in ("*/" + THIEVES_FILE, "*/*/" + THIEVES_FILE) for p in root.glob(pattern)})


def scheme_tables(run_dirs: Iterable[str | Path], root: str | Path | None = None,
                  schemes: Iterable | None = None) -> list[dict]:
    """One table per setting of the ``run_dirs`` that have thieves.json (others are skipped). Runs in
    different folders under ``root`` are never merged (a side study may differ in code, not in config).
    ``schemes``: the registry's by default (objects with name, stolen, trigger_set and label)."""
    schemes = list(SCHEMES.values() if schemes is None else schemes)
    innocent_key = _innocent_keys()
    groups: dict[str, dict] = {}
    for path in sorted(Path(p) for p in run_dirs):
        cfg, result, draws = (_read(path, n) for n in (CONFIG_FILE, RESULT_FILE, THIEVES_FILE))
        if not (cfg and result and draws):
            continue
        where = str(path.parent.relative_to(root)) if root and path.parent != Path(root) else ""
        settings = _victim_settings(cfg)
        key = json.dumps([where, settings], sort_keys=True, default=str)
        # settings apart from which schemes were trained: tables that side_by_side may put together
        base = json.dumps([where, {**settings, "schemes": None}], sort_keys=True, default=str)
        g = groups.setdefault(key, {"dataset": cfg.get("dataset"), "runs": [], "seeds": [], "accused_any": [],
                                    "base": base,
                                    "setting": setting_label(cfg) + (f" [{where}]" if where else ""),
                                    "cells": {}})
        g["runs"].append(path.name)
        g["seeds"].append(cfg.get("seed"))
        models, verdicts = result.get("models", {}), result.get("verification", {})
        # an API-only run (DAWN) holds copies of its source run's trigger sets: judged there, not counted twice
        api_only = all(getattr(x, "serves_api", False) for x in schemes if x.name in models)
        own_sets = {x.trigger_set for x in schemes if x.name in models}
        judged = [verdicts[k] for t, k in innocent_key.items() if verdicts.get(k) and (t in own_sets or not api_only)]
        judged += [verdicts[k] for x in schemes if x.name in models and (k := _own_innocent_key(x)) in verdicts]
        if judged:      # the independent clean model claimed on any trigger set of the run
            g["accused_any"].append(any(is_proven(v) for v in judged))
        norm = _normalised(cfg)
        epochs = norm.get("extract_epochs")   # the run's own thief's (RunConfig.extraction_epochs)
        if epochs is None and norm.get("epochs") is not None:
            epochs = int(norm["epochs"] + round(float(norm.get("w_epochs") or 0)))
        for d in draws:
            order, kind = thief_kind(d.get("thief", {}), cfg.get("model"), epochs)
            for si, s in enumerate(schemes):
                c = d.get("copies", {}).get(s.stolen)
                if not c:
                    continue
                cell = g["cells"].setdefault((order, si), {"thief": kind, "scheme": s, "copies": [], "runs": {}})
                cell["copies"].append(c)
                if path.name not in cell["runs"]:
                    victim, clean = models.get(s.name) or {}, models.get("clean") or {}
                    # an API scheme (DAWN) serves the clean model: its cost is its own flips
                    base = victim.get("model_accuracy", clean.get("accuracy"))
                    innocent = verdicts.get(_own_innocent_key(s) or innocent_key.get(s.trigger_set, ""))
                    cell["runs"][path.name] = {
                        "copies": 0,
                        "cost": None if base is None or "accuracy" not in victim else base - victim["accuracy"],
                        "accused": None if not innocent else is_proven(innocent)}
                cell["runs"][path.name]["copies"] += 1
                # a set that changes with the thief (DAWN's register): the innocent judged on each thief's own
                own = (d.get("innocent_verdicts") or {}).get(innocent_key.get(s.trigger_set, ""))
                if own is not None:
                    cell.setdefault("thief_accused", []).append(bool(own))
    return [_table(g) for g in groups.values()]


def _table(g: dict) -> dict:
    rows = []
    for _, cell in sorted(g["cells"].items(), key=lambda kv: kv[0]):   # _: (thief order, scheme index)
        copies, runs = cell["copies"], list(cell["runs"].values())
        n = len(copies)
        proven = sum(is_proven(c) for c in copies)
        queries = [c["queries_for_95"] for c in copies if is_proven(c) and c.get("queries_for_95") is not None]
        within = sum(q <= WITHIN for q in queries)
        q1, kept, q3 = _quartiles(sorted(c["watermark_success"] for c in copies
                                         if c.get("watermark_success") is not None))
        costs = [r["cost"] for r in runs if r["cost"] is not None]
        judged = cell.get("thief_accused") or [r["accused"] for r in runs if r["accused"] is not None]
        per = sorted({r["copies"] for r in runs})
        s = cell["scheme"]
        rows.append({"order": list(_[0]), "thief": cell["thief"], "scheme": s.name, "scheme_label": s.label, "stolen": s.stolen,
                     "victims": len(runs), "thieves_per_victim": per[0] if len(per) == 1 else f"{per[0]}-{per[-1]}",
                     "copies": n, "proven": proven, "proven_ci": _ci(proven, n),
                     "proven_100": within, "proven_100_ci": _ci(within, n),
                     "kept_median": kept, "kept_q1": q1, "kept_q3": q3,
                     "accuracy_cost_median": statistics.median(costs) if costs else None,
                     "queries_median": statistics.median(queries) if queries else None,
                     "innocents_accused": sum(judged), "innocent_tests": len(judged)})
    return {"dataset": g["dataset"], "setting": g["setting"], "base": g["base"], "runs": sorted(g["runs"]),
            # a victim's seed once, though its DAWN folder is a second run folder of the same victim
            "victim_seeds": sorted({s for s in g["seeds"] if s is not None}), "rows": rows,
            "innocents_accused_any": sum(g["accused_any"]), "innocent_runs": len(g["accused_any"])}


def merged(tables: list[dict]) -> dict:
    """Tables of one setting that differ only in which schemes their runs trained (the quick runs, the runs
    that added MEA-Defender, the DAWN folders) as one: each (thief kind, scheme) row from the table with the
    most copies of it, so a victim stolen in two folders is counted once."""
    if len(tables) == 1:
        return tables[0]
    rows: dict[tuple, dict] = {}
    for t in sorted(tables, key=lambda t: -sum(r["copies"] for r in t["rows"])):
        for r in t["rows"]:
            k = (r["thief"], r["scheme"])
            if k not in rows or r["copies"] > rows[k]["copies"]:
                rows[k] = {**r, "from_setting": t["setting"]}
    order = [s.name for s in SCHEMES.values()]
    plain = min((t["setting"] for t in tables), key=len)
    return {"dataset": tables[0]["dataset"], "setting": plain, "base": tables[0].get("base"),
            "sources": sorted(t["setting"] for t in tables),
            "runs": sorted({r for t in tables for r in t["runs"]}),
            "victim_seeds": sorted({s for t in tables for s in t["victim_seeds"]}),
            "rows": sorted(rows.values(), key=lambda r: (r.get("order", []), order.index(r["scheme"])
                                                          if r["scheme"] in order else len(order))),
            "innocents_accused_any": sum(t["innocents_accused_any"] for t in tables),
            "innocent_runs": sum(t["innocent_runs"] for t in tables)}


def side_by_side(tables: list[dict]) -> dict[str, dict]:
    """Per dataset, the setting that puts the most schemes side by side (ties: the most stolen copies), its
    tables that differ only in the schemes trained merged (``merged``)."""
    by_base: dict[tuple, list[dict]] = {}
    for t in tables:
        if t["rows"]:
            by_base.setdefault((t["dataset"], t.get("base") or t["setting"]), []).append(t)
    best: dict[str, tuple] = {}
    for (dataset, _), group in by_base.items():
        t = merged(group)
        score = (len({r["scheme"] for r in t["rows"]}), sum(r["copies"] for r in t["rows"]))
        if dataset not in best or score > best[dataset][0]:
            best[dataset] = (score, t)
    return {d: t for d, (_, t) in sorted(best.items())}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f} %"


def display_rows(table: dict) -> list[dict[str, str]]:
    """The table's rows as text, column name -> cell: what docs/RESULTS.md and the app show."""
    out = []
    for r in table["rows"]:
        ci = r["proven_ci"]
        out.append({
            # the scheme in the registry's words today; a stored table's own label for a scheme no longer known
            "thief": r["thief"], "scheme": scheme_label(r["scheme"], r.get("scheme_label")),
            "victims × thieves": f"{r['victims']} × {r['thieves_per_victim']}",
            "proven (95 % CI)": f"{r['proven']}/{r['copies']} [{100 * ci[0]:.0f}–{100 * ci[1]:.0f} %]",
            f"proven within {WITHIN} queries": f"{r['proven_100']}/{r['copies']}",
            "watermark kept, median (IQR)": "—" if r["kept_median"] is None else
            f"{_pct(r['kept_median'])} ({_pct(r['kept_q1'])}–{_pct(r['kept_q3'])})",
            "accuracy cost, median": "—" if r["accuracy_cost_median"] is None else
            f"{100 * r['accuracy_cost_median']:.2f} pts",
            "queries to proof, median": "—" if r["queries_median"] is None else f"{r['queries_median']:g}",
            "innocent model accused": f"{r['innocents_accused']} of {r['innocent_tests']}"
            if r["innocent_tests"] else "—"})
    return out


def markdown(table: dict) -> str:
    """The table in markdown (display_rows)."""
    rows = display_rows(table)
    if not rows:
        return ""
    cols = list(rows[0])
    return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                     + ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows])
