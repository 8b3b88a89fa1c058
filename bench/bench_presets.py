"""Benchmark the presets on real data over seeds: accuracy, watermark success, verification, wall time and
peak memory of each run (each run is its own `python -m ewe run` process).

    EWE_DATA_DIR=../shared/data python bench/bench_presets.py --dataset mnist --preset quick --seeds 0,1,2
    python bench/bench_presets.py --summarise runs/bench/mnist-quick-s*   # tables from finished runs

Prints a markdown table (mean ± std over seeds, and min..max) and writes it to --out/summary.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["clean", "defended", "extracted", "plain_watermark", "plain_extracted", "ablation_no_snnl",
          "ablation_extracted", "independent_clean"]


def run_one(dataset: str, preset: str, seed: int, out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "ewe", "run", "--dataset", dataset, "--preset", preset, "--seed", str(seed),
           "--out", str(out), *extra]
    t = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "stderr.log"   # a file, not a pipe: the progress bar would fill a pipe and block the run
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        print(f"run failed ({' '.join(cmd)}):\n{log.read_text()[-2000:]}", file=sys.stderr)
    return {"wall": wall, "peak_mb": usage.ru_maxrss / 1024,
            "cpu_s": usage.ru_utime + usage.ru_stime}


def fmt(values: list[float], digits: int = 3) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return (f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f} "
            f"({min(values):.{digits}f}..{max(values):.{digits}f})")


def summarise(run_dirs: list[Path], meta: dict[str, dict] | None = None) -> str:
    results = [json.loads((d / "result.json").read_text()) for d in run_dirs if (d / "result.json").exists()]
    if not results:
        return "no finished runs"
    seeds = [r["seed"] for r in results]
    lines = [f"{results[0]['dataset']} / {results[0]['preset']}, seeds {seeds}", "",
             "| model | accuracy | watermark success (held-out) |", "|---|---|---|"]
    for m in MODELS:
        acc = [r["models"][m]["accuracy"] for r in results if m in r["models"]]
        wm = [r["models"][m]["watermark_success"] for r in results if m in r["models"]]
        lines.append(f"| {m} | {fmt(acc, 4)} | {fmt(wm)} |")
    lines += ["", "| suspect | p-value per seed | queries for p < 0.05 per seed |", "|---|---|---|"]
    for k in ["defended", "extracted", "plain_extracted", "ablation_extracted", "clean"]:
        ps = [r["verification"].get(k, {}).get("p_value") for r in results]
        qs = [r["verification"].get(k, {}).get("queries_for_95") for r in results]
        lines.append(f"| {k} | {', '.join('—' if p is None else f'{p:.2g}' for p in ps)} | "
                     f"{', '.join('not reached' if q is None else str(q) for q in qs)} |")
    secs = [r["seconds"].get("total", 0) for r in results]
    lines += ["", f"time per run: {fmt(secs, 1)} s"]
    if meta:
        peaks = [m["peak_mb"] for m in meta.values()]
        lines.append(f"peak memory per run: {fmt(peaks, 0)} MB; CPU seconds per run: "
                     f"{fmt([m['cpu_s'] for m in meta.values()], 0)}")
    stages = sorted({k for r in results for k in r["seconds"]})
    lines.append("stage seconds (mean): " + ", ".join(
        f"{k} {statistics.mean(r['seconds'].get(k, 0) for r in results):.1f}" for k in stages))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--summarise", nargs="*", help="only summarise these finished run folders")
    ap.add_argument("extra", nargs="*", help="extra `ewe run` options after --")
    args = ap.parse_args()
    if args.summarise:
        print(summarise([Path(p) for p in args.summarise]))
        return
    out = Path(args.out)
    meta, dirs = {}, []
    for seed in [int(s) for s in args.seeds.split(",")]:
        d = out / f"{args.dataset}-{args.preset}-s{seed}"
        meta[str(d)] = run_one(args.dataset, args.preset, seed, d, args.extra)
        dirs.append(d)
        print(f"seed {seed}: {meta[str(d)]['wall']:.1f} s wall, {meta[str(d)]['cpu_s']:.0f} CPU s, "
              f"{meta[str(d)]['peak_mb']:.0f} MB peak, load {os.getloadavg()[0]:.1f}", flush=True)
    text = summarise(dirs, meta)
    print(text)
    (out / f"summary-{args.dataset}-{args.preset}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
