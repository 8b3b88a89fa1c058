"""Reproduction report: ``python -m ewe report SWEEP_OR_RUNS... --out report.md`` (the verb: ``ewe.cli.report``).

Takes sweep folders (``ewe.experiments.sweep``), run folders, or folders holding run folders (searched a few levels
deep), groups the finished runs by setting (dataset, preset, sweep point or differing options) and writes:

- ``report.md``: the paper-style table, one row per setting: clean accuracy, defended accuracy, watermark
  success on the victim and on the stolen copy, queries for 95 % confidence, each as mean ± std over
  seeds (spread as min–max per seed in the table below it); the baselines under extraction (classic
  watermark, optimised triggers without SNNL) and the false-claim check (the innocent clean model's p);
- ``<stem>-robustness-<n>.png`` beside it, for every setting whose runs have ``robustness.json``
  (``ewe.experiments.robustness.run_suite``): accuracy and watermark success against pruning ratio / fine-tuning
  epochs, EWE against the classic watermark, mean over seeds with the min–max band.

    build_report(paths, out) -> {"markdown": text, "images": [png paths], "groups": [...]}
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..config import SAVED_NOTES
from ..watermarks.schemes import ABLATION, CLASSIC, EWE, SCHEMES, scheme_label
from .runs import Run
from .schema import METRICS, RESULT_FILE, get, is_proven

IGNORED = {"seed", "data_dir", "device", "threads"}      # not part of a "setting"
# the robustness plots' line style and colour per victim (its words: the scheme registry's label)
VICTIM_STYLE = {EWE.name: ("-", "tab:blue"), CLASSIC.name: ("--", "tab:orange"), ABLATION.name: (":", "tab:green")}
ATTACK_ORDER = ("prune", "prune_finetune", "fine_prune", "fine_tune_all", "fine_tune_last")


class ReportError(ValueError):
    """Nothing to report from the given paths; the message says what was found."""


@dataclass
class ReportedRun:
    """A finished run folder's config, result and removal attacks, with the sweep point it came from."""
    path: Path
    config: dict
    result: dict
    robustness: dict | None = None
    point: str | None = None          # sweep point key, when it came from a sweep
    sweep: Path | None = None

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", self.result.get("seed", 0)))

    @property
    def finished(self) -> bool:
        return self.result.get("status") == "finished"


@dataclass
class Group:
    label: str
    dataset: str
    preset: str
    runs: list[ReportedRun] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------
# finding runs

def _load_run(path: Path, point: str | None = None, sweep: Path | None = None) -> ReportedRun | None:
    run = Run(path)
    try:
        config, result = run.saved, run.result
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or not isinstance(result, dict) or "models" not in result:
        return None
    try:
        robustness = run.robustness
    except (OSError, ValueError):
        robustness = None
    return ReportedRun(path, config, result, robustness, point, sweep)


def find_runs(paths: Iterable[str | Path], depth: int = 4) -> list[ReportedRun]:
    """Every run folder in ``paths`` (sweep folders, run folders, folders of run folders)."""
    runs: list[ReportedRun] = []
    seen: set[Path] = set()

    def visit(p: Path, level: int) -> None:
        p = p.resolve()
        if p in seen or not p.is_dir():
            return
        seen.add(p)
        if (p / "points").is_dir() and ((p / "sweep_spec.json").exists() or (p / "sweep.json").exists()):
            for run_dir in sorted((p / "points").glob("*/s*")):
                run = _load_run(run_dir, point=run_dir.parent.name, sweep=p)
                if run:
                    seen.add(run_dir.resolve())
                    runs.append(run)
            return
        if (p / RESULT_FILE).exists():
            run = _load_run(p)
            if run:
                runs.append(run)
            return
        if level < depth:
            for child in sorted(p.iterdir()):
                if child.is_dir() and not child.name.startswith("."):
                    visit(child, level + 1)

    for path in paths:
        path = Path(path)
        if not path.exists():
            raise ReportError(f"{path} does not exist")
        visit(path, 0)
    return runs


def _setting(run: ReportedRun) -> dict:
    return {k: v for k, v in run.config.items() if k not in IGNORED and k not in SAVED_NOTES}


