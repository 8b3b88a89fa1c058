"""The app's bridge to the ``ewe`` library: configs, run folders, job functions. No Streamlit here.

Job functions (``train_job``, ``attack_job``, ``sweep_job``) run in worker threads of ``ui.jobs`` and
only talk to the library and to their ``JobContext``. Tests may replace ``PIPELINE`` with a fake module
that has the same ``train_victims`` / ``steal`` / ``run`` signatures.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from ewe.callbacks import part_of
from ewe.config import PRESETS, TINY, ConfigError, RunConfig, preset, tiny
from ewe.results import sidebyside, studies
from ewe.results.runs import Run
from ewe.results.schema import PREDICTIONS_FILE, RESULT_FILE, TRIGGERS_FILE
from ewe.watermarks.schemes import SCHEMES, STOLEN_COPIES, VICTIMS, check_schemes

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = None          # None = ewe.experiments.pipeline (imported lazily: it imports torch); tests may swap it

PRETTY = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "digits": "Digits (built-in, offline)",
          "speech-commands": "Speech Commands"}
# every registered scheme's victim and stolen copy by its registry label; the built-in ones keep their
# shorter names (the app's charts and tests use them)
MODEL_LABELS = {**{n: label for s in SCHEMES.values() for n, label in ((s.name, s.label),
                                                                        (s.stolen, f"stolen from {s.label}"))},
                "pretrain": "pre-training (shared)", "defended": "defended (EWE)",
                "plain_watermark": "plain watermark", "ablation_no_snnl": "ablation: no SNNL",
                "clean": "clean", "independent_clean": "independent clean",
                "extracted": "stolen from defended", "plain_extracted": "stolen from plain watermark",
                "ablation_extracted": "stolen from ablation"}
STUDENTS = ("same as victim", "conv2_wide", "conv2_narrow", "mlp")


def stolen_copies(d: dict | None) -> list[str]:
    """The stolen copies (of every registered scheme, in registry order) that ``d`` has: result.json's
    "models" or "verification", or a thief's "copies". A run without rival schemes has the built-in three."""
    return [c for c in VICTIMS.values() if c in (d or {})]


def scheme_models(models: dict | None) -> list[str]:
    """Every victim and stolen copy ``models`` (result.json's "models") has: each victim before its copy."""
    return [n for v, c in VICTIMS.items() for n in (v, c) if n in (models or {})]


def set_label(set_name: str) -> str:
    """A trigger set in words, from the scheme registry: the label of the first scheme judged on it."""
    own_test = next((s.label for s in SCHEMES.values() if s.own_test and s.name == set_name), None)
    if own_test:   # a scheme's own test, not a trigger set (dataset inference's key is its scheme's name)
        return f"{own_test}'s test on the owner's private points"
    owner = next((s.label for s in SCHEMES.values() if s.trigger_set == set_name), None)
    return f"{owner}'s {set_name} triggers" if owner else f"the {set_name} triggers"


def pipeline():
    global PIPELINE
    if PIPELINE is None:
        from ewe.experiments import pipeline as p
        PIPELINE = p
    return PIPELINE


def tiny_enabled() -> bool:
    return os.environ.get("EWE_APP_TINY", "") not in ("", "0", "false")


def preset_names() -> tuple[str, ...]:
    return PRESETS + (("tiny",) if tiny_enabled() else ())


def default_dataset() -> str:
    return "mnist" if os.environ.get("EWE_DATA_DIR") else "digits"


def make_config(dataset: str, preset_name: str, **overrides: Any) -> RunConfig:
    """The preset with the user's overrides, validated (raises ConfigError saying what to change). "tiny" is
    ewe.config.TINY, not a library preset: its run folder says "custom"."""
    cfg = tiny(dataset, **overrides) if preset_name == "tiny" else preset(dataset, preset_name, **overrides)
    if cfg.schemes is not None:          # the scheme names too, here and not only when the run starts
        check_schemes(cfg.schemes)
    return cfg


def preset_defaults(dataset: str, preset_name: str) -> dict[str, Any]:
    """The Train page's widget values for a dataset and preset.

    Read from ewe.config.preset_values without building a RunConfig: validation imports torch (the
    model registry), which would cost seconds on the first page. tests/app/test_backend.py checks that
    this equals the validated preset for every dataset and preset."""
    try:
        return _fast_defaults(dataset, preset_name)
    except Exception:  # the tables changed shape: fall back to the validated preset
        return _validated_defaults(dataset, preset_name)


