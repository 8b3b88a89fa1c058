"""Write the measured verdicts into README.md, docs/RESULTS.md, docs/results-by-setting.md and the Learn page's
data, from stored results.

    python bench/publish.py [--runs RUNS]   # after bench/demo_reliability.py --results ... and bench/verdicts.py --out ...

Nothing here is typed by hand: every number in the generated blocks comes from
``bench/results/reliability_*.jsonl`` (bench/demo_reliability.py summaries of stored run folders: victims x
thieves, re-judged with today's test), ``bench/results/verdicts_*.json`` (bench/verdicts.py: out-of-sample
false accusations and the before/after table), ``bench/results/demo_*.json`` (bench/bench_demo.py) and
``bench/results/population_cost_*.json`` (bench/bench_population.py). The blocks sit between
``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` markers:

    README.md                   demo        every setting at a glance
    docs/RESULTS.md             schemes     §1, the schemes side by side per dataset
                                overview    §2, every setting at a glance (the README's table)
                                verdicts    §4, innocent models accused out of sample, verdicts before / after
                                demo_times  §5, the default demo in the app
                                class       §5, a class of browser sessions on one server
                                population  §5, the innocent population's cost per recipe
    docs/results-by-setting.md  settings    each setting's table, scheme by scheme (written whole if missing)

``ewe/measured/published.json`` (package data) is what pages/learn.py and the Trade-offs page show. With ``--runs RUNS``
(the stored run folders, read only) the schemes side by side (``ewe.results.sidebyside``: per dataset, every
scheme under each kind of thief) are re-read from the run folders; without it, the tables published before
(published.json's ``schemes_side_by_side``) are written again. docs/history/ is never written: its files are
moved text.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PUBLISHED = ROOT / "ewe" / "measured" / "published.json"    # package data: what the app shows (ewe.results.studies)
STUDY_FILES = ("explore_grid.jsonl", "explore_paper.jsonl")   # the SNNL study's rows (bench/explore.py)
MADE_BY_DEFAULT = "python bench/publish.py (from bench/results)"

from demo_reliability import table  # noqa: E402
from verdicts import report  # noqa: E402

from ewe.results import sidebyside  # noqa: E402
from ewe.results.report import ablation_gains  # noqa: E402
from ewe.watermarks.schemes import ABLATION, CLASSIC, EWE, SCHEMES  # noqa: E402

# the tables' scheme columns: the registry's short words, which also key demo_reliability's summaries
DEFAULT_SCHEMES = (EWE, CLASSIC, ABLATION)     # every run of the stored studies trained these three


def load_summaries() -> list[dict]:
    out = []
    for path in sorted(RESULTS.glob("reliability_*.jsonl")):
        latest = {}
        for line in path.read_text().splitlines():
            if line.strip():
                s = json.loads(line)
                key = (s["dataset"], s["preset"], json.dumps(s.get("overrides", {}), sort_keys=True), s.get("note", ""),
                       s["variant"])
                latest[key] = s           # the newest summary of each setting wins
        out += list(latest.values())
    return out


def setting(s: dict) -> str:
    over = ", ".join([f"{k} {v}" for k, v in sorted(s.get("overrides", {}).items())] + ([s["note"]] if s.get("note") else []))
    return f"{s['dataset']} {s['preset']}" + (f" ({over})" if over else "")


def rate(s: dict, scheme: str, key: str = "proven_within_100") -> float | None:
    x = s["schemes"].get(scheme) or {}
    return x[key] / x["n"] if x.get("n") else None


def replace_block(text: str, name: str, body: str, made_by: str = MADE_BY_DEFAULT) -> str:
    start, end = f"<!-- generated:{name} -->", f"<!-- /generated:{name} -->"
    block = f"{start}\n<!-- made by: {made_by}; do not edit by hand -->\n{body}\n{end}"
    if start in text:
        return re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    return text.rstrip("\n") + "\n\n" + block + "\n"


def overview(summaries: list[dict]) -> str:
    shorts = [s.short for s in SCHEMES.values()]
    columns = ["setting", "thief", "victims x thieves", f"{shorts[0]} proven within 100 queries", *shorts[1:],
               f"{EWE.short} - {ABLATION.short} (paired)", f"{EWE.short}'s accuracy cost", "innocents accused"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for s in summaries:
        def cell(scheme):
            x = s["schemes"].get(scheme) or {}
            return f"{x['proven_within_100']}/{x['n']}" if x.get("n") else "—"
        d, cost = s["ewe_minus_ablation_mean"], s["accuracy_cost_mean"]
        lines.append(f"| {setting(s)} | {s['variant']} | {s['victims']} x {s['thieves_per_victim']} | "
                     + "".join(f"{cell(k)} | " for k in shorts) +
                     f"{'—' if d is None else f'{100 * d:+.1f} pts'} | "
                     f"{'—' if cost is None else f'{100 * cost:.2f} pts'} | "
                     f"{s['innocents_accused']}/{s['innocent_tests']} |")
    return "\n".join(lines)


def schemes_block(tables: dict[str, dict]) -> str:
    body = []
    for dataset, t in tables.items():
        seeds = t["victim_seeds"]
        body += [f"### {t['setting']}", "",
                 f"Victim seeds {', '.join(map(str, seeds))} ({len(t['runs'])} run folders: "
                 f"{', '.join(sorted(set(r.rsplit('-s', 1)[0] for r in t['runs'])))}-s*). The independent clean "
                 f"model was claimed on some trigger set in {t['innocents_accused_any']} of {t['innocent_runs']} "
                 "runs." + (f" Rows come from the run folders of: {'; '.join(t['sources'])} (each row from the "
                            "one with the most copies of it)." if t.get("sources") else ""),
                 "", sidebyside.markdown(t), ""]
    return "\n".join(body)


def population_block(costs: dict[str, dict]) -> str:
    """The innocent population's cost per recipe, fp32 against bf16 autocast (bench/bench_population.py)."""
    body = []
    for name, c in costs.items():
        unit = c["plain_epoch_s"]
        body += [f"#### {c['dataset']} {c['preset']} ({c['threads']} threads on {c['cpus']} cores; one plain PyTorch "
                 f"epoch of the victim's CNN in the same process: {unit:.2f} s)", "",
                 "| recipe (architecture, data, budget) | models | fp32 s/model | bf16 s/model | speed-up | "
                 "fp32 test accuracy | bf16 test accuracy |", "|---|---|---|---|---|---|---|"]
        for r in c["recipes"]:
            s, a = r["seconds"], r["accuracy"]
            body.append(f"| {r['recipe'][0]}, {r['recipe'][1]}, x{r['recipe'][2]:g} | {r['models']} | {s['fp32']:.2f} | "
                        f"{s['bf16']:.2f} | {s['fp32'] / s['bf16']:.2f}x | {a['fp32'][0]:.3f}-{a['fp32'][1]:.3f} | "
                        f"{a['bf16'][0]:.3f}-{a['bf16'][1]:.3f} |")
        f32, b16 = (c["populations"][p]["total_s"] for p in ("fp32", "bf16"))
        body.append(f"| **all** | {len(c['populations']['fp32']['models'])} | {f32:.1f} s ({f32 / unit:.0f} plain epochs) | "
                    f"{b16:.1f} s ({b16 / unit:.0f} plain epochs) | {f32 / b16:.2f}x | | |")
        verdicts = [c["populations"][p].get("verdicts") for p in ("fp32", "bf16")]
        if all(verdicts):
            body += ["", "The same run judged with each population (null rate p0, verdict p):", "",
                     "| model | fp32 population | bf16 population |", "|---|---|---|"]
            for model, a in verdicts[0].items():
                b = verdicts[1].get(model, {})
                body.append(f"| {model} | p0 {a['null']:.3f}, p {a['p']:.3g} ({'proven' if a['proven'] else 'not proven'}) | "
                            f"p0 {b['null']:.3f}, p {b['p']:.3g} ({'proven' if b['proven'] else 'not proven'}) |")
        body.append("")
    return "\n".join(body)


