"""Run folders (see docs/CONTRACT.md): a ``Run`` owns one (reads its parts, writes them as a run goes, loads its
models and triggers); the rest validates, describes, clears, zips for download and unzips an upload.

    run = Run.open(folder)       # RunFolderError if it is not a readable run folder
    run.config                   # the RunConfig it was trained with (config.json's own fields)
    run.result["models"]         # result.json, read once; run.save("result") writes it back
    run.load_models(["defended"]); run.triggers()
"""
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

from .schema import (CONFIG_FILE, DIAGNOSTICS_FILE, HISTORY_FILE, INNOCENTS_FILE, PREDICTIONS_FILE, RESULT_FILE,
                     REUSE_FILE, ROBUSTNESS_FILE, THIEVES_FILE, TRIGGERS_FILE)

REQUIRED = (CONFIG_FILE, RESULT_FILE)
OPTIONAL = (HISTORY_FILE, PREDICTIONS_FILE, DIAGNOSTICS_FILE, THIEVES_FILE, TRIGGERS_FILE, "triggers.png",
            "dataset_inference_points.pt")   # ewe.watermarks.dataset_inference.POINTS_FILE (that module imports torch)
MAX_UNZIPPED = 512 * 1024 * 1024


class RunFolderError(ValueError):
    """Something that is not a (readable) run folder; the message says what is wrong."""


def load_run(run_dir: str | Path) -> dict:
    """config, result, history, predictions, diagnostics and thieves of a run folder as one dict (missing
    optional parts are None), for the app's pages; the library reads a ``Run``."""
    return Run.open(run_dir).as_dict()


def claim_new_dir(path: str | Path) -> Path:
    """Create and return a folder that did not exist: ``path``, else ``path-2``, ``path-3``, ... A run never
    reuses a folder (two runs in one folder would mix their files). ``mkdir`` without ``exist_ok`` is the atomic
    test, so two processes, sessions or threads asking for the same name at once still get two folders."""
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


def holds_run(folder: str | Path) -> bool:
    """True if ``folder`` already holds a run (finished or not): writing another there would mix the two."""
    folder = Path(folder)
    return any((folder / name).exists() for name in REQUIRED) or any((folder / "models").glob("*.pt"))


def describe_run(folder: str | Path) -> str:
    """A run folder in a few words for messages: dataset, preset, seed and status when readable."""
    folder = Path(folder)
    words = []
    for name, keys in ((CONFIG_FILE, ("dataset", "preset", "seed")), (RESULT_FILE, ("status",))):
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
    if RESULT_FILE not in names:
        tops = {n.split("/", 1)[0] for n in names if "/" in n}
        if len(tops) == 1 and f"{next(iter(tops))}/{RESULT_FILE}" in names:
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


class _Part:
    """One JSON file of the run folder as an attribute of ``Run``: read the first time it is asked for (None
    when the file is not there), kept, replaced by assignment, written by ``Run.save``."""

    def __init__(self, file: str):
        self.file = file

    def __set_name__(self, owner, name: str) -> None:
        self.name = name
        owner.PARTS = {**getattr(owner, "PARTS", {}), name: self.file}

    def __get__(self, run: "Run | None", owner=None):
        if run is None:
            return self
        if self.name not in run._parts:
            run._parts[self.name] = run._read_json(self.file)
        return run._parts[self.name]

    def __set__(self, run: "Run", value) -> None:
        run._parts[self.name] = value


