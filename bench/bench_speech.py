"""Speech Commands on the real clips over seeds: one `python -m ewe run --dataset speech-commands` process per
seed, then a per-seed table (clean / defended / extracted accuracy, watermark success, verification of the
stolen copies and of the independent clean model, wall time) and the checks of issue 4.

    EWE_DATA_DIR=/work/shared/data python bench/bench_speech.py --preset quick --seeds 0,1,2
    python bench/bench_speech.py --summarise runs/bench-speech/speech-commands-quick-s*
    python bench/bench_speech.py --preset quick -- --model lstm --epochs 3     # extra `ewe run` options
    python bench/bench_speech.py --compare-models lstm,audio_cnn --epochs 6    # clean training only

Targets checked: defended accuracy within 2 points of clean; the extracted copy verified (p < alpha) with at
most 100 queries on every seed; the independent clean model never claimed; quick runs within 90 s.
Writes the tables to --out/summary-speech-commands-<preset>.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench_presets import summarise  # noqa: E402

DATASET = "speech-commands"
DEFAULT_DATA = Path("/work/shared/data")
QUICK_SECONDS = 90.0
MAX_COST = 0.02
MAX_QUERIES = 100


def run_one(dataset: str, preset: str, seed: int, out: Path, extra: list[str]) -> dict:
    """One `python -m ewe run` process: wall and CPU seconds (user + system; on a shared machine the CPU
    time is what the run would take alone on one core) and peak memory."""
    import subprocess
    import time
    cmd = [sys.executable, "-m", "ewe", "run", "--dataset", dataset, "--preset", preset, "--seed", str(seed),
           "--out", str(out), *extra]
    import tempfile
    t = time.perf_counter()
    # stderr goes to a file, not a pipe: the progress bars fill a 64 kB pipe buffer that nobody reads
    # until the run ends, and the run then blocks (bench_presets.run_one hangs like that on long runs)
    with tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                                stderr=errf)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        errf.seek(0)
        err = errf.read().decode(errors="replace")
    if status != 0:
        print(f"run failed ({' '.join(cmd)}):\n{err[-2000:]}", file=sys.stderr)
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}


def _q(v: dict | None) -> str:
    if not v:
        return "—"
    q = v.get("queries_for_95")
    return f"p={v['p_value']:.2g}, {'not reached' if q is None else f'{q} q'}"


def _acc(models: dict, name: str) -> str:
    m = models.get(name)
    return "—" if m is None else f"{100 * m['accuracy']:.1f}"


def _wm(models: dict, name: str) -> str:
    m = models.get(name)
    return "—" if m is None else f"{100 * m['watermark_success']:.0f}"


def per_seed_table(run_dirs: list[Path], walls: dict[str, float] | None = None,
                   cpus: dict[str, float] | None = None) -> tuple[str, list[str]]:
    """The per-seed markdown table and a list of missed targets (empty = all met)."""
    rows = ["| seed | clean acc | defended acc (cost) | extracted acc / wm | plain_extracted acc / wm | "
            "verify extracted | verify plain_extracted | verify independent clean | run s (wall s) | CPU s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    missed: list[str] = []
    for d in run_dirs:
        path = d / "result.json"
        if not path.exists():
            rows.append(f"| {d.name} | no result.json | | | | | | | |")
            missed.append(f"{d.name}: no result")
            continue
        r = json.loads(path.read_text())
        cfg = json.loads((d / "config.json").read_text()) if (d / "config.json").exists() else {}
        alpha = cfg.get("alpha", 0.05)
        m, v = r.get("models", {}), r.get("verification", {})
        seed = r.get("seed")
        cost = None
        if "clean" in m and "defended" in m:
            cost = m["clean"]["accuracy"] - m["defended"]["accuracy"]
        total = r.get("seconds", {}).get("total")
        wall = (walls or {}).get(str(d))
        cpu = (cpus or {}).get(str(d))
        rows.append(
            f"| {seed} | {_acc(m, 'clean')} | {_acc(m, 'defended')}"
            f" ({'—' if cost is None else f'{100 * cost:+.1f}'}) | {_acc(m, 'extracted')} / {_wm(m, 'extracted')} % | "
            f"{_acc(m, 'plain_extracted')} / {_wm(m, 'plain_extracted')} % | {_q(v.get('extracted'))} | "
            f"{_q(v.get('plain_extracted'))} | {_q(v.get('clean'))} | "
            f"{'—' if total is None else f'{total:.0f}'}{'' if wall is None else f' ({wall:.0f})'} | "
            f"{'—' if cpu is None else f'{cpu:.0f}'} |")
        if r.get("status") != "finished":
            missed.append(f"seed {seed}: status {r.get('status')}")
        if cost is not None and cost > MAX_COST:
            missed.append(f"seed {seed}: defended accuracy {100 * cost:.1f} points below clean (> {100 * MAX_COST:.0f})")
        ex = v.get("extracted")
        if not ex or ex["p_value"] >= alpha or ex.get("queries_for_95") is None \
                or ex["queries_for_95"] > MAX_QUERIES:
            missed.append(f"seed {seed}: extracted copy not verified within {MAX_QUERIES} queries ({_q(ex)})")
        cl = v.get("clean")
        if cl and cl["p_value"] < alpha:
            missed.append(f"seed {seed}: the independent clean model was claimed ({_q(cl)})")
        if r.get("preset") == "quick" and total is not None and total > QUICK_SECONDS:
            missed.append(f"seed {seed}: quick run took {total:.0f} s wall (> {QUICK_SECONDS:.0f})"
                          + ("" if cpu is None else f", {cpu:.0f} CPU s"))
        if "clean" in m and m["clean"]["accuracy"] < 0.3:
            missed.append(f"seed {seed}: clean model at {100 * m['clean']['accuracy']:.0f} % (near chance)")
    return "\n".join(rows), missed


def report(run_dirs: list[Path], meta: dict[str, dict] | None = None) -> str:
    walls = {k: v["wall"] for k, v in (meta or {}).items()}
    cpus = {k: v["cpu"] for k, v in (meta or {}).items() if "cpu" in v}
    table, missed = per_seed_table(run_dirs, walls, cpus)
    lines = [table, "", "accuracy in %, wm = watermark success on held-out triggers; cost = clean - defended; "
             "verify = Welch t-test p-value and queries for p < 0.05 (median over draws); "
             "run s = result.json seconds.total, wall s = the whole process, CPU s = its user + system time", ""]
    lines += ["targets: all met"] if not missed else ["targets missed:"] + [f"- {m}" for m in missed]
    lines += ["", summarise(run_dirs, meta)]
    return "\n".join(lines)


def compare_models(names: list[str], epochs: int, batch_size: int, seed: int = 0) -> str:
    """Clean training of each audio model on the real clips (speaker-disjoint split), one thread: CPU and
    wall seconds per epoch (CPU time is the fairer number on a shared machine) and test accuracy after
    every epoch (Adam as the pipeline)."""
    import time

    import torch
    import torch.nn.functional as F

    from ewe.models import build_model
    from ewe.data.speech import load_speech_commands
    from ewe.train import accuracy, make_optimizer
    from ewe.malloc import apply_unless_disabled

    apply_unless_disabled()   # this process trains: reuse freed memory (ewe.malloc; EWE_MALLOC=0 turns it off)
    torch.set_num_threads(1)
    ds = load_speech_commands(download=False)
    x, y = ds.train.x, ds.train.y
    lines = [ds.source, "", "| model | parameters | CPU s / epoch (median) | wall s / epoch (median) | "
             "test accuracy after epoch 1..n |", "|---|---|---|---|---|"]
    for name in names:
        torch.manual_seed(seed)
        model = build_model(name, x.shape[1:])
        opt = make_optimizer(model)
        g = torch.Generator().manual_seed(seed)
        secs, cpu, accs = [], [], []
        for _ in range(epochs):
            model.train()
            t, c = time.perf_counter(), time.process_time()
            order = torch.randperm(len(x), generator=g)
            for i in range(0, len(x) - batch_size + 1, batch_size):
                idx = order[i:i + batch_size]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            secs.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            accs.append(accuracy(model, ds.test.x, ds.test.y))
            print(f"{name} epoch {len(accs)}: {cpu[-1]:.1f} CPU s, {secs[-1]:.1f} wall s, test {100 * accs[-1]:.1f} %", flush=True)
        n_params = sum(p.numel() for p in model.parameters())
        lines.append(f"| {name} | {n_params:,} | {sorted(cpu)[len(cpu) // 2]:.1f} | "
                     f"{sorted(secs)[len(secs) // 2]:.1f} | "
                     + ", ".join(f"{100 * a:.1f}" for a in accs) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/bench-speech")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run at the same time (default 1: one after "
                    "another, so wall times are not inflated by each other)")
    ap.add_argument("--summarise", nargs="*", help="only summarise these finished run folders")
    ap.add_argument("--compare-models", help="comma-separated audio models: clean training speed and accuracy")
    ap.add_argument("--epochs", type=int, default=6, help="epochs for --compare-models")
    ap.add_argument("--batch-size", type=int, default=64, help="batch size for --compare-models")
    ap.add_argument("extra", nargs="*", help="extra `ewe run` options after --")
    args = ap.parse_args()
    if args.summarise:
        print(report([Path(p) for p in args.summarise]))
        return
    if not os.environ.get("EWE_DATA_DIR") and (DEFAULT_DATA / "speech_commands").is_dir():
        os.environ["EWE_DATA_DIR"] = str(DEFAULT_DATA)
    if args.compare_models:
        print(compare_models(args.compare_models.split(","), args.epochs, args.batch_size))
        return
    out = Path(args.out)
    extra = ["--threads", str(args.threads), *args.extra]
    seeds = [int(s) for s in args.seeds.split(",")]
    dirs = [out / f"{DATASET}-{args.preset}-s{seed}" for seed in seeds]

    def one(seed_dir):
        seed, d = seed_dir
        m = run_one(DATASET, args.preset, seed, d.resolve(), extra)
        print(f"seed {seed}: {m['wall']:.1f} s wall, {m['cpu']:.1f} CPU s, {m['peak_mb']:.0f} MB peak", flush=True)
        return str(d), m
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        meta = dict(pool.map(one, zip(seeds, dirs)))
    text = report(dirs, meta)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"summary-{DATASET}-{args.preset}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
