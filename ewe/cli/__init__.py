"""Command line: ``python -m ewe run | steal | verify | nulls | presets | sweep | report`` (also ``ewe ...``).

    options.py   the RunConfig options shared by run and sweep
    sweep.py     the sweep verb (ewe.experiments.sweep)
    report.py    the report verb (ewe.results.report)

Every RunConfig field is an option (``--field-name``), generated from the dataclass so the CLI and the
config cannot drift apart. Ctrl-C stops at the next batch and keeps what finished; a second Ctrl-C quits.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
import time
from pathlib import Path

from ..config import ATTACKER_DATA, DATASETS, PRESETS, ConfigError, RunConfig, check_verify_margin
from ..results.schema import is_proven
from .options import HELP, SKIP, add_config_options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ewe", description="EWE Lab: entangled watermarks "
                                     "against model extraction (Jia et al. 2021).")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_parser(sub)
    _add_steal_parser(sub)
    _add_verify_parser(sub)
    _add_nulls_parser(sub)
    sub.add_parser("presets", help="print every preset as JSON")
    from .report import add_report_parser
    from .sweep import add_sweep_parser
    add_sweep_parser(sub)
    add_report_parser(sub)
    return parser


def _add_run_parser(sub) -> None:
    run = sub.add_parser("run", help="train the victims, steal them, verify ownership; write a run folder")
    run.add_argument("--dataset", choices=DATASETS, default="mnist")
    run.add_argument("--preset", choices=PRESETS, default="quick")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--data-dir", help="folder with mnist/, fashion-mnist/, speech_commands/ "
                     "(default: $EWE_DATA_DIR, then the cache, then a download)")
    run.add_argument("--out", help="run folder to write (default: runs/<dataset>-<preset>-s<seed>-<time>); "
                     "a folder that already holds a run is refused unless --overwrite")
    run.add_argument("--overwrite", action="store_true",
                     help="delete the run already in --out before writing this one (never mixed)")
    run.add_argument("--device", default="auto", help=HELP["device"])
    run.add_argument("--train-only", action="store_true", help="stop after training the victims")
    run.add_argument("--debug", action="store_true", help="show the traceback of unexpected errors")
    add_config_options(run)


# the steal options that become the thief's settings (ewe.experiments.pipeline.steal_several), when given
THIEF_OPTIONS = ("extract_labels", "student", "attacker_data", "distill_temperature", "query_budget",
                 "extract_epochs", "thief_seed", "threads", "schemes")


def _add_steal_parser(sub) -> None:
    steal = sub.add_parser("steal", help="run the extraction attack on a trained run folder")
    steal.add_argument("run_dir")
    steal.add_argument("--extract-labels", choices=("hard", "soft"),
                       help="the victim's answers the thief trains on: labels, or probabilities (distillation)")
    steal.add_argument("--student", help="the thief's architecture (default: the victim's), e.g. conv2_wide, "
                       "conv2_narrow, mlp")
    steal.add_argument("--attacker-data", choices=ATTACKER_DATA,
                       help="the thief's queries: the defender's training data, or the other half of a seeded "
                       "split (the victims must have been trained with --attacker-data disjoint)")
    steal.add_argument("--distill-temperature", type=float, help="softmax temperature of soft labels")
    steal.add_argument("--query-budget", type=int, help="at most this many queries to the victim")
    steal.add_argument("--extract-epochs", type=int, help="the thief's training epochs")
    steal.add_argument("--thief-seed", type=int, help=HELP["thief_seed"] + " (default: the run's)")
    steal.add_argument("--thieves", type=int, default=1,
                       help="steal this many times, with the thief's seed, seed + 1, ...: how much of a watermark "
                       "survives varies from thief to thief (each is recorded in thieves.json)")
    steal.add_argument("--threads", type=int, help="CPU threads (default: the run's)")
    steal.add_argument("--schemes", "--scheme", nargs="+", default=None,
                       help="steal only these schemes' victims, e.g. dawn_api (the run's clean model served "
                            "through DAWN's API, even in a run that did not list it); default: every victim")


def _add_verify_parser(sub) -> None:
    verify = sub.add_parser("verify", help="recompute the ownership tests of a run folder")
    verify.add_argument("run_dir")
    verify.add_argument("--verify-margin", type=float, help=HELP["verify_margin"] + " (default: the run's)")
    verify.add_argument("--test", choices=("binomial", "welch"),
                        help="binomial: exact test against the innocent population's null rate (default); "
                        "welch: the paper's t-test against the run's clean model, with the margin")


def _add_nulls_parser(sub) -> None:
    nulls = sub.add_parser("nulls", help="build the population of innocent models that verdicts are calibrated "
                           "on (once per dataset and training budget; cached, resumable)")
    nulls.add_argument("--dataset", choices=DATASETS, default="mnist")
    nulls.add_argument("--preset", choices=PRESETS, default="quick")
    nulls.add_argument("--data-dir", help="as for run")
    nulls.add_argument("--device", default="auto", help=HELP["device"])
    nulls.add_argument("--innocents", type=int, default=None, help="how many models (default: the preset's)")
    nulls.add_argument("--threads", type=int, help="CPU threads")
    nulls.add_argument("--ship", metavar="FOLDER",
                       help="also write a shippable copy (int8, sha256-checked) to FOLDER/<key>/; "
                            "`make populations` writes the default demo's (digits, quick) into ewe/populations")
    nulls.add_argument("run_dirs", nargs="*", metavar="RUN_DIR",
                       help="build the population of these runs' task instead (their own data and budget), query "
                       "it on their triggers and re-verify them")


def _config_from_args(args) -> RunConfig:
    from ..config import preset
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)
                 if f.name not in SKIP and getattr(args, f.name, None) is not None}
    for alias in ("reference_T", "reference_kappa"):
        if getattr(args, alias, None) is not None:
            overrides[alias] = args.reference_T if alias == "reference_T" else args.reference_kappa
    return preset(args.dataset, args.preset, seed=args.seed, data_dir=args.data_dir,
                  device=_device(args.device), **overrides)


def _device(name: str) -> str:
    """auto: CUDA when present. An asked-for device this machine lacks is a ConfigError (one line, exit 2)
    here, before any data are loaded."""
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    from ..data.splits import check_device
    return check_device(name)


class _Progress:
    """tqdm bar over the whole run, with the stage and the latest metrics as postfix."""

    def __init__(self):
        from tqdm import tqdm
        self.bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}]{postfix}")

    def __call__(self, e: dict) -> None:
        if e["kind"] == "progress":
            self.bar.n = 100 * e["fraction"]
            self.bar.set_postfix_str(e["stage"], refresh=True)
        elif e["kind"] == "message":
            self.bar.write(e["text"])
        elif e["kind"] == "epoch":
            m = e["metrics"]
            parts = [f"{k}={v:.3f}" for k, v in m.items() if isinstance(v, float)]
            if "snnl" in m:
                parts.append("snnl=" + "/".join(f"{v:.3f}" for v in m["snnl"]))
            self.bar.write(f"  {e['stage']:<18} {e['epoch']}/{e['epochs']}  " + "  ".join(parts))

    def close(self):
        self.bar.close()


def _install_stop_handler() -> threading.Event:
    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping at the next batch (Ctrl-C again to quit now); finished models are kept",
              file=sys.stderr)
    signal.signal(signal.SIGINT, handler)
    return stop


def _summary(result: dict) -> str:
    lines = [f"status: {result.get('status')}", "model                 accuracy  watermark"]
    for name, m in result.get("models", {}).items():
        if "watermark_success" in m:
            lines.append(f"  {name:<20} {m['accuracy']:.4f}    {m['watermark_success']:.3f}")
        else:   # an API scheme (DAWN): the API's accuracy, and the share of answers it flips
            lines.append(f"  {name:<20} {m['accuracy']:.4f}    (API: flips {100 * m.get('flip_rate', 0):.2f} % "
                         f"of answers; the model alone {m.get('model_accuracy', float('nan')):.4f})")
    verdicts = result.get("verification", {})
    for name, v in verdicts.items():
        q = v["queries_for_95"]
        lines.append(f"  verify {name:<13} p={v['p_value']:.3g}  {'PROVEN' if is_proven(v) else 'not proven'}"
                     f"  queries for 95%: {q if q else 'not reached'}")
    if verdicts:
        v = next(iter(verdicts.values()))
        from ..verify import innocents_needed
        small = v.get("smallest_p") is not None and v["smallest_p"] >= v.get("alpha", 0.05)
        lines.append("  test: " + (f"exact binomial and rank against {v.get('null_source')}"
                                   + (f" (too few to prove anything: p >= {v['smallest_p']:.2g}; use at least "
                                      f"{innocents_needed(v.get('alpha', 0.05))})"
                                      if small else "")
                                   if v.get("test", "welch") == "binomial" else
                                   f"Welch t-test against the clean reference + margin {v.get('margin', 0):g}"))
    if "total" in result.get("seconds", {}):
        lines.append(f"total {result['seconds']['total']:.1f} s")
    return "\n".join(lines)


def _thieves_summary(run_dir: str) -> str:
    """One line per stolen copy over the thieves recorded in thieves.json with the last thief's settings."""
    from ..results.runs import THIEVES_FILE, same_thief
    draws = json.loads((Path(run_dir) / THIEVES_FILE).read_text())
    draws = same_thief(draws, draws[-1]["thief"])
    lines = [f"{len(draws)} thieves with these settings (seeds {', '.join(str(d['thief']['seed']) for d in draws)}):"]
    for name in draws[-1]["copies"]:
        got = [d["copies"][name] for d in draws if name in d["copies"]]
        wm = [c["watermark_success"] for c in got]
        lines.append(f"  {name:<20} watermark kept {min(wm):.3f}..{max(wm):.3f} (mean {sum(wm) / len(wm):.3f}), "
                     f"proven by {sum(is_proven(c) for c in got)} of {len(got)}")
    return "\n".join(lines)


