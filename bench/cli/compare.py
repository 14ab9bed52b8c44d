"""`python -m bench compare A B [C ...]`: runs or sweep points side by side, per class, each difference from the
first with its confidence interval."""

from __future__ import annotations

import argparse
import sys

from bench.cli import CommandError
from bench.report.stats import LEVEL

ORDER = 5
HELP = "runs or sweep points side by side, per class, with the differences' confidence intervals"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="RUN_OR_SWEEP",
                        help="run folders, sweep points (SWEEP/s0-l1: its repeats) or sweep folders (every point); "
                        "the first is the baseline")
    parser.add_argument("--csv", metavar="FILE", help="also write the long table (one row per class, figure, subject)")


def run(args: argparse.Namespace) -> int:
    from bench.report.compare import CompareError, compare, load_subjects, provenance_warnings, render

    try:
        subjects = [subject for path in args.paths for subject in load_subjects(path)]
        table = compare(subjects)
    except CompareError as exc:
        raise CommandError(str(exc)) from None
    print(f"each figure with its {LEVEL:.0%} interval; a difference whose interval holds 0 is within noise")
    print(render(subjects, table))
    if args.csv:
        table.to_csv(args.csv, index=False)
    for warning in provenance_warnings(subjects):
        print(f"warning: {warning}", file=sys.stderr)
    return 0