def _fast_defaults(dataset: str, preset_name: str) -> dict[str, Any]:
    from ewe.config import preset_values
    v = preset_values(dataset, "quick" if preset_name == "tiny" else preset_name)
    if preset_name == "tiny":
        v.update(TINY)
    batch = float(v["batch_size"])
    tau = v["temperature"][0] if "temperature" in v else 100.0 / _first(v["reference_T"])
    kappa = v["kappa"][0] if "kappa" in v else _first(v["reference_kappa"]) / batch
    return {"tau": float(tau), "kappa": float(kappa), "ratio": float(v["ratio"]), "trigger": v["trigger"],
            "source": int(v["source"]), "target": int(v["target"]), "epochs": int(v["epochs"]),
            "w_epochs": float(v["w_epochs"]), "attacker_data": v.get("attacker_data", RunConfig.attacker_data),
            "clean_schedule": v.get("clean_schedule", RunConfig.clean_schedule)}


def _first(x) -> float:
    return float(x[0] if isinstance(x, (list, tuple)) else x)


def _validated_defaults(dataset: str, preset_name: str) -> dict[str, Any]:
    try:
        cfg = make_config(dataset, preset_name)
    except ConfigError:
        cfg = preset("digits", "quick")
    return {"tau": float(cfg.temperature[0]), "kappa": float(cfg.kappa[0]), "ratio": float(cfg.ratio),
            "trigger": cfg.trigger, "source": int(cfg.source), "target": int(cfg.target),
            "epochs": int(cfg.epochs), "w_epochs": float(cfg.w_epochs), "attacker_data": cfg.attacker_data,
            "clean_schedule": cfg.clean_schedule}


def class_names(dataset: str) -> list[str]:
    try:
        from ewe.data import class_names as names
        return names(dataset)
    except Exception:
        return [str(i) for i in range(10)]


# ---- data availability -------------------------------------------------------------------------------
def data_note(dataset: str, short: bool = False) -> tuple[str, str]:
    """(level, text) describing which data a run of ``dataset`` will use and how to get the full sets."""
    env = os.environ.get("EWE_DATA_DIR", "")
    if short:
        level, _ = data_note(dataset)
        if dataset == "digits":
            return level, ("Data: **built-in digits** (offline demo). Full datasets: set `EWE_DATA_DIR` "
                           "(see the Train page).")
        if env:
            return level, f"Data: **{PRETTY[dataset]}** from `{env}`."
        return level, (f"Data: **{PRETTY[dataset]}** needs `EWE_DATA_DIR` or a download; offline, use "
                       "digits.")
    how = ("To use the full datasets, start the app with `EWE_DATA_DIR=/path/to/data make run` (folders "
           "`mnist/`, `fashion-mnist/`, `speech_commands/`), or let the app download them into "
           "`~/.cache/ewe` when the machine is online.")
    if dataset == "digits":
        return "info", ("Data in use: **scikit-learn's bundled 8×8 digits** (1,797 images upsampled to "
                        "28×28), built in and offline; OOD triggers are patches of its sample photos. "
                        + how)
    if env:
        return "info", f"Data in use: **{PRETTY[dataset]}** from the data directory `{env}` (EWE_DATA_DIR)."
    cache = Path(os.environ.get("EWE_CACHE_DIR", "") or Path.home() / ".cache" / "ewe")
    if cache.exists() and any(cache.iterdir()):
        return "info", f"Data in use: **{PRETTY[dataset]}** from the cache `{cache}` (or a download)."
    return "warning", (f"No data directory is set: **{PRETTY[dataset]}** will be downloaded, which fails "
                       "offline. " + how + " Offline, pick **digits**.")


# ---- run folders ----------------------------------------------------------------------------------
def runs_root() -> Path:
    return Path(os.environ.get("EWE_APP_RUNS_DIR", "") or ROOT / "runs")


# The run cache (ewe.results.cache, ui/reuse.py) beside the workspaces: a name no workspace id can have.
# 4 GB by default: a digits quick run is 17 MB, MNIST's reference preset about 60 MB (see DEFAULT_MAX_UPLOAD_MB);
# the files are hard links, so a run that 30 workspaces reused is on disk once.
DEFAULT_CACHE_MB = 4096


def run_cache_enabled() -> bool:
    return os.environ.get("EWE_APP_RUN_CACHE", "1") not in ("0", "false")


