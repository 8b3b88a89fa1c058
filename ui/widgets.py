"""Widgets shared by the pages: sidebar settings, the live job panel, run picker, verdicts, galleries."""
from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np
import streamlit as st

from ewe.config import DATASETS
from ewe.results.schema import is_proven
from ewe.watermarks.schemes import BUILTIN_SETS, CLASSIC, SCHEMES, model_label
from ui import judging, naming, presets, state, warmup, workspaces
from ui.jobs import Job

log = logging.getLogger("ewe.app")
POLL_SECONDS = 1.5
# Every poll of a live panel reruns its fragment on the server: ~0.04 s of CPU alone, more under load. Thirty
# panels at 1.5 s made twenty reruns a second, and the training they all watched ran ~1.6x slower than alone
# (RESULTS §5 "class"); so the panels of a busy server poll less often, about this many reruns a second in all.
PANEL_RERUNS_PER_SECOND = 5.0


def poll_seconds(job: Job, live_jobs: int) -> float | None:
    """Seconds between two polls of ``job``'s live panel while ``live_jobs`` jobs are live on the server (None
    once it has ended): POLL_SECONDS while it runs, twice that while it waits, longer on a busy server."""
    if not job.active:
        return None
    own = POLL_SECONDS if job.status == "running" else 2 * POLL_SECONDS
    return max(own, live_jobs / PANEL_RERUNS_PER_SECOND)


