"""Measure the app as a user feels it (a measurement, not a timed test).

    .venv/bin/python bench/bench_app.py [--preset quick] [--sessions 4] [--json bench/results/app.json]

1. seconds from `streamlit run app.py` to an interactive first page (Chromium already running);
2. how long a click on another page takes while a run is training (median / max of several clicks);
3. peak server memory (VmHWM of the streamlit process) with one and with four browser sessions training,
   and whether the four all finish with their own results.
Needs Debian's chromium and the playwright package (as the browser test).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from browser import Server, browser_missing, launch  # noqa: E402  (bench/browser.py, beside this script)

IDLE = """() => !document.querySelector('[data-testid="stStatusWidget"]')"""


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_idle(page, timeout=30_000):
    page.wait_for_function(IDLE, timeout=timeout)


def nav(page, title: str, heading: str) -> float:
    t = time.perf_counter()
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    page.get_by_role("heading", name=heading).first.wait_for(timeout=30_000)
    wait_idle(page)
    return time.perf_counter() - t


def first_page(p, env) -> dict:
    browser = launch(p)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto("about:blank")
    server = Server(env=env)
    try:
        healthy = server.start()
        t = time.perf_counter()
        page.goto(server.url + "/")
        page.get_by_role("heading", name="Entangled watermarks, explained").wait_for(timeout=60_000)
        page.locator('[data-testid="stSidebarNav"] a', has_text="Train").first.wait_for()
        wait_idle(page)
        interactive = time.perf_counter() - server.started
        return {"healthy_s": round(healthy, 2), "interactive_s": round(interactive, 2),
                "page_load_after_healthy_s": round(time.perf_counter() - t, 2)}
    finally:
        server.stop()
        browser.close()


def start_training(page, url: str, query: str) -> None:
    page.goto(f"{url}/train?{query}")
    page.get_by_role("button", name="Start training").wait_for(timeout=60_000)
    wait_idle(page)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Run folder:").or_(page.get_by_text("Waiting in the queue")).first.wait_for(timeout=60_000)


def clicks_while_training(p, env, preset: str, n: int = 8) -> dict:
    server = Server(env=env)
    browser = launch(p)
    try:
        server.start()
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        pages = [("Learn", "Entangled watermarks, explained"), ("Runs", "Runs"),
                 ("Verify", "Verify ownership"), ("Train", "Train a watermarked model")]
        page.goto(server.url + "/")
        page.get_by_role("heading", name="Entangled watermarks, explained").wait_for(timeout=60_000)
        idle = []
        for i in range(n):                      # the same clicks with nothing training, for comparison
            idle.append(nav(page, *pages[(i + 1) % 4]))
            time.sleep(0.3)
        start_training(page, server.url, f"dataset=digits&preset={preset}")
        page.get_by_text("running").first.wait_for(timeout=60_000)
        time.sleep(2)
        times = []
        for i in range(n):
            times.append(nav(page, *pages[i % 4]))
            time.sleep(0.5)
        nav(page, "Train", "Train a watermarked model")
        still_training = page.get_by_role("button", name="Cancel").count() > 0
        cancel = page.get_by_role("button", name="Cancel")
        if cancel.count():
            cancel.first.click()
        return {"preset": preset, "clicks": len(times), "median_s": round(statistics.median(times), 3),
                "max_s": round(max(times), 3), "all_s": [round(t, 3) for t in times],
                "idle_median_s": round(statistics.median(idle), 3), "idle_max_s": round(max(idle), 3),
                "training_during_clicks": still_training, "server_rss_mb": round(rss_mb(server.proc.pid), 1)}
    finally:
        browser.close()
        server.stop()


def sessions_training(p, env, preset: str, sessions: int, timeout: float) -> dict:
    server = Server(env=env)
    browser = launch(p)
    try:
        server.start()
        pages = []
        t0 = time.perf_counter()
        for i in range(sessions):
            ctx = browser.new_context(viewport={"width": 1200, "height": 900})   # a separate session
            page = ctx.new_page()
            start_training(page, server.url, f"dataset=digits&preset={preset}&seed={i}")
            pages.append(page)
        queued = [pg.get_by_text("Waiting in the queue").count() > 0 for pg in pages]
        done = []
        for i, page in enumerate(pages):
            left = max(1.0, timeout - (time.perf_counter() - t0))
            page.get_by_text("Next: attack this model").or_(page.get_by_text("The run failed")) \
                .first.wait_for(timeout=left * 1000)
            text = page.inner_text("body")
            done.append({"session": i, "finished": "Next: attack this model" in text,
                         "own_seed_shown": f"seed {i}" in text})
        return {"preset": preset, "sessions": sessions, "seconds": round(time.perf_counter() - t0, 1),
                "queued_at_start": queued, "results": done,
                "all_finished_with_own_result": all(d["finished"] and d["own_seed_shown"] for d in done),
                "peak_mb": round(peak_mb(server.proc.pid), 1)}
    finally:
        browser.close()
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="quick", help="preset for the click test (quick: minutes)")
    ap.add_argument("--memory-preset", default="quick", help="preset for the memory / sessions test")
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--only", choices=("first", "clicks", "sessions", "four"), default=None)
    args = ap.parse_args()
    if browser_missing():
        sys.exit(f"cannot run: {browser_missing()}")
    from playwright.sync_api import sync_playwright
    runs = Path(tempfile.mkdtemp(prefix="ewe-bench-app-"))
    env = {"EWE_APP_RUNS_DIR": str(runs), "EWE_APP_TINY": "1", "EWE_DATA_DIR": ""}
    out: dict = {}
    with sync_playwright() as p:
        if args.only in (None, "first"):
            out["first_page"] = [first_page(p, env) for _ in range(3)]
            print("first page:", out["first_page"], flush=True)
        if args.only in (None, "clicks"):
            out["clicks_while_training"] = clicks_while_training(p, env, args.preset)
            print("clicks while training:", out["clicks_while_training"], flush=True)
        if args.only in (None, "sessions"):
            out["one_session"] = sessions_training(p, env, args.memory_preset, 1, args.timeout)
            print("one session:", out["one_session"], flush=True)
        if args.only in (None, "sessions", "four"):
            out["four_sessions"] = sessions_training(p, env, args.memory_preset, args.sessions, args.timeout)
            print(f"{args.sessions} sessions:", out["four_sessions"], flush=True)
    out["load_average"] = Path("/proc/loadavg").read_text().split()[:3]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
