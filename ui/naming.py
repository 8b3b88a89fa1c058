"""The app's words for the library's names: datasets, models, schemes' trigger sets, a run's settings, a thief's
answers; and which models of a result belong to which scheme, in the registry's order. No Streamlit, no torch."""
from __future__ import annotations

from typing import Any

from ewe.watermarks import schemes
from ewe.watermarks.schemes import SCHEMES, VICTIMS


PRETTY = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "digits": "Digits (built-in, offline)",
          "speech-commands": "Speech Commands"}


# every model's words, from the scheme registry (its victims and stolen copies, and the clean models): the same
# live mapping as ewe.watermarks.schemes.MODEL_LABELS, so a scheme registered later is named too
MODEL_LABELS = schemes.MODEL_LABELS
model_label = schemes.model_label


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


def thief_words(thief: dict[str, Any]) -> str:
    """A thief's answers in words: 'probabilities (T = 5)' or 'the top class only'."""
    if thief.get("extract_labels", thief.get("labels")) == "soft":
        return f"probabilities (T = {thief.get('distill_temperature', 1.0):g})"
    return "the top class only"
