"""The run cache: a run, a steal or a verdict computed once per identical request (a class of thirty pressing
Start on the same settings trains one run).

    run_key(cfg)                         what a trained run depends on, hashed
    steal_key(state, thief, thieves)     a steal: the folder's state before it + the thief's settings
    verdict_key(state, settings)         a verdict: the folder's state + the test's settings
    RunCache(root, max_bytes)            finished entries on disk: publish, checkout, LRU eviction

A key is the SHA-256 of canonical JSON. A run's key holds every RunConfig field (numbers spelled one way),
the SHA-256 of the data it reads (``ewe.data.splits.data_fingerprint``, in place of the data folder's path),
and what else changes the numbers: the code of ``ewe/`` (its training path: every module but the CLI), the
torch version, the threads a run trains with (on CPU the thread count changes the arithmetic: the app's
runs with 1 and 2 threads differ, ui/jobs.py) and the innocent population's precision (bf16 where the CPU
has it, ``ewe.innocents.precision``). With those fixed, a run on CPU is deterministic: every draw has its own
seeded generator (ewe.experiments.pipeline), tests/results/test_cache.py checks a reused run against a fresh one.

A run folder changes as it is attacked, so a steal is keyed by the state of the folder before it (the key of
the run or of the steal that made it, kept in the folder's ``reuse.json``) and the thief's settings.

On disk (beside the runs it serves)::

    <root>/entries/<key>/      a finished run folder (or a verdict.json) + entry.json (what, from where, when)
                               + .access (its modification time is the last use: least recently used goes first)
    <root>/staging/            folders being written, moved into entries/ whole with os.rename
    <root>/trash/              evicted entries being deleted

An entry appears whole or not at all: it is written in staging/ and renamed into place; of two writers
finishing one key (threads or servers), the second rename fails and that writer drops its copy. Files are
hard links where the filesystem allows (one copy on disk for the cache and every workspace that reused it):
the library replaces files rather than writing into them (``Run``), so a later steal in a workspace
never changes a cached file.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ..config import RunConfig
from .schema import REUSE_FILE    # in a run folder: {"key": its state's key, "reused_from"?: {...}}

ENTRY_FILE = "entry.json"
ACCESS_FILE = ".access"
VERDICT_FILE = "verdict.json"
CACHE_VERSION = 1

_CODE_VERSION: str | None = None


def canonical(value: Any) -> Any:
    """One spelling per value: numbers as floats (a preset's 6 and a form's 6.0 are one setting), dicts
    sorted by json.dumps."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return str(value)


def digest(what: dict) -> str:
    return hashlib.sha256(json.dumps(canonical(what), sort_keys=True).encode()).hexdigest()


def code_version() -> str:
    """SHA-256 of the source of every ``ewe`` module on the training path (all but the CLI's), read once."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        package = Path(__file__).resolve().parents[1]
        h = hashlib.sha256()
        for path in sorted(package.rglob("*.py")):
            rel = path.relative_to(package).as_posix()
            if not rel.startswith("cli/"):
                h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
        _CODE_VERSION = h.hexdigest()
    return _CODE_VERSION


def environment(cfg: RunConfig, threads: int | None = None) -> dict[str, Any]:
    """What beside the configuration and the data changes a run's numbers (see the module docstring)."""
    import torch

    from ..innocents import precision
    from ..train import resolve_precision
    return {"code": code_version(), "torch": torch.__version__, "cache": CACHE_VERSION,
            "threads": int(cfg.threads or threads or torch.get_num_threads()),
            "innocents_precision": precision(cfg.device) if cfg.innocents else None,
            "precision": resolve_precision(cfg.precision, cfg.device)}   # "auto" is the hardware's


def run_key(cfg: RunConfig, threads: int | None = None) -> str:
    """The key of training ``cfg``'s victims (``threads``: what the run will train with, if ``cfg.threads``
    does not say)."""
    from ..data.splits import data_fingerprint
    config = {k: v for k, v in cfg.to_dict().items() if k not in ("data_dir", "threads")}
    return digest({"kind": "run", "config": config, "data": data_fingerprint(cfg), **environment(cfg, threads)})


def steal_key(state: str, thief: dict[str, Any], thieves: int = 1) -> str:
    """The key of ``thieves`` steals with ``thief``'s settings (thief_seed resolved) from a folder in ``state``."""
    return digest({"kind": "steal", "from": state, "thief": dict(thief), "thieves": int(thieves)})


def verdict_key(state: str, settings: dict[str, Any]) -> str:
    return digest({"kind": "verdict", "from": state, "settings": dict(settings)})


def read_state(run_dir: str | Path, checked: bool = True) -> dict[str, Any] | None:
    """A run folder's reuse.json ({"key", "reused_from"?, "stamp"}), None when it has none (uploads, older
    runs) or, ``checked``, when its files changed since it was checked out."""
    try:
        data = json.loads((Path(run_dir) / REUSE_FILE).read_text())
        if not (isinstance(data, dict) and data.get("key")):
            return None
        return data if not checked or data.get("stamp") == stamp(Path(run_dir)) else None
    except (OSError, ValueError):
        return None


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def link_tree(src: Path, dest: Path, skip=(REUSE_FILE, ENTRY_FILE, ACCESS_FILE)) -> None:
    """``dest`` (new) with ``src``'s files: checkpoints and tensors hard-linked where possible (the bulk of a
    run, rewritten only by replacing them), the small JSON files copied (someone editing one by hand changes
    only this folder); half-written ``.tmp`` files and the cache's own files stay behind."""
    dest.mkdir(parents=True)
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir() or path.name.endswith(".tmp") or rel.as_posix() in skip:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json":
            shutil.copy2(path, target)
            continue
        try:
            os.link(path, target)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise
            shutil.copy2(path, target)        # another filesystem, or links not allowed