def group_runs(runs: list[ReportedRun]) -> list[Group]:
    """One group per setting: sweep point, or identical config apart from seed / threads / paths."""
    buckets: dict[str, list[ReportedRun]] = {}
    for run in runs:
        if run.point is not None:
            key = f"sweep:{run.sweep}:{run.point}"
        else:
            key = json.dumps(_setting(run), sort_keys=True, default=str)
        buckets.setdefault(key, []).append(run)
    groups = []
    settings = {k: _setting(v[0]) for k, v in buckets.items()}
    for key, members in buckets.items():
        first = members[0]
        dataset, preset = first.config.get("dataset", "?"), first.config.get("preset", "?")
        if first.point is not None:
            label = f"{dataset} ({preset})" + ("" if first.point == "base" else f" {first.point}")
        else:
            label = f"{dataset} ({preset})"
            same = [settings[k] for k in buckets if k != key and settings[k].get("dataset") == dataset
                    and settings[k].get("preset") == preset]
            if same:   # name the options that tell this setting apart from its siblings
                mine = settings[key]
                diff = sorted({k for other in same for k in mine if mine.get(k) != other.get(k)})
                label += " " + ",".join(f"{k}={_short(mine[k])}" for k in diff[:4])
        members.sort(key=lambda r: r.seed)
        groups.append(Group(label, dataset, preset, members))
    groups.sort(key=lambda g: (g.dataset, g.preset, g.label))
    return groups


def _short(v: Any) -> str:
    if isinstance(v, list) and v and len(set(map(str, v))) == 1:
        v = v[0]
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# ---------------------------------------------------------------------------------------------------
# tables

def _cell(values: list[float | None], digits: int = 4, integer: bool = False) -> str:
    from ..experiments.sweep import stats
    st = stats(values)
    if st["mean"] is None:
        return ("not reached" if integer else "—") if values else ""
    fmt = (lambda x: f"{x:.0f}") if integer else (lambda x: f"{x:.{digits}f}")
    text = fmt(st["mean"]) if st["n"] == 1 else f"{fmt(st['mean'])} ± {fmt(st['std'])}"
    missing = len(values) - st["n"]
    if missing:
        text += f" ({st['n']}/{len(values)} reached)" if integer else f" ({st['n']}/{len(values)})"
    return text


def _range(values: list[float | None], digits: int = 3) -> str:
    xs = [v for v in values if v is not None]
    if not xs:
        return "—"
    return f"{min(xs):.{digits}f}–{max(xs):.{digits}f}" if len(xs) > 1 else f"{xs[0]:.{digits}f}"


def _metric(run: ReportedRun, name: str) -> Any:
    return get(run.result, METRICS[name])


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


# the metrics each setting's rows are made of (ewe.results.schema.METRICS names)
GROUP_METRICS = ("clean_accuracy", "defended_accuracy", "defended_watermark", "extracted_accuracy",
                 "extracted_watermark", "extracted_queries_for_95", "plain_extracted_watermark",
                 "plain_extracted_queries_for_95", "ablation_extracted_watermark",
                 "ablation_extracted_queries_for_95", "clean_p_value", "extracted_p_value")


def _main_row(label: str, n_runs: int, v: dict[str, list]) -> list[str]:
    return [label, str(n_runs), _cell(v["clean_accuracy"]), _cell(v["defended_accuracy"]),
            _cell(v["defended_watermark"], 3), _cell(v["extracted_watermark"], 3),
            _cell(v["extracted_accuracy"]), _cell(v["extracted_queries_for_95"], integer=True)]


def _base_row(label: str, v: dict[str, list]) -> list[str]:
    return [label, _cell(v["extracted_watermark"], 3), _cell(v["extracted_queries_for_95"], integer=True),
            _cell(v["ablation_extracted_watermark"], 3),
            _cell(v["ablation_extracted_queries_for_95"], integer=True),
            _cell(v["plain_extracted_watermark"], 3), _cell(v["plain_extracted_queries_for_95"], integer=True)]


def _claim_row(label: str, v: dict[str, list], alpha: float) -> list[str]:
    ps = [p for p in v["clean_p_value"] if p is not None]
    return [label, f"{min(ps):.3g}" if ps else "—",
            ("no" if all(p >= alpha for p in ps) else
             f"**yes, {sum(p < alpha for p in ps)} of {len(ps)}**") if ps else "—"]