def safe(fn: Callable) -> Callable:
    """Show an st.error instead of a traceback (used for fragment bodies, which rerun on their own)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the user sees a message, the log the traceback
            log.exception("page error")
            st.error(f"Something went wrong while drawing this part: {type(exc).__name__}: {exc}. "
                     "Your runs are kept; try again, or pick another run.")
    return wrapper


def fmt_seconds(s: float | None) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "…"
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


# training-set sizes, to plan a run before its data is loaded (digits: 80 % of scikit-learn's 1,797)
TRAIN_SIZES = {"mnist": 60_000, "fashion-mnist": 60_000, "digits": 1_437, "speech-commands": 3_154}


def expected_seconds(cfg, with_steal: bool = True) -> float:
    """A run's time, planned before Start from the measured stage costs
    (ewe.experiments.pipeline.stage_plan, ewe/measured/stage_costs.json) and the run's sizes."""
    from ewe.experiments.pipeline import stage_plan
    n = min(cfg.train_size or TRAIN_SIZES[cfg.dataset], TRAIN_SIZES[cfg.dataset])
    n = n // 2 if cfg.attacker_data == "disjoint" else n
    half = cfg.batch_size // 2
    n_triggers = max(half, (cfg.n_triggers or n // 10) // half * half)
    return float(sum(stage_plan(cfg, n, n_triggers, with_steal).values()))


def measured_quick_run() -> str:
    """The measured time of a whole digits quick run (train, steal, verify), for pages that must not import
    torch: read from ewe/measured/stage_costs.json (bench/bench_eta.py --calibrate)."""
    import json

    from ewe.results.studies import STAGE_COSTS
    try:
        costs = json.loads(STAGE_COSTS.read_text())
        seconds = min(costs["measured_with"]["run_seconds"])
    except (OSError, ValueError, KeyError):
        return "a few minutes"
    return (f"about {fmt_seconds(seconds)} on a 2-core machine (measured while other work shared it; "
            "it varies with the machine's load)")


def expected_text(seconds: float, runs: int = 1) -> str:
    """The expected time (``seconds`` in all) of ``runs`` runs, and what it assumes."""
    total = f"about {fmt_seconds(seconds)}" + (f" for the {runs} runs" if runs > 1 else "")
    return (f"Expected time: {total}, from measured stage costs (a 2-core machine shared with other "
            "work); more or less as the machine is busier or quieter.")


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


# ---- sidebar -----------------------------------------------------------------------------------------
def sidebar() -> None:
    ss = st.session_state
    link_problems()
    with st.sidebar:
        st.markdown("### Shared settings")
        st.selectbox("Dataset", DATASETS, key="dataset", format_func=lambda d: naming.PRETTY[d],
                     on_change=state.reset_to_preset,
                     help="Digits is built in and works offline. MNIST, Fashion-MNIST and Speech Commands "
                          "need a data directory (EWE_DATA_DIR) or a download.")
        st.selectbox("Preset", presets.preset_names(), key="preset", on_change=state.reset_to_preset,
                     help="quick: minutes on a laptop CPU · paper: the full datasets at this lab's settings "
                          "(a shorter schedule than the paper's own 10 + 10 epochs on MNIST) · reference: "
                          "the reference code's settings" + (" · tiny: a seconds-long smoke test"
                                                             if presets.tiny_enabled() else ""))
        lo, hi = state.RANGES["seed"][1:]
        st.number_input("Seed", min_value=lo, max_value=hi, step=1, key="seed",
                        help="Same settings + same seed = the same run.")
        level, text = presets.data_note(ss["dataset"], short=True)
        (st.info if level == "info" else st.warning)(text)
        if ss.get("_ws_problem"):
            st.warning(ss["_ws_problem"])
        warm = warmup.innocents_warm_status()
        if warm:
            st.caption(f"Preparing the judge: {warm['done']} of {warm['total']} innocent models for the digits "
                       "verdicts trained (once per machine, in the background).")
        counts = state.registry().counts()
        if counts["running"] or counts["queued"]:
            st.caption(f"Server: {counts['running']} run(s) training, {counts['queued']} waiting.")
        if state.read_only():
            st.caption("A read-only view of someone's workspace: its runs, charts and verdicts. Nothing can be "
                       "started, cancelled or uploaded here.")
            return
        st.caption("This link reproduces the current settings and opens your workspace (`ws`): its runs "
                   "survive a reload or a restart. Keep it to come back; whoever has it sees and can cancel "
                   "your runs.")
        with st.expander("Share a read-only view"):
            st.caption("For a class or a meeting: this link shows this workspace's runs, charts and verdicts, "
                       "without Start, Cancel or uploads, and without your workspace id. Add it to this "
                       "server's address:")
            st.code(f"?{state.VIEW_PARAM}={workspaces.view_token(state.session_id())}", language=None)


def link_problems() -> None:
    """The link's settings that could not be used, all in one notice at the top of the page the link opened
    (not a stack of boxes in the sidebar); shown on that first view, gone once the page is used."""
    ss = st.session_state
    problems = ss.get("_url_problems") or []
    if problems and not ss.get("_url_problems_shown"):
        ss["_url_problems_shown"] = True
        st.warning("This link's settings were not all usable, the preset's values stand in: "
                   + "; ".join(problems) + ".")


# ---- the Train page's scheme picker ------------------------------------------------------------------
def scheme_picker(classes: list[str]) -> None:
    """Which watermarking schemes the run trains (the registry's, by label; default: the default ones), with
    the settings of a chosen scheme that has its own: MEA-Defender's source classes, DAWN's flip rate, the
    margin-based watermark's radius, dataset inference's revealed points. The values stay in the session under
    state.SCHEME_FIELDS; state.config_overrides puts them in the config, whose checks (ConfigError) report a
    bad combination."""
    from dataclasses import fields

    from ewe.config import RunConfig
    ss = st.session_state
    st.multiselect("Watermarking schemes (one victim each)", list(SCHEMES), key="schemes",
                   format_func=lambda n: SCHEMES[n].label,
                   help="EWE and its baselines (the classic watermark, the no-SNNL ablation) are watermarks trained "
                        "into the model; the thief steals every chosen victim in turn and each copy is judged on "
                        "its own scheme's triggers. Rival schemes are trained only when picked here.")
    chosen = ss.get("schemes") or []
    settings = {scheme: field for scheme, field in state.SCHEME_SETTINGS.items()
                if scheme in chosen and field in {f.name for f in fields(RunConfig)}}
    if not settings:
        return
    cols = iter(st.columns(len(settings)))
    if "mea_sources" in settings.values():
        from ewe.watermarks.mea import source_classes    # torch: only once MEA-Defender is picked
        a, b = source_classes(int(ss["target"]))
        name = next(k for k, v in settings.items() if v == "mea_sources")
        next(cols).multiselect(
            f"{SCHEMES[name].label}: source classes (two)", list(range(len(classes))), key="mea_sources",
            max_selections=2, placeholder=f"automatic: classes {a} and {b}",
            format_func=lambda i: f"{i} · {classes[i]}" if classes[i] != str(i) else str(i),
            help="Its composite triggers join halves of images of these two classes, labelled the target. "
                 "Empty: the two lowest classes other than the target.")
    for field, (what, step, fmt, help_text) in NUMBER_SETTINGS.items():
        if field in settings.values():
            name = next(k for k, v in settings.items() if v == field)
            # no min/max (as the other numbers): every typed value reaches the config's check
            next(cols).number_input(f"{SCHEMES[name].label}: {what}", min_value=None, max_value=None, key=field,
                                    step=step, format=fmt, help=help_text)


# a scheme's own number on the Train page: RunConfig field -> (label, step, format, help)
NUMBER_SETTINGS = {
    "dawn_rate": ("flip rate r", 0.001, "%.4g", "The share of the API's answers it changes on purpose (keyed, so "
                  "the same query always gets the same answer): r of the honest users' answers are wrong. In (0, 0.5]."),
    "mbw_eps": ("margin radius", 1 / 255, "%.4g", "How far (L-infinity, on [0, 1] pixels) each key input is pushed "
                "towards the boundary before the model is trained to keep its key label there: the margin. The "
                "paper's 5/255 = 0.0196; 0 trains the key without a margin; on speech, the same share of its "
                "features' range, where a victim fits its key better at 0.005 (docs/RESULTS.md §1). In [0, 0.5]."),
    "di_samples": ("revealed points m", 1, None, "The owner's private (training) points it reveals to the test, "
                   "and as many public ones; the paper's claim is for 50. At least 2."),
}


# ---- the live job panel ---------------------------------------------------------------------------
def job_panel(job_id: str | None, live: Callable[[Job], None] | None = None, *, title: str = "") -> Job | None:
    """Status, progress with ETA, queue position and Cancel for a job; ``live(job)`` draws the live
    charts. Polls with st.fragment(run_every=...) while the job is active; reruns the page once it ends."""
    reg, sid = state.registry(), state.session_id()
    job = reg.get(job_id, sid) if job_id else None
    if job is None:
        return None
    every = poll_seconds(job, reg.live())

    @st.fragment(run_every=every)
    def panel():
        _panel_body(job_id, live, title, every)

    panel()
    return job


@safe
def _panel_body(job_id: str, live, title: str, every: float | None) -> None:
    reg, sid = state.registry(), state.session_id()
    job = reg.get(job_id, sid)
    if job is None:
        st.warning("This run is no longer in the registry (the server was restarted?).")
        return
    with st.container(border=True):
        head, button = st.columns([5, 1])
        head.markdown(f"**{title or job.label}** · {_status_text(job)}")
        if job.active and not state.read_only():
            button.button("Cancel", key=f"cancel-{job.id}", on_click=reg.cancel, args=(job.id, sid),
                          help="Stops at the next batch and keeps everything that finished.",
                          width="stretch")
        if job.status == "queued":
            # a request following an identical run (ui/reuse.py) waits where that run waits
            pos = reg.queue_position(job.meta.get("follows") or job.id)
            counts = reg.counts()
            st.info(f"Waiting in the queue: position **{pos or '…'}** "
                    f"({counts['running']} run(s) training now). It starts by itself.")
        elif job.status == "running":
            p = job.progress
            frac = float(p.get("fraction") or 0.0)
            elapsed = (p.get("elapsed") if p.get("elapsed") is not None
                       else (None if job.started is None else __import__("time").time() - job.started))
            st.progress(min(1.0, max(0.0, frac)),
                        text=f"{progress_label(job)} · "
                             f"{100 * frac:.0f} % · elapsed {fmt_seconds(elapsed)} · "
                             f"ETA {fmt_seconds(p.get('eta'))}")
        elif job.status == "failed":
            st.error(f"The run failed: {job.error}")
        elif job.status == "stopped":
            st.warning("Stopped on request. Everything that finished before the stop is kept below.")
        elif job.status == "cancelled":
            st.warning("Cancelled before it started.")
        for text in job.messages[-3:]:
            st.caption(text)
    if live is not None and job.status != "queued":     # a waiting job has nothing to plot yet
        live(job)
    if every is None:
        return
    # the page again (not the panel) when the job has ended, or when its polling interval should change by half
    # (the server got busier or quieter since the page drew this panel: a fragment keeps its run_every)
    if job.done or abs(poll_seconds(job, reg.live()) - every) > every / 2:
        st.rerun()


STAGE_LABELS = {"triggers": "optimising the triggers", "pretrain": "clean pre-training (shared)"}


def stage_label(stage: str | None) -> str | None:
    """A pipeline stage in words: the fixed ones, "steal_<victim>" and a model's training (registry words)."""
    if stage in STAGE_LABELS:
        return STAGE_LABELS[stage]
    victim = (stage or "").removeprefix("steal_")
    if stage != victim and victim in SCHEMES:
        return f"stealing the {SCHEMES[victim].victim_label} model"
    return f"training {model_label(stage)}" if stage in naming.MODEL_LABELS else None


def progress_label(job: Job) -> str:
    """What the running job is doing, in words: the stage's name, and which thief / grid point of how many
    when the job has several parts (their progress events carry ``part``, see ewe.callbacks.part_of)."""
    p = job.progress
    stage = p.get("stage")
    text = stage_label(stage) or stage or "starting"
    if stage and stage.startswith("innocent") and stage[len("innocent"):].isdigit():
        total = (job.meta.get("config") or {}).get("innocents")
        text = (f"innocent population for the verdicts: model {int(stage[len('innocent'):]) + 1}"
                + (f" of {total}" if total else "") + " (trained once per task; cancel keeps them, the next run resumes)")
    parts = int(job.meta.get("thieves") or 1) if job.kind == "attack" else int(job.data.get("total") or 1)
    if parts > 1 and p.get("part") is not None:
        what = "thief" if job.kind == "attack" else "grid point"
        text = f"{what} {int(p['part']) + 1} of {parts} · {text}"
    return text


def _status_text(job: Job) -> str:
    return {"queued": ":orange[:material/hourglass_top: queued]",
            "running": ":blue[:material/autorenew: running]",
            "finished": ":green[:material/check_circle: finished]",
            "stopped": ":orange[:material/stop_circle: stopped]", "failed": ":red[:material/error: failed]",
            "cancelled": ":orange[:material/cancel: cancelled]"}[job.status]


# ---- picking a run --------------------------------------------------------------------------------
RUN_PARAM = "run"


def run_picker(label: str, key: str, need: Callable[[dict | None], bool] | None = None,
               empty: str = "No runs yet.") -> tuple[dict | None, dict | None]:
    """Select one of this workspace's runs (newest first); returns (run ref, loaded run) or (None, None).

    The choice is mirrored in the URL (``?run=<key>``): a "Next" link that carries a run opens it, and a
    reload keeps it. A URL value is applied once (when it changes), so picking another run still works."""
    runs = state.session_runs()
    loaded = {r["key"]: judging.read_run(r["dir"]) for r in runs}
    if need is not None:
        runs = [r for r in runs if need(loaded[r["key"]])]
    if not runs:
        st.info(empty)
        return None, None
    ss = st.session_state
    keys = [r["key"] for r in runs]                 # newest first
    full_key = f"keep_{key}"
    wanted = st.query_params.get(RUN_PARAM)
    if wanted and wanted != ss.get(f"_{key}_from_url"):
        ss[f"_{key}_from_url"] = wanted
        if wanted in keys:
            ss[full_key] = wanted
    if ss.get(full_key) not in keys:
        ss[full_key] = keys[0]
    by_key = {r["key"]: r for r in runs}
    choice = st.selectbox(label, keys, key=full_key, format_func=lambda k: by_key[k]["label"])
    if st.query_params.get(RUN_PARAM) != choice:
        st.query_params[RUN_PARAM] = ss[f"_{key}_from_url"] = choice
    return by_key[choice], loaded[choice]


# ---- results ------------------------------------------------------------------------------------------
def reuse_note(run_dir) -> None:
    """"Reused from an identical run (started hh:mm)" above a run's results that another request computed."""
    from ui import reuse
    text = reuse.reuse_text(run_dir) if run_dir is not None else None
    if text:
        st.info(text, icon=":material/recycling:")


def models_table(result: dict, names: tuple[str, ...] | None = None) -> None:
    import pandas as pd
    models = result.get("models") or {}
    rows = []
    for name, m in models.items():
        if names and name not in names:
            continue
        rows.append({"model": model_label(name), "accuracy": m.get("accuracy"),
                     "watermark success": m.get("watermark_success"),
                     # text, so that a model nobody queried reads "—" and not "None"
                     "queries used": "—" if m.get("queries") is None else f"{int(m['queries']):,}"})
    if not rows:
        st.caption("No model has finished yet.")
        return
    if not any(r["queries used"] != "—" for r in rows):
        for r in rows:
            del r["queries used"]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"accuracy": st.column_config.ProgressColumn("accuracy", format="percent",
                                                                            min_value=0, max_value=1),
                                "watermark success": st.column_config.ProgressColumn(
                                    "watermark success", format="percent", min_value=0, max_value=1)})
    if any(r.get("queries used") == "—" for r in rows):
        st.caption("Queries used: how many inputs the thief sent to the victim's API. — : the model was "
                   "trained by its owner, not stolen, so it made no queries.")


