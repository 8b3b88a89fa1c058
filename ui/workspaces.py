"""Where the app's runs live: the runs root, one folder per workspace, a new run's folder, the run cache beside
them, read-only view tokens, and every run folder of a workspace listed from disk (trained runs, the points of
trade-off sweeps, uploads). No Streamlit."""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from ewe.config import RunConfig
from ewe.experiments.sweep import is_sweep, point_dirs
from ewe.results.runs import Run, claim_new_dir
from ewe.results.schema import RESULT_FILE
from ui.naming import run_label

ROOT = Path(__file__).resolve().parent.parent


def runs_root() -> Path:
    return Path(os.environ.get("EWE_APP_RUNS_DIR", "") or ROOT / "runs")


# The run cache (ewe.results.cache, ui/reuse.py) beside the workspaces: a name no workspace id can have.
# 4 GB by default: a digits quick run is 17 MB, MNIST's reference preset about 60 MB (ui/uploads.py:
# DEFAULT_MAX_UPLOAD_MB); the files are hard links, so a run that 30 workspaces reused is on disk once.
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


def _read_config(folder: Path) -> dict[str, Any] | None:
    try:
        cfg = Run(folder).saved
        return cfg if isinstance(cfg, dict) else None
    except (OSError, ValueError):
        return None


def _sweep_points(folder: Path) -> list[Path]:
    """The run folders of a trade-off sweep: the grid runner's points/<key>/s<seed> (ewe.experiments.sweep), or
    the pointNN-tau..-r.. folders the app wrote before it used that runner."""
    if is_sweep(folder):
        return point_dirs(folder)
    return sorted(p for p in folder.glob("point*") if p.is_dir() and (p / RESULT_FILE).exists())


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
        elif not is_sweep(folder) and (cfg is not None or job is not None or (folder / RESULT_FILE).exists()):
            waiting = (pending or {}).get(folder.resolve())
            found.append({"label": run_label(cfg) if cfg else
                          f"{run_label(waiting) if waiting else folder.name}" + (" (waiting to start)" if job else ""),
                          "origin": "trained here", "dir": folder, "time": t, "job": job})
        else:   # a trade-off sweep: one run per grid point
            for i, p in enumerate(_sweep_points(folder)):
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