def _seed_rows(label: str, runs: list[ReportedRun], v: dict[str, list]) -> list[list[str]]:
    """One row per seed, and the setting's min–max range under them."""
    rows = []
    for r in runs:
        q = _metric(r, "extracted_queries_for_95")
        rows.append([label, str(r.seed), _fmt(_metric(r, "clean_accuracy")),
                     _fmt(_metric(r, "defended_accuracy")), _fmt(_metric(r, "defended_watermark"), 3),
                     _fmt(_metric(r, "extracted_watermark"), 3), "not reached" if q is None else str(q),
                     _fmt(_metric(r, "extracted_p_value"), 3, "g")])
    rows.append([f"*{label}: range*", "", _range(v["clean_accuracy"], 4), _range(v["defended_accuracy"], 4),
                 _range(v["defended_watermark"]), _range(v["extracted_watermark"]),
                 _range(v["extracted_queries_for_95"], 0), ""])
    return rows


def _table_rows(groups: list[Group]) -> dict[str, list[list[str]]]:
    """The rows of the main, baselines, false-claims and per-seed tables: one (or, per seed, several) per
    setting with a finished run."""
    rows: dict[str, list[list[str]]] = {"main": [], "base": [], "claim": [], "seed": []}
    for g in groups:
        runs = [r for r in g.runs if r.finished]
        if not runs:
            continue
        v = {m: [_metric(r, m) for r in runs] for m in GROUP_METRICS}
        rows["main"].append(_main_row(g.label, len(runs), v))
        rows["base"].append(_base_row(g.label, v))
        rows["claim"].append(_claim_row(g.label, v, runs[0].config.get("alpha", 0.05)))
        rows["seed"] += _seed_rows(g.label, runs, v)
    return rows


def _section(title: str, intro: str, header: list[str], rows: list[list[str]], first: bool = False) -> list[str]:
    return ([] if first else [""]) + [f"## {title}", "", intro, ""] + _md_table(header, rows)


def markdown_tables(groups: list[Group]) -> list[str]:
    rows = _table_rows(groups)
    if not rows["main"]:
        return []
    tests = _tests_used(groups)
    lines = _section(
        "Reproduction table",
        "Mean ± std over the runs (seeds) of each setting (sample std; one run shows the value alone). Watermark "
        "success is measured on held-out triggers; queries for 95 % = the number of queries from which the median "
        "p-value stays below 0.05 (" + tests + "); seeds where it was never reached are left out of the mean and "
        "counted.",
        ["setting", "runs", "clean accuracy", "defended accuracy", "watermark success: victim",
         "watermark success: stolen copy", "stolen copy accuracy", "queries for 95 %"], rows["main"], first=True)
    lines += _section(
        "Against the baselines under extraction",
        "The same extraction attack on the three victims trained from the same pre-trained weights.",
        ["setting", f"{EWE.short}: stolen watermark", f"{EWE.short}: queries", f"{ABLATION.label}: stolen watermark",
         f"{ABLATION.short}: queries", f"{CLASSIC.label}: stolen watermark", f"{CLASSIC.short}: queries"],
        rows["base"])
    scheme_rows = _scheme_rows(groups)
    if scheme_rows:
        lines += _section(
            "Every scheme's stolen copy",
            "Each watermarking scheme the runs trained (ewe.watermarks.schemes), its victim's accuracy cost against "
            "the run's clean model (an API scheme such as DAWN: its flipped answers), what its copy kept, and in how "
            "many runs the copy was proven. Thieves of the same run beyond the last are in its thieves.json.",
            ["setting", "scheme", "runs", "victim accuracy cost", "stolen watermark", "queries for 95 %", "proven"],
            scheme_rows)
    lines += _section(
        "False claims",
        "An independently trained clean model tested as the suspect must not be claimed (p ≥ α). Judged by: "
        + tests + ".", ["setting", "smallest p over seeds", "falsely claimed"], rows["claim"])
    lines += ["", "## Per seed", ""]
    lines += _md_table(["setting", "seed", "clean accuracy", "defended accuracy", "victim watermark",
                        "stolen watermark", "queries for 95 %", "p (stolen copy)"], rows["seed"])
    return lines


