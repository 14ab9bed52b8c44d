"""`python -m bench overhead`: the latency and CPU the proxy adds per request, direct to the workers and through it
(bench/lab/overhead.py), optionally beside a second proxy with other settings (`--compare NAME --set proxy.X=V`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bench.cli import CommandError, add_results_dir, add_run_id
from bench.cli._stack import ready_stack
from bench.rundir import new_run_id

HELP = "latency and CPU the proxy adds: direct to the workers vs through it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=200, help="requests per target at concurrency 1")
    parser.add_argument("--concurrency", type=int, default=16, help="the closed-loop level for saturation")
    parser.add_argument("--duration-s", type=float, default=30.0, help="seconds per target at that level")
    parser.add_argument("--label", default="default", help="names the proxy setting measured, e.g. default, tuned")
    parser.add_argument("--compare", metavar="NAME", help="also measure a second proxy, labelled NAME, in the same run")
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                        help="the second proxy's settings on top of the stack's spec, e.g. proxy.num_workers=1")
    add_results_dir(parser)
    add_run_id(parser, "overhead-<label>")


def run(args: argparse.Namespace) -> int:
    from bench.lab.overhead import run_overhead

    state = ready_stack()
    run_id = args.run_id or new_run_id(f"overhead-{args.label}")
    if bool(args.compare) != bool(args.set):
        raise CommandError("--compare NAME and --set PATH=VALUE go together: the second proxy's label and its settings")
    if others := [item for item in args.set if not item.startswith("proxy.")]:
        raise CommandError(f"--set {others[0]}: the compared proxy takes proxy.* settings; it fronts the stack's own "
                           "workers")
    record = run_overhead(state, Path(args.results_dir), run_id, args.label, args.requests, args.concurrency,
                          args.duration_s, args.compare, args.set)
    print(pd.DataFrame([row.model_dump() for row in record.rows]).to_string(na_rep="-"))
    print(f"results: {Path(args.results_dir) / record.run_id}")
    return 0