def _nulls(args) -> int:
    """Build (or finish) the innocent population of a dataset/preset, or of each run folder's task and attach
    it to the run (innocents.json), re-verifying the run."""
    from ..callbacks import Stopped
    from ..config import preset, saved_config
    from ..innocents import POPULATION_SIZE, attach_population, build_population, ship_population, trained_models
    from ..results.verdicts import verify_run
    n = POPULATION_SIZE if args.innocents is None else args.innocents
    if n < 4:
        raise ConfigError("--innocents must be at least 4 for a population")
    if args.run_dirs:
        from ..results.runs import Run
        jobs = []
        for run_dir in args.run_dirs:
            saved = Run.open(run_dir).saved
            jobs.append((run_dir, saved_config(saved, innocents=n, device=_device(args.device),
                                               **({"data_dir": args.data_dir} if args.data_dir else {}))))
    else:
        jobs = [(None, preset(args.dataset, args.preset, data_dir=args.data_dir, device=_device(args.device),
                              innocents=n))]
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    stop = _install_stop_handler()
    for run_dir, cfg in jobs:
        progress = _Progress()
        try:
            if args.ship:
                folder = ship_population(cfg, args.ship, n=n, listeners=[progress], stop=stop)
            else:
                folder = build_population(cfg, n=n, listeners=[progress], stop=stop)
        except Stopped:
            print("stopped; the models already trained are kept: run the same command again to resume",
                  file=sys.stderr)
            return 1
        finally:
            progress.close()
        acc = [m["accuracy"] for m in trained_models(folder).values()]
        print(f"{len(acc)} innocent models in {folder} (test accuracy {min(acc):.3f}..{max(acc):.3f})")
        if run_dir:
            attach_population(run_dir, folder)
            print(f"{run_dir}:")
            print(_summary(verify_run(run_dir)))
    return 0


