"""Run folders: write as a run goes (RunFolder), read, validate, load the models, zip for download, unzip an
upload (see docs/CONTRACT.md)."""
from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterable

from .schema import CONFIG_FILE, RESULT_FILE, REUSE_FILE, THIEVES_FILE

REQUIRED = (CONFIG_FILE, RESULT_FILE)
OPTIONAL = ("history.json", "predictions.json", "diagnostics.json", THIEVES_FILE, "triggers.pt", "triggers.png",
            "dataset_inference_points.pt")   # ewe.watermarks.dataset_inference.POINTS_FILE (that module imports torch)
MAX_UNZIPPED = 512 * 1024 * 1024


class RunFolderError(ValueError):
    """Something that is not a (readable) run folder; the message says what is wrong."""


def load_run(run_dir: str | Path) -> dict:
    """config, result, history, predictions, diagnostics and thieves of a run folder (missing optional parts
    are None)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is not a folder")
    out = {"path": str(run_dir)}
    for name in REQUIRED + ("history.json", "predictions.json", "diagnostics.json", THIEVES_FILE):
        path = run_dir / name
        if not path.exists():
            if name in REQUIRED:
                raise RunFolderError(f"{run_dir.name} is not a run folder: {name} is missing")
            out[name.removesuffix(".json")] = None
            continue
        try:
            out[name.removesuffix(".json")] = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunFolderError(f"{name} in {run_dir.name} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})")
    if not isinstance(out["result"], dict) or "models" not in out["result"]:
        raise RunFolderError(f"result.json in {run_dir.name} has no 'models' entry: not an EWE Lab run")
    if not isinstance(out["config"], dict) or "dataset" not in out["config"]:
        raise RunFolderError(f"config.json in {run_dir.name} has no 'dataset': not an EWE Lab run")
    out["models_available"] = sorted(p.stem for p in (run_dir / "models").glob("*.pt"))
    return out


def holds_run(folder: str | Path) -> bool:
    """True if ``folder`` already holds a run (finished or not): writing another there would mix the two."""
    folder = Path(folder)
    return any((folder / name).exists() for name in REQUIRED) or any((folder / "models").glob("*.pt"))


def describe_run(folder: str | Path) -> str:
    """A run folder in a few words for messages: dataset, preset, seed and status when readable."""
    folder = Path(folder)
    words = []
    for name, keys in (("config.json", ("dataset", "preset", "seed")), ("result.json", ("status",))):
        try:
            data = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            words += [f"seed {data[k]}" if k == "seed" else str(data[k]) for k in keys if k in data]
    return f"{folder} ({', '.join(words)})" if words else str(folder)


def clear_run(folder: str | Path) -> None:
    """Delete the run files of ``folder`` (JSON, tensors, pictures, checkpoints, half-written .tmp files), so
    a new run written there is not mixed with the old one; anything else in the folder is left alone."""
    folder = Path(folder)
    for pattern in ("*.json", "*.pt", "*.png", "*.tmp", "models/*.pt", "models/*.tmp"):
        for path in folder.glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink()
    models = folder / "models"
    if models.is_dir() and not any(models.iterdir()):
        models.rmdir()


def same_thief(draws: list[dict], thief: dict) -> list[dict]:
    """The entries of thieves.json made by a thief with ``thief``'s settings, whatever its seed."""
    def settings(t):
        return {k: v for k, v in t.items() if k != "seed"}
    return [d for d in draws if settings(d.get("thief") or {}) == settings(thief)]


def zip_run(run_dir: str | Path) -> bytes:
    """The run folder as zip bytes (config, history, result, predictions, triggers, checkpoints)."""
    run_dir = Path(run_dir)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(run_dir.rglob("*")):
            if path.is_file() and not path.name.endswith(".tmp"):
                zf.write(path, path.relative_to(run_dir).as_posix())
    return buf.getvalue()


def _unsafe(info: zipfile.ZipInfo, rel: str, root: Path) -> str | None:
    """Why the zip member ``info`` (``rel`` inside the run folder ``root``, resolved) may not be unpacked, or
    None: an absolute name, a name that climbs out of the folder, or a symbolic link."""
    name = info.filename
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or PurePosixPath(name).is_absolute():
        return "an absolute path"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    for part in (name, rel):
        # resolved, not compared as strings: "../up-1evil/x" starts with "up-1" but lands beside it
        target = (root / part).resolve()
        if not target.is_relative_to(root) or (target == root and not info.is_dir()):
            return "outside the run folder"
    return None