def run_cache():
    """The app's run cache: ``runs_root()/.run-cache``, bounded by ``EWE_APP_CACHE_MB``."""
    from ewe.results.cache import RunCache
    try:
        mb = max(1.0, float(os.environ.get("EWE_APP_CACHE_MB", "") or DEFAULT_CACHE_MB))
    except ValueError:
        mb = DEFAULT_CACHE_MB
    return RunCache(runs_root() / ".run-cache", int(mb * 2**20))


def new_run_dir(session: str, cfg: RunConfig, label: str | None = None) -> Path:
    stamp = stamp_now()
    return claim_new_dir(runs_root() / _safe(session) / f"{stamp}-{cfg.dataset}-{label or cfg.preset}-s{cfg.seed}")


def claim_new_dir(path: Path) -> Path:
    """Create and return a folder that did not exist: ``path``, else ``path-2``, ``path-3``, ... A run never
    reuses a folder (two runs in one folder would mix their files). ``mkdir`` without ``exist_ok`` is the
    atomic test, so two sessions or threads asking for the same name at once still get two folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate, k = path, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            k += 1
            candidate = path.with_name(f"{path.name}-{k}")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(text))[:64] or "session"


def workspace_dir(workspace: str) -> Path:
    return runs_root() / _safe(workspace)


# A read-only view of a workspace (a teacher's, shown to a class): its link carries a token instead of the
# workspace id, which would let anyone cancel or delete the workspace's runs. The token is an HMAC of the id
# under this server's secret (runs_root()/.view-secret, made once): nothing is written per workspace, and
# deleting the secret file revokes every view link at once.
VIEW_SECRET = ".view-secret"
_TOKEN_OK = re.compile(r"[0-9a-f]{32}")


def _view_secret() -> bytes:
    path = runs_root() / VIEW_SECRET
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:          # another session made it first
            return path.read_bytes()
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        return path.read_bytes()


def view_token(workspace: str) -> str:
    """The token of ``workspace``'s read-only view (the same ever after, on this server)."""
    return hmac.new(_view_secret(), workspace.encode(), hashlib.sha256).hexdigest()[:32]


def view_workspace(token: str) -> str | None:
    """The workspace a read-only token shows, or None for a token that names none on this server."""
    if not _TOKEN_OK.fullmatch(token or "") or not runs_root().is_dir():
        return None
    for folder in runs_root().iterdir():
        if folder.is_dir() and not folder.name.startswith(".") and hmac.compare_digest(view_token(folder.name),
                                                                                        token):
            return folder.name
    return None


def stamp_now() -> str:
    """Folder-name time stamp to the millisecond: run lists sort by it (two runs a second apart or less
    still list newest first)."""
    now = time.time()
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"


def upload_dir(workspace: str, filename: str) -> Path:
    """Where an uploaded run folder goes: its name keeps the upload time and the file's name (the run lists
    show both, also after a restart)."""
    return workspace_dir(workspace) / f"uploaded-{stamp_now()}-{_safe(Path(filename).stem)[:40]}"


_STAMP = re.compile(r"(\d{8}-\d{6})(?:\.(\d{1,6}))?")


def run_time(folder: Path) -> float:
    """When a run folder was made: the stamp in its name (``new_run_dir``, uploads), else its mtime."""
    m = _STAMP.search(folder.name)
    if m:
        try:
            return time.mktime(time.strptime(m.group(1), "%Y%m%d-%H%M%S")) + float(f"0.{m.group(2) or 0}")
        except ValueError:
            pass
    try:
        return folder.stat().st_mtime
    except OSError:
        return 0.0


# where a dataset's out-of-distribution triggers come from (ewe.data.registry.load_ood_source), in a label
OOD_POOL = {"mnist": "fashion", "fashion-mnist": "mnist"}


def trigger_text(cfg: dict[str, Any]) -> str:
    """The watermark's trigger in a label: 'ood photos→6' (digits' photo patches have no class), 'ood fashion
    1→7' (class 1 of the other dataset), 'in 3→7' (source class 3 with a patch)."""
    if cfg.get("trigger") == "ood":
        source = "photos" if cfg.get("dataset") == "digits" else \
            f"{OOD_POOL.get(cfg.get('dataset'), 'other')} {cfg.get('source')}"
    else:
        source = cfg.get("source")
    return f"{cfg.get('trigger')} {source}→{cfg.get('target')}"