def stamp(folder: Path) -> list:
    """The JSON files of a run folder by size and modification time: whether it still holds the state its
    reuse.json names (a folder changed since, by hand or by an old writer, is nobody's cached state)."""
    return sorted([p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns]
                  for p in folder.rglob("*.json") if p.name != REUSE_FILE)


class RunCache:
    """Finished entries under ``root``, at most ``max_bytes`` of them (least recently used evicted first)."""

    def __init__(self, root: str | Path, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.entries_dir, self.staging, self.trash = (self.root / n for n in ("entries", "staging", "trash"))

    def _staging_dir(self) -> Path:
        self.staging.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="w-", dir=self.staging))

    def work_dir(self, label: str) -> Path:
        """A new private folder (on the cache's filesystem) for a computation to write into, then ``publish``
        with ``move=True``."""
        return self._staging_dir() / label

    # ---- reading ----------------------------------------------------------------------------------
    def get(self, key: str) -> Path | None:
        """The finished entry of ``key`` (and mark it used now), or None."""
        entry = self.entries_dir / key
        if not (entry / ENTRY_FILE).exists():
            return None
        try:
            os.utime(entry / ACCESS_FILE)
        except OSError:
            return None          # evicted in between
        return entry

    def info(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.entries_dir / key / ENTRY_FILE).read_text())
        except (OSError, ValueError):
            return None

    def checkout(self, key: str, dest: str | Path, reused_from: dict[str, Any] | None = None) -> Path | None:
        """Make ``dest`` hold the entry's run folder (replacing what it held, in one rename), with a reuse.json
        naming the key and, when reused, the run it came from. None when there is no such entry (or it was
        evicted meanwhile): the caller computes it."""
        entry = self.get(key)
        if entry is None:
            return None
        return self.place(entry, dest, {"key": key, **({"reused_from": reused_from} if reused_from else {})})

    def place(self, src: str | Path, dest: str | Path, state: dict[str, Any] | None = None) -> Path | None:
        """``dest`` replaced by ``src``'s files (linked), with ``state`` as its reuse.json (None: no state, the
        folder is nobody's cached state); None when ``src`` vanished meanwhile."""
        dest = Path(dest)
        staging = self._staging_dir()
        try:
            fresh = staging / "run"
            link_tree(Path(src), fresh)
            if state is not None:
                (fresh / REUSE_FILE).write_text(json.dumps({**state, "stamp": stamp(fresh)}, indent=2))
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                os.rename(dest, staging / "old")     # deleted with the staging folder
            os.rename(fresh, dest)
            return dest
        except FileNotFoundError:
            return None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def get_json(self, key: str) -> Any:
        entry = self.get(key)
        try:
            return json.loads((entry / VERDICT_FILE).read_text()) if entry else None
        except (OSError, ValueError):
            return None

    # ---- writing ----------------------------------------------------------------------------------
    def publish(self, key: str, folder: str | Path, info: dict[str, Any] | None = None, move: bool = False) -> Path:
        """Store ``folder`` as the entry of ``key`` (``move``: take the folder itself, from ``work_dir``; else
        link its files). If another writer got there first, its entry stays and this copy is dropped."""
        folder = Path(folder)
        staging = self._staging_dir()
        try:
            entry = staging / "entry"
            if move:
                os.rename(folder, entry)
            else:
                link_tree(folder, entry)
            (entry / REUSE_FILE).unlink(missing_ok=True)
            (entry / ENTRY_FILE).write_text(json.dumps({"key": key, "created": time.time(),
                                                        "bytes": folder_bytes(entry), **(info or {})}, indent=2))
            (entry / ACCESS_FILE).touch()
            self.entries_dir.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(entry, self.entries_dir / key)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                # the loser of a race: the winner's entry is complete; ours goes
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.evict(keep=(key,))
        return self.entries_dir / key

    def put_json(self, key: str, obj: Any, info: dict[str, Any] | None = None) -> Path:
        work = self.work_dir("verdict")
        work.mkdir()
        (work / VERDICT_FILE).write_text(json.dumps(obj))
        return self.publish(key, work, info, move=True)

    # ---- the bound --------------------------------------------------------------------------------
    def entries(self) -> list[dict[str, Any]]:
        """Every entry: key, bytes, last use, oldest use first."""
        out = []
        for entry in self.entries_dir.glob("*") if self.entries_dir.is_dir() else ():
            try:
                info = json.loads((entry / ENTRY_FILE).read_text())
                used = (entry / ACCESS_FILE).stat().st_mtime
            except (OSError, ValueError):
                continue
            out.append({"key": entry.name, "bytes": int(info.get("bytes", 0)), "used": used})
        return sorted(out, key=lambda e: (e["used"], e["key"]))

    def size(self) -> int:
        return sum(e["bytes"] for e in self.entries())

    def evict(self, keep=()) -> list[str]:
        """Remove the least recently used entries until the rest fit in ``max_bytes`` (``keep``: never these,
        e.g. the one just written). Returns the evicted keys."""
        entries = self.entries()
        total, gone = sum(e["bytes"] for e in entries), []
        for e in entries:
            if total <= self.max_bytes:
                break
            if e["key"] in keep:
                continue
            self.trash.mkdir(parents=True, exist_ok=True)
            doomed = self.trash / f"{e['key']}-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(self.entries_dir / e["key"], doomed)    # gone from entries/ at once, deleted after
            except OSError:
                continue                                          # another process evicted it first
            shutil.rmtree(doomed, ignore_errors=True)
            total -= e["bytes"]
            gone.append(e["key"])
        return gone
