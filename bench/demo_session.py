"""One visitor's default demo in a real browser, as a teacher runs it: Train with the page's settings, then
"Next: attack this model" and the Attack page's defaults, then "Next: verify ownership" until the first
verdict card shows. Used by bench/bench_demo.py (one visitor), bench/bench_class.py (a class at once) and
tests/app/test_class_load.py (its short version). Playwright's async API: one browser, one context per visitor.
The server and Chromium helpers are the tests' (tests/browser.py); ``load_tests_browser`` reaches them from a bench
run as a script.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

IDLE = """() => !document.querySelector('[data-testid="stStatusWidget"]')"""
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
VERDICT_TEXTS = ("Ownership proven with", "Not proven")
REUSED = "Reused from an identical run"          # ui/reuse.py: a result computed for another workspace


def load_tests_browser():
    """tests/browser.py as the module ``tests.browser`` (in sys.modules, so that ``from tests.browser import ...``
    works afterwards). Imported where the repository root is on sys.path (``python -m bench.X``, pytest); a bench
    run as a script (``python bench/X.py``) has only bench/ there, and nothing edits sys.path
    (tests/test_layout.py), so the file is then loaded by its path."""
    try:
        return importlib.import_module("tests.browser")
    except ModuleNotFoundError as exc:
        if exc.name not in ("tests", "tests.browser"):
            raise
    path = Path(__file__).resolve().parents[1] / "tests" / "browser.py"
    spec = importlib.util.spec_from_file_location("tests.browser", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class BenchError(Exception):
    """A step did not happen in time or the app showed an error: one clear line."""


async def wait_for(page, locator, what: str, timeout_s: float) -> None:
    from playwright.async_api import TimeoutError as PwTimeout
    try:
        await locator.first.wait_for(timeout=timeout_s * 1000)
    except PwTimeout:
        raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what} (page: {page.url})") from None


async def wait_idle(page, timeout_s: float = 120) -> None:
    from playwright.async_api import TimeoutError as PwTimeout
    try:
        await page.wait_for_function(IDLE, timeout=timeout_s * 1000)
    except PwTimeout:
        raise BenchError(f"the app did not finish its script run within {timeout_s:.0f} s ({page.url})") from None


async def check_no_error(page, where: str) -> None:
    errors = page.locator(ERRORS)
    if await errors.count():
        raise BenchError(f"{where}: the app shows an error: {(await errors.first.inner_text())[:300]}")


async def wait_job(page, done_text: str, what: str, timeout_s: float) -> None:
    """Wait until the job's result link shows, or fail on the job panel's failed / stopped message."""
    ended = (page.get_by_text(done_text).or_(page.get_by_text("The run failed"))
             .or_(page.get_by_text("Stopped on request")).or_(page.locator(ERRORS)))
    await wait_for(page, ended, what, timeout_s)
    if await page.get_by_text(done_text).count() == 0:
        await check_no_error(page, what)
        raise BenchError(f"{what}: the job ended without a result (stopped)")


async def click_when_ready(page, button: str, where: str) -> None:
    start = page.get_by_role("button", name=button)
    await wait_for(page, start, f'the {where}\'s "{button}" button', 120)
    await wait_idle(page)
    await check_no_error(page, where)
    await start.first.click()


async def in_view(page, locator) -> bool:
    """Whether the element shows without scrolling (the page as it first draws: scrolled to the top)."""
    box = await locator.first.bounding_box()
    size = page.viewport_size
    return bool(box and size and box["y"] >= 0 and box["y"] + box["height"] <= size["height"]
                and box["x"] + box["width"] <= size["width"])


async def demo_session(page, base_url: str, query: str = "", timeout_s: float = 1800,
                       clock=time.perf_counter) -> dict:
    """Run the demo on ``page`` from ``base_url/train?query``; seconds of each step as the browser shows it
    (so they include the app's polling delay): ``first_card_s``, from the Start training click to the first
    verdict card anywhere (the Attack page shows each thief's as it is recorded), and ``verdict_s``, to the
    first card on the Verify page; and whether the Start button, the live panel and Verify's first card show
    without scrolling in the page's viewport (``in_view``)."""
    from playwright.async_api import Error as PwError
    try:    # a room opening the link at once makes the first load slow on 2 cores: allow it
        await page.goto(f"{base_url}/train" + (f"?{query}" if query else ""), timeout=timeout_s * 1000)
    except PwError as exc:
        raise BenchError(f"the Train page did not load: {str(exc).splitlines()[0]}") from None
    start = page.get_by_role("button", name="Start training")
    await wait_for(page, start, "the Train page's Start training button", 120)
    await wait_idle(page)
    seen = {"start_button": await in_view(page, start)}
    await click_when_ready(page, "Start training", "Train page")
    t0 = clock()
    cancel = page.get_by_role("button", name="Cancel")
    await wait_for(page, cancel.or_(page.get_by_text("Next: attack this model")), "the live panel", 60)
    seen["live_panel"] = await in_view(page, cancel) if await cancel.count() else None
    await wait_job(page, "Next: attack this model", "the training to finish", timeout_s)
    trained = clock()
    reused_train = await page.get_by_text(REUSED).count()

    await page.get_by_text("Next: attack this model").first.click()       # the teacher's way to the Attack page
    await click_when_ready(page, "Start the attack", "Attack page")
    t1 = clock()
    verdict = page.get_by_text(VERDICT_TEXTS[0]).or_(page.get_by_text(VERDICT_TEXTS[1]))
    await wait_for(page, verdict.or_(page.get_by_text("Next: verify ownership")).or_(page.locator(ERRORS)),
                   "the first thief's verdict", timeout_s)
    first_card = clock()
    await wait_job(page, "Next: verify ownership", "the attack to finish", timeout_s)
    attacked = clock()

    await page.get_by_text("Next: verify ownership").first.click()
    await wait_for(page, verdict.or_(page.locator(ERRORS)), "the first verdict card", timeout_s)
    await check_no_error(page, "Verify page")
    shown = clock()
    await wait_idle(page)
    seen["verify_card"] = await in_view(page, verdict)
    query_of = parse_qs(urlparse(page.url).query)
    reused_attack = await page.get_by_text(REUSED).count()
    return {"train_s": round(trained - t0, 1), "attack_s": round(attacked - t1, 1),
            "first_card_s": round(first_card - t0, 1), "verdict_s": round(shown - t0, 1),
            "verdict": (await verdict.first.inner_text())[:200], "in_view": seen,
            "viewport": page.viewport_size,
            "workspace": (query_of.get("ws") or [None])[0], "run": (query_of.get("run") or [None])[0],
            "train_reused": bool(reused_train), "attack_reused": bool(reused_attack), "started_at": t0, "shown_at": shown}


def workspace_runs(runs_dir, ws: str) -> list[str]:
    """The run folders a workspace holds on disk (runs/<ws>/<run>/config.json)."""
    return sorted(p.parent.name for p in (runs_dir / ws).glob("*/config.json"))