def unzip_run(data: bytes, dest_dir: str | Path) -> Path:
    """Unpack an uploaded run zip into ``dest_dir`` (a new or empty folder) after checking it is one; returns
    the folder. Nothing is written unless the whole zip is a safe, valid run folder."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise RunFolderError("the file is not a zip archive; upload a run folder downloaded from EWE Lab")
    names = zf.namelist()
    # accept both a flat zip and one with a single top-level folder
    prefix = ""
    if "result.json" not in names:
        tops = {n.split("/", 1)[0] for n in names if "/" in n}
        if len(tops) == 1 and f"{next(iter(tops))}/result.json" in names:
            prefix = next(iter(tops)) + "/"
    dest = Path(dest_dir)
    root = dest.resolve()
    # every member is checked before anything is written: one bad member refuses the whole upload
    for info in zf.infolist():
        rel = info.filename[len(prefix):] if info.filename.startswith(prefix) else info.filename
        why = _unsafe(info, rel, root)
        if why:
            raise RunFolderError(f"refused the upload: the zip member {info.filename!r} is {why}")
    missing = [n for n in REQUIRED if prefix + n not in names]
    if missing:
        raise RunFolderError(f"not a run folder: {', '.join(missing)} missing from the zip")
    if sum(i.file_size for i in zf.infolist()) > MAX_UNZIPPED:
        raise RunFolderError("the zip unpacks to more than 512 MB; that is not a run folder")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RunFolderError(f"{dest} already holds files; unpack the upload into a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # unpack beside the destination and move it in whole once valid: a refused zip leaves nothing behind
    staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=dest.parent))
    try:
        tmp = staging / dest.name      # same name, so load_run's messages name the folder the user sees
        tmp.mkdir()
        for info in zf.infolist():
            if not info.filename.startswith(prefix):
                continue
            rel = info.filename[len(prefix):]
            if not rel or info.is_dir():
                continue
            allowed = rel in REQUIRED + OPTIONAL or (rel.startswith("models/") and rel.endswith(".pt")) \
                or rel.endswith(".png") or rel.endswith(".json")
            # an uploaded folder is nobody's cached state: a reuse.json naming a key would let its files
            # stand for that key's in the run cache (ewe.results.cache), served to other workspaces
            allowed = allowed and rel != REUSE_FILE
            if not allowed:
                continue
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(info))
        load_run(tmp)   # validates the JSON
        if dest.exists():
            dest.rmdir()     # empty (checked above); os.rename cannot replace a folder on every platform
        os.rename(tmp, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


class RunFolder:
    """Writes the run folder incrementally so nothing finished is lost."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None

    def write_json(self, name: str, obj: Any) -> None:
        if self.path:
            self.path.mkdir(parents=True, exist_ok=True)
            self._replace(name, lambda tmp: tmp.write_text(json.dumps(obj, indent=2)))

    def read_json(self, name: str, default=None):
        if self.path and (self.path / name).exists():
            return json.loads((self.path / name).read_text())
        return default

    def save_model(self, name: str, model) -> None:
        if self.path:
            import torch
            (self.path / "models").mkdir(parents=True, exist_ok=True)
            self._replace(f"models/{name}.pt", lambda tmp: torch.save(
                {k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp))

    def save_tensors(self, name: str, tensors: dict) -> None:
        if self.path:
            import torch
            self.path.mkdir(parents=True, exist_ok=True)
            self._replace(name, lambda tmp: torch.save({k: v.detach().cpu() for k, v in tensors.items()}, tmp))

    def _replace(self, name: str, write) -> None:
        """Write ``name`` beside itself and move it in: a reader never sees half a file, and a run folder
        hard-linked from the run cache (ewe.results.cache) gets a new file instead of changing the cached one."""
        target = self.path / name
        tmp = target.with_name(target.name + ".tmp")
        write(tmp)
        tmp.replace(target)


def load_run_models(run_dir: str | Path, names: Iterable[str]) -> dict:
    """The run's checkpoints of the models ``names`` (those that exist), on the run's device."""
    from ..config import saved_config
    from ..models import build_model, load_state
    run_dir = Path(run_dir)
    cfg = saved_config(json.loads((run_dir / CONFIG_FILE).read_text()))
    shape = tuple(json.loads((run_dir / "result.json").read_text())["input_shape"])
    out = {}
    for name in names:
        path = run_dir / "models" / f"{name}.pt"
        if path.exists():
            out[name] = load_state(build_model(cfg.model, shape), path).to(cfg.device)
    return out