QUERIES_95_NOTE = ("Queries for 95 %: how many secret triggers the owner must send to the stolen copy to "
                   "prove ownership with 95 % confidence. — : not proven even with every held-out trigger.")


def queries_text(n: int | None) -> str:
    """A query count for a table: "—" when ownership was not proven (None), never the word None."""
    return "—" if n is None else f"{int(n):,}"


# the suspects that are no model of a scheme (result.json "verification" keys)
SUSPECT_WORDS = {"clean": "an independently trained clean model (innocent)",
                 "clean_classic": f"the same innocent model, on the {CLASSIC.label}'s triggers",
                 "upload": "the uploaded suspect model"}


def verdict_subject(key: str) -> str:
    """The suspect of a verdict in words: a scheme's victim or stolen copy (the registry's words), the innocent
    suspect on a trigger set, the uploaded suspect; an unknown key as it is."""
    for s in SCHEMES.values():
        if key == s.stolen:
            return f"the stolen copy of the {s.victim_label} model"
        if key == s.name:
            return f"the {s.victim_label} model itself"
    if key in SUSPECT_WORDS:
        return SUSPECT_WORDS[key]
    set_name = key.removeprefix("clean_")
    if key != set_name and set_name not in BUILTIN_SETS and any(s.trigger_set == set_name for s in SCHEMES.values()):
        return f"the same innocent model, on {naming.set_label(set_name)}"
    return key