def run_label(cfg: dict[str, Any]) -> str:
    """A run's settings in one line: the Train page's job label and every run list say the same words."""
    def first(x):
        return x[0] if isinstance(x, (list, tuple)) and x else x
    try:
        return (f"{cfg['dataset']} · {cfg.get('preset')} · τ={float(first(cfg.get('temperature'))):g} · "
                f"r={float(cfg.get('ratio')):g} · κ={float(first(cfg.get('kappa'))):g} · {trigger_text(cfg)} "
                f"· seed {cfg.get('seed')}"
                + (" · thief data disjoint" if cfg.get("attacker_data") == "disjoint" else "")
                + (" · schemes: " + ", ".join(SCHEMES[n].label if n in SCHEMES else n for n in cfg["schemes"])
                   if cfg.get("schemes") is not None else ""))
    except (KeyError, TypeError, ValueError):
        return f"{cfg.get('dataset', '?')} · seed {cfg.get('seed', '?')}"


def _read_config(folder: Path) -> dict[str, Any] | None:
    try:
        cfg = Run(folder).saved
        return cfg if isinstance(cfg, dict) else None
    except (OSError, ValueError):
        return None


def workspace_runs(workspace: str, active: dict[Path, Any] | None = None,
                   pending: dict[Path, dict] | None = None) -> list[dict[str, Any]]:
    """Every run folder of a workspace, read from disk (so runs survive a reload and a server restart),
    newest first: trained runs, the points of trade-off sweeps and uploads. ``active`` maps the folders of
    queued / running jobs to their job ids: such a folder is listed even before it holds a config, labelled
    from ``pending`` (folder -> the settings its job was started with) until it does.

    Each entry: key (the folder relative to the workspace: stable across reloads and restarts), label, dir,
    origin, time, job (id or None)."""
    base = workspace_dir(workspace)
    active = {Path(k).resolve(): v for k, v in (active or {}).items()}
    if not base.is_dir():
        return []
    found: list[dict[str, Any]] = []
    for folder in base.iterdir():
        if not folder.is_dir():
            continue
        cfg, job = _read_config(folder), active.get(folder.resolve())
        t = run_time(folder)
        if folder.name.startswith("uploaded-"):
            if cfg is not None:
                stem = _STAMP.split(folder.name.removeprefix("uploaded-"), maxsplit=1)[-1].strip("-")
                found.append({"label": f"uploaded: {stem + '.zip' if stem else folder.name} · {run_label(cfg)}",
                              "origin": "uploaded", "dir": folder, "time": t, "job": None})
        elif cfg is not None or job is not None or (folder / RESULT_FILE).exists():
            waiting = (pending or {}).get(folder.resolve())
            found.append({"label": run_label(cfg) if cfg else
                          f"{run_label(waiting) if waiting else folder.name}" + (" (waiting to start)" if job else ""),
                          "origin": "trained here", "dir": folder, "time": t, "job": job})
        else:   # a trade-off sweep: one run per grid point
            points = sorted(p for p in folder.glob("point*") if p.is_dir() and (p / RESULT_FILE).exists())
            for i, p in enumerate(points):
                pc = _read_config(p) or {}
                found.append({"label": f"sweep {folder.name} · point {i + 1} · {run_label(pc)}",
                              "origin": "trade-off sweep", "dir": p, "time": t + 1e-3 * i, "job": None})
    n = 0
    for r in sorted(found, key=lambda r: r["time"]):
        if r["origin"] == "trained here":
            n += 1
            r["label"] = f"#{n} {r['label']}"
    for r in found:
        r["key"] = r["dir"].relative_to(base).as_posix()
    return sorted(found, key=lambda r: (r["time"], r["key"]), reverse=True)


_RUN_CACHE: dict[tuple[str, float], dict] = {}


def read_run(run_dir: str | Path) -> dict[str, Any] | None:
    """config / result / history / predictions of a run folder (cached by result.json's mtime)."""
    run_dir = Path(run_dir)
    if not (run_dir / RESULT_FILE).exists():
        return None
    key = (str(run_dir), *Run(run_dir).stamp("result", "history", "thieves"))
    if key in _RUN_CACHE:
        return _RUN_CACHE[key]
    try:
        run = Run.open(run_dir).as_dict()
    except Exception:   # a half-written or foreign folder: the page shows "no run" instead
        return None
    if len(_RUN_CACHE) > 64:
        _RUN_CACHE.clear()
    _RUN_CACHE[key] = run
    return run


_VERIFY_CACHE: dict[tuple, dict] = {}


