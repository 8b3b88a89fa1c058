"""How long the default demo takes in the app, as a teacher runs it (issue 16: "train, then 3 thieves,
within 3 minutes on 2 cores"). A measurement, not a test.

    .venv/bin/python bench/bench_demo.py [--json bench/results/demo.json] [--runs-dir DIR] [--cache-dir DIR]

Starts `streamlit run app.py` (default threads), opens the Train page in headless Chromium with the
defaults (digits, preset quick when EWE_DATA_DIR is unset), clicks "Start training" and waits for the
result, follows "Next: attack this model" to the Attack page (defaults: 3 thieves, the run's own thief),
clicks "Start the attack" and waits for it. Prints the seconds from each Start click to its result as the
browser shows it (so they include the app's polling delay), the total, the job's own seconds from
result.json, and whether the innocent population was built during the run (the run's history.json has
innocentNN stages then) or reused from the cache (--cache-dir, default the user's: ~/.cache/ewe).
A quick check of the script itself: --preset tiny --cache-dir /tmp/some-empty-dir (sets EWE_APP_TINY=1).
Needs Debian's chromium and the playwright package (as the browser test).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from browser import Server, browser_missing, launch  # noqa: E402  (bench/browser.py, beside this script)

IDLE = """() => !document.querySelector('[data-testid="stStatusWidget"]')"""
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
INNOCENT = re.compile(r"^innocent\d\d$")


class BenchError(Exception):
    """A step did not happen in time or the app showed an error: one clear line."""


def wait_for(page, locator, what: str, timeout_s: float) -> None:
    from playwright.sync_api import TimeoutError as PwTimeout
    try:
        locator.first.wait_for(timeout=timeout_s * 1000)
    except PwTimeout:
        raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what} (page: {page.url})") from None


def wait_idle(page, timeout_s: float = 60) -> None:
    from playwright.sync_api import TimeoutError as PwTimeout
    try:
        page.wait_for_function(IDLE, timeout=timeout_s * 1000)
    except PwTimeout:
        raise BenchError(f"the app did not finish its script run within {timeout_s:.0f} s ({page.url})") from None


def check_no_error(page, where: str) -> None:
    errors = page.locator(ERRORS)
    if errors.count():
        raise BenchError(f"{where}: the app shows an error: {errors.first.inner_text()[:300]}")


def wait_job(page, done_text: str, what: str, timeout_s: float) -> None:
    """Wait until the job's result link shows, or fail on the job panel's failed / stopped message."""
    ended = (page.get_by_text(done_text).or_(page.get_by_text("The run failed"))
             .or_(page.get_by_text("Stopped on request")).or_(page.locator(ERRORS)))
    wait_for(page, ended, what, timeout_s)
    if page.get_by_text(done_text).count() == 0:
        check_no_error(page, what)
        raise BenchError(f"{what}: the job ended without a result (stopped)")



def timed_job(page, button: str, where: str, done_text: str, what: str, timeout_s: float) -> float:
    """Seconds from clicking ``button`` (once the page is idle and shows no error) until ``done_text`` shows."""
    start = page.get_by_role("button", name=button)
    wait_for(page, start, f'the {where}\'s "{button}" button', 120)
    wait_idle(page)
    check_no_error(page, where)
    t0 = time.perf_counter()
    start.click()
    wait_job(page, done_text, f"{what} to finish", timeout_s)
    return time.perf_counter() - t0

def run_demo(p, server: Server, preset: str | None, timeout_s: float, shots: Path | None) -> dict:
    browser = launch(p)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(server.url + "/train" + (f"?preset={preset}" if preset else ""))
        trained = timed_job(page, "Start training", "Train page", "Next: attack this model", "the training",
                            timeout_s)
        if shots:
            page.screenshot(path=str(shots / "demo-trained.png"), full_page=True)

        page.get_by_text("Next: attack this model").first.click()     # the teacher's way to the Attack page
        wait_for(page, page.get_by_role("button", name="Start the attack"),
                 'the Attack page\'s "Start the attack" button', 120)
        wait_idle(page)
        thieves = page.get_by_label("Thieves", exact=True).input_value()
        attacked = timed_job(page, "Start the attack", "Attack page", "Next: verify ownership", "the attack",
                             timeout_s)
        if shots:
            page.screenshot(path=str(shots / "demo-attacked.png"), full_page=True)
        ws = re.search(r"[?&]ws=([^&]+)", page.url)
        run = re.search(r"[?&]run=([^&]+)", page.url)
        return {"train_s": round(trained, 1), "attack_s": round(attacked, 1),
                "total_s": round(trained + attacked, 1), "thieves_setting": int(thieves),
                "workspace": ws and ws.group(1), "run_key": run and run.group(1)}
    finally:
        browser.close()


def run_folder(runs_dir: Path) -> Path | None:
    """The one run folder the demo made (runs/<workspace>/<run>/ with a config.json)."""
    found = sorted(p.parent for p in runs_dir.glob("*/*/config.json"))
    return found[-1] if found else None


def about_run(folder: Path | None) -> dict:
    """What the run folder says: the job's own seconds, thieves, and whether the population was built."""
    if folder is None:
        return {"run_dir": None}
    def read(name, default):
        try:
            return json.loads((folder / name).read_text())
        except (OSError, ValueError):
            return default
    history = read("history.json", [])
    built = sorted({e.get("stage") for e in history if INNOCENT.match(str(e.get("stage", "")))})
    result = read("result.json", {})
    cfg = read("config.json", {})
    thieves = read("thieves.json", [])
    return {"run_dir": str(folder), "dataset": cfg.get("dataset"), "innocents": cfg.get("innocents"),
            "innocents_built_in_run": len(built), "population": "built during the run" if built else
            "reused from the cache", "job_seconds": (result.get("seconds") or {}),
            "thieves_recorded": len(thieves) if isinstance(thieves, list) else len(thieves.get("thieves", []))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs-dir", type=Path, default=None,
                    help="EWE_APP_RUNS_DIR for the server (default: a new temporary folder)")
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="EWE_CACHE_DIR (default: the user's cache, so an innocent population built before "
                         "is reused)")
    ap.add_argument("--preset", default=None,
                    help="leave unset for the default demo; 'tiny' checks this script quickly (EWE_APP_TINY=1)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed for each job (default 1800)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON here")
    ap.add_argument("--screenshots", type=Path, default=None, help="save a screenshot after each job here")
    args = ap.parse_args()
    if browser_missing():
        sys.exit(f"cannot run: {browser_missing()}")
    from playwright.sync_api import sync_playwright

    runs = args.runs_dir or Path(tempfile.mkdtemp(prefix="ewe-bench-demo-"))
    runs.mkdir(parents=True, exist_ok=True)
    env = {"EWE_APP_RUNS_DIR": str(runs.resolve())}
    if args.cache_dir:
        args.cache_dir.mkdir(parents=True, exist_ok=True)
        env["EWE_CACHE_DIR"] = str(args.cache_dir.resolve())
    if args.preset == "tiny":
        env["EWE_APP_TINY"] = "1"
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    log = runs / "server.log"
    cache = env.get("EWE_CACHE_DIR") or os.environ.get("EWE_CACHE_DIR") or str(Path.home() / ".cache" / "ewe")
    print(f"runs: {runs}  cache: {cache}  server log: {log}  preset: {args.preset or 'default'}", flush=True)

    server = Server(env=env, log=log)
    try:
        server.start(timeout=120)
        with sync_playwright() as p:
            out = run_demo(p, server, args.preset, args.timeout, args.screenshots)
    except BenchError as exc:
        sys.exit(f"bench_demo: {exc} (server log: {log})")
    except (RuntimeError, TimeoutError) as exc:   # the server did not start
        sys.exit(f"bench_demo: the app did not start: {exc} (server log: {log})")
    finally:
        server.stop()

    out.update(about_run(run_folder(runs)))
    out.update({"preset": args.preset or "default", "cache_dir": cache, "cpus": os.cpu_count(),
                "load_average": Path("/proc/loadavg").read_text().split()[:3]})
    print(f"trained  {out['train_s']:7.1f} s  (Start training -> result shown)")
    print(f"attacked {out['attack_s']:7.1f} s  (Start the attack, {out['thieves_setting']} thieves -> result shown)")
    print(f"total    {out['total_s']:7.1f} s  (goal: 180 s)")
    print(f"innocent population: {out.get('population')} ({out.get('innocents_built_in_run')} models trained "
          f"in the run; cache {cache})")
    print(f"job's own seconds (result.json; steal_* are the last thief's only): {out.get('job_seconds')}")
    print(f"load average {' '.join(out['load_average'])} on {out['cpus']} cores")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