def accused(v: dict) -> bool:
    """An innocent suspect counts as accused when the test proves it (one meaning of proven everywhere)."""
    return is_proven(v)


def verdict_card(key: str, v: dict | None, alpha: float = 0.05, big: bool = False,
                 thief: str | None = None, subject: str | None = None) -> None:
    """A plain-words verdict; ``thief`` names the thief whose stolen copy is judged; ``subject`` the suspect
    (default: from the key)."""
    subject = subject or verdict_subject(key)
    if not v:
        st.info(f"No verification for {subject} yet" + (f" from {thief}." if thief else "."))
        return
    n_all, n95 = v.get("n_queries"), v.get("queries_for_95")
    conf = f"{100 * (1 - alpha):.0f} %"
    proven = is_proven(v)
    if thief and v.get("suspect_rate") is None and v.get("watermark_success") is not None:
        v = {**v, "suspect_rate": v["watermark_success"]}      # a thieves.json entry: its watermark kept
    with st.container(border=True):
        if thief:
            st.caption(f":material/person: Judges the copy stolen by **{thief}**.")
        if key == "clean" or key.startswith("clean_"):   # innocent suspects (on any trigger set)
            headline = (":red[:material/gpp_bad:] Falsely accused — the test would wrongly claim this "
                        "innocent model" if proven else
                        ":green[:material/verified_user:] Not accused — the test correctly leaves this "
                        "innocent model alone")
        elif proven:
            headline = (f":green[:material/verified:] Ownership proven with "
                        f"{n95 if n95 is not None else f'all {n_all or 0}'} queries, {conf} confidence")
        else:
            headline = (f":red[:material/cancel:] Not proven — {n_all or 'the'} queries were not enough for "
                        f"{conf} confidence")
        st.markdown(f"{'####' if big else '#####'} {headline}")
        st.markdown(verdict_words(subject, v, n_all))