class OutFolderError(ValueError):
    """--out names a folder that cannot take this run."""


def _check_out(out: str, overwrite: bool) -> None:
    from ..results.runs import describe_run, holds_run
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise OutFolderError(f"--out {out} is a file, not a folder")
    if holds_run(path) and not overwrite:
        raise OutFolderError(f"{describe_run(path)} already holds a run; pass --overwrite to replace it, or "
                             "choose a new folder with --out")


def _new_default_out(cfg) -> str:
    """runs/<dataset>-<preset>-s<seed>-<time>, with -2, -3, ... if a run started in the same second."""
    from ..results.runs import claim_new_dir
    return str(claim_new_dir(Path("runs") / f"{cfg.dataset}-{cfg.preset}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"))


def _print_presets() -> int:
    from ..config import preset
    print(json.dumps({d: {p: preset(d, p).to_dict() for p in PRESETS} for d in DATASETS}, indent=1))
    return 0


def _verify(args) -> int:
    if args.verify_margin is not None:
        check_verify_margin(args.verify_margin, "--verify-margin")
    from ..results.verdicts import verify_run
    result = verify_run(args.run_dir, margin=args.verify_margin, test=args.test)
    print(_summary(result))
    return 0


def _steal(args, listeners, stop) -> dict:
    """Steal the run folder's victims with the thief options given (the run's own for the rest)."""
    from ..experiments import pipeline
    thief = {k: getattr(args, k) for k in THIEF_OPTIONS if getattr(args, k) is not None}
    result = pipeline.steal_several(args.run_dir, thief, args.thieves, listeners, stop)
    if args.thieves > 1:
        print(_thieves_summary(args.run_dir))
    return result


