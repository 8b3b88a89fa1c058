"""What the sidebar and the Train page start from: the preset names, the widgets' values of a preset, the
validated config of the user's settings, a dataset's class names, which data a run will use and the trigger
preview. No Streamlit; nothing here imports torch until a function needs it (the first page fills its widgets
from here)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ewe.config import PRESETS, TINY, RunConfig, preset, preset_values, tiny
from ewe.watermarks.schemes import check_schemes
from ui.naming import PRETTY


def tiny_enabled() -> bool:
    return os.environ.get("EWE_APP_TINY", "") not in ("", "0", "false")


def preset_names() -> tuple[str, ...]:
    return PRESETS + (("tiny",) if tiny_enabled() else ())


def default_dataset() -> str:
    return "mnist" if os.environ.get("EWE_DATA_DIR") else "digits"


# upper bounds of the app's settings, beyond what the method needs: a shared server keeps one typed 10,000
# epochs from holding everyone's queue (checked by RunConfig.validate, which names them; a command line has none)
LIMITS = {"temperature": 10_000.0, "kappa": 100.0, "epochs": 200, "w_epochs": 200.0}


def make_config(dataset: str, preset_name: str, **overrides: Any) -> RunConfig:
    """The preset with the user's overrides, validated with the app's LIMITS (raises ConfigError saying what to
    change). "tiny" is ewe.config.TINY, not a library preset: its run folder says "custom"."""
    if preset_name == "tiny":
        cfg = tiny(dataset, limits=LIMITS, **overrides)
    else:
        cfg = preset(dataset, preset_name, limits=LIMITS, **overrides)
    if cfg.schemes is not None:          # the scheme names too, here and not only when the run starts
        check_schemes(cfg.schemes)
    return cfg


def preset_defaults(dataset: str, preset_name: str) -> dict[str, Any]:
    """The Train page's widget values for a dataset and preset ("tiny": the quick preset with ewe.config.TINY).

    Read from ewe.config.preset_values without building a RunConfig: validation imports torch (the model
    registry), which would cost seconds on the first page. The reference aliases are converted as the config
    converts them (tau = 100 / T, kappa = reference kappa / batch size); tests/app/test_backend.py checks that
    the result equals the validated preset (ewe.config.preset / tiny) for every dataset and preset."""
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


def preview_triggers(dataset: str, trigger: str, source: int, n: int = 8):
    """Raw trigger candidates for the Train page preview (ewe.watermarks.triggers.preview)."""
    from ewe.watermarks.triggers import preview
    return preview(dataset, trigger, source, n)