def verdict_words(subject: str, v: dict, n_all: int | None = None) -> str:
    """What was tested, against which null rate, backed by how many innocent models, and what p means. The
    exact test's two conditions each get a line of their own (spec section 0): the binomial p, which falls with
    the number of queries, and the rank among the innocent models, one yes or no on the whole set."""
    p_value = v.get("p_value")
    if v.get("trigger_set") in {s.trigger_set for s in SCHEMES.values() if getattr(s, "serves_api", False)}:
        # an API's key (DAWN): the queries whose answers it flipped, each with its own recorded label
        answer = "the flipped label"
        text = (f"Suspect: **{subject}**. On {n_all or 'the'} queries whose answers the owner's API had flipped "
                f"(its register), it gave the flipped label **{pct(v.get('suspect_rate'))}** of the time")
    elif v.get("trigger_set") in {s.trigger_set for s in SCHEMES.values() if getattr(s, "labelled_key", False)}:
        # a key with its own random label per input (the margin-based watermark)
        answer = "the key's labels"
        text = (f"Suspect: **{subject}**. On {n_all or 'the'} secret key inputs, each with its own random label, it "
                f"gave that label **{pct(v.get('suspect_rate'))}** of the time")
    else:
        answer = "the watermark class"
        text = (f"Suspect: **{subject}**. On {n_all or 'the'} secret watermark queries it answered the watermark "
                f"class **{pct(v.get('suspect_rate'))}** of the time")
    if v.get("test", "welch") == "binomial" and v.get("null_rate") is not None:
        return text + _binomial_lines(v, answer, n_all)
    text += (f", a clean model **{pct(v.get('reference_rate'))}**" if v.get("reference_rate") is not None else "")
    text += (f" (to count as stolen it must beat that by more than {100 * v['margin']:g} percentage points)"
             if v.get("margin") and v.get("reference_rate") is not None else "")
    text += ". The paper's one-sided Welch t-test"
    meaning = "the chance of a gap this large between the two models if the suspect were innocent"
    if isinstance(p_value, (int, float)):
        return text + f": p = **{p_value:.2g}** with all queries ({meaning}; below 0.05 counts as proven)."
    return text + "."


def _binomial_lines(v: dict, answer: str, n_all: int | None) -> str:
    """The exact test's null rate, then one line per condition: ✓ or ✗, and its number."""
    from ewe.verify import innocents_needed   # scipy: not on the first page's import path
    alpha = v.get("alpha", 0.05)
    m = v.get("null_models") or 0
    text = (f". Models that never saw the watermark answer it at most **{pct(v['null_rate'])}** of the time "
            f"(the null rate, an upper bound from **{m} innocent model{'s' if m != 1 else ''}**"
            + (" — only the run's clean model: weak, build a population with `python -m ewe nulls`"
               if m <= 1 else "") + ").")

    def mark(ok: bool) -> str:
        return ":green[:material/check_circle:]" if ok else ":red[:material/cancel:]"
    p_binomial = v.get("binomial_p", v.get("p_value"))
    lines = []
    if isinstance(p_binomial, (int, float)):
        lines.append(f"{mark(p_binomial < alpha)} **Exact binomial test:** p = **{p_binomial:.2g}** with all "
                     f"{n_all or ''} queries (the chance that a model answering at the null rate hits this often "
                     f"by luck; below {alpha:g} passes)")
    if v.get("rank_p") is not None:
        ties = v.get("innocents_at_least") or 0
        outranks = v.get("outranks_innocents", v["rank_p"] < alpha)
        rank = (f"**Answered {answer} more often than all {m} innocent models** on the same queries" if ties == 0
                else f"**{ties} of the {m}** innocent models answered it at least as often on the same queries "
                     "(a copy must out-answer every one)") + f" (rank p = {v['rank_p']:.2g})"
        if m < innocents_needed(alpha):
            rank += f" — at least {innocents_needed(alpha)} are needed before any copy can be proven"
        lines.append(f"{mark(outranks)} {rank}")
    if not lines:
        return text
    return text + (" Proven needs both:" if len(lines) > 1 else "") + "\n\n" + "\n".join(f"- {line}" for line in lines)