SETTINGS_HEAD = """# Each setting, scheme by scheme

Every table of this file is generated by `python bench/publish.py` from `bench/results/reliability_*.jsonl`
(bench/demo_reliability.py's summaries of stored run folders, every copy re-judged with today's test); nothing
here is typed by hand. One table per setting and kind of thief: how many stolen copies were proven (with the
exact 95 % interval), how much watermark they kept, and the victim's footprint on the thief's queries (how often
it answers the target class where the truth is another class). The overview, the thief names and the commands
are in [RESULTS §2](RESULTS.md#2-every-setting-at-a-glance) and [§6](RESULTS.md#6-how-the-numbers-are-made).
"""
SCHEMES_MADE_BY = ("python bench/publish.py (from ewe/measured/published.json; with --runs RUNS, from the stored "
                   "run folders)")


def settings_block(summaries: list[dict]) -> str:
    body = []
    for s in summaries:
        body += [f"## {setting(s)}", "", table(s).replace("### ", "### thief ", 1)]
    return "\n".join(body)


def verdicts_block(verdicts: dict[str, dict]) -> str:
    body = []
    for name, v in verdicts.items():
        body += [f"### Trusting the verdicts: {name}", "", report(v), ""]
    return "\n".join(body)


def demo_times_block(demos: dict[str, dict]) -> str:
    lines = []
    for name, d in demos.items():
        total = (f"its first verdict card {d['verdict_s']:.0f} s after Start training" if "verdict_s" in d
                 else f"{d['total_s']:.0f} s in all")
        if "first_card_s" in d:     # the Attack page's card of the first thief, before the others finish
            total = (f"the first thief's verdict card {d['first_card_s']:.0f} s after Start training, Verify's "
                     f"{d['verdict_s']:.0f} s")
        if d.get("in_view"):
            v = d["viewport"]
            total += (f"; at {v['width']}x{v['height']} without scrolling: "
                      + ", ".join(f"{k.replace('_', ' ')} {'yes' if ok else 'no' if ok is not None else 'not seen'}"
                                  for k, ok in d["in_view"].items()))
        built = d["innocents_built_in_run"]
        lines.append(f"- {name}: trained in {d['train_s']:.0f} s, {d['thieves_recorded']} thieves in "
                     f"{d['attack_s']:.0f} s, {total}; innocent population "
                     f"{'built during the run (' + str(built) + ' models)' if built else 'not trained (shipped or cached)'}; "
                     f"load average {float(d['load_average'][0]):.2f} on {d['cpus']} cores")
    return "\n".join(lines)


