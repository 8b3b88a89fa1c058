"""Session state, the shared job registry and URL query parameters.

Settings live in ``st.session_state`` under the keys of ``FIELDS`` (the widgets use those keys) and are
mirrored into ``st.query_params`` on every run, so a copied link reproduces the configuration. Values from
the URL are parsed and range-checked; a bad one is reported and replaced by the preset's value.
"""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any, Callable

import streamlit as st

from ewe.config import ATTACKER_DATA, CLEAN_SCHEDULES, DATASETS
from ewe.results.schema import RESULT_FILE
from ewe.watermarks.schemes import SCHEMES
from ui import executors, presets, workspaces
from ui.jobs import JobRegistry, default_max_running, default_torch_threads

SHARED = ("dataset", "preset", "seed")
TRAIN = ("tau", "ratio", "kappa", "trigger", "source", "target", "epochs", "w_epochs", "attacker_data",
         "clean_schedule")
# the watermarking schemes a run trains (names of ewe.watermarks.schemes.SCHEMES) and the settings that only a
# chosen scheme reads: scheme name -> its RunConfig field (passed on only when that scheme is chosen)
SCHEME_SETTINGS = {s.name: s.setting for s in SCHEMES.values() if s.setting}   # from the registry
SCHEME_FIELDS = ("schemes", *SCHEME_SETTINGS.values())
FIELDS = SHARED + TRAIN + SCHEME_FIELDS

# a URL's values: (parse, min, max); the upper bounds of the config's settings are the app's LIMITS
RANGES: dict[str, tuple[Callable[[str], Any], float | None, float | None]] = {
    "seed": (int, 0, 2**31 - 1),
    "tau": (float, 0.0, presets.LIMITS["temperature"]),
    "ratio": (float, 0.0, 100.0),
    "kappa": (float, 0.0, presets.LIMITS["kappa"]),
    "source": (int, 0, 9),
    "target": (int, 0, 9),
    "epochs": (int, 0, presets.LIMITS["epochs"]),
    "w_epochs": (float, 0.0, presets.LIMITS["w_epochs"]),
    "dawn_rate": (float, 0.0, 0.5),
    "mbw_eps": (float, 0.0, 0.5),
    "di_samples": (int, 2, 10_000),
}
CHOICES = {"dataset": lambda: DATASETS, "preset": presets.preset_names, "trigger": lambda: ("ood", "in"),
           "attacker_data": lambda: ATTACKER_DATA, "clean_schedule": lambda: CLEAN_SCHEDULES}

_override_registry: JobRegistry | None = None


def set_registry(registry: JobRegistry | None) -> None:
    """Tests: use this registry (e.g. a synchronous one) instead of the process-wide one."""
    global _override_registry
    _override_registry = registry


@st.cache_resource(show_spinner=False)
def _process_registry() -> JobRegistry:
    """Local threads, or Ray tasks when a cluster is named at start-up (raises ConfigError if unreachable;
    not cached then, so the next page tries again). On Ray a job asks for EWE_APP_TORCH_THREADS CPUs (default
    1) and as many run at once as the cluster has room for, unless EWE_APP_MAX_RUNS says otherwise."""
    if executors.ray_address() is None:
        return JobRegistry(max_running=default_max_running(), torch_threads=default_torch_threads())
    threads = int(os.environ.get("EWE_APP_TORCH_THREADS") or 1)
    ex = executors.from_settings(threads=threads)
    max_running = int(os.environ["EWE_APP_MAX_RUNS"]) if os.environ.get("EWE_APP_MAX_RUNS") else ex.slots()
    return JobRegistry(max_running=max_running, torch_threads=threads, executor=ex)


def registry() -> JobRegistry:
    return _override_registry or _process_registry()


WS_PARAM = "ws"
VIEW_PARAM = "view"          # a read-only view's token (workspaces.view_token)
_WS_OK = re.compile(r"[A-Za-z0-9_-]{6,64}")


def session_id() -> str:
    """The workspace id: whose runs and jobs this tab sees. It lives in the URL (``?ws=...``) as well as in
    the session, so a reload, a second tab opened with the same link and a server restart all find the same
    run folders (``runs_root()/<ws>``) and running jobs; another id sees none of them. A new visitor gets a
    fresh random id (64 bits: not guessable)."""
    ss = st.session_state
    if "sid" not in ss:
        shown = workspaces.view_workspace(st.query_params.get(VIEW_PARAM, ""))
        if shown and _WS_OK.fullmatch(shown):      # a read-only view: the workspace, never its id in the URL
            ss["sid"], ss["read_only"], ss["view_token"] = shown, True, st.query_params[VIEW_PARAM]
        else:
            raw = st.query_params.get(WS_PARAM, "")
            ss["sid"] = raw if _WS_OK.fullmatch(raw or "") else secrets.token_hex(8)
    return ss["sid"]