def _scheme_rows(groups: list[Group]) -> list[list[str]]:
    """One row per setting and scheme whose stolen copy some finished run holds, from the scheme registry."""
    rows = []
    for g in groups:
        runs = [r for r in g.runs if r.finished]
        for s in SCHEMES.values():
            held = [r for r in runs if s.stolen in (r.result.get("models") or {})]
            if not held:
                continue
            cost = []
            for r in held:
                m = r.result["models"]
                victim = m.get(s.name) or {}
                base = victim.get("model_accuracy", (m.get("clean") or {}).get("accuracy"))
                cost.append(None if base is None or "accuracy" not in victim else base - victim["accuracy"])
            verdicts = [(r.result.get("verification") or {}).get(s.stolen) or {} for r in held]
            proven = sum(is_proven(v) for v in verdicts)
            rows.append([g.label, s.label, str(len(held)), _cell(cost, 4),
                         _cell([r.result["models"][s.stolen].get("watermark_success") for r in held], 3),
                         _cell([v.get("queries_for_95") for v in verdicts], integer=True),
                         f"{proven} of {len(held)}"])
    return rows


def _tests_used(groups) -> str:
    """What judged the stored verdicts, in words: the exact test with its innocent population, or the
    Welch test with its margin (runs judged before the margin existed used 0)."""
    said = set()
    for g in groups:
        for r in g.runs:
            if not r.finished:
                continue
            for v in (r.result.get("verification") or {}).values():
                if v.get("test") == "binomial":
                    said.add(f"exact binomial test against the null rate of {v.get('null_models')} innocent "
                             "model(s)")
                else:
                    said.add(f"one-sided Welch t-test against the run's clean model, margin "
                             f"{100 * float(v.get('margin', 0.0)):g} points")
    return "; ".join(sorted(said)) or "no verdicts stored"


def _fmt(x: Any, digits: int = 4, kind: str = "f") -> str:
    if x is None:
        return "—"
    return f"{x:.{digits}{kind}}"


# ---------------------------------------------------------------------------------------------------
# robustness curves

def robustness_curves(runs: list[ReportedRun]) -> dict[str, dict[str, dict[str, dict[float, list[float]]]]]:
    """{attack: {victim: {metric: {x: [value per run]}}}} over the runs that have robustness.json."""
    from ..experiments.robustness import curve
    out: dict = {}
    for run in runs:
        rob = run.robustness
        if not rob or not rob.get("records"):
            continue
        attacks = {r["attack"] for r in rob["records"]} - {"none"}
        victims = {r["victim"] for r in rob["records"]}
        for attack in attacks:
            for victim in victims:
                for metric in ("accuracy", "watermark_success"):
                    xs, ys = curve(rob, attack, victim, metric)
                    if len(xs) < 2:
                        continue
                    slot = out.setdefault(attack, {}).setdefault(victim, {}).setdefault(metric, {})
                    for x, y in zip(xs, ys):
                        slot.setdefault(x, []).append(y)
    return out