class Run:
    """A run folder: the one object that knows its file names (``schema``) and the config's layout.

    Parts (``saved`` = config.json as stored, ``result``, ``history``, ``predictions``, ``diagnostics``,
    ``thieves``, ``innocents``, ``robustness``) are read once and kept; change one and ``save("result", ...)``
    to write it. Every write replaces the file whole, so nothing finished is lost and a reader never sees half
    a file. ``Run(None)``: a run that keeps nothing on disk (training without an output folder)."""

    saved = _Part(CONFIG_FILE)            # RunConfig.to_dict() + "effective" notes
    result = _Part(RESULT_FILE)
    history = _Part(HISTORY_FILE)
    predictions = _Part(PREDICTIONS_FILE)
    diagnostics = _Part(DIAGNOSTICS_FILE)
    thieves = _Part(THIEVES_FILE)
    innocents = _Part(INNOCENTS_FILE)
    robustness = _Part(ROBUSTNESS_FILE)

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._parts: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @classmethod
    def open(cls, path: "str | Path | Run") -> "Run":
        """The run folder at ``path`` (a ``Run`` is returned as it is), its config and result read and checked:
        RunFolderError with what is wrong when it is not a readable run folder."""
        if isinstance(path, Run):
            return path
        run = cls(path)
        if not run.path or not run.path.is_dir():
            raise RunFolderError(f"{path} is not a folder")
        for name in REQUIRED:
            if not (run.path / name).exists():
                raise RunFolderError(f"{run.path.name} is not a run folder: {name} is missing")
        if not isinstance(run.result, dict) or "models" not in run.result:
            raise RunFolderError(f"{RESULT_FILE} in {run.path.name} has no 'models' entry: not an EWE Lab run")
        if not isinstance(run.saved, dict) or "dataset" not in run.saved:
            raise RunFolderError(f"{CONFIG_FILE} in {run.path.name} has no 'dataset': not an EWE Lab run")
        return run

    @classmethod
    def of(cls, path: "str | Path | Run") -> "Run":
        """``path`` itself when it is a ``Run``, else the folder's ``Run`` without the checks of ``open``."""
        return path if isinstance(path, Run) else cls(path)

    @property
    def config(self):
        """The ``RunConfig`` the run was trained with (config.json's fields; its notes left out)."""
        from ..config import saved_config
        return saved_config(self.saved)

    @config.setter
    def config(self, cfg) -> None:
        """A new run's settings, as config.json stores them: every field, and what τ and κ mean in the
        reference code's terms (the "effective" note, for a reader who knows that code; never read back)."""
        self.saved = {**cfg.to_dict(), "effective": {
            "tau": cfg.temperature, "reference_T": [100.0 / t for t in cfg.temperature],
            "kappa_mean_ce": cfg.kappa, "kappa_reference_sum_ce": [k * cfg.batch_size for k in cfg.kappa],
            "extraction_epochs": cfg.extraction_epochs}}

    def as_dict(self) -> dict:
        """Every JSON part of the folder by its old ``load_run`` key, with ``path`` and ``models_available``."""
        return {"path": str(self.path), "config": self.saved, "result": self.result, "history": self.history,
                "predictions": self.predictions, "diagnostics": self.diagnostics, "thieves": self.thieves,
                "models_available": self.models_available}

    # ------------------------------------------------------------------------------------------ reading
    def _read_json(self, name: str):
        if not self.path or not (self.path / name).exists():
            return None
        try:
            return json.loads((self.path / name).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunFolderError(f"{name} in {self.path.name} is not valid JSON ({getattr(exc, 'msg', exc)})")

    def reload(self, *parts: str) -> "Run":
        """Forget the parts read so far (all, or ``parts``): the next access reads the files again."""
        for name in parts or list(self._parts):
            self._parts.pop(name, None)
        return self

    def has(self, name: str) -> bool:
        """Whether the folder holds the file ``name`` (a part's file, triggers.pt, a picture)."""
        return bool(self.path) and (self.path / name).exists()

    def stamp(self, *names: str) -> tuple[float, ...]:
        """The modification times of the named parts' files (or of other files of the folder; 0.0 for one that
        is not there): what a cache of anything read from them is keyed by."""
        out = []
        for name in names:
            try:
                out.append((self.path / self.PARTS.get(name, name)).stat().st_mtime)
            except (OSError, TypeError):
                out.append(0.0)
        return tuple(out)

    @property
    def models_available(self) -> list[str]:
        return sorted(p.stem for p in (self.path / "models").glob("*.pt")) if self.path else []

    def model_file(self, name: str) -> Path:
        """Where the checkpoint of model ``name`` is (or would be) kept."""
        return self.path / "models" / f"{name}.pt"

    def load_models(self, names: Iterable[str], device: str | None = None) -> dict:
        """The checkpoints of the models ``names`` that exist, built for the run's input, on ``device`` (default:
        the run's)."""
        from ..models import build_model, load_state
        cfg = self.config
        shape = tuple(self.result["input_shape"])
        out = {}
        for name in names:
            path = self.model_file(name)
            if path.exists():
                out[name] = load_state(build_model(cfg.model, shape), path).to(device or cfg.device)
        return out

    def triggers(self) -> dict:
        """triggers.pt's tensors (``schema.TRIGGERS_FILE``), loaded as plain tensors only."""
        import torch
        return torch.load(self.path / TRIGGERS_FILE, map_location="cpu", weights_only=True)

    # ------------------------------------------------------------------------------------------ writing
    def save(self, *parts: str) -> None:
        """Write the named parts (``"result"``, ``"predictions"``, ...) as they stand in memory."""
        for name in parts:
            self.write_json(self.PARTS[name], self._parts[name])

    def write_json(self, name: str, obj: Any) -> None:
        """Write ``obj`` as the file ``name``; a part's file becomes that part in memory too."""
        for part, file in self.PARTS.items():
            if file == name:
                self._parts[part] = obj
        if self.path:
            self.path.mkdir(parents=True, exist_ok=True)
            self._replace(name, lambda tmp: tmp.write_text(json.dumps(obj, indent=2)))

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
