"""`python -m bench sweep FILE.toml`: serve settings x load levels, restarting the stack for each setting."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import add_results_dir

ORDER = 3
HELP = "restart the stack for each serve setting and run each load level"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("grid", help="sweep file (see bench/sweeps/)")
    add_results_dir(parser)
    parser.add_argument("--restart", action="store_true", help="ignore finished points instead of resuming")


def run(args: argparse.Namespace) -> int:
    from bench.lab.sweep import run_sweep

    return run_sweep(Path(args.grid), Path(args.results_dir), resume=not args.restart)