def class_block(classes: dict[str, dict]) -> str:
    """A class of sessions on one server (bench/bench_class.py): real browsers, or clients of Streamlit's protocol."""
    lines = []
    for name, d in classes.items():
        c, alone = d["class"], d.get("alone")
        kind = "different seeds" if d.get("distinct_seeds") else "the same default demo"
        clients = ("Streamlit-protocol clients, no browser" if d.get("clients") == "protocol"
                   else "real Chromium sessions")
        line = (f"- {name}: {c['sessions']} sessions ({kind}; {clients}): {c['with_verdict']} showed a verdict, the first "
                f"{c['first_verdict_s']:.0f} s and the last {c['last_verdict_s']:.0f} s after the class started")
        if alone and alone.get("first_verdict_s"):
            bar = alone["first_verdict_s"] + 30
            line += (f" (one session alone: {alone['first_verdict_s']:.0f} s; bar alone + 30 s = {bar:.0f} s: "
                     f"{'met' if c['last_verdict_s'] <= bar else 'not met'})")
        line += (f"; computed {c['trainings_computed']} training(s) and {c['steals_computed']} steal(s); "
                 f"page switches while loaded p50 {c['switch_p50_s']} s, p95 {c['switch_p95_s']} s "
                 f"({c['page_switches']} switches); server peak memory {c['server_peak_mib']} MiB; "
                 f"{'every workspace held exactly its own run' if c['isolation']['ok'] else 'isolation problems: ' + '; '.join(c['isolation']['problems'])}"
                 f"; load average {float(d['load_average'][0]):.2f} on {d['cpus']} cores")
        lines.append(line)
    return "\n".join(lines)


