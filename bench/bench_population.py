"""Where the innocent population's time goes, per recipe, in fp32 and under bf16 autocast; and whether the
bf16 population judges a run the same way (its null rates, every verdict of the run).

    python bench/bench_population.py --dataset mnist --data-dir ../shared/data [--run RUN] [--threads 2]

Builds the population of the dataset's quick preset twice, from scratch, in throw-away cache folders (fp32,
then bf16), and prints per kind of recipe (architecture, data, budget): seconds per model and test accuracy in
each precision, and the speed-up. The reference: a plain PyTorch loop (Adam, cross-entropy, the victim's CNN,
the preset's batch size) timed in the same process, so times are also given as multiples of one plain epoch.
With ``--run`` (a finished run folder of the same task) each population is attached to a copy of the run and
its verdicts are recomputed: null rates and p-values side by side. Prints numbers; it is not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ewe.config import preset
from ewe.data.splits import load_data
from ewe.innocents import build_population, kind, trained_models
from ewe.malloc import apply_unless_disabled
from ewe.models import build_model
from ewe.train import make_optimizer

apply_unless_disabled()


def plain_epoch_seconds(cfg, data) -> float:
    """One epoch of the textbook loop on the victim's CNN: the unit every time below is divided by."""
    model = build_model(cfg.model, tuple(data.x_train.shape[1:]), seed=0)
    opt = make_optimizer(model, cfg.lr)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(data.x_train), generator=g)
    nb = len(order) // cfg.batch_size
    t = time.perf_counter()
    model.train()
    for i in range(nb):
        idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def build(cfg, precision: str, root: Path) -> tuple[float, dict]:
    os.environ["EWE_INNOCENTS_PRECISION"] = precision
    t = time.perf_counter()
    folder = build_population(cfg, root=root)
    return time.perf_counter() - t, trained_models(folder)


def rejudge(run: Path, population_root: Path, cfg, work: Path, tag: str) -> dict:
    from ewe.innocents import attach_population, population_dir
    from ewe.results.verdicts import verify_run
    copy = work / f"run-{tag}"
    shutil.copytree(run, copy)
    attach_population(copy, population_dir(cfg, population_root))
    v = verify_run(copy)["verification"]
    return {name: {"p": x.get("p_value"), "null": x.get("null_rate"), "proven": x.get("proven")}
            for name, x in v.items() if isinstance(x, dict)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--data-dir", default=os.environ.get("EWE_DATA_DIR"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--run", help="a finished run folder of the same task, re-judged with each population")
    ap.add_argument("--out", help="write the numbers as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = preset(args.dataset, args.preset, data_dir=args.data_dir)
    data = load_data(cfg)
    plain_epoch_seconds(cfg, data)                     # warm-up
    unit = statistics.median(plain_epoch_seconds(cfg, data) for _ in range(3))
    print(f"{cfg.dataset} {cfg.preset}: plain PyTorch epoch ({len(data.x_train)} samples, batch {cfg.batch_size}, "
          f"{args.threads} threads) {unit:.2f} s; load average {os.getloadavg()[0]:.2f}", flush=True)
    out = {"dataset": cfg.dataset, "preset": cfg.preset, "threads": args.threads, "plain_epoch_s": unit,
           "cpus": os.cpu_count(), "populations": {}}
    with tempfile.TemporaryDirectory(prefix="ewe-pop-") as tmp:
        for precision in ("fp32", "bf16"):
            root = Path(tmp) / precision
            total, models = build(cfg, precision, root)
            print(f"  {precision}: {len(models)} models in {total:.1f} s ({total / unit:.1f} plain epochs)", flush=True)
            out["populations"][precision] = {"total_s": total, "models": models}
            if args.run:
                out["populations"][precision]["verdicts"] = rejudge(Path(args.run), root, cfg, Path(tmp), precision)
    by_kind: dict[tuple, dict] = {}
    for precision, pop in out["populations"].items():
        for info in pop["models"].values():
            k = by_kind.setdefault(kind(info), {})
            k.setdefault(precision, []).append(info)
    print("\n| recipe (architecture, data, budget) | models | fp32 s/model | bf16 s/model | speed-up | "
          "fp32 accuracy | bf16 accuracy |\n|---|---|---|---|---|---|---|")
    rows = []
    for k, per in sorted(by_kind.items(), key=lambda kv: str(kv[0])):
        s = {p: statistics.mean(i["seconds"] for i in per[p]) for p in per}
        a = {p: (min(i["accuracy"] for i in per[p]), max(i["accuracy"] for i in per[p])) for p in per}
        rows.append({"recipe": list(k), "models": len(per["fp32"]), "seconds": s, "accuracy": a})
        print(f"| {k[0]}, {k[1]}, x{k[2]:g} | {len(per['fp32'])} | {s['fp32']:.2f} | {s['bf16']:.2f} | "
              f"{s['fp32'] / s['bf16']:.2f}x | {a['fp32'][0]:.3f}-{a['fp32'][1]:.3f} | {a['bf16'][0]:.3f}-{a['bf16'][1]:.3f} |")
    f32, b16 = (out["populations"][p]["total_s"] for p in ("fp32", "bf16"))
    print(f"| **all** | {len(out['populations']['fp32']['models'])} | {f32:.1f} s | {b16:.1f} s | {f32 / b16:.2f}x | | |")
    out["recipes"] = rows
    if args.run:
        print("\n| verdict | fp32 population: null rate, p | bf16 population: null rate, p |\n|---|---|---|")
        v32, v16 = (out["populations"][p]["verdicts"] for p in ("fp32", "bf16"))
        for name in v32:
            a, b = v32[name], v16.get(name, {})
            print(f"| {name} | {a['null']}, {a['p']} ({'proven' if a['proven'] else 'not proven'}) | "
                  f"{b.get('null')}, {b.get('p')} ({'proven' if b.get('proven') else 'not proven'}) |")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
