"""End to end in a real browser: `streamlit run app.py` on a free localhost port, headless Chromium via
Playwright, the whole flow (train -> attack -> verify) on the tiny preset, with a reload mid-run and the
"Next" links followed to the right run. Screenshots go to
test-artifacts/ (git-ignored). Skips only where Chromium or Playwright is missing and CI is not set."""
from __future__ import annotations

import os
import time
from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser import ROOT, Server, browser_missing, launch
from ewe.results.runs import zip_run

ARTIFACTS = ROOT / "test-artifacts"
reason = browser_missing()
if reason and os.environ.get("CI", "").lower() == "true":
    raise RuntimeError(f"CI must run the browser test, but {reason}: .ci/run installs both")
pytestmark = pytest.mark.skipif(reason is not None, reason=reason or "")

ERROR_SELECTORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


def _no_errors(page, where: str) -> None:
    errors = page.locator(ERROR_SELECTORS)
    assert errors.count() == 0, f"{where}: {errors.first.inner_text()}"
    assert "Traceback" not in page.content(), where


def _nav(page, title: str, heading: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    page.get_by_text(heading).first.wait_for(timeout=30_000)


def _shot(page, name: str) -> None:
    time.sleep(1.0)     # let plotly finish its transition
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_whole_flow_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright
    ARTIFACTS.mkdir(exist_ok=True)
    env = {"EWE_APP_TINY": "1", "EWE_APP_RUNS_DIR": str(tmp_path / "runs"), "EWE_DATA_DIR": ""}
    with Server(env=env, log=ARTIFACTS / "browser-server.log") as server, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.goto(server.url + "/?preset=tiny&seed=3")
            page.get_by_text("Entangled watermarks, explained").wait_for(timeout=60_000)
            page.get_by_text("built-in digits").first.wait_for()      # says which data is in use
            _shot(page, "browser-01-learn")
            _no_errors(page, "learn")

            _nav(page, "Train", "Train a watermarked model")
            assert "seed=3" in page.url and "preset=tiny" in page.url   # settings live in the URL
            ws = parse_qs(urlparse(page.url).query)["ws"][0]            # and so does the workspace
            page.get_by_role("button", name="Start training").click()
            page.get_by_text("Cancel").first.wait_for(timeout=30_000)
            _shot(page, "browser-02-train-running")

            page.reload()                                   # mid-run: the panel and Cancel come back
            page.get_by_text("Train a watermarked model").wait_for(timeout=60_000)
            assert parse_qs(urlparse(page.url).query)["ws"] == [ws]
            page.get_by_role("button", name="Cancel").wait_for(timeout=30_000)
            page.get_by_text("running").first.wait_for(timeout=10_000)
            _nav(page, "Runs", "Runs")                      # the run being trained is listed
            page.get_by_text("Download a run folder").wait_for(timeout=30_000)
            _nav(page, "Train", "Train a watermarked model")

            page.get_by_text("Next: attack this model").wait_for(timeout=300_000)
            page.wait_for_selector(".js-plotly-plot svg.main-svg")
            _shot(page, "browser-03-train-finished")
            _no_errors(page, "train")

            # an upload made after the training is newer, listed first: "Next" must still open the trained run
            [trained] = [d for d in (tmp_path / "runs" / ws).iterdir() if d.is_dir()]
            zipped = tmp_path / "older-copy.zip"
            zipped.write_bytes(zip_run(trained))
            _nav(page, "Runs", "Runs")
            page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(zipped))
            page.get_by_text("Added older-copy.zip").wait_for(timeout=30_000)
            _nav(page, "Train", "Train a watermarked model")
            page.get_by_text("Next: attack this model").click()
            page.get_by_text("Steal the model").first.wait_for(timeout=30_000)
            victim = page.locator('[data-testid="stSelectbox"]', has_text="Victim run")
            victim.wait_for(timeout=30_000)
            _shot(page, "browser-04-attack-from-next")
            chosen = victim.evaluate("e => e.innerText + ' ' + [...e.querySelectorAll('input')]"
                                     ".map(i => i.value + ' ' + (i.getAttribute('aria-label') || '')).join(' ')")
            assert "#1 digits" in chosen and "seed 3" in chosen and "uploaded" not in chosen, chosen
            assert f"run={trained.name}" in page.url, page.url
            thieves = page.get_by_label("Thieves (of each kind)", exact=True)
            thieves.fill("2")          # two of each kind: the run's own thief and, side by side, the other kind
            thieves.press("Enter")
            time.sleep(1.0)      # let the rerun with 2 thieves reach the server before the click
            page.get_by_role("button", name="Start the attack").click()
            page.get_by_text("Next: verify ownership").wait_for(timeout=300_000)
            page.get_by_text("2 thieves with these settings").wait_for(timeout=30_000)   # one dot per thief
            _shot(page, "browser-04-attack")
            _no_errors(page, "attack")

            page.get_by_text("Next: verify ownership").click()
            page.get_by_text("Verify ownership").first.wait_for(timeout=30_000)
            assert f"run={trained.name}" in page.url
            page.get_by_text("proven for").first.wait_for(timeout=30_000)              # over both thieves
            page.get_by_text("Judges the copy stolen by").first.wait_for(timeout=10_000)
            assert "thief 4 of 4" in page.get_by_text("Judges the copy stolen by").first.inner_text()
            page.get_by_text("The thieves side by side").first.wait_for(timeout=10_000)
            page.wait_for_selector(".js-plotly-plot svg.main-svg", timeout=30_000)
            assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 3   # curves drawn
            verdict = page.get_by_text("Ownership proven with").or_(page.get_by_text("Not proven"))
            verdict.first.wait_for(timeout=10_000)
            _shot(page, "browser-05-verify")
            _no_errors(page, "verify")

            _nav(page, "Runs", "Runs")
            page.get_by_text("Download as .zip").wait_for(timeout=30_000)
            _shot(page, "browser-06-runs")
            _no_errors(page, "runs")
        finally:
            browser.close()
