"""How right is the ETA? Runs one experiment, records every progress event, compares each ETA with the
real end time.

    python bench/bench_eta.py --dataset digits --preset quick --seed 0 [--trace /tmp/eta.json]
    python bench/bench_eta.py --replay /tmp/eta.json      # score a recorded trace again (no training)

Prints, at 10 %, 50 % and 90 % of the run's real duration (and at one minute), the ETA shown then, the
real time left and the error ((ETA - real) / real). The trace keeps, per progress event, the elapsed time,
the ETA and the current stage's own fraction, so new estimators can be scored on an old trace with
``--replay`` (it re-runs ewe.callbacks.Reporter's estimator on the trace's stage fractions).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path



def record(args) -> dict:
    import tempfile
    from ewe.experiments import pipeline
    from ewe.config import preset
    cfg = preset(args.dataset, args.preset, seed=args.seed, **({"threads": args.threads} if args.threads else {}))
    events: list[dict] = []
    sizes: list[int] = []
    plan_fn = pipeline.stage_plan

    def spy(cfg_, n_train, n_triggers, *a, **kw):   # the data sizes the run planned with (for --replay)
        sizes[:] = [n_train, n_triggers]
        return plan_fn(cfg_, n_train, n_triggers, *a, **kw)
    pipeline.stage_plan = spy
    wall0 = time.perf_counter()

    def listen(e: dict) -> None:
        if e.get("kind") in ("progress", "stage_end", "run_start", "run_end"):
            events.append({k: e.get(k) for k in ("kind", "elapsed", "eta", "fraction", "stage",
                                                  "stage_fraction", "seconds", "status")}
                          | {"wall": round(time.perf_counter() - wall0, 3)})
    with tempfile.TemporaryDirectory() as out:
        result = pipeline.run(cfg, out, listeners=[listen])
    pipeline.stage_plan = plan_fn
    import torch
    return {"config": cfg.to_dict(), "threads": torch.get_num_threads(), "trigger_spans": True,
            "events": events, "seconds": result.get("seconds"), "sizes": sizes,
            "plan": plan_fn(cfg, *sizes, with_steal=True), "total": events[-1]["elapsed"]}


def replay(trace: dict, units: bool = False) -> list[dict]:
    """Feed the trace's stage fractions, at their recorded times, to today's Reporter estimator; with
    ``units``, over the plan in batch units that the ETA used before stage costs were measured."""
    from ewe import callbacks
    from ewe.experiments import pipeline
    from ewe.config import from_dict
    cfg = from_dict(trace["config"])
    n_train, n_trig = trace["sizes"]
    clock = {"t": 0.0}
    rep = callbacks.Reporter()
    rep.elapsed = lambda: clock["t"]            # the recorded time, not the wall clock
    plan = (pipeline._stage_units if units else pipeline.stage_plan)(cfg, n_train, n_trig, with_steal=True)
    # innocent models the traced run trained (ewe.innocents): planned from the start, as stage_plan does
    # when the population is not built yet (the cache here may have them all by now)
    from ewe.innocents import recipes
    trained = {e.get("stage") for e in trace["events"] if e["kind"] == "progress"} - set(plan)
    plan.update({r.name: r.budget * (0.5 if r.data != "all" else 1.0) * plan["clean"]
                 for r in recipes(cfg, max(4, cfg.innocents)) if r.name in trained})
    rep.set_plan(plan)
    out = []
    # traces recorded before the trigger stage reported its two pools as parts of one stage went 0 -> 1
    # twice: map them to what the stage reports now (first pool 0 -> cut, second cut -> 1)
    half = cfg.batch_size // 2
    first, second = -(-n_trig // half), -(-cfg.n_heldout // half)
    cut, last, second_pass = first / (first + second), 0.0, False
    for e in trace["events"]:
        clock["t"] = e["elapsed"]
        if e["kind"] == "progress" and e.get("stage_fraction") is not None and e["stage"] in rep.done:
            f = e["stage_fraction"]
            if e["stage"] == "triggers" and not trace.get("trigger_spans"):
                second_pass = second_pass or f < last
                last = f
                f = cut + (1 - cut) * f if second_pass else cut * f
            rep.advance(e["stage"], f)
            out.append({"elapsed": e["elapsed"], "eta": rep.eta(), "stage": e["stage"]})
        elif e["kind"] == "stage_end" and e.get("stage") in rep.done:
            rep.advance(e["stage"], 1.0)
    return out


def calibrate(traces: list[dict]) -> dict:
    """Seconds per unit of work of each stage (ewe.experiments.pipeline._stage_units). The machine is shared, so its
    load differs from run to run and within a run: each stage's cost relative to the run's average cost per
    unit is taken from every trace (the median), the absolute level from the fastest trace (the least
    disturbed). ``overhead``: the time outside the stages (data, evaluation, verification) as a share of the
    stages' time; the innocent models (ewe.innocents, trained once per task) are not counted in it."""
    import statistics

    from ewe.experiments import pipeline
    from ewe.config import from_dict

    def key(stage):
        return stage.split("_")[0] if stage.startswith("steal_") else stage
    rel: dict[str, list[float]] = {}
    fits = []
    for trace in traces:
        cfg = from_dict(trace["config"])
        units = pipeline._stage_units(cfg, *trace["sizes"], with_steal=True)
        secs = trace["seconds"]
        done = {s: u for s, u in units.items() if secs.get(s)}
        level = sum(secs[s] for s in done) / sum(done.values())      # the run's seconds per unit
        for s, u in done.items():
            rel.setdefault(key(s), []).append(secs[s] / u / level)
        # time spent on innocent models: progress events of stages the plan does not know
        extra = [e["elapsed"] for e in trace["events"] if e["kind"] == "progress" and e.get("stage") not in units]
        innocents = (max(extra) - min(extra)) if extra else 0.0
        in_stages = sum(secs[s] for s in done)
        fits.append((level, trace, units, in_stages, (secs["total"] - in_stages - innocents) / in_stages))
    per = {k: statistics.median(v) for k, v in rel.items()}
    level, fastest, units, in_stages, _ = min(fits, key=lambda f: f[0])
    k = in_stages / sum(u * per[key(s)] for s, u in units.items())
    overhead = statistics.median(f[4] for f in fits)
    per_unit = {name: round(r * k, 5) for name, r in per.items()}
    cfg = from_dict(fastest["config"])
    return {"measured_with": {"dataset": cfg.dataset, "preset": cfg.preset, "batch_size": cfg.batch_size,
                              "threads": fastest.get("threads"), "runs": len(traces),
                              # the fastest run without its innocent models: what stage_plan adds up to
                              "run_seconds": [round(in_stages * (1 + overhead), 1)],
                              "command": "python bench/bench_eta.py --calibrate TRACE.json ..."},
            "seconds_per_unit": per_unit, "overhead": round(overhead, 4)}


