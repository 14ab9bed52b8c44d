"""`python -m bench ui`: Locust's web UI on 127.0.0.1:8089/npc, opening on a form to pick a mix and start it."""

from __future__ import annotations

import argparse

from bench.cli._stack import check_target, locust_args, ready_stack, request_timeout_s
from bench.load.child import run_until_done, stop_budget_s
from bench.options import LoadOptions
from bench.spec import load_mix

ORDER = 2
HELP = "the Locust web UI"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    LoadOptions.add_arguments(parser)
    parser.add_argument("--web-host", default="127.0.0.1")
    parser.add_argument("--web-port", type=int, default=8089)


def run(args: argparse.Namespace) -> int:
    from bench.load.webform import START_PATH

    options = LoadOptions.from_args(args)
    if options.target:  # an outside endpoint: checked against the default mix now, against the chosen one at start
        check_target(options, load_mix(options.mix))
        state, host = None, options.target
    else:
        state = ready_stack()
        host = state.base_url
    print(f"Web UI: http://{args.web_host}:{args.web_port}{START_PATH}  (pick a mix and start it; then Locust's own "
          f"charts; {'target' if state is None else 'stack'}: {host}); Ctrl-C stops it", flush=True)
    timeout_s = request_timeout_s(state)
    command = [*locust_args(args, timeout_s), "--web-host", args.web_host, "--web-port", str(args.web_port),
               "--host", host]
    return run_until_done(command, stop_budget_s(timeout_s))