def tests_side_by_side(shown: dict, other: dict) -> list[dict]:
    """One row per suspect: the verdict of each test (binomial and Welch) on the same queries."""
    def cell(v: dict | None) -> str:
        if not v:
            return "—"
        if v.get("t_undefined"):
            return "no verdict · t undefined (both models answered every query alike)"
        q = v.get("queries_for_95")
        return (f"{'proven' if is_proven(v) else 'not proven'} · p = {v['p_value']:.2g}"
                + (f" · {q} queries" if q is not None and is_proven(v) else ""))
    by_test = {}
    for ver in (shown, other):
        t = (next(iter(ver.values()), {}) or {}).get("test", "welch")
        by_test[t] = ver
    rows = []
    for key in shown:
        rows.append({"suspect": verdict_subject(key),
                     "exact binomial (innocent models)": cell(by_test.get("binomial", {}).get(key)),
                     "Welch t-test (clean model + margin)": cell(by_test.get("welch", {}).get(key))})
    return rows


def latest_thief(thieves: list[dict], result: dict) -> int:
    """Index in thieves.json of the thief whose copies result.json (and predictions.json) hold: the entry
    with result's thief, else the last one (record_thief appends the newest)."""
    mine = result.get("thief")
    for i in range(len(thieves) - 1, -1, -1):
        if mine is not None and thieves[i].get("thief") == mine:
            return i
    return len(thieves) - 1


def thief_name(thieves: list[dict], i: int, total: int | None = None) -> str:
    """'thief 2 of 3 (seed 20001, soft labels, mlp student)': which thief, in words (of ``total`` thieves,
    default as many as ``thieves``)."""
    t = thieves[i].get("thief") or {}
    bits = [f"seed {t['seed']}" if t.get("seed") is not None else None,
            f"{t['labels']} labels" if t.get("labels") else None,
            f"{t['student']} student" if t.get("student") else None,
            f"{t['query_budget']:,} queries" if t.get("query_budget") else None]
    bits = [b for b in bits if b]
    return f"thief {i + 1} of {total or len(thieves)}" + (f" ({', '.join(bits)})" if bits else "")


def thieves_summary(thieves: list[dict]) -> str:
    """'Proven for k of n thieves' per stolen copy, over every thief in thieves.json."""
    parts = []
    for name in naming.stolen_copies({c: 1 for d in thieves for c in d.get("copies") or {}}):
        got = [d["copies"][name] for d in thieves if name in (d.get("copies") or {})]
        if got:
            parts.append(f"{model_label(name)}: proven for **{sum(map(is_proven, got))} of "
                         f"{len(got)}** thieves")
    return (f"Across all {len(thieves)} thieves that stole this run — " + "; ".join(parts) + ".") if parts else ""


def thieves_table(thieves: list[dict]) -> list[dict]:
    """One row per thief (what it got back, its seed), one column per stolen copy: proven from how many
    queries, or not proven with its p. The Attack page's side-by-side thieves read here at a glance."""
    copies = naming.stolen_copies({c: 1 for d in thieves for c in d.get("copies") or {}})
    rows = []
    for d in thieves:
        t = d.get("thief") or {}
        row = {"thief": f"given {naming.thief_words(t)}"
                        + (f" · seed {t['seed']}" if t.get("seed") is not None else "")}
        for name in copies:
            v = (d.get("copies") or {}).get(name)
            if not v:
                cell = "—"
            elif is_proven(v):
                n95 = v.get("queries_for_95")
                cell = f"proven · {n95} queries" if n95 is not None else "proven"
            else:
                p = v.get("p_value")
                cell = "not proven" + (f" · p = {p:.2g}" if isinstance(p, (int, float)) else "")
            row[model_label(name)] = cell
        rows.append(row)
    return rows


def scheme_families() -> tuple[list, list]:
    """The registry's watermarks in two families: in the model's weights, and of the prediction API
    (``Scheme.serves_api``: DAWN). Schemes without a watermark are ``unmarked_family``'s."""
    api = [s for s in SCHEMES.values() if getattr(s, "serves_api", False)]
    return [s for s in SCHEMES.values() if s not in api and not getattr(s, "own_test", False)], api