def changed_settings(s: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """What a summary's study changed of its preset ("mbw_eps 0.005"): the overrides that differ from it."""
    from ewe.config import preset
    default = preset(s["dataset"], s["preset"]).to_dict()
    return [f"{k} {v}" for k, v in sorted((s.get("overrides") or {}).items()) if k not in ignore and default.get(k) != v]


def is_preset_setting(s: dict) -> bool:
    """Is a summary its dataset's preset as shipped (no note, no override that differs from the preset)? Other
    settings of the same dataset and preset (a study's schemes, another target) name themselves in brackets."""
    return not s.get("note") and not changed_settings(s)


def demo_contrast_block(summaries: list[dict]) -> str:
    """What the default demo's two thieves (the Attack page's side by side: the digits preset's distiller and the
    same thief given the top class only) do to each copy, over the stored victims x thieves of that setting, with
    exact 95 % intervals: how often one demo run shows the contrast."""
    by_variant = {s["variant"]: s for s in summaries
                  if (s["dataset"], s["preset"]) == ("digits", "quick") and is_preset_setting(s)}
    soft, hard = by_variant.get("same-soft5"), by_variant.get("same-hard")
    if not soft or not hard:
        return "(no stored runs of the default demo's setting under both thieves)"

    def cell(s, scheme):
        x = s["schemes"].get(scheme) or {}
        if not x.get("n"):
            return "—"
        return _exact(x["proven_within_100"], x["n"])
    schemes = [s.short for s in DEFAULT_SCHEMES if (soft["schemes"].get(s.short) or {}).get("n")]
    lines = [f"digits quick, {soft['victims']} victims x {soft['thieves_per_victim']} thieves per kind; copies "
             "proven within 100 queries (exact 95 % interval):", "",
             "| copy of | thief given probabilities (T = 5) | the same thief given the top class only |",
             "|---|---|---|"]
    lines += [f"| {k} | {cell(soft, k)} | {cell(hard, k)} |" for k in schemes]
    return "\n".join(lines)


def _exact(k: int, n: int) -> str:
    """k/n with its exact (Clopper-Pearson) 95 % interval."""
    from scipy.stats import binomtest
    lo, hi = binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k}/{n} ({100 * lo:.0f}–{100 * hi:.0f} %)"


RIVALS = ("MBW", "dataset inference")      # the next defences (issue 38): tabled apart with their own evidence
NO_WATERMARK = ("dataset inference",)      # judged by margins: nothing is "kept"


def _dataset_setting(s: dict) -> str:
    """A study's dataset, with what it changed of the preset besides the schemes it trained."""
    changed = changed_settings(s, ignore=("schemes",))
    return s["dataset"] + (f" ({', '.join(changed)})" if changed else "")