def _prepare_out(args, cfg) -> str:
    """The run folder to write: --out (emptied first under --overwrite), else a new default folder."""
    from ..results.runs import clear_run
    if not args.out:
        return _new_default_out(cfg)
    if args.overwrite:
        clear_run(args.out)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    return args.out


def _run_or_steal(args) -> int:
    """The run and steal verbs: a tqdm bar over the whole job, then its summary."""
    from ..experiments import pipeline
    cfg = _config_from_args(args) if args.command == "run" else None
    if cfg is not None:
        from ..watermarks.schemes import schemes_for
        schemes_for(cfg)    # unknown scheme names: one line, before any file is touched
        if args.out:
            _check_out(args.out, args.overwrite)    # before any file is touched
    stop = _install_stop_handler()
    progress = _Progress()
    try:
        if args.command == "steal":
            result, out = _steal(args, [progress], stop), args.run_dir
        else:
            out = _prepare_out(args, cfg)
            train = pipeline.train_victims if args.train_only else pipeline.run
            result = train(cfg, out, [progress], stop)
    finally:
        progress.close()
    print(_summary(result))
    print(f"run folder: {out}")
    return 0 if result.get("status") in ("finished", "trained") else 1


def _dispatch(args) -> int:
    if getattr(args, "handler", None):      # sweep / report
        return args.handler(args)
    if args.command == "presets":
        return _print_presets()
    if args.command == "verify":
        return _verify(args)
    if args.command == "nulls":
        return _nulls(args)
    return _run_or_steal(args)


def main(argv: list[str] | None = None) -> int:
    from ..data.base import DataError
    from ..malloc import apply_unless_disabled
    from ..models import CheckpointError
    from ..results.runs import RunFolderError
    apply_unless_disabled()      # this process is ours: reuse freed memory (EWE_MALLOC=0 turns it off)
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (ConfigError, DataError, CheckpointError, RunFolderError, OutFolderError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:   # unexpected: one readable line unless --debug; the run folder keeps what finished
        if getattr(args, "debug", False):
            raise
        print(f"error: {type(exc).__name__}: {exc} (run again with --debug for the traceback; "
              "finished models are kept in the run folder)", file=sys.stderr)
        return 1
