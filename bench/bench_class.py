"""A class on one server (issue 25, part 2): N real browser sessions against one local `streamlit run app.py`,
each in its own workspace, all running the default demo (Train, the default thieves, Verify) at once (they open
the link 0.5 s apart, as a room does; each clicks Start as soon as its page is ready).
A measurement, not a test (its short version is tests/app/test_class_load.py).

    .venv/bin/python bench/bench_class.py --sessions 30                  # 30 identical demo starts
    .venv/bin/python bench/bench_class.py --sessions 10 --distinct-seeds # 10 runs that differ by their seed
    .venv/bin/python bench/bench_class.py --sessions 3 --preset tiny     # a quick check of the script

Each server starts from an empty runs folder and an empty cache (so the run cache and the innocent
populations are what a fresh clone has: digits ships its populations). With --baseline, one session alone
on its own fresh server first: "the time of one run" the class is compared with. While the class runs, one
more visitor (its own workspace) switches pages back and forth (Learn <-> Runs): seconds from the click to
the new page's heading with the script run finished, p50 / p95. The server's memory is sampled every
second (VmRSS; the app trains in its own process) and VmHWM read at the end. Afterwards every workspace's
folder must hold exactly its one run, the one its Verify page showed. Needs Debian's chromium and playwright.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__:          # imported as bench.bench_class (tests/app/test_class_load.py) or python -m bench.bench_class
    from .demo_session import BenchError, demo_session, load_tests_browser, wait_for, wait_idle, workspace_runs
    from .protocol_session import protocol_demo, protocol_switches
else:                    # run as a script: bench/ is on sys.path, the repository root is not
    from demo_session import BenchError, demo_session, load_tests_browser, wait_for, wait_idle, workspace_runs
    from protocol_session import protocol_demo, protocol_switches
load_tests_browser()     # the tests' server and Chromium helpers (tests/browser.py), importable below
from tests.browser import CHROMIUM, CHROMIUM_ARGS, Server, browser_missing  # noqa: E402

ARRIVAL_S = 0.5        # seconds between two visitors opening the link: 30 arrive within 15 s
SWITCH_PAGES = (("Runs", "Runs"), ("Learn", "Entangled watermarks, explained"))     # sidebar link, page title


def proc_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


async def sample_memory(pid: int, samples: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        kib = proc_kib(pid, "VmRSS")
        if kib:
            samples.append(kib)
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass


async def switch_pages(browser, base_url: str, switches: list[float], stop: asyncio.Event) -> None:
    """A visitor who only looks around while the class trains: seconds per page switch."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1200})
    page = await context.new_page()
    heading = lambda title: page.get_by_role("heading", name=title, exact=True)       # noqa: E731
    await page.goto(f"{base_url}/?ws=probe{secrets.token_hex(4)}")
    await wait_for(page, heading(SWITCH_PAGES[1][1]), "the Learn page", 120)
    await wait_idle(page)
    i = 0
    while not stop.is_set():
        link, title = SWITCH_PAGES[i % 2]
        t0 = time.perf_counter()
        await page.locator('[data-testid="stSidebarNav"] a', has_text=link).first.click()
        await wait_for(page, heading(title), f"the {link} page", 120)
        await wait_idle(page)
        switches.append(time.perf_counter() - t0)
        i += 1
        await asyncio.sleep(0.5)
    await context.close()


def class_queries(sessions: int, distinct: bool, preset: str | None) -> list[dict]:
    """Each session's link: its own workspace, the preset, and with ``distinct`` its own seed."""
    tag = secrets.token_hex(3)
    queries = []
    for i in range(sessions):
        q = {"ws": f"class{i:02d}{tag}"}
        if preset:
            q["preset"] = preset
        if distinct:
            q["seed"] = str(i)
        queries.append(q)
    return queries


def _relative(outcomes: list[dict], queries: list[dict], t0: float) -> list[dict]:
    for o, q in zip(outcomes, queries):
        o["workspace"] = q["ws"]
        for k in ("started_at", "shown_at"):
            if k in o:
                o[k] = round(o[k] - t0, 1)
    return outcomes


