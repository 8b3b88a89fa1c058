"""Verdicts on a run folder: recomputed from its stored answers (predictions.json, innocents.json,
thieves.json), never from the models, so anyone can re-judge a run cheaply.

    verify_run(run_dir)                    every verdict, stored in result.json (and thieves.json)
    run_verdicts(run_dir, **overrides)     the same with other settings, nothing written
    judge_suspect(run_dir, answers)        a verdict for any suspect's answers on the run's held-out triggers
    judge_checkpoint(run_dir, state_dict)  the same for an uploaded checkpoint (raises CheckpointError)
    record_thief(run_dir, result)          a finished steal added to thieves.json
    rejudge_thieves(draws, ...)            every recorded thief's copies judged again
"""
from __future__ import annotations

from pathlib import Path

from ..config import ConfigError
from ..verify import judge, nulls_for_run, run_settings, verify_predictions
from ..watermarks.schemes import SCHEMES
from .runs import Run, RunFolderError
from .schema import PREDICTIONS_FILE, TRIGGERS_FILE, TRIGGER_SET, VERDICT_KEYS, VICTIMS, heldout_key, is_proven


def record_thief(run_dir: str | Path | Run, result: dict) -> list[dict]:
    """Add a finished steal to the run's thieves.json: the thief (settings and seed) and, per stolen copy,
    accuracy, watermark kept and verdict. Stealing again with the same thief replaces its entry, so the file
    holds one entry per distinct thief: how much of each watermark survives depends on the thief's luck."""
    folder = Run.of(run_dir)
    run_dir = folder.path
    draws = [d for d in folder.thieves or [] if d.get("thief") != result["thief"]]
    predictions = folder.predictions or {}
    # a set with one label per input that an API scheme made for this thief (DAWN's register); a fixed key
    # with its own labels (the margin key) is the run's, judged like any other set
    api_sets = {s.trigger_set for s in SCHEMES.values() if s.serves_api}
    preds = predictions.get("sets", {})
    per_input = {k: v for k, v in (predictions.get("set_targets") or {}).items() if k in api_sets}
    innocents = (folder.innocents or {}).get("sets") or {}
    copies = {}
    # this steal's copies (older results.json: every scheme's)
    for name in result.get("stolen", VICTIMS.values()):
        m, v = result["models"].get(name), result.get("verification", {}).get(name)
        if m and v:
            set_name = TRIGGER_SET[name]
            copies[name] = {"accuracy": m["accuracy"], "watermark_success": m["watermark_success"],
                            **{k: v.get(k) for k in VERDICT_KEYS},
                            # the copy's answers on its held-out triggers: any later test can re-judge it
                            "predictions": preds.get(set_name, {}).get(name)}
            for scheme in SCHEMES.values():   # what a scheme with its own test re-judges the copy from
                copies[name].update(scheme.copy_record(run_dir, name))
            if set_name in per_input:   # a DAWN register is this thief's own: keep it with the copy
                copies[name]["register"] = {"labels": per_input[set_name],
                                            "innocents": innocents.get(set_name) or {}}
    entry = {"thief": result["thief"], "copies": copies}
    # the innocent suspect judged on this thief's own register (DAWN): a verdict that changes with the thief
    judged = {k: is_proven(v) for k, v in result.get("verification", {}).items()
              if k.startswith("clean_") and v.get("trigger_set") in per_input}
    if judged:
        entry["innocent_verdicts"] = judged
    draws.append(entry)
    folder.thieves = draws
    folder.save("thieves")
    return draws


def verify_run(run_dir: str | Path | Run, margin: float | None = None, test: str | None = None) -> dict:
    """Recompute every verdict from predictions.json (and innocents.json: the innocent population's answers
    on the run's triggers) and store them in result.json; re-judge every thief in thieves.json the same way.

    ``margin`` / ``test`` replace the run's ``verify_margin`` / ``test`` and are saved in config.json, so
    later steals and the app judge the run the same way (older runs get today's defaults). When the run has
    no innocents.json but the population for its task is already built (``python -m ewe nulls``), it is
    queried first."""
    folder = Run.open(run_dir)
    run_dir = folder.path
    if not folder.predictions:
        raise RunFolderError(f"{run_dir.name} has no {PREDICTIONS_FILE}: nothing to verify yet")
    cfg, result, preds = folder.saved, folder.result, folder.predictions
    for key, value in (("verify_margin", margin), ("test", test)):
        if value is not None:
            cfg[key] = value
            folder.save("saved")
    innocents = folder.innocents or _cached_innocents(folder)
    settings = run_settings(cfg)
    result["verification"] = verify_predictions(preds, innocents, **settings)
    for scheme in SCHEMES.values():   # a scheme judged by its own test replaces the trigger-set verdicts
        result["verification"].update(scheme.verdicts(run_dir, settings))
    folder.save("result")
    if folder.thieves:
        folder.thieves = rejudge_thieves(folder.thieves, preds, innocents, settings, run_dir)
        folder.save("thieves")
    return result


