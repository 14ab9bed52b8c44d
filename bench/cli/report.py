"""`python -m bench report RUN_DIR [RUN_DIR ...]`: each run as one self-contained HTML page, RUN_DIR/report.html
(bench/report/html.py and its panels); given a sweep's folder, a page for each of its runs. `bench run` writes
the page as each run ends."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import CommandError
from bench.report.console import run_folders
from bench.report.html import write_report
from bench.rundir import MANIFEST

ORDER = 6
HELP = "a run as one self-contained HTML page (RUN_DIR/report.html)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="a run folder (one holding manifest.json), or a sweep folder for a page per run")


def run(args: argparse.Namespace) -> int:
    run_dirs = [run for path in args.run_dirs for run in run_folders(Path(path))]
    if missing := [str(run_dir) for run_dir in run_dirs if not (run_dir / MANIFEST).exists()]:
        raise CommandError(f"{', '.join(missing)} holds no {MANIFEST}: give a run's folder, or a sweep's (one holding "
                           "index.json)")
    for run_dir in run_dirs:
        print(f"report: {write_report(run_dir)}")
    return 0