def _verdict_key(run_dir: str | Path, *extra) -> tuple:
    """What a recomputed verdict depends on: the run's answer files (by mtime) and the settings."""
    return (str(run_dir), *Run(run_dir).stamp("predictions", "innocents", "thieves"), *extra)


def _cached_verdicts(key: tuple, compute):
    if key not in _VERIFY_CACHE:
        if len(_VERIFY_CACHE) > 64:
            _VERIFY_CACHE.clear()
        _VERIFY_CACHE[key] = compute()
    return _VERIFY_CACHE[key]


def _shared_verdicts(run_dir: str | Path, what: str, settings: dict, compute):
    """``compute()`` once per folder state and settings over every workspace: a folder checked out of the run
    cache names its state (reuse.json), and identical states give identical verdicts (the run cache's
    verdict entries); other folders compute here."""
    from ewe.results.cache import read_state, verdict_key
    state = read_state(run_dir) if run_cache_enabled() else None
    if state is None:
        return compute()
    key, cache = verdict_key(state["key"], {"what": what, **settings}), run_cache()
    found = cache.get_json(key)
    if found is None:
        found = compute()
        cache.put_json(key, found)
    return found


def reverify(run_dir: str | Path, run: dict, margin: float, test: str | None = None) -> dict[str, dict]:
    """The run's verdicts recomputed from its predictions.json (and innocents.json) with another margin or
    test (about 1 s on a paper run; cached by the files' mtimes), without touching the folder."""
    from ewe.results.verdicts import run_verdicts
    stored = dict((run.get("result") or {}).get("verification") or {})
    if not (Path(run_dir) / PREDICTIONS_FILE).exists():
        return stored
    overrides = {"margin": float(margin), **({"test": test} if test else {})}
    try:
        return dict(_cached_verdicts(_verdict_key(run_dir, "run", round(float(margin), 6), test),
                                     lambda: _shared_verdicts(run_dir, "run", overrides,
                                                              lambda: run_verdicts(run_dir, **overrides))))
    except (OSError, ValueError):      # being rewritten by a running attack: keep what is stored
        return stored


def zip_run(run_dir: str | Path) -> bytes:
    from ewe.results.runs import zip_run as z
    return z(run_dir)


class UploadError(ValueError):
    """An upload that is not a run folder / not a checkpoint; the message says what to do."""


# The largest run folder this app makes: a digits quick run measures 17.0 MB (15.2 MB zipped; 8 checkpoints
# of 1.7 MB and 2.9 MB of triggers); MNIST's reference preset (6,265 + 1,000 triggers, each kept raw and
# optimised, 3.1 kB apiece) comes to about 60 MB; a checkpoint is 0.2-2.3 MB. 100 MB leaves headroom.
DEFAULT_MAX_UPLOAD_MB = 100


def max_upload_mb() -> int:
    """The upload cap in MB (``EWE_APP_MAX_UPLOAD_MB``): for the file, and for a zip once unpacked."""
    try:
        return max(1, int(float(os.environ.get("EWE_APP_MAX_UPLOAD_MB", "") or DEFAULT_MAX_UPLOAD_MB)))
    except ValueError:
        return DEFAULT_MAX_UPLOAD_MB


def check_upload(data_size: int, data: bytes | None = None) -> None:
    """Refuse an upload above the cap (UploadError naming it), before it is unzipped or loaded; for a zip,
    the unpacked size counts too (the sizes its directory declares, read without unpacking)."""
    cap = max_upload_mb()
    if data_size > cap * 2**20:
        raise UploadError(f"the file is {data_size / 2**20:.1f} MB, above this app's {cap} MB limit for "
                          "uploads (EWE_APP_MAX_UPLOAD_MB); a run folder of this app is far smaller")
    if data is not None:
        import io
        import zipfile
        try:
            unpacked = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return                        # not a zip: unzip_run says so
        if unpacked > cap * 2**20:
            raise UploadError(f"the zip unpacks to {unpacked / 2**20:.1f} MB, above this app's {cap} MB limit "
                              "for uploads (EWE_APP_MAX_UPLOAD_MB); a run folder of this app is far smaller")


def unzip_run(data: bytes, dest: Path) -> Path:
    """Unpack an uploaded run into a new folder named after ``dest`` (another name if it exists); returns it."""
    from ewe.results.runs import RunFolderError, unzip_run as u
    folder = claim_new_dir(dest)
    try:
        return Path(u(data, folder))
    except RunFolderError as exc:
        raise UploadError(str(exc)) from None
    finally:
        with contextlib.suppress(OSError):   # removes the folder only if still empty: a refused upload
            folder.rmdir()                    # leaves nothing behind


