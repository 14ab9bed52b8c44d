"""`python -m bench ui`: Locust's web UI on 127.0.0.1:8089/npc, opening on a form to pick a mix and start it."""

from __future__ import annotations

import argparse

from bench.cli._stack import locust_args, ready_stack
from bench.load.child import run_until_done, stop_budget_s
from bench.options import LoadOptions

ORDER = 2
HELP = "the Locust web UI"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    LoadOptions.add_arguments(parser)
    parser.add_argument("--web-host", default="127.0.0.1")
    parser.add_argument("--web-port", type=int, default=8089)


def run(args: argparse.Namespace) -> int:
    from bench.load.webform import START_PATH

    state = ready_stack()
    print(f"Web UI: http://{args.web_host}:{args.web_port}{START_PATH}  (pick a mix and start it; then Locust's own "
          f"charts; stack: {state.base_url}); Ctrl-C stops it", flush=True)
    command = [*locust_args(args, state.spec.proxy.timeout_s), "--web-host", args.web_host, "--web-port",
               str(args.web_port), "--host", state.base_url]
    return run_until_done(command, stop_budget_s(state.spec.proxy.timeout_s))