async def _watched(server: Server, queries: list[dict], visit, probe, errors: tuple, clients: str,
                   arrival_s: float) -> dict:
    """The class's visits (``visit(i, query string)``, one per query, arriving ``arrival_s`` apart) while the
    server's memory is sampled and, with ``probe(switches, stop)``, one more visitor switches pages; an error of
    ``errors`` becomes that visit's outcome (or the probe's), and the class's other numbers are kept."""
    memory: list[int] = []
    switches: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_memory(server.proc.pid, memory, stop))
    prober = asyncio.create_task(probe(switches, stop)) if probe else None
    t0 = time.perf_counter()

    async def one(i, q):
        await asyncio.sleep(i * arrival_s)          # the room opens the link within a few seconds
        try:
            return await visit(i, "&".join(f"{k}={v}" for k, v in q.items()))
        except errors as exc:
            return {"workspace": q["ws"], "error": str(exc).splitlines()[0]}
    outcomes = await asyncio.gather(*(one(i, q) for i, q in enumerate(queries)))
    stop.set()
    await sampler
    probe_error = None
    if prober:
        try:
            await prober
        except errors as exc:
            probe_error = str(exc).splitlines()[0]
    return {"outcomes": _relative(outcomes, queries, t0), "memory_kib": memory, "switches": switches,
            "probe_error": probe_error, "peak_kib": proc_kib(server.proc.pid, "VmHWM"), "clients": clients}


async def run_class_protocol(server: Server, sessions: int, distinct: bool, preset: str | None,
                             timeout_s: float, probe: bool, arrival_s: float = ARRIVAL_S) -> dict:
    """The class with Streamlit-protocol visitors (bench/protocol_session.py) instead of browsers: the server's
    work per visitor is the same, the browsers' rendering is not on the machine."""
    def switching(switches, stop):
        return protocol_switches(server.url, f"ws=probe{secrets.token_hex(4)}", ("runs", "learn"), switches, stop)
    return await _watched(server, class_queries(sessions, distinct, preset),
                          lambda i, query: protocol_demo(server.url, query, timeout_s),
                          switching if probe else None, (BenchError, OSError), "protocol", arrival_s)


async def run_class(server: Server, sessions: int, distinct: bool, preset: str | None, timeout_s: float,
                    probe: bool, arrival_s: float = ARRIVAL_S) -> dict:
    from playwright.async_api import Error as PwError, async_playwright
    queries = class_queries(sessions, distinct, preset)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        contexts = [await browser.new_context(viewport={"width": 1400, "height": 1600}) for _ in queries]
        pages = [await c.new_page() for c in contexts]
        got = await _watched(server, queries, lambda i, query: demo_session(pages[i], server.url, query, timeout_s),
                             (lambda switches, stop: switch_pages(browser, server.url, switches, stop)) if probe
                             else None, (BenchError, PwError), "browser", arrival_s)
        await browser.close()
    return got


def isolation(runs: Path, outcomes: list[dict]) -> dict:
    """Every workspace holds exactly its one run, the one its Verify page showed; no run is lost."""
    problems = []
    for o in outcomes:
        held = workspace_runs(runs, o["workspace"])
        if "error" in o:
            problems.append(f"{o['workspace']}: {o['error']}")
        elif held != [o.get("run")]:
            problems.append(f"{o['workspace']}: holds {held}, its Verify page showed {o.get('run')}")
    return {"ok": not problems, "problems": problems}


def computed(runs: Path, outcomes: list[dict], name: str) -> int:
    """How many times a checkpoint was computed over the workspaces' runs: served from the run cache, the
    workspaces' checkpoints are hard links to one file (defended.pt: the trainings; extracted.pt, the stolen
    copy of EWE's model: the steals). The JSON files are copies (ewe.results.cache.link_tree)."""
    files = [runs / o["workspace"] / o["run"] / name for o in outcomes if o.get("run")]
    return len({(f.stat().st_dev, f.stat().st_ino) for f in files if f.exists()})


def serve(sessions: int, distinct: bool, preset: str | None, timeout_s: float, probe: bool,
          label: str, runs: Path | None = None, clients: str = "browser") -> dict:
    """A fresh server (empty runs folder and cache: ``runs``, default a new temporary folder) and the class, its
    visitors real browsers or Streamlit-protocol clients (``clients``)."""
    runs = runs or Path(tempfile.mkdtemp(prefix=f"ewe-bench-class-{label}-"))
    runs.mkdir(parents=True, exist_ok=True)
    env = {"EWE_APP_RUNS_DIR": str(runs), "EWE_CACHE_DIR": str(runs / ".ewe-cache"), "EWE_DATA_DIR": ""}
    if preset == "tiny":
        env["EWE_APP_TINY"] = "1"
    log = runs / "server.log"
    print(f"[{label}] {sessions} session(s){' (distinct seeds)' if distinct else ''}; runs {runs}; "
          f"server log {log}", flush=True)
    server = Server(env=env, log=log)
    try:
        server.start(timeout=120)
        visit = run_class_protocol if clients == "protocol" else run_class
        got = asyncio.run(visit(server, sessions, distinct, preset, timeout_s, probe))
    finally:
        server.stop()
    got["isolation"] = isolation(runs, got["outcomes"])
    got["trainings"] = computed(runs, got["outcomes"], "models/defended.pt")
    got["steals"] = computed(runs, got["outcomes"], "models/extracted.pt")
    entries = runs / ".run-cache" / "entries"
    got["cache_entries"] = len([d for d in entries.iterdir() if d.is_dir()]) if entries.is_dir() else 0
    got["runs_dir"] = str(runs)
    return got