def train_job(cfg: RunConfig, out_dir: Path):
    pipeline()

    def fn(ctx):
        ctx.message(f"Run folder: {out_dir.name}")     # not its path: that names the workspace (a secret)
        return pipeline().train_victims(cfg, out_dir, listeners=[ctx.listener], stop=ctx.stop)
    return fn


def attack_job(run_dir: Path, kinds: list[dict[str, Any]], thieves: int = 1):
    """``thieves`` thieves of each kind (thief settings), seed by seed (ewe.experiments.pipeline.thief_seeds)."""
    pipeline()

    def fn(ctx):
        p = pipeline()
        return p.steal_each(run_dir, p.thief_seeds(run_dir, kinds, thieves), listeners=[ctx.listener],
                            stop=ctx.stop)
    return fn


DISTILLER_T = 5.0    # the distilling thief of the lab's tables (docs/RESULTS.md §1: "same-soft5")


def contrast_thief(thief: dict[str, Any]) -> dict[str, Any]:
    """The same thief given the other kind of answer: the top class only (the paper's thief) for one given
    probabilities, probabilities at T = 5 (the distiller) for one given the top class. The lab's tables find
    this decides what a copy keeps; the Attack page steals with both by default."""
    if thief.get("extract_labels") == "soft":
        return {k: v for k, v in {**thief, "extract_labels": "hard"}.items() if k != "distill_temperature"}
    return {**thief, "extract_labels": "soft", "distill_temperature": DISTILLER_T}


def thief_words(thief: dict[str, Any]) -> str:
    """A thief's answers in words: 'probabilities (T = 5)' or 'the top class only'."""
    if thief.get("extract_labels", thief.get("labels")) == "soft":
        return f"probabilities (T = {thief.get('distill_temperature', 1.0):g})"
    return "the top class only"


def sweep_job(cfgs: list[tuple[dict[str, Any], RunConfig]], base_dir: Path):
    """Each grid point is a full run (train, steal, verify) in its own sub-folder, in turn through the grid
    runner's loop (ewe.experiments.sweep.run_in_turn); points are appended to ``ctx.data["points"]`` as they
    finish so the page can plot them as they arrive. The grid ends at a point that did not finish."""
    pipeline()

    def fn(ctx):
        from ewe.callbacks import Reporter, Stopped
        from ewe.experiments.sweep import run_in_turn
        started = time.perf_counter()
        points = ctx.data.setdefault("points", [])
        ctx.data["total"] = len(cfgs)

        def folder(i: int, settings: dict) -> Path:
            return base_dir / f"point{i + 1:02d}-tau{settings['tau']:g}-r{settings['ratio']:g}"

        def run_one(i, job):
            settings, cfg = job
            ctx.data["current"] = {**settings, "index": i + 1}
            out = folder(i, settings)
            result = pipeline().run(cfg, out, listeners=[part_of(ctx.listener, i, len(cfgs), started)],
                                    stop=ctx.stop)
            return {"result": result, "out": out}

        def finished(job, info) -> bool:
            if info["result"].get("status") != "finished":
                return False
            points.append(point_summary(job[0], info["result"], info["out"]))
            return True
        try:
            run_in_turn(cfgs, run_one, reporter=Reporter([], ctx.stop), finished=finished,
                        label=lambda job: (f"tau{job[0]['tau']:g}-r{job[0]['ratio']:g}", "sweep"))
        except Stopped:
            pass
        return {"status": "stopped" if ctx.stop.is_set() else "finished", "points": list(points)}
    return fn


def point_summary(settings: dict[str, Any], result: dict, out: Path) -> dict[str, Any]:
    m, v = result.get("models", {}), result.get("verification", {})
    return {**settings, "dir": str(out),
            "defended_accuracy": m.get("defended", {}).get("accuracy"),
            "extracted_watermark": m.get("extracted", {}).get("watermark_success"),
            "extracted_accuracy": m.get("extracted", {}).get("accuracy"),
            "plain_extracted_watermark": m.get("plain_extracted", {}).get("watermark_success"),
            "clean_accuracy": m.get("clean", {}).get("accuracy"),
            "p_value": v.get("extracted", {}).get("p_value"),
            "queries_for_95": v.get("extracted", {}).get("queries_for_95"),
            # a rival scheme's copy (when the Train page chose one): the watermark it kept
            "rivals": {c: m[c].get("watermark_success") for c in stolen_copies(m) if c not in STOLEN_COPIES}}