def unmarked_family() -> list:
    """The registry's schemes that mark nothing and judge a suspect by their own test (``Scheme.own_test``:
    dataset inference)."""
    return [s for s in SCHEMES.values() if getattr(s, "own_test", False)]


def families_measured(tables: dict, in_model: list, at_api: list, unmarked: list = ()) -> str:
    """What this lab measured, per family, from the published side-by-side tables (ewe.results.studies
    .side_by_side; rows keyed by scheme name): each dataset's accuracy cost per scheme and the share of copies
    proven within 100 queries per kind of thief. A family without published rows gets the words alone."""
    everyone = [*in_model, *at_api, *unmarked]
    labels = {s.name: s.label for s in everyone}
    rivals = {s.name for s in everyone if not s.default}
    # the datasets whose runs had a rival scheme beside EWE (all of them when none had)
    shown = {d: t for d, t in tables.items() if rivals & {r.get("scheme") for r in t.get("rows") or []}} or tables
    lines = []
    for dataset, table in shown.items():
        rows = [r for r in table.get("rows") or [] if r.get("scheme") in labels]
        order = [n for n in labels if any(r["scheme"] == n for r in rows)]
        cost = {r["scheme"]: r.get("accuracy_cost_median") for r in rows}
        parts = [f"{labels[n]} {100 * cost[n]:+.1f}" for n in order if cost.get(n) is not None]
        text = f"**{naming.PRETTY.get(dataset, dataset)}** ({table.get('setting', dataset)}): " + (
            "honest users' accuracy drop in points (median over victims): " + ", ".join(parts) + ". " if parts else "")
        for thief in dict.fromkeys(r["thief"] for r in rows):
            got = {r["scheme"]: r for r in rows if r["thief"] == thief}
            text += (f"Proven within 100 queries, thief *{thief}*: "
                     + ", ".join(f"{labels[n]} {got[n]['proven_100']}/{got[n]['copies']}" for n in order if n in got)
                     + ". ")
        lines.append(text.strip())
    names = {r.get("scheme") for t in tables.values() for r in t.get("rows") or []}
    for schemes in (in_model, at_api, unmarked):
        missing = [s.label for s in schemes if s.name not in names and not s.default]   # a rival not run yet
        if missing:
            lines.append(f"{', '.join(missing)}: not in the published runs yet (the numbers appear here once "
                         "`bench/publish.py --runs` has them).")
    return ("**What this lab measured** (stored runs, several thieves of each kind per victim; the drop is the "
            "victim's accuracy against its clean model, for an API its answers' against the model's own; all "
            "datasets on the Trade-offs page and in `docs/RESULTS.md` §1):\n" + "\n".join(f"- {line}" for line in lines))


VICTIM_DIAGNOSTICS = ("defended", "ablation_no_snnl", "plain_watermark")


def entanglement_view(run: dict, key: str, projection: bool = True) -> None:
    """Where the watermark sits in each SNNL layer: projections before/after the watermark phase for one
    victim (if ``projection``), and the per-layer trigger/target gap of every diagnosed model (victims
    and stolen copies)."""
    from ui import charts   # here, not at the top: plotly would slow the first (Learn) page's start-up
    diag = run.get("diagnostics") or {}
    geometry = ((run.get("result") or {}).get("diagnostics")) or {}
    victims = [m for m in VICTIM_DIAGNOSTICS if m in diag]
    if not victims:
        st.caption("This run has no entanglement diagnostics (it stopped before a watermarked model was done).")
        return
    if projection:
        choice = st.radio("Projection of", victims, key=key, horizontal=True,
                          format_func=model_label)
        before = diag.get("before_classic" if diag[choice].get("trigger_set") == "classic" else "before") or {}
        st.plotly_chart(charts.projection_figure(before.get("projection"), diag[choice].get("projection"),
                                                 model_label(choice)), key=key + "_proj")
    # optimised-trigger models first, then the classic watermark with its own (classic) baseline
    shown = [m for m in ("before", "defended", "extracted", "ablation_no_snnl", "ablation_extracted",
                         "before_classic", "plain_watermark", "plain_extracted") if m in geometry]
    st.plotly_chart(charts.geometry_figure(geometry, shown), key=key + "_geo")
    st.caption(entanglement_summary(geometry))


