"""`python -m bench show RUN_DIR [RUN_DIR ...]`: runs' per-class summaries, as `bench run` printed them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.records import lock_mismatch
from bench.report.console import print_summary, run_folders
from bench.rundir import read_manifest

ORDER = 4
HELP = "print runs' summaries, warning when they came from different locks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a run folder, or a sweep folder for all its runs")


def run(args: argparse.Namespace) -> int:
    run_dirs = [run for path in args.run_dirs for run in run_folders(Path(path))]
    for run_dir in run_dirs:
        print_summary(run_dir)
    manifests = [read_manifest(run_dir) for run_dir in run_dirs]
    if warning := lock_mismatch({m.run_id: m.env_lock for m in manifests}):
        print(f"\nwarning: {warning}", file=sys.stderr)
    return 0