def rivals_block(summaries: list[dict]) -> str:
    """The margin-based watermark and dataset inference under the tables' thieves: copies proven (exact 95 %
    interval), what the copies keep, the accuracy cost; and dataset inference's false accusations, each innocent
    judged alone by its own test, pooled over the victims of a dataset (one count per victim and model)."""
    lines = ["| dataset | scheme | thief | victims x thieves | copies proven within 100 queries | kept (mean) | "
             "accuracy cost |", "|---|---|---|---|---|---|---|"]
    innocents: dict[str, dict] = {}
    for s in summaries:
        for name in RIVALS:
            x = s["schemes"].get(name) or {}
            if x.get("n"):
                cost = x.get("accuracy_cost_mean")
                kept = "—" if name in NO_WATERMARK else f"{100 * x['kept_mean']:.1f} %"
                lines.append(f"| {_dataset_setting(s)} | {name} | {s['variant']} | {s['victims']} x {s['thieves_per_victim']} "
                             f"| {_exact(x['proven_within_100'], x['n'])} | {kept} | "
                             f"{'—' if cost is None else f'{100 * cost:.2f} pts'} |")
        if s.get("dataset_inference_innocents"):       # the same victims in every thief's summary: one per dataset
            innocents.setdefault(s["dataset"], s["dataset_inference_innocents"])
    if len(lines) == 2:
        return "(no stored runs of these schemes)"
    lines += ["", "Dataset inference's false accusations (alpha 0.05; accused / judged, exact 95 % interval):", ""]
    for dataset, di in innocents.items():
        groups = {k: v for k, v in di["groups"].items() if v["judged"] and not k.startswith("population (half")}
        parts = "; ".join(f"{k} {_exact(v['accused'], v['judged'])}" for k, v in groups.items())
        lines.append(f"- {dataset}: {parts}; the owner's scorer tells its own private from public points with AUC "
                     f"{di['owner_auc_mean']:.2f} (0.5: not at all)")
    return "\n".join(lines)


def stages_block(runs: dict[str, dict]) -> str:
    """Where a quick run's time goes, in plain PyTorch epochs of the same CNN (bench/bench_stages.py)."""
    lines = []
    for name, d in runs.items():
        plain = d["plain_epoch_s"]
        parts = ", ".join(f"{k} {v / plain:.1f}" for k, v in d["stages_s"].items() if not k.endswith("total")
                          and v / plain >= 0.05)
        lines.append(f"- {name}: {d['dataset']} {d['preset']} seed {d['seed']}, {d['threads']} threads: "
                     f"{d['total_s']:.0f} s = **{d['total_plain_epochs']:.0f} plain epochs** (one plain epoch "
                     f"{plain:.2f} s here); {d['innocents_built']} population models (innocents, clean references) trained in the run; peak RSS "
                     f"{d['peak_rss_mib']} MiB. Per stage, in plain epochs: {parts}; load average "
                     f"{float(d['load_average'][0]):.2f} on {d['cpus']} cores")
    return "\n".join(lines)