# ---- checkpoints ------------------------------------------------------------------------------------
def thieves_judged(run_dir: str | Path, run: dict, **overrides) -> list[dict]:
    """The run's thieves.json with every copy judged with ``overrides`` (test, margin) from its stored
    answers (entries made before answers were stored keep their recorded verdict); cached like reverify,
    since the Verify page asks again on every click."""
    import copy as _copy

    from ewe.results.verdicts import rejudge_thieves
    from ewe.verify import run_settings

    def compute():
        draws = _copy.deepcopy(list(run.get("thieves") or []))
        if run.get("predictions"):
            draws = rejudge_thieves(draws, run["predictions"], Run(run_dir).innocents,
                                    {**run_settings(run.get("config") or {}), **overrides}, run_dir)
        return draws
    key = _verdict_key(run_dir, "thieves", tuple(sorted(overrides.items())))
    return _copy.deepcopy(_cached_verdicts(key, lambda: _shared_verdicts(run_dir, "thieves", overrides, compute)))


def verify_on_keys(run: dict, run_dir: Path, data: bytes, model_name: str, filename: str = "the file",
                   margin: float | None = None, test: str | None = None, sets=None) -> dict[str, dict | None]:
    """Treat a state_dict (an upload's or a run model's bytes) as a suspect on each of ``sets`` (default: every
    key the run holds, ``key_sets``) with ewe.results.verdicts.judge_checkpoint: {set: verdict, None where the
    set has no null to judge against; a set the run lacks is left out}. Cached by the file's content, the run's
    answer files and the settings (the Verify page asks again on every click). Raises UploadError with the app's
    message (no triggers yet, not a plain state_dict, wrong architecture)."""
    import hashlib
    import tempfile

    from ewe.models import CheckpointError
    from ewe.results.runs import RunFolderError
    from ewe.results.verdicts import judge_checkpoint

    result, preds = run.get("result") or {}, run.get("predictions") or {}
    if not (Path(run_dir) / TRIGGERS_FILE).exists() or "input_shape" not in result:
        raise UploadError("this run has no trigger set to test with; train it first")
    if (preds.get("sets", {}).get("optimised", {}) or {}).get("clean") is None:
        raise UploadError("this run has no clean reference model predictions; let training finish first")
    sets = tuple(sets or key_sets(run_dir, run))
    overrides = {**({"margin": float(margin)} if margin is not None else {}), **({"test": test} if test else {})}

    def compute():
        out: dict[str, dict | None] = {}
        with tempfile.NamedTemporaryFile(suffix=".pt") as tmp:
            tmp.write(data)
            tmp.flush()
            for set_name in sets:
                try:
                    out[set_name] = judge_checkpoint(run_dir, tmp.name, model_name, set_name, **overrides)
                except CheckpointError as exc:
                    raise UploadError(f"{str(exc).replace(Path(tmp.name).name, filename)}. Upload a state_dict "
                                      "saved with torch.save(model.state_dict(), path) for the chosen "
                                      "architecture.") from None
                except RunFolderError:        # this run has no such key (yet): nothing to judge on it
                    continue
        return out
    key = _verdict_key(run_dir, "checkpoint", hashlib.sha256(data).hexdigest(), model_name, sets,
                       tuple(sorted(overrides.items())))
    return dict(_cached_verdicts(key, compute))


def key_sets(run_dir: str | Path, run: dict) -> list[str]:
    """The trigger sets (the owner's keys) a run holds: held-out triggers in triggers.pt that predictions.json
    has answers on; the schemes' sets in registry order ("optimised", "classic", then rivals' like
    "composite")."""
    from ewe.results.schema import heldout_sets
    answered = set(((run.get("predictions") or {}).get("sets")) or {})
    stamp = Run(run_dir).stamp(TRIGGERS_FILE)
    held = _cached_verdicts(("key_sets", str(run_dir), *stamp), lambda: list(heldout_sets(load_triggers(run_dir) or {})))
    order = list(dict.fromkeys([s.trigger_set for s in SCHEMES.values()] + sorted(held)))
    own = [k for s in SCHEMES.values() if s.own_test and (k := s.own_key(run_dir))]   # dataset inference's test
    return [s for s in order if s in held and s in answered] + own