def plot_robustness(group: Group, path: Path) -> Path | None:
    curves = robustness_curves([r for r in group.runs])
    attacks = [a for a in ATTACK_ORDER if a in curves]
    if not attacks:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ..attacks.removal import ATTACK_LABELS, X_AXIS
    n_runs = sum(1 for r in group.runs if r.robustness)
    fig, axes = plt.subplots(len(attacks), 2, figsize=(9, 2.6 * len(attacks)), squeeze=False)
    for i, attack in enumerate(attacks):
        for j, metric in enumerate(("accuracy", "watermark_success")):
            ax = axes[i, j]
            for victim, per_metric in sorted(curves[attack].items()):
                data = per_metric.get(metric)
                if not data:
                    continue
                style, color = VICTIM_STYLE.get(victim, ("-.", None))
                label = scheme_label(victim)
                xs = sorted(data)
                mean = [sum(data[x]) / len(data[x]) for x in xs]
                ax.plot(xs, mean, style, marker="o", ms=3, color=color, label=label)
                if n_runs > 1:
                    ax.fill_between(xs, [min(data[x]) for x in xs], [max(data[x]) for x in xs],
                                    color=color, alpha=0.15, linewidth=0)
            ax.set_ylim(-0.03, 1.03)
            ax.grid(alpha=0.3)
            ax.set_xlabel("pruning ratio" if X_AXIS[attack] == "ratio" else "fine-tuning epochs")
            ax.set_ylabel("test accuracy" if metric == "accuracy" else "watermark success")
            ax.set_title(ATTACK_LABELS[attack], fontsize=9)
            if i == 0 and j == 1:
                ax.legend(fontsize=7)
    fig.suptitle(f"{group.label}: robustness to removal ({n_runs} seed{'s' if n_runs != 1 else ''}"
                 f"{', mean and min–max' if n_runs > 1 else ''})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def robustness_table(group: Group) -> list[str]:
    """Each attack's strongest point (largest ratio / most epochs) against the untouched victim."""
    curves = robustness_curves(group.runs)
    if not curves:
        return []
    from ..attacks.removal import ATTACK_LABELS, X_AXIS
    rows = []
    for attack in [a for a in ATTACK_ORDER if a in curves]:
        for victim, per_metric in sorted(curves[attack].items()):
            acc, wm = per_metric.get("accuracy", {}), per_metric.get("watermark_success", {})
            if not acc or not wm:
                continue
            x0, x1 = min(acc), max(acc)
            mean = lambda d, x: sum(d[x]) / len(d[x])
            unit = "ratio" if X_AXIS[attack] == "ratio" else "epochs"
            rows.append([ATTACK_LABELS[attack], scheme_label(victim), f"{unit} {x1:g}",
                         f"{mean(acc, x0):.4f} → {mean(acc, x1):.4f}", f"{mean(wm, x0):.3f} → {mean(wm, x1):.3f}"])
    return _md_table(["attack", "victim", "strongest point", "accuracy", "watermark success"], rows)


# ---------------------------------------------------------------------------------------------------

def build_report(paths: Iterable[str | Path], out: str | Path, title: str | None = None) -> dict:
    out = Path(out)
    runs = find_runs(paths)
    if not runs:
        raise ReportError("no run folders found (a run folder has config.json and result.json; a sweep "
                          "folder has points/)")
    groups = group_runs(runs)
    finished = sum(r.finished for r in runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title or 'EWE reproduction report'}", "",
             f"{len(runs)} run(s) in {len(groups)} setting(s), {finished} finished "
             "(only finished runs are counted). Sources: " + ", ".join(f"`{p}`" for p in map(str, paths)), ""]
    unfinished = [r for r in runs if not r.finished]
    if unfinished:
        lines += ["Not counted (not finished): " + ", ".join(f"`{r.path.name}` ({r.result.get('status')})"
                                                            for r in unfinished[:20]), ""]
    lines += markdown_tables(groups)
    images: list[Path] = []
    rob_lines: list[str] = []
    for n, g in enumerate(groups, 1):
        png = plot_robustness(g, out.parent / f"{out.stem}-robustness-{n}.png")
        if png:
            images.append(png)
            rob_lines += [f"### {g.label}", "", f"![robustness of {g.label}]({png.name})", ""]
            rob_lines += robustness_table(g) + [""]
    if rob_lines:
        lines += ["", "## Robustness to removal attacks", "",
                  "Fine-tuning and pruning of each victim with the attacker's data labelled by the victim "
                  "(`ewe.attacks.removal`); each attacked model is judged like the run's own suspects.", ""]
        lines += rob_lines
    text = "\n".join(lines).rstrip() + "\n"
    out.write_text(text)
    return {"markdown": text, "images": [str(p) for p in images], "groups": [g.label for g in groups],
            "runs": len(runs)}


ABLATION_VARIANT = "snnl=False"


def ablation_gains(rows: Iterable[dict]) -> list[dict]:
    """What SNNL adds, seed by seed: for each study row (``bench/explore.py`` JSON lines) trained with SNNL,
    its stolen watermark success minus that of the no-SNNL ablation trained from the same
    pre-training and triggers (same dataset, preset, base settings and seed), in points. Rows without a
    matching ablation are left out."""
    rows = list(rows)

    def key(r):
        return r["dataset"], r.get("preset", "quick"), r.get("base", ""), r["seed"]
    ablation = {key(r): r["stolen_wm"] for r in rows if r["variant"] == ABLATION_VARIANT}
    return [{"dataset": r["dataset"], "preset": r.get("preset", "quick"), "base": r.get("base", ""),
             "variant": r["variant"], "seed": r["seed"], "stolen_wm": r["stolen_wm"],
             "ablation_wm": ablation[key(r)], "gain": 100 * (r["stolen_wm"] - ablation[key(r)])}
            for r in rows if ABLATION_VARIANT not in r["variant"] and key(r) in ablation]