def read_only() -> bool:
    """Whether this tab is a read-only view (``?view=...``): runs, charts and verdicts, no Start, Cancel or
    upload, and the workspace id nowhere on the page."""
    return bool(st.session_state.get("read_only"))


# ---- settings -----------------------------------------------------------------------------------------
def parse_param(name: str, raw: str) -> Any:
    """A URL value as the widget's type; ValueError with what is allowed."""
    if name == "schemes":
        from ewe.config import ConfigError
        from ewe.watermarks.schemes import check_schemes
        try:
            return check_schemes(raw.split(","))
        except ConfigError as exc:
            raise ValueError(f"`{name}={raw}`: {exc}") from None
    if name == "mea_sources":       # "" (automatic) or up to two classes; the config checks the pair
        try:
            classes = [int(c) for c in raw.split(",") if c.strip()]
        except ValueError:
            raise ValueError(f"`{name}={raw}` is not a list of class numbers") from None
        if len(classes) > 2 or not all(0 <= c <= 9 for c in classes):
            raise ValueError(f"`{name}={raw}` is not two classes 0..9")
        return classes
    if name in CHOICES:
        allowed = tuple(CHOICES[name]())
        if raw not in allowed:
            raise ValueError(f"`{name}={raw}` is not one of {', '.join(allowed)}")
        return raw
    kind, lo, hi = RANGES[name]
    try:
        value = kind(float(raw)) if kind is int and float(raw).is_integer() else kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}={raw}` is not a number") from None
    if value != value or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"`{name}={raw}` is outside {lo:g}..{hi:g}")
    return value


def init_settings() -> None:
    """First run of a session: settings from the URL, else from the preset. Later runs: keep widget
    values alive across pages (Streamlit drops the state of widgets that a page does not draw)."""
    ss = st.session_state
    if ss.get("_settings_ready"):
        # Streamlit may still drop a widget's state: seen in Chromium when a run's live panel (a fragment)
        # ended while the user was on another page after a reload, which reset every Train setting to 0.
        # A plain copy taken at the end of each run (sync_query_params) puts them back.
        for k, v in (ss.get("_settings_copy") or {}).items():
            if k not in ss:
                ss[k] = v
        for k in list(ss.keys()):
            if k in FIELDS or str(k).startswith("keep_"):
                ss[k] = ss[k]
        return
    problems = []
    if st.query_params.get(VIEW_PARAM) and not read_only():
        ss["_ws_problem"] = (f"This read-only link (`{VIEW_PARAM}=...`) shows no workspace on this server (it may "
                             "have been made on another one), so this tab has a new, empty workspace.")
    raw_ws = st.query_params.get(WS_PARAM)
    if raw_ws is not None and not _WS_OK.fullmatch(raw_ws):
        ss["_ws_problem"] = (f"Link parameter ignored: `{WS_PARAM}={raw_ws}` is not a workspace id (6-64 "
                             "letters, digits, - or _), so this tab has a new, empty workspace.")
    from_url: dict[str, Any] = {}
    for name in FIELDS:
        if name in st.query_params:
            try:
                from_url[name] = parse_param(name, st.query_params[name])
            except ValueError as exc:
                problems.append(str(exc))
    dataset = from_url.get("dataset", presets.default_dataset())
    preset_name = from_url.get("preset", "quick")
    values = {"dataset": dataset, "preset": preset_name, "seed": 0,
              **presets.preset_defaults(dataset, preset_name), **scheme_defaults(), **from_url}
    for k, v in values.items():
        ss[k] = v
    ss["_url_problems"] = problems
    ss["_settings_ready"] = True


def scheme_defaults() -> dict[str, Any]:
    """The scheme picker's first values: the default schemes (what a run trains when it does not list them),
    MEA-Defender's automatic source classes, DAWN's default flip rate, the margin-based watermark's radius,
    dataset inference's m."""
    from ewe.config import RunConfig
    from ewe.watermarks.schemes import check_schemes
    return {"schemes": check_schemes("default"), "mea_sources": [], "dawn_rate": float(RunConfig.dawn_rate),
            "mbw_eps": float(RunConfig.mbw_eps), "di_samples": int(RunConfig.di_samples)}


def reset_to_preset() -> None:
    """on_change of dataset / preset: the Train settings take the new preset's values."""
    ss = st.session_state
    for k, v in presets.preset_defaults(ss["dataset"], ss["preset"]).items():
        ss[k] = v


def settings() -> dict[str, Any]:
    return {k: st.session_state.get(k) for k in FIELDS}


def sync_query_params() -> None:
    """Mirror the settings into the URL (only when something changed), and keep a plain copy of them."""
    st.session_state["_settings_copy"] = {k: v for k, v in st.session_state.items()
                                          if k in FIELDS or (str(k).startswith("keep_") and k != "keep_seen_uploads")}
    want = {k: _fmt(st.session_state.get(k)) for k in FIELDS if st.session_state.get(k) is not None}
    if read_only():
        want[VIEW_PARAM] = st.session_state["view_token"]
        if WS_PARAM in st.query_params:
            del st.query_params[WS_PARAM]
    else:
        want[WS_PARAM] = session_id()
    have = {k: st.query_params.get(k) for k in want}
    if want != have:
        st.query_params.update(want)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return str(v)


def config_overrides(s: dict[str, Any] | None = None) -> dict[str, Any]:
    s = s or settings()
    return {"seed": int(s["seed"]), "temperature": [float(s["tau"])] * 3, "kappa": [float(s["kappa"])] * 3,
            "ratio": float(s["ratio"]), "trigger": s["trigger"], "source": int(s["source"]),
            "target": int(s["target"]), "epochs": int(s["epochs"]), "w_epochs": float(s["w_epochs"]),
            "attacker_data": s.get("attacker_data", "same"), "clean_schedule": s.get("clean_schedule", "shuffled"),
            **scheme_overrides(s)}


def scheme_overrides(s: dict[str, Any]) -> dict[str, Any]:
    """The chosen schemes as RunConfig values: ``schemes`` (None when they are the default ones, so such a
    run's config is the same as before the picker existed), and each chosen scheme's own setting
    (SCHEME_SETTINGS) when it has a value and RunConfig has that field."""
    from dataclasses import fields

    from ewe.config import RunConfig
    from ewe.watermarks.schemes import check_schemes
    chosen = s.get("schemes")
    if chosen is None:
        return {}
    chosen = list(chosen)
    out: dict[str, Any] = {"schemes": None if chosen == check_schemes("default") else chosen}
    known = {f.name for f in fields(RunConfig)}
    for scheme, field in SCHEME_SETTINGS.items():
        value = s.get(field)
        if scheme in chosen and field in known and value not in (None, []):
            out[field] = list(value) if isinstance(value, (list, tuple)) else value
    return out


# ---- this session's runs ------------------------------------------------------------------------------
def remember(key: str, value: Any) -> None:
    st.session_state[key] = value


def session_runs() -> list[dict[str, Any]]:
    """Every run folder of this workspace, newest first, read from disk: trained (train jobs, sweep
    points) or uploaded. A run whose job is still in the registry carries the job's status."""
    reg, sid = registry(), session_id()
    jobs = {j.out_dir.resolve(): j for j in reg.jobs(owner=sid, kind="train") if j.out_dir is not None}
    out = []
    pending = {d: j.meta["config"] for d, j in jobs.items() if j.active and j.meta.get("config")}
    for r in workspaces.workspace_runs(sid, {d: j.id for d, j in jobs.items() if j.active}, pending):
        job = jobs.get(r["dir"].resolve())
        status = (job.status if job is not None else "uploaded" if r["origin"] == "uploaded"
                  else "finished" if (r["dir"] / RESULT_FILE).exists() else "incomplete")
        # a queued run has no config.json yet: its job's settings stand in (the Runs page's row and comparison)
        config = (job.meta.get("config") if job is not None else None) or None
        out.append({**r, "job": job.id if job is not None else None, "status": status, "job_config": config})
    return out


def run_key(folder: str | Path) -> str | None:
    """A run folder's key in this workspace's run lists (its path inside the workspace folder)."""
    try:
        return Path(folder).resolve().relative_to(workspaces.workspace_dir(session_id()).resolve()).as_posix()
    except ValueError:
        return None


def latest_job(kind: str, key: str):
    """The job of ``kind`` a page shows: this workspace's newest active one, else its newest one (so a
    reload or a second tab re-attaches to a running job, with its live panel and Cancel). Remembered
    under ``key`` in the session."""
    mine = sorted(registry().jobs(owner=session_id(), kind=kind), key=lambda j: j.created)
    active = [j for j in mine if j.active]
    job = (active or mine or [None])[-1]
    st.session_state[key] = job.id if job is not None else None
    return job
