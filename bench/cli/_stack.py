"""What the commands that drive load share: the running stack, checked, and Locust run as a child that is stopped
with what it measured kept."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

from bench.errors import MixError
from bench.fit import check_fits
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
            "--stop-timeout", f"{int(request_timeout_s) + 10}s"]


def run_until_done(command: list[str]) -> int:
    """Run Locust in its own session and wait for it. Ctrl-C here is passed on once, so it stops the load, writes
    what was measured and marks the run interrupted (a second SIGINT could cut that short). SIGTERM (a service
    manager, `kill`) is passed on as SIGINT too: Locust's own SIGTERM handler shuts down twice, once in the
    handler and once when its runner ends, and exits before the run's folder is written. Either way Locust is
    not left running without us."""
    process = subprocess.Popen(command, start_new_session=True)

    def terminate(signum, frame) -> None:
        print("\nterminated: stopping the load and writing what was measured ...", file=sys.stderr, flush=True)
        process.send_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, terminate)
    interrupted = False
    try:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:
                if interrupted:
                    print("still writing the results; wait a moment", file=sys.stderr, flush=True)
                else:
                    print("\ninterrupted: stopping the load and writing what was measured ...", file=sys.stderr,
                          flush=True)
                    process.send_signal(signal.SIGINT)
                    interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)
