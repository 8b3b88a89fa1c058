"""The app's warm-up: torch and the library imported in a background thread once the first page has been sent,
and the offline demo's innocent population trained there when it is missing. app.py starts it after the
first page and waits for its imports before each page. No Streamlit."""
from __future__ import annotations

import os
import threading
import time
from typing import Any

from ui import presets, work


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
            work.pipeline()
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
    if os.environ.get("EWE_APP_WARM_INNOCENTS", "1") in ("0", "false") or presets.default_dataset() != "digits":
        return
    from ewe.innocents import build_population, missing_recipes, population_dir
    cfg = presets.make_config("digits", "quick")
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
