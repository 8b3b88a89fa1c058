"""``python -m ewe sweep``: a grid of settings x seeds through ``ewe.experiments.sweep`` (resumable)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from ..config import DATASETS, PRESETS, ConfigError, RunConfig
from ..experiments.sweep import BACKENDS, SweepError, SweepSpec, format_summary, parse_grid, parse_seeds, run_sweep
from .options import add_config_options, run_verb


def add_sweep_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sweep", help="run a grid of settings x seeds (resumable); write sweep.csv / sweep.json",
                       description="Seeds and sweeps: every grid point x seed as one ``pipeline.run``, resumable, "
                       "summarised in one table.")
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--preset", choices=PRESETS, default="quick")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="a setting and its values (repeat for more settings); per-layer values as a:b:c")
    p.add_argument("--seeds", default="0", help="e.g. 0,1,2 or 0-4")
    p.add_argument("--out", required=True, help="sweep folder (rerun with the same folder to resume)")
    p.add_argument("--backend", choices=BACKENDS, default="local")
    p.add_argument("--workers", type=int, help="parallel runs (default: the number of cpus)")
    p.add_argument("--data-dir")
    p.add_argument("--device", default="cpu")
    add_config_options(p)    # every RunConfig option of `run` as a fixed override (--train-size 256 ...)
    p.set_defaults(handler=run_sweep_cli)
    return p


def overrides_from_args(args) -> dict[str, Any]:
    skip = {"dataset", "preset", "seed"}
    out = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)
           if f.name not in skip and getattr(args, f.name, None) is not None}
    for alias in ("reference_T", "reference_kappa"):
        if getattr(args, alias, None) is not None:
            out[alias] = [float(v) for v in getattr(args, alias)] * (3 if len(getattr(args, alias)) == 1 else 1)
    return out


def run_sweep_cli(args) -> int:
    try:
        overrides = overrides_from_args(args)
        spec = SweepSpec(dataset=args.dataset, preset=args.preset, grid=parse_grid(args.grid),
                         seeds=parse_seeds(args.seeds), overrides=overrides, workers=args.workers,
                         threads=overrides.pop("threads", None))
        if args.workers is not None and args.workers < 1:
            raise SweepError("--workers must be at least 1")
        summary = run_sweep(spec, args.out, backend=args.backend, listeners=[_Printer()])
    except (SweepError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; finished points are kept: rerun the same command to resume ({args.out})",
              file=sys.stderr)
        return 130
    print(format_summary(summary))
    print(f"sweep folder: {args.out} (sweep.csv, sweep.json)")
    if summary["failures"]:
        for name, err in summary["failures"].items():
            print(f"failed: {name}: {err}", file=sys.stderr)
        return 1
    return 0


class _Printer:
    def __call__(self, e: dict) -> None:
        if e["kind"] == "message":
            print(e["text"], flush=True)
        elif e["kind"] == "run_start":
            print(f"{len(e['stages'])} run(s) to do", flush=True)
        elif e["kind"] == "stage_end":
            m = e.get("metrics", {})
            extra = "  ".join(f"{k}={v:.3f}" for k, v in m.items() if isinstance(v, float))
            eta = f"  eta {e['eta']:.0f}s" if e.get("eta") is not None else ""
            print(f"  {e['stage']:<40} {m.get('status')}  {e['seconds']:.1f}s  {extra}{eta}", flush=True)


def main(argv: list[str] | None = None) -> int:
    return run_verb("sweep", add_sweep_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
