"""`python -m bench peers --base-url URL --model M --tokenizer DIR --vllm PATH --guidellm PATH`: the CPU a request
of peer load generators (`vllm bench serve`, GuideLLM) at the harness mixes' shapes, same backend, same rate
(bench/lab/peers.py). Each tool runs twice (--small and --large requests); the CPU difference over the request
difference is its CPU a request, start-up cancelled out. Writes peers.json and each run's console log."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from bench.cli import CommandError, add_results_dir

HELP = "CPU a request of peer load generators (vllm bench serve, GuideLLM) against the same backend and rate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", required=True, help="the backend, e.g. a simulated worker http://127.0.0.1:8002")
    parser.add_argument("--model", required=True, help="the model name the backend serves")
    parser.add_argument("--tokenizer", required=True, help="a local tokenizer folder for the peers' synthetic prompts")
    parser.add_argument("--vllm", help="the `vllm` command (for `vllm bench serve`)")
    parser.add_argument("--guidellm", help="the `guidellm` command")
    parser.add_argument("--mix", action="append", choices=["harness-plain", "harness-streamed"],
                        help="shapes to send (repeatable; default both)")
    parser.add_argument("--rate-rps", type=float, default=30.0)
    parser.add_argument("--small", type=int, default=30, help="requests of the short run")
    parser.add_argument("--large", type=int, default=330, help="requests of the long run")
    parser.add_argument("--run-id", default="peers-sim", help="folder name under --results-dir")
    add_results_dir(parser)


def run(args: argparse.Namespace) -> int:
    from bench.lab.peers import SHAPES, Target, run_peer, write

    tools = {name: path for name, path in (("vllm-bench-serve", args.vllm), ("guidellm", args.guidellm)) if path}
    if not tools:
        raise CommandError("name at least one peer: --vllm PATH and/or --guidellm PATH")
    for name, path in tools.items():
        if shutil.which(path) is None:
            raise CommandError(f"{name}: {path} is not an executable command")
    if not Path(args.tokenizer).is_dir():
        raise CommandError(f"--tokenizer {args.tokenizer}: no such folder")
    if not 0 < args.small < args.large:
        raise CommandError("--small must be at least 1 and below --large")
    if args.rate_rps <= 0:
        raise CommandError("--rate-rps must be above 0")
    folder = Path(args.results_dir) / args.run_id
    folder.mkdir(parents=True, exist_ok=True)
    target = Target(base_url=args.base_url, model=args.model, tokenizer=args.tokenizer)
    results = []
    for mix in args.mix or list(SHAPES):
        for name, path in tools.items():
            result = run_peer(name, path, target, SHAPES[mix], args.rate_rps, args.small, args.large, folder)
            print(f"{name} {mix}: {result.cpu_ms_per_request:.2f} CPU ms a request "
                  f"(exit {result.small.exit_code}/{result.large.exit_code})", flush=True)
            results.append(result)
            write(results, folder / "peers.json")
    return 0
