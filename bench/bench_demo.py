"""How long the default demo takes in the app, as a teacher runs it (issue 24: "Train with defaults, then the
default thieves, then Verify, from a fresh clone with an empty cache, within 90 s to the first verdict card").
A measurement, not a test.

    .venv/bin/python bench/bench_demo.py [--json bench/results/demo.json] [--runs-dir DIR] [--cache-dir DIR]

Starts `streamlit run app.py` (default threads), opens the Train page in headless Chromium with the
defaults (digits, preset quick when EWE_DATA_DIR is unset), clicks "Start training" and waits for the
result, follows "Next: attack this model" to the Attack page (defaults: the run's own thief and, side by
side, the same thief given the other kind of answer),
clicks "Start the attack" and waits for it, follows "Next: verify ownership" until the first verdict card
shows (bench/demo_session.py). Prints the seconds from each Start click to its result as the browser shows it
(so they include the app's polling delay), from Start training to the verdict card, the job's own seconds from
result.json, and whether the innocent population was built during the run (the run's history.json has
innocentNN stages then) or reused from the cache (--cache-dir, default the user's: ~/.cache/ewe).
A quick check of the script itself: --preset tiny --cache-dir /tmp/some-empty-dir (sets EWE_APP_TINY=1).
Needs Debian's chromium and the playwright package (as the browser test).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __package__:          # python -m bench.bench_demo, from the repository root
    from .demo_session import BenchError, demo_session, load_tests_browser
else:                    # python bench/bench_demo.py: bench/ is on sys.path, the repository root is not
    from demo_session import BenchError, demo_session, load_tests_browser
load_tests_browser()     # the tests' server and Chromium helpers (tests/browser.py), importable below
from tests.browser import CHROMIUM, CHROMIUM_ARGS, Server, browser_missing  # noqa: E402

INNOCENT = re.compile(r"^innocent\d\d$")


async def run_demo(server: Server, preset: str | None, timeout_s: float, shots: Path | None,
                   viewport: tuple[int, int] = (1280, 720), seed: int | None = None, extra: str = "") -> dict:
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            query = "&".join(q for q in (f"preset={preset}" if preset else "",
                                         f"seed={seed}" if seed is not None else "", extra) if q)
            out = await demo_session(page, server.url, query, timeout_s)
            if shots:
                await page.screenshot(path=str(shots / "demo-verified.png"), full_page=True)
            return out
        finally:
            await browser.close()


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
    ap.add_argument("--seed", type=int, default=None,
                    help="the run's seed (default the page's, 0): a second seed on a warm cache is the second "
                         "demo of a session")
    ap.add_argument("--query", default="",
                    help="more of the link's settings, e.g. 'schemes=defended,plain_watermark,mea_defender'")
    ap.add_argument("--viewport", default="1280x720",
                    help="the browser window, WIDTHxHEIGHT (default a projector's 1280x720)")
    args = ap.parse_args()
    try:
        viewport = tuple(int(v) for v in args.viewport.lower().split("x"))
        assert len(viewport) == 2 and min(viewport) > 0
    except (ValueError, AssertionError):
        sys.exit(f"--viewport is WIDTHxHEIGHT, e.g. 1280x720; got {args.viewport!r}")
    if browser_missing():
        sys.exit(f"cannot run: {browser_missing()}")

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
        out = asyncio.run(run_demo(server, args.preset, args.timeout, args.screenshots, viewport, args.seed,
                                   args.query))
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
    print(f"attacked {out['attack_s']:7.1f} s  (Start the attack, {out.get('thieves_recorded')} thieves -> result shown)")
    print(f"first    {out['first_card_s']:7.1f} s  (Start training -> the first thief's verdict card, on Attack; "
          "goal 90 s)")
    print(f"verdict  {out['verdict_s']:7.1f} s  (Start training -> the first verdict card on Verify)")
    print(f"without scrolling at {out['viewport']['width']}x{out['viewport']['height']}: "
          + ", ".join(f"{k} {'yes' if v else 'NO' if v is not None else 'not seen'}" for k, v in out["in_view"].items()))
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