def entanglement_summary(geometry: dict) -> str:
    """One sentence on the last SNNL layer: how far SNNL closed the gap, and whether the thief's copy kept it."""
    def gap(name: str) -> float | None:
        geo = (geometry.get(name) or {}).get("geometry")
        return geo[-1]["gap"] if geo else None
    parts = [f"{label} {v:.3f}" for label, v in (("pre-trained", gap("before")),
                                                  *((model_label(m), gap(m)) for m in ("defended", "ablation_no_snnl",
                                                                                       "extracted")))
             if v is not None]
    text = "Gap in the last SNNL layer: " + ", ".join(parts) + "." if parts else ""
    if gap("defended") is not None and gap("extracted") is not None and gap("before") is not None:
        kept = gap("before") - gap("extracted")
        closed = gap("before") - gap("defended")
        share = kept / closed if closed > 1e-9 else 0.0
        text += (f" SNNL closed {closed:.3f} of the gap in the victim; the stolen copy kept "
                 f"{max(0.0, share):.0%} of that closing. The thief never sees a trigger, so it only keeps "
                 "what its victim's answers on clean data carry.")
    return text


def thieves_sentence(thieves: list[dict]) -> str:
    """How many of the thieves' copies were proven stolen, per victim, and the range of watermark kept."""
    parts = []
    for name in naming.stolen_copies({c: 1 for d in thieves for c in d.get("copies") or {}}):
        got = [d["copies"][name] for d in thieves if name in d.get("copies", {})]
        if got:
            wm = [c["watermark_success"] for c in got]
            parts.append(f"{model_label(name)}: proven for {sum(map(is_proven, got))} of "
                         f"{len(got)} thieves (kept {pct(min(wm))}–{pct(max(wm))})")
    return ("; ".join(parts) + ". Same victim, same settings, only the thief's seed differs: the spread is "
            "the thief's luck, so judge a watermark over several thieves.") if parts else ""


def trigger_gallery(run_dir: str | Path | None, n: int = 8) -> bool:
    """The run's triggers: classic (raw) and optimised. Returns False when the run has none yet."""
    tensors = judging.load_triggers(run_dir) if run_dir else None
    if not tensors:
        return False
    rows = [("Classic watermark triggers (as taken from the source)", tensors.get("raw_train")),
            ("EWE triggers after optimisation (trained on)", tensors.get("train")),
            ("Held-out EWE triggers (never trained on; used to verify)", tensors.get("heldout"))]
    for caption, x in rows:
        if x is not None and len(x):
            st.image(image_strip(x[:n]), caption=caption, width="stretch")
    run = judging.read_run(run_dir) or {}
    if (run.get("config") or {}).get("dataset") == "speech-commands":
        speech_examples(str(run_dir))
    return True


@st.cache_data(show_spinner="Rebuilding audio from the spectrogram …", max_entries=8)
def _speech_material(run_dir: str) -> tuple[dict, dict | None]:
    from ui.audio import source_target_clips, trigger_example
    return source_target_clips(run_dir), trigger_example(run_dir)


def speech_examples(run_dir: str) -> None:
    """Listen to the source and target words and to a triggered clip; see where the patch sits."""
    clips, trig = _speech_material(run_dir)
    cols = st.columns(2)
    for col, side in zip(cols, ("source", "target")):
        col.markdown(f"**{clips[side]['label']}**" if clips.get(side) else "")
        for _, wav in (clips.get(side) or {}).get("clips", []):
            col.audio(wav, format="audio/wav")
    if clips.get("message"):
        st.info(clips["message"])
    if trig:
        st.plotly_chart(trig["figure"], key=f"trigger-spec-{run_dir}")
        if trig.get("wav"):
            st.audio(trig["wav"], format="audio/wav")
        st.caption(trig["caption"] + " (audio rebuilt from the log-mel features with Griffin-Lim: rough, "
                   "but the patch is audible)")


def image_strip(x, scale: int = 3, gap: int = 2) -> np.ndarray:
    """[N, C, H, W] tensor in [0, 1] (or any range) -> one uint8 image strip, enlarged."""
    a = x.detach().cpu().float().numpy()[:, 0]
    if a.shape[1] > a.shape[2] * 1.2:       # speech features [T, F]: frequency up, time right
        a = a.transpose(0, 2, 1)[:, ::-1]
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo + 1e-8) if (lo < 0 or hi > 1) else a
    tiles = [np.kron(t, np.ones((scale, scale))) for t in a]
    h = tiles[0].shape[0]
    pad = np.ones((h, gap))
    out = np.concatenate([np.concatenate([t, pad], 1) for t in tiles], 1)[:, :-gap]
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def show_config_error(exc: Exception) -> None:
    st.error(f"These settings cannot run: {exc}")


def next_link(path: str, label: str, run: str | None = None) -> None:
    """st.page_link to another page, carrying ``run`` (a run key) so that page opens that run; plain text
    when the page runs outside app.py's navigation (tests)."""
    from streamlit.errors import StreamlitAPIException
    params = None
    if run is not None:
        params = {**st.query_params.to_dict(), RUN_PARAM: run}
    try:
        st.page_link(path, label=label, icon=":material/arrow_forward:", query_params=params)
    except StreamlitAPIException:
        st.markdown(f"→ {label}" + (f" (run `{run}`)" if run else ""))
