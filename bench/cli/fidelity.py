"""`python -m bench fidelity`: this bench and `vllm bench serve` on one worker and one fixed workload, side by side
(bench/lab/fidelity.py); exit 1 when they do not agree within the tolerance."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import CommandError, add_results_dir, add_run_id
from bench.cli._stack import ready_stack
from bench.rundir import new_run_id

HELP = "this bench and `vllm bench serve` on one worker, one fixed workload"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--direct", metavar="WORKER", default="light-0", help="the worker both tools send to")
    parser.add_argument("--input-len", type=int, default=256, help="prompt tokens (random)")
    parser.add_argument("--output-len", type=int, default=64, help="reply tokens (ignore_eos)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--num-prompts", type=int, default=48, help="vLLM's requests; the bench runs as long")
    parser.add_argument("--tolerance", type=float, default=0.05, help="largest relative difference that agrees")
    add_results_dir(parser)
    add_run_id(parser, "fidelity")


def run(args: argparse.Namespace) -> int:
    from bench.lab.fidelity import run_fidelity
    from bench.lab.fidelity import table as fidelity_table

    state = ready_stack()
    if not any(w.name == args.direct for w in state.workers):
        raise CommandError(f"--direct {args.direct}: the stack's workers are {', '.join(w.name for w in state.workers)}")
    run_id = args.run_id or new_run_id("fidelity")
    workload = {"input_len": args.input_len, "output_len": args.output_len, "concurrency": args.concurrency,
                "num_prompts": args.num_prompts}
    try:
        record = run_fidelity(state, Path(args.results_dir), run_id, args.direct, workload, args.tolerance)
    except RuntimeError as exc:
        raise CommandError(str(exc), 1) from None
    print(fidelity_table(record).to_string(na_rep="-"))
    verdict = "agree" if record.agree else "DO NOT agree"
    print(f"median TTFT, median ITL and output tokens/s {verdict} within {args.tolerance:.0%}; "
          f"results: {Path(args.results_dir) / record.run_id}")
    return 0 if record.agree else 1
