"""``python -m ewe report``: the paper-style table and robustness curves (``ewe.results.report``)."""
from __future__ import annotations

import argparse
import sys

from ..results.report import ReportError, build_report
from .options import run_verb


def add_report_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="paper-style table (mean ± spread over seeds) and robustness curves "
                                      "from sweeps and run folders")
    p.add_argument("paths", nargs="+", metavar="SWEEP_OR_RUNS", help="sweep folders, run folders, or "
                   "folders that hold run folders")
    p.add_argument("--out", default="report.md", help="markdown file; PNGs are written beside it")
    p.add_argument("--title")
    p.set_defaults(handler=run_report_cli)
    return p


def run_report_cli(args) -> int:
    try:
        info = build_report(args.paths, args.out, args.title)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({info['runs']} runs, {len(info['groups'])} settings"
          + (f", {len(info['images'])} figure(s)" if info["images"] else "") + ")")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_verb("report", add_report_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
