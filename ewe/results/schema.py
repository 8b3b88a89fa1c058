"""The run folder's file names and result.json's key names, in one place (docs/CONTRACT.md draws them).

Model names: every scheme's victim and stolen copy (``ewe.watermarks.schemes``: defended / extracted,
plain_watermark / plain_extracted, ablation_no_snnl / ablation_extracted) plus the two clean models.
``TRIGGER_SET`` says which held-out trigger set each model is judged on. Importing this module imports no
torch (the app's first page reads it).
"""
from __future__ import annotations

from typing import Any

from ..watermarks.schemes import BASE_SETS, STOLEN_COPIES, TRIGGER_SET, VICTIMS

__all__ = ["CONFIG_FILE", "RESULT_FILE", "HISTORY_FILE", "PREDICTIONS_FILE", "DIAGNOSTICS_FILE", "THIEVES_FILE",
           "INNOCENTS_FILE", "ROBUSTNESS_FILE", "REUSE_FILE", "TRIGGERS_FILE", "HELDOUT_KEYS", "heldout_key", "heldout_sets", "VICTIMS", "STOLEN_COPIES", "TRIGGER_SET",
           "CLEAN_MODELS", "VERDICT_KEYS", "is_proven", "METRICS", "suspects", "get", "metric_values"]

CONFIG_FILE = "config.json"              # RunConfig.to_dict() (+ "effective" notes)
RESULT_FILE = "result.json"              # the contract in docs/CONTRACT.md
HISTORY_FILE = "history.json"            # the events (ewe.callbacks)
PREDICTIONS_FILE = "predictions.json"    # {"target", "sets": {trigger set: {model: [class per trigger]}}}
DIAGNOSTICS_FILE = "diagnostics.json"    # geometry and projections before / after the watermark phase
THIEVES_FILE = "thieves.json"            # one entry per thief that stole the run's victims (verdicts.record_thief)
INNOCENTS_FILE = "innocents.json"        # the innocent population's answers on the run's triggers
ROBUSTNESS_FILE = "robustness.json"      # removal-attack records (ewe.experiments.robustness)
REUSE_FILE = "reuse.json"                # the run cache's key of the folder's state, and where a reused run came
                                         # from (ewe.results.cache)
TRIGGERS_FILE = "triggers.pt"            # {"train", "heldout", "raw_train", "raw_heldout"} tensors, plus
                                         # "<set>_train" / "<set>_heldout" of a scheme's own set ("composite")
# a trigger set -> the triggers.pt key of its held-out half (other sets: "<set>_heldout")
HELDOUT_KEYS = {"optimised": "heldout", "classic": "raw_heldout"}

CLEAN_MODELS = tuple(BASE_SETS)          # the clean reference and the independent clean model

# what thieves.json keeps of each copy's verdict (ewe.verify.verify)
VERDICT_KEYS = ("test", "p_value", "queries_for_95", "proven", "verified", "null_rate", "null_models", "margin",
                "n_queries", "suspect_rate", "reference_rate", "binomial_p", "rank_p", "innocents_at_least", "outranks_innocents", "smallest_p", "t_undefined")


def is_proven(verdict: dict | None) -> bool:
    """A verdict's "proven" (p below alpha on every held-out query), the one way to read it: a verdict
    (result.json "verification", a thieves.json copy, a robustness record) stores it as ``proven`` and, the
    same value under its older name, ``verified``; folders judged before ``proven`` existed have ``verified``
    alone, and the oldest neither, where a number of queries that proved it (``queries_for_95``) says it."""
    v = verdict or {}
    for key in ("proven", "verified"):
        if v.get(key) is not None:
            return bool(v[key])
    return v.get("queries_for_95") is not None

# a sweep's and a report's metric name -> its path in result.json
METRICS: dict[str, tuple[str, ...]] = {
    "clean_accuracy": ("models", "clean", "accuracy"),
    "defended_accuracy": ("models", "defended", "accuracy"),
    "defended_watermark": ("models", "defended", "watermark_success"),
    "extracted_accuracy": ("models", "extracted", "accuracy"),
    "extracted_watermark": ("models", "extracted", "watermark_success"),
    "plain_watermark_watermark": ("models", "plain_watermark", "watermark_success"),
    "plain_extracted_watermark": ("models", "plain_extracted", "watermark_success"),
    "ablation_extracted_watermark": ("models", "ablation_extracted", "watermark_success"),
    "extracted_queries_for_95": ("verification", "extracted", "queries_for_95"),
    "plain_extracted_queries_for_95": ("verification", "plain_extracted", "queries_for_95"),
    "ablation_extracted_queries_for_95": ("verification", "ablation_extracted", "queries_for_95"),
    "extracted_p_value": ("verification", "extracted", "p_value"),
    "plain_extracted_p_value": ("verification", "plain_extracted", "p_value"),
    "ablation_extracted_p_value": ("verification", "ablation_extracted", "p_value"),
    "clean_p_value": ("verification", "clean", "p_value"),      # the innocent suspect: must stay > alpha
    "seconds": ("seconds", "total"),
}


def suspects() -> dict[str, tuple[str, str]]:
    """result.json's "verification" key -> (the suspect model, the trigger set it is judged on): the EWE
    victim, every scheme's stolen copy, and the independent clean model (the innocent suspect) on both
    trigger sets, since clean models disagree most on the classic (unoptimised) triggers, and on any scheme's
    own set ("clean_composite")."""
    return {"defended": ("defended", "optimised"),
            **{stolen: (stolen, TRIGGER_SET[stolen]) for stolen in VICTIMS.values()},
            "clean": ("independent_clean", "optimised"), "clean_classic": ("independent_clean", "classic"),
            # a scheme's own set (MEA-Defender's composites): the innocent suspect must not be claimed there
            # either; runs without that set have no such verdict
            **{f"clean_{s}": ("independent_clean", s) for s in sorted(set(TRIGGER_SET.values()))
               if s not in HELDOUT_KEYS}}


def heldout_key(set_name: str) -> str:
    """The triggers.pt key of ``set_name``'s held-out triggers."""
    return HELDOUT_KEYS.get(set_name, f"{set_name}_heldout")


def heldout_sets(tensors: dict) -> dict:
    """Every held-out trigger set a run's triggers.pt holds, by set name: "optimised" and "classic", and the
    set of any scheme with its own triggers (MEA-Defender's "composite"); a run made before that scheme
    existed, or without it, simply has none."""
    sets = {name: tensors[key] for name, key in HELDOUT_KEYS.items() if key in tensors}
    sets.update({key[:-len("_heldout")]: t for key, t in tensors.items()
                 if key.endswith("_heldout") and key not in HELDOUT_KEYS.values()})
    return sets


def get(d: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` in nested dicts, None where a key is missing."""
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def metric_values(result: dict | None) -> dict[str, float | None]:
    """Every METRICS value of one result.json ({} for none)."""
    return {name: get(result, path) for name, path in METRICS.items()} if result else {}