def score(points: list[dict], total: float) -> list[dict]:
    rows = []
    for label, t in [("1 min", 60.0), ("10 %", 0.1 * total), ("50 %", 0.5 * total), ("90 %", 0.9 * total)]:
        seen = [p for p in points if p["elapsed"] <= t and p.get("eta") is not None]
        if not seen or t >= total:
            rows.append({"at": label, "t": t, "eta": None, "real": total - t, "error": None})
            continue
        p = seen[-1]
        real = total - p["elapsed"]
        rows.append({"at": label, "t": p["elapsed"], "eta": p["eta"], "real": real,
                     "error": (p["eta"] - real) / real})
    return rows


def table(rows: list[dict], total: float) -> str:
    lines = [f"run time {total:.1f} s", "| at | elapsed | ETA shown | real time left | error |",
             "|---|---|---|---|---|"]
    for r in rows:
        eta = "—" if r["eta"] is None else f"{r['eta']:.0f} s"
        err = "—" if r["error"] is None else f"{100 * r['error']:+.0f} %"
        lines.append(f"| {r['at']} | {r['t']:.0f} s | {eta} | {r['real']:.0f} s | {err} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--trace", help="write the recorded trace here (JSON)")
    ap.add_argument("--replay", help="score a recorded trace with today's estimator instead of running")
    ap.add_argument("--calibrate", nargs="+", metavar="TRACE",
                    help="write the stage costs measured in these traces to " + "ewe/measured/stage_costs.json")
    args = ap.parse_args()
    if args.calibrate:
        from ewe.experiments.pipeline import STAGE_COSTS
        costs = calibrate([json.loads(Path(p).read_text()) for p in args.calibrate])
        STAGE_COSTS.write_text(json.dumps(costs, indent=2) + "\n")
        print(json.dumps(costs, indent=2))
        return
    if args.replay:
        trace = json.loads(Path(args.replay).read_text())
        print("recorded ETA:")
        print(table(score([e for e in trace["events"] if e["kind"] == "progress"], trace["total"]),
                    trace["total"]))
        print("the plan in batch units (before stage costs were measured), on the same trace:")
        print(table(score(replay(trace, units=True), trace["total"]), trace["total"]))
        print("today's estimator on the same trace:")
        print(table(score(replay(trace), trace["total"]), trace["total"]))
        return
    trace = record(args)
    if args.trace:
        Path(args.trace).write_text(json.dumps(trace))
    print("stage seconds:", json.dumps(trace["seconds"]))
    print(table(score([e for e in trace["events"] if e["kind"] == "progress"], trace["total"]), trace["total"]))


if __name__ == "__main__":
    main()