def summary(got: dict) -> dict:
    done = [o for o in got["outcomes"] if "verdict_s" in o]
    shown = [o["shown_at"] for o in done]
    sw = sorted(got["switches"])
    q = statistics.quantiles(sw, n=20, method="inclusive") if len(sw) >= 2 else sw * 19
    return {"clients": got.get("clients", "browser"), "sessions": len(got["outcomes"]), "with_verdict": len(done),
            "first_verdict_s": min(shown) if shown else None, "last_verdict_s": max(shown) if shown else None,
            "verdict_s_median": statistics.median(shown) if shown else None,
            "train_said_reused": sum(o.get("train_reused", False) for o in done),
            "attack_said_reused": sum(o.get("attack_reused", False) for o in done),
            "page_switches": len(sw), "probe_error": got.get("probe_error"), "switch_p50_s": round(statistics.median(sw), 2) if sw else None,
            "switch_p95_s": round(q[18], 2) if sw else None,
            "server_peak_mib": round((got["peak_kib"] or max(got["memory_kib"] or [0])) / 1024),
            "server_rss_max_sampled_mib": round(max(got["memory_kib"] or [0]) / 1024),
            "cache_entries": got["cache_entries"], "trainings_computed": got["trainings"],
            "steals_computed": got["steals"], "isolation": got["isolation"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--distinct-seeds", action="store_true", help="session i trains seed i (no two alike)")
    ap.add_argument("--preset", default=None, help="leave unset for the default demo; 'tiny' checks the script")
    ap.add_argument("--baseline", action="store_true", help="first, one session alone on its own server")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed for each job")
    ap.add_argument("--clients", choices=("browser", "protocol"), default="browser",
                    help="real Chromium sessions, or clients of Streamlit's websocket protocol (no rendering: the "
                         "server's load without thirty browsers on its cores)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON here")
    args = ap.parse_args()
    if args.sessions < 1:
        sys.exit("--sessions must be at least 1")
    if args.clients == "browser" and browser_missing():
        sys.exit(f"cannot run: {browser_missing()}")
    out: dict = {"cpus": os.cpu_count(), "preset": args.preset or "default", "distinct_seeds": args.distinct_seeds,
                 "clients": args.clients}
    try:
        if args.baseline:
            alone = serve(1, False, args.preset, args.timeout, False, "alone", clients=args.clients)
            out["alone"] = summary(alone)
            print(f"[alone] first verdict after {out['alone']['first_verdict_s']} s", flush=True)
        got = serve(args.sessions, args.distinct_seeds, args.preset, args.timeout, True, "class", clients=args.clients)
    except (RuntimeError, TimeoutError) as exc:
        sys.exit(f"bench_class: the app did not start: {exc}")
    out["class"] = summary(got)
    out["class_outcomes"] = got["outcomes"]
    out["load_average"] = Path("/proc/loadavg").read_text().split()[:3]
    c = out["class"]
    print(f"{c['with_verdict']} of {c['sessions']} sessions showed a verdict; first after {c['first_verdict_s']} s,"
          f" median {c['verdict_s_median']} s, last {c['last_verdict_s']} s (from the first Start click)")
    if "alone" in out and out["alone"]["first_verdict_s"] and c["last_verdict_s"]:
        bar = out["alone"]["first_verdict_s"] + 30
        print(f"bar: the last within one run alone + 30 s = {bar:.1f} s -> "
              f"{'met' if c['last_verdict_s'] <= bar else 'NOT met'}")
    print(f"said 'Reused from an identical run': Train {c['train_said_reused']}, Verify {c['attack_said_reused']}; "
          f"run-cache entries: {c['cache_entries']}; computed: {c['trainings_computed']} training(s), "
          f"{c['steals_computed']} steal(s)")
    print(f"page switches while loaded: {c['page_switches']}, p50 {c['switch_p50_s']} s, p95 {c['switch_p95_s']} s")
    print(f"server memory: peak {c['server_peak_mib']} MiB (VmHWM)")
    print(f"isolation: {'every workspace holds exactly its own run' if c['isolation']['ok'] else c['isolation']['problems']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