def model_architecture(run: dict, name: str) -> str:
    """The architecture of the run's model ``name``: a stolen copy is the thief's student, the rest the run's
    model."""
    cfg, thief = run.get("config") or {}, (run.get("result") or {}).get("thief") or {}
    own = cfg.get("model", RunConfig.model)
    return (thief.get("student") or own) if name in VICTIMS.values() else own


def load_triggers(run_dir: str | Path) -> dict[str, Any] | None:
    run = Run(run_dir)
    if not run.has(TRIGGERS_FILE):
        return None
    try:
        return run.triggers()
    except Exception:
        return None


def preview_triggers(dataset: str, trigger: str, source: int, n: int = 8):
    """Raw trigger candidates for the Train page preview (ewe.watermarks.triggers.preview)."""
    from ewe.watermarks.triggers import preview
    return preview(dataset, trigger, source, n)


_warm_started = False
_warm_imported = threading.Event()


def wait_for_warm_imports(timeout: float = 180.0) -> None:
    """Block until the warm-up thread has imported torch and the library (app.py calls it before each page).
    A page importing those modules while the warm-up thread does can be handed a half-initialised module by
    Python's import-deadlock detection: seen in CI, the Train page's "cannot import name 'stage_plan' from
    'ewe.experiments.pipeline'" left it without its Start button. Returns at once before the warm-up
    starts (the first page) and after it has imported."""
    if _warm_started:
        _warm_imported.wait(timeout)


published = studies.published          # the Learn page's numbers (ewe.results.studies)
schemes_side_by_side = studies.side_by_side      # the Trade-offs page's schemes per dataset
scheme_rows = sidebyside.display_rows             # one such table as text, column -> cell
study_gains = studies.study_gains


def warm_up_in_background(call=None) -> None:
    """Import torch and the pipeline in a background thread once the first page has been sent, so the
    first page does not wait for them and the Train page finds them loaded. ``call(fn, *args, **kw)`` runs the
    innocent population's build (the registry's executor: here, or a Ray task; ui/executors.py)."""
    global _warm_started
    if _warm_started:
        return
    _warm_started = True

    def warm():
        time.sleep(float(os.environ.get("EWE_APP_WARM_DELAY", "3")))  # let the first page finish first
        try:
            pipeline()
            import ewe.data  # noqa: F401  (imported for their side effect: loaded before a page needs them)
            import ewe.innocents  # noqa: F401
            import ewe.results.cache  # noqa: F401
        except Exception:  # reported when a page really needs it
            return
        finally:
            _warm_imported.set()
        warm_innocents(call)
    threading.Thread(target=warm, name="ewe-warm-import", daemon=True).start()


# The offline demo's innocent population (the verdicts' null), trained once per machine. A first start
# trains it in the background while the presenter talks, so the first demo run does not: measured, the
# first digits run took 215 s with it and 86 s without (docs/RESULTS.md §5). Digits only: the others
# take minutes of both cores, which nobody asked for. EWE_APP_WARM_INNOCENTS=0 turns it off.
_warm_innocents: dict[str, Any] = {}


def warm_innocents(call=None) -> None:
    """Train the default digits demo's innocent population if it is missing (blocking; the warm-up thread
    calls it), through ``call`` when given (on a Ray cluster: a Ray task writing to the shared cache). A run
    that needs the population meanwhile waits for it (ewe.innocents locks the folder)."""
    if os.environ.get("EWE_APP_WARM_INNOCENTS", "1") in ("0", "false") or default_dataset() != "digits":
        return
    from ewe.innocents import build_population, missing_recipes, population_dir
    cfg = make_config("digits", "quick")
    if not missing_recipes(cfg):   # cached, or shipped with the package (the usual case)
        return
    _warm_innocents.update(state="building", folder=population_dir(cfg), total=cfg.innocents)
    try:
        (call or (lambda fn, *a, **kw: fn(*a, **kw)))(build_population, cfg, n=cfg.innocents)
    except Exception as exc:  # noqa: BLE001 - a run builds it again and reports what went wrong
        _warm_innocents.update(state="failed", error=f"{type(exc).__name__}: {exc}")
        return
    _warm_innocents.update(state="done")


def innocents_warm_status() -> dict[str, Any] | None:
    """{"done": k, "total": n} while the warm-up trains the demo's innocent models, else None."""
    if _warm_innocents.get("state") != "building":
        return None
    from ewe.innocents import trained_models
    return {"done": len(trained_models(_warm_innocents["folder"])), "total": _warm_innocents["total"]}
