"""What the commands that drive load share: the running stack, checked, and Locust's command line (it runs as a
child process: bench/load/child.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import MixError
from bench.fit import check_fits
from bench.load.child import stop_timeout_s
from bench.options import LoadOptions
from bench.spec import ResolvedMix, direct_worker, load_mix
from serve import NOT_READY, StackState, ready_state

LOCUSTFILE = Path(__file__).parent.parent / "locustfile.py"


def ready_stack() -> StackState:
    state = ready_state()
    if state is None:
        raise MixError(NOT_READY)
    return state


def validate(args: argparse.Namespace) -> tuple[StackState, ResolvedMix]:
    """Fail on bad options, a bad mix or a mix that does not fit the running stack, before Locust starts."""
    options = LoadOptions.from_args(args)
    mix = load_mix(options.mix, options.npcs, options.rate_rps, options.duration_s, options.tick_policy)
    state = ready_stack()
    check_fits(mix, state.spec)
    if args.direct:
        direct_worker(mix, state.workers, args.direct)
    if options.cache == "reset" and not state.spec.worker_dev_endpoints:
        raise MixError("--cache reset empties the workers' prefix caches through vLLM's /reset_prefix_cache, which "
                       "this stack's workers do not serve: restart it with `python -m serve up --set "
                       "worker_dev_endpoints=true`, or run with --cache keep")
    return state, mix


def locust_args(args: argparse.Namespace, request_timeout_s: float) -> list[str]:
    # --stop-timeout: at the end, requests in flight finish and are recorded instead of being cut off.
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *LoadOptions.from_args(args).argv(),
            "--stop-timeout", f"{stop_timeout_s(request_timeout_s)}s"]