def precision_block(rows_by_dataset: dict[str, list[dict]]) -> str:
    """The run's own models in fp32 against bf16 autocast, paired by victim seed (bench/bench_precision.py)."""

    ms = mean_sd
    lines = ["| dataset (quick) | precision | victim seeds | run, s | EWE victim accuracy, % | EWE copy accuracy, % "
             f"| EWE copy watermark, % | copies proven ({' / '.join(s.short for s in DEFAULT_SCHEMES)}) | "
             "independent clean proven |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in rows_by_dataset.items():
        seeds = sorted({r["seed"] for r in rows if r["precision"] == "fp32"} & {r["seed"] for r in rows
                                                                                if r["precision"] == "bf16"})
        for precision in ("fp32", "bf16"):
            rs = [r for r in rows if r["precision"] == precision and r["seed"] in seeds]
            if not rs:
                continue
            proven = " / ".join(f"{sum(r['proven'].get(c, False) for r in rs)}/{len(rs)}"
                                for c in (s.stolen for s in DEFAULT_SCHEMES))
            lines.append(f"| {rs[0]['dataset']} | {precision} | {', '.join(map(str, seeds))} | "
                         f"{ms([r['wall_s'] for r in rs])} | {ms([r['accuracy'].get('defended') for r in rs], 1, 100)} | "
                         f"{ms([r['accuracy'].get('extracted') for r in rs], 1, 100)} | "
                         f"{ms([r['watermark_success'].get('extracted') for r in rs], 1, 100)} | {proven} | "
                         f"{sum(r['proven'].get('clean', False) for r in rs)}/{len(rs)} |")
    return "\n".join(lines)


def frontier_block(rows_by_dataset: dict[str, list[dict]]) -> str:
    """Time against accuracy for a quick preset's data and epochs (bench/bench_frontier.py)."""
    import statistics
    lines = ["| dataset (precision) | training images x epochs (clean + watermark) | victim seeds | run, s (no population) | "
             "clean model, % | EWE victim, % | EWE copy (preset's thief), % |", "|---|---|---|---|---|---|---|"]
    for rows in rows_by_dataset.values():
        def order(point):   # by training images, then epochs ("all" last)
            size, epochs = point.split("x")
            return (float("inf") if size == "all" else int(size), int(epochs))
        for point in sorted({r["point"] for r in rows}, key=order):
            rs = [r for r in rows if r["point"] == point]
            acc = lambda name: statistics.mean(r["accuracy"][name] for r in rs if name in r["accuracy"])  # noqa: E731
            size, epochs = point.split("x")
            lines.append(f"| {rs[0]['dataset']} ({rs[0].get('precision', 'fp32')}) | "
                         f"{size if size == 'all' else f'{int(size):,}'} x {epochs} + {epochs} | "
                         f"{', '.join(str(r['seed']) for r in sorted(rs, key=lambda r: r['seed']))} | "
                         f"{statistics.mean(r['wall_s'] for r in rs):.0f} | "
                         f"{100 * acc('clean'):.2f} | {100 * acc('defended'):.2f} | {100 * acc('extracted'):.2f} |")
    return "\n".join(lines)


def digits_size_block(found: dict[str, list[dict]]) -> str:
    """The digits demo at smaller sides or with fewer epochs, each with its own population (bench/bench_digits_size.py)."""
    import statistics

    ms = mean_sd
    from ewe.config import preset
    quick = preset("digits", "quick")      # a variant's line names only what it changed
    rows = [r for rs in found.values() for r in rs]
    lines = ["| variant | input | epochs (clean + watermark; thief) | population built, s | run, s | train + first "
             "thief, s | clean model, % | EWE victim, % | EWE copy, % | EWE copy's watermark kept, % | copies proven "
             f"({' / '.join(s.short for s in DEFAULT_SCHEMES)}) | independent clean model accused |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        runs = sorted((r for r in rows if r["variant"] == variant and r["kind"] == "run"), key=lambda r: r["seed"])
        pops = [r for r in rows if r["variant"] == variant and r["kind"] == "population"]
        if not runs:
            continue
        first = {**{k: getattr(quick, k) for k in ("epochs", "w_epochs", "extract_epochs")}, **runs[0]}
        epochs = f"{first['epochs']} + {first['w_epochs']:g}; {first['extract_epochs']}"
        proven = " / ".join(f"{sum(r['proven'].get(c, False) for r in runs)}/{len(runs)}"
                            for c in (s.stolen for s in DEFAULT_SCHEMES))
        pop = f"{pops[-1]['seconds']:.0f} ({pops[-1]['models']} models)" if pops else "—"
        lines.append(f"| {variant} | {first['side']} x {first['side']} | {epochs} | {pop} | "
                     f"{ms([r['wall_s'] for r in runs])} | {ms([r['train_and_first_thief_s'] for r in runs])} | "
                     f"{ms([r['accuracy'].get('clean') for r in runs], scale=100)} | "
                     f"{ms([r['accuracy'].get('defended') for r in runs], scale=100)} | "
                     f"{ms([r['accuracy'].get('extracted') for r in runs], scale=100)} | "
                     f"{ms([r['watermark_success'].get('extracted') for r in runs], scale=100)} | {proven} | "
                     f"{sum(r['proven'].get('clean', False) for r in runs)}/{len(runs)} |")
    mean = lambda variant, get: statistics.mean(get(r) for r in rows if r["variant"] == variant and r["kind"] == "run")  # noqa: E731
    pop_s = {r["variant"]: r["seconds"] for r in rows if r["kind"] == "population"}
    base = "side28"
    lines.append("")
    for variant in dict.fromkeys(r["variant"] for r in rows if r["variant"] != base and r["kind"] == "run"):
        lines.append(f"- {variant} against {base}: a run {mean(base, lambda r: r['wall_s']) / mean(variant, lambda r: r['wall_s']):.1f}x "
                     f"faster, its population {pop_s[base] / pop_s[variant]:.1f}x; the EWE victim "
                     f"{100 * (mean(variant, lambda r: r['accuracy']['defended']) - mean(base, lambda r: r['accuracy']['defended'])):+.1f} "
                     f"points of accuracy, its copy's watermark kept "
                     f"{100 * (mean(variant, lambda r: r['watermark_success']['extracted']) - mean(base, lambda r: r['watermark_success']['extracted'])):+.1f} points")
    seeds = sorted({r["seed"] for r in rows if r["kind"] == "run"})
    lines.append(f"\nVictim seeds {', '.join(map(str, seeds))} per variant (mean ± sd over them); the preset's thief "
                 "(soft labels at temperature 5, the owner's images); verdicts against each variant's own population "
                 "of 24 innocents.")
    return "\n".join(lines)


def ray_block(d: dict) -> str:
    """The app's jobs on a local 2-CPU Ray against its local threads (bench/bench_ray.py)."""
    lines = []
    for way, what in (("threads", "local threads (the default: one run at a time, 2 torch threads)"),
                      ("ray", "a local Ray with 2 worker CPUs (two runs at once, 1 torch thread each)")):
        got = d[way]
        own = [r["train_total_s"] for r in got["runs"] if r.get("train_total_s")]
        ends = sorted(j["finished_after_s"] for j in got["jobs"])
        trained = sum(r["status"] == "trained" for r in got["runs"])
        lines.append(f"- {what}: {d['runs']} distinct digits quick trainings submitted at once, {trained} trained; "
                     f"the last finished {got['wall_s']:.0f} s after the submission, the first after {ends[0]:.0f} s; "
                     f"a run's own time {min(own):.0f}-{max(own):.0f} s")
    lines.append(f"- Ray / threads, wall clock for all {d['runs']}: **{d['ray_over_threads']:.2f}** (both on the same "
                 f"{d['cpus']} cores)")
    return "\n".join(lines)


def mean_sd(values, digits: int = 1, scale: float = 1.0) -> str:
    """``mean ± sd`` of the values given (None left out), each times ``scale``; "—" when there is none."""
    import statistics
    values = [scale * v for v in values if v is not None]
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def read_measured(path: Path):
    """A bench's stored numbers: one JSON document, or JSON lines (one run each)."""
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


# RESULTS.md's blocks made from bench/results files: (block, file pattern, block function, how to remake it)
MEASURED_BLOCKS = (
    ("demo_times", "demo_*.json", demo_times_block, None),
    ("class", "class_*.json", class_block,
     "python bench/bench_class.py --json bench/results/class_NAME.json, then python bench/publish.py"),
    ("stages", "stages_*.json", stages_block,
     "python bench/bench_stages.py --dataset mnist --data-dir DATA --json bench/results/stages_NAME.json, then "
     "python bench/publish.py"),
    ("precision", "precision_*.jsonl", precision_block,
     "python bench/bench_precision.py --dataset DATASET --data-dir DATA --seeds 0 1 2 3 4, then python "
     "bench/publish.py"),
    ("frontier", "frontier_*.jsonl", frontier_block,
     "python bench/bench_frontier.py --dataset DATASET --data-dir DATA --seeds 0 1, then python bench/publish.py"),
    ("digits_size", "digits_size.jsonl", digits_size_block,
     "python bench/bench_digits_size.py --seeds 0 1 2 3 4, then python bench/publish.py"),
    ("population", "population_cost_*.json", population_block,
     "python bench/bench_population.py --out bench/results/population_cost_DATASET.json, then python "
     "bench/publish.py"),
)


def write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", help="the stored run folders (bench/regenerate.sh's RUNS): read only, for the "
                    "schemes side by side")
    args = ap.parse_args(argv)
    summaries = load_summaries()
    verdicts = {p.stem.removeprefix("verdicts_"): json.loads(p.read_text()) for p in sorted(RESULTS.glob("verdicts_*.json"))}
    if not summaries and not verdicts:
        print("nothing to publish: run bench/demo_reliability.py --results and bench/verdicts.py --out first")
        return 2
    try:
        before = json.loads(PUBLISHED.read_text())
    except (OSError, ValueError):
        before = {}
    side = before.get("schemes_side_by_side", {})
    if args.runs:
        side = sidebyside.side_by_side(sidebyside.scheme_tables(sidebyside.run_folders(args.runs), root=args.runs))
        if not side:
            print(f"no stolen run folders under {args.runs}: the schemes side by side stay as they were")
            side = before.get("schemes_side_by_side", {})

    results = ROOT / "docs" / "RESULTS.md"
    text = results.read_text()
    if side:
        text = replace_block(text, "schemes", schemes_block(side), SCHEMES_MADE_BY)
    text = replace_block(text, "overview", overview(summaries))
    text = replace_block(text, "verdicts", verdicts_block(verdicts))
    text = replace_block(text, "demo_contrast", demo_contrast_block(summaries))
    text = replace_block(text, "rivals", rivals_block(summaries))
    for name, pattern, block, made_by in MEASURED_BLOCKS:   # each from its bench's stored numbers, when it has any
        found = {p.stem: read_measured(p) for p in sorted(RESULTS.glob(pattern))}
        if found:
            text = replace_block(text, name, block(found), *([made_by] if made_by else []))
    write_if_changed(results, text)

    ray_result = RESULTS / "ray_local.json"
    if ray_result.exists():
        class_doc = ROOT / "docs" / "CLASS.md"
        write_if_changed(class_doc, replace_block(class_doc.read_text(), "ray", ray_block(json.loads(ray_result.read_text())),
                                                  "python -m bench.bench_ray --json bench/results/ray_local.json, then "
                                                  "python bench/publish.py"))

    by_setting = ROOT / "docs" / "results-by-setting.md"
    text = by_setting.read_text() if by_setting.exists() else SETTINGS_HEAD
    write_if_changed(by_setting, replace_block(text, "settings", settings_block(summaries)))

    readme = ROOT / "README.md"
    write_if_changed(readme, replace_block(readme.read_text(), "demo", overview(summaries)))

    published = {"summaries": [{"setting": setting(s), "dataset": s["dataset"], "preset": s["preset"],
                                "preset_setting": is_preset_setting(s), "variant": s["variant"], "victims": s["victims"],
                                "thieves": s["thieves_per_victim"],
                                **{f"{k.lower()}_proven_100": rate(s, k) for k in ("EWE", "classic", "ablation")},
                                "mea_proven_100": rate(s, "MEA-Defender"), "mbw_proven_100": rate(s, "MBW"),
                                "dataset_inference_proven_100": rate(s, "dataset inference"),
                                **{f"{k.lower()}_kept": (s["schemes"].get(k) or {}).get("kept_mean")
                                   for k in ("EWE", "classic", "ablation")},
                                "ewe_minus_ablation": s["ewe_minus_ablation_mean"],
                                "accuracy_cost": s["accuracy_cost_mean"],
                                "innocents_accused": s["innocents_accused"], "innocent_tests": s["innocent_tests"]}
                               for s in summaries],
                 "verdicts": {k: {"out_of_sample": v["out_of_sample"], "before_after": v["before_after"]}
                              for k, v in verdicts.items()},
                 "schemes_side_by_side": side,
                 "study_gains": ablation_gains(row for name in STUDY_FILES if (RESULTS / name).exists()
                                               for row in read_measured(RESULTS / name))}
    write_if_changed(PUBLISHED, json.dumps(published, indent=1))
    print(f"published {len(summaries)} settings, {len(verdicts)} verdict checks and {len(side)} datasets' schemes "
          "side by side into README.md, docs/RESULTS.md, docs/results-by-setting.md and ewe/measured/published.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