def run_verdicts(run_dir: str | Path | Run, **overrides) -> dict:
    """The run's verdicts recomputed with ``overrides`` of its settings (test, margin, alpha ...), without
    writing anything: what the app shows beside the stored verdicts (e.g. the paper's Welch test)."""
    run = Run.open(run_dir)
    if not run.predictions:
        return {}
    return verify_predictions(run.predictions, run.innocents, **{**run_settings(run.saved), **overrides})


def judge_suspect(run_dir: str | Path | Run, suspect_pred, set_name: str = "optimised", **overrides) -> dict:
    """A verdict for any suspect (an uploaded checkpoint, a model after a removal attack) from its answers on
    one of the run's held-out trigger sets, judged like the run's own suspects."""
    run = Run.open(run_dir)
    preds = run.predictions or {}
    if set_name not in preds.get("sets", {}):
        raise RunFolderError(f"{run.path.name} has no predictions on its {set_name} triggers yet")
    settings = {**run_settings(run.saved), **overrides}
    nulls = nulls_for_run(preds, run.innocents, settings["margin"])
    verdict = judge(list(suspect_pred), preds, set_name, nulls, **settings)
    if verdict is None:
        raise RunFolderError(f"{run.path.name} has no innocent population or clean reference to judge with")
    return verdict


def rejudge_thieves(draws: list[dict], preds: dict, innocents: dict | None, settings: dict,
                    run_dir: str | Path | None = None) -> list[dict]:
    """Every recorded thief's copies judged with ``settings`` (entries without stored predictions, made
    before thieves.json kept them, keep their old verdict). The nulls are the run's, whoever the thief; a
    copy of a scheme with its own test is judged by it from its record (needs ``run_dir``)."""
    nulls = nulls_for_run(preds, innocents, settings["margin"])
    own_tests = [s for s in SCHEMES.values() if s.own_test] if run_dir else []
    for d in draws:
        for name, c in d.get("copies", {}).items():
            if not c.get("predictions"):
                continue
            set_name = TRIGGER_SET[name]
            v = next((v for s in own_tests if s.stolen == name and (v := s.rejudge(run_dir, c, settings))), None)
            if v:
                pass   # judged by its own scheme's test from its record (dataset inference)
            elif "register" in c:   # judged on its own thief's register (DAWN), not the latest one
                own = {"target": preds["target"], "set_targets": {set_name: c["register"]["labels"]},
                       "sets": {set_name: {}}}
                v = judge(c["predictions"], own, set_name,
                          nulls_for_run(own, {"sets": {set_name: c["register"]["innocents"]}}, settings["margin"]),
                          **settings)
            else:
                v = judge(c["predictions"], preds, set_name, nulls, **settings)
            if v:
                c.update({k: v.get(k) for k in VERDICT_KEYS})
    return draws


def _cached_innocents(run: Run) -> dict | None:
    """Attach the task's innocent population when it is already built (never trains here)."""
    from ..innocents import attach_population, ready_population
    try:
        run_cfg = run.config
    except ConfigError:
        return None
    folder = ready_population(run_cfg)
    if folder is None or not run.has(TRIGGERS_FILE):
        return None
    return attach_population(run, folder)


def judge_checkpoint(run_dir: str | Path, path: str | Path, model_name: str, set_name: str = "optimised",
                     **overrides) -> dict:
    """A verdict for a state_dict checkpoint of architecture ``model_name``: its answers on the run's held-out
    ``set_name`` triggers, judged like the run's own suspects. Raises ``ewe.models.CheckpointError`` for a
    file that is not such a state_dict, RunFolderError for a run without triggers."""
    from ..models import build_model, load_state
    from ..train import predict
    run = Run.open(run_dir)
    run_dir, name = run.path, run.path.name
    if not run.has(TRIGGERS_FILE) or "input_shape" not in run.result:
        raise RunFolderError(f"{name} has no trigger set to test with; train it first")
    model = load_state(build_model(model_name, tuple(run.result["input_shape"])), path)
    own = next((s for s in SCHEMES.values() if s.own_test and s.own_key(run_dir) == set_name), None)
    if own is not None:   # a key judged by its scheme's own test on the model itself (dataset inference)
        verdict = own.judge_model(run_dir, model.to(run.saved.get("device", "cpu")),
                                  {**run_settings(run.saved), **overrides})
        if verdict is None:
            raise RunFolderError(f"{name} has no {set_name} evidence")
        return verdict
    tensors = run.triggers()
    if heldout_key(set_name) not in tensors:
        raise RunFolderError(f"{name} has no {set_name} triggers")
    triggers = tensors[heldout_key(set_name)]
    return judge_suspect(run, predict(model, triggers).tolist(), set_name, **overrides)
