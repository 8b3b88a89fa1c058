"""A run folder read back for the pages, and its copies judged again with the page's test and margin: the run's
parts (``read_run``), its triggers and keys, the verdicts recomputed from its stored answers, every thief's,
and an uploaded checkpoint's on each key. Cached by the files' modification times and the settings (the pages
ask again on every click); a folder checked out of the run cache shares its verdicts with every workspace. No
Streamlit."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ewe.config import RunConfig
from ewe.results.runs import Run
from ewe.results.schema import PREDICTIONS_FILE, RESULT_FILE, TRIGGERS_FILE
from ewe.watermarks.schemes import SCHEMES, VICTIMS
from ui.naming import scheme_models
from ui.uploads import UploadError
from ui.workspaces import run_cache, run_cache_enabled


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


def load_triggers(run_dir: str | Path) -> dict[str, Any] | None:
    run = Run(run_dir)
    if not run.has(TRIGGERS_FILE):
        return None
    try:
        return run.triggers()
    except Exception:
        return None


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


def thieves_judged(run_dir: str | Path, run: dict, **overrides) -> list[dict]:
    """The run's thieves.json with every copy judged with ``overrides`` (test, margin) from its stored
    answers (entries made before answers were stored keep their recorded verdict); cached like reverify,
    since the Verify page asks again on every click."""
    import copy as _copy

    from ewe.results.verdicts import rejudge_thieves
    from ewe.verify import run_settings

    def compute():
        thieves = _copy.deepcopy(list(run.get("thieves") or []))
        if run.get("predictions"):
            thieves = rejudge_thieves(thieves, run["predictions"], Run(run_dir).innocents,
                                    {**run_settings(run.get("config") or {}), **overrides}, run_dir)
        return thieves
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


def suspect_models(run: dict | None, run_dir: str | Path) -> list[str]:
    """The run's own models the Verify page can test as suspects: each scheme's victim and its copy, then the
    clean models; those with a checkpoint in the folder."""
    result = (run or {}).get("result") or {}
    return [n for n in (*scheme_models(result.get("models")), "clean", "independent_clean")
            if Run(run_dir).model_file(n).exists()]


def model_suspect(run: dict | None, run_dir: str | Path, name: str) -> tuple[bytes, str, str]:
    """The run's model ``name`` as a suspect for ``verify_on_keys``: its checkpoint's bytes, its architecture
    and its file name."""
    path = Run(run_dir).model_file(name)
    return path.read_bytes(), model_architecture(run or {}, name), path.name
