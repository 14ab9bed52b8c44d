"""`python -m bench calibrate --worker NAME`: fit the simulated worker's latency model to real vLLM workers, probed
one at a time (bench/lab/calibrate.py); `--refit FILE` fits an earlier calibration's probes again."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from bench.cli import CommandError, add_results_dir, add_run_id
from bench.cli._stack import ready_stack
from bench.rundir import new_run_id

if TYPE_CHECKING:
    from bench.lab.calibrate import Calibration

HELP = "fit the simulated worker's latency model to real workers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--worker", action="append", default=[], help="a worker to probe (repeatable)")
    parser.add_argument("--refit", metavar="CALIBRATION_JSON", help="fit an earlier calibration's probes again")
    add_results_dir(parser)
    add_run_id(parser, "calibration")


def print_fits(record: Calibration) -> None:
    for worker_fit in record.fits:
        print(f"{worker_fit.worker}: {worker_fit.latency.model_dump_json(exclude={'source'})} "
              f"(rmse prefill {worker_fit.prefill_rmse_ms} ms, decode {worker_fit.decode_rmse_ms} ms)")


def run(args: argparse.Namespace) -> int:
    from bench.lab.calibrate import run_calibration

    if args.refit:  # the probes of an earlier calibration, fitted again by this code's model
        from bench.lab.calibrate import Calibration, refit
        from serve import batched_tokens

        path = Path(args.refit)
        spec = Calibration.model_validate_json(path.read_text()).stack_spec
        budgets = {w.name: batched_tokens(spec, w.group) for w in spec.workers}
        print_fits(refit(path, budgets))
        return 0
    state = ready_stack()
    names = [w.name for w in state.workers]
    if unknown := [w for w in args.worker if w not in names]:
        raise CommandError(f"--worker {unknown[0]}: the stack's workers are {', '.join(names)}")
    if state.spec.simulated:
        raise CommandError(f"profile {state.spec.profile} has simulated workers: calibrate against real vLLM workers")
    if not args.worker:
        raise CommandError("name the workers to probe: --worker heavy-0 [--worker light-1]")
    record = run_calibration(state, args.worker, Path(args.results_dir), args.run_id or new_run_id("calibration"))
    print_fits(record)
    print(f"results: {Path(args.results_dir) / record.run_id}")
    return 0
