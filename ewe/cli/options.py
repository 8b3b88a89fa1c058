"""What the verbs share: the run options of every verb that builds a RunConfig (``run``, ``sweep``), and
running one verb on its own (``python -m ewe.cli.sweep ...``)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from ..config import RunConfig

HELP = {
    "temperature": "SNNL temperature tau, one value or one per layer (tau = 100 / reference T)",
    "reference_T": "the reference code's temperature T instead of tau (tau = 100 / T)",
    "kappa": "SNNL weight per layer on the mean-CE scale (reference kappa / batch size)",
    "reference_kappa": "the reference code's kappa (summed CE); divided by the batch size",
    "ratio": "clean batches per watermark batch",
    "trigger": "ood (another dataset's class) or in (source class + 3x3 patch)",
    "epochs": "clean pre-training epochs",
    "w_epochs": "watermark phase length, in epochs",
    "train_size": "use a seeded random subset of the training set",
    "snnl": "SNNL term on (EWE) or off (the optimised-triggers ablation)",
    "device": "cpu, cuda, or auto (cuda when present)",
    "precision": "the run's own models' forward passes: fp32, bf16 (autocast; weights and the SNNL stay fp32), "
                 "or auto (bf16 where the device has bf16 units)",
    "thief_seed": "seed of the thief's student (initialisation, data order, query subset); by default "
                  "the run's seed + 20000",
    "mea_sources": "MEA-Defender's two source classes (default: the two lowest classes other than the target)",
    "dawn_rate": "DAWN's share of API answers flipped (0-0.5; the honest users' accuracy cost), with "
                 "--schemes ... dawn_api",
    "mbw_eps": "the margin-based watermark's radius (L-infinity, 0-0.5; the paper's 5/255, 0 = no margin), "
               "with --schemes ... mbw",
    "di_samples": "dataset inference's m: the private (and as many public) points its t-test reveals, with "
                  "--schemes ... dataset_inference",
    "verify_margin": "how much more often than the clean reference (0-1) a suspect must answer the "
                     "watermark's target to count as stolen (0 = the plain t-test)",
}
SKIP = {"dataset", "preset", "seed", "data_dir", "device"}


def add_config_options(p: argparse.ArgumentParser) -> None:
    """Every RunConfig field as an option (``--field-name``), generated from the dataclass so the CLI and the
    config cannot drift apart; plus the reference code's forms of tau and kappa."""
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if f.name in SKIP:
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))   # Optional[X] -> X
        kind = hint
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=HELP.get(f.name))
        elif f.name == "schemes":
            p.add_argument(flag, "--scheme", dest="schemes", nargs="+", default=None,
                           help="the watermarking schemes to train, e.g. default mea_defender dawn_api mbw "
                                "(unset: EWE and the baselines)")
        elif typing.get_origin(kind) is list:
            p.add_argument(flag, type=float, nargs="+", default=None, help=HELP.get(f.name))
        else:
            p.add_argument(flag, type=kind if kind in (int, float) else str, default=None,
                           help=HELP.get(f.name))
    p.add_argument("--reference-T", dest="reference_T", type=float, nargs="+", help=HELP["reference_T"])
    p.add_argument("--reference-kappa", dest="reference_kappa", type=float, nargs="+",
                   help=HELP["reference_kappa"])


def run_verb(verb: str, add_parser, argv: list[str] | None = None) -> int:
    """One verb as its own program, with the parser it has under ``python -m ewe``."""
    parser = argparse.ArgumentParser(prog=f"python -m ewe.cli.{verb}")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([verb, *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)
