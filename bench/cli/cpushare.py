"""`python -m bench cpushare`: where the machine's CPU goes during runs (bench/lab/cpushare.py). Record every
process's CPU time beside a `bench run`, then sum it by part (vLLM model workers, engine cores, API servers, the
proxy, Locust, other processes) over each run's window:

    python -m bench cpushare --out samples.jsonl --duration-s 330 --interval-s 2      (beside the runs)
    python -m bench cpushare --samples samples.jsonl --runs DIR/real-r0 DIR/real-r1 --out DIR/cpu-share.json
        [--ours STACK_DIR WORKTREE DIR]   only proxies and load generators whose command line names one of these
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.cli import CommandError
from bench.lab.cpushare import by_run, load, record

ORDER = 60
HELP = "sample every process's CPU time during runs, and sum it by part of the stack over each run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="samples (JSON lines) to write, or with --runs the "
                        "summary (JSON)")
    parser.add_argument("--duration-s", type=float, default=0.0, help="how long to sample")
    parser.add_argument("--interval-s", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--samples", type=Path, help="with --runs: the samples to sum")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="run folders: sum --samples over their "
                        "windows (manifest start to end)")
    parser.add_argument("--ours", nargs="*", default=[], help="paths in the command lines of this stack's proxy and "
                        "load generator (its stack folder, the worktree, the results folder); other proxies and "
                        "Locusts count as other processes")


def run(args: argparse.Namespace) -> int:
    if args.runs:
        if args.samples is None or not args.samples.is_file():
            raise CommandError(f"--runs needs --samples, a file of samples (got {args.samples})")
        if missing := [str(r) for r in args.runs if not (r / "manifest.json").is_file()]:
            raise CommandError(f"not run folders (no manifest.json): {', '.join(missing)}")
        try:
            summary = by_run(load(args.samples), args.runs, tuple(args.ours))
        except ValueError as exc:
            raise CommandError(f"{exc} (were the samples taken during these runs?)") from exc
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"wrote {args.out}")
        return 0
    if args.duration_s <= 0 or args.interval_s <= 0:
        raise CommandError("--duration-s and --interval-s must be positive (or give --runs and --samples to sum)")
    record(args.out, args.duration_s, args.interval_s)
    print(f"wrote {args.out}")
    return 0
