"""What the commands that drive load share: the running stack, checked, and Locust's command line (it runs as a
child process: bench/load/child.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import MixError
from bench.fit import check_fits, check_fits_target
from bench.load.child import stop_timeout_s
from bench.options import LoadOptions
from bench.spec import ResolvedMix, direct_worker, load_mix
from bench.target import TargetRecord, describe
from serve import NOT_READY, ProxySpec, StackState, ready_state

LOCUSTFILE = Path(__file__).parent.parent / "locustfile.py"


def ready_stack() -> StackState:
    state = ready_state()
    if state is None:
        raise MixError(NOT_READY)
    return state


def validate(args: argparse.Namespace) -> tuple[StackState | None, ResolvedMix]:
    """Fail on bad options, a bad mix or a mix that does not fit the running stack (or the `--target`), before
    Locust starts. The state is None for an outside target."""
    options = LoadOptions.from_args(args)
    mix = load_mix(options.mix, options.npcs, options.rate_rps, options.duration_s, options.tick_policy)
    if options.target:
        check_target(options, mix)
        return None, mix
    if options.api_key_env or options.model or options.metrics or options.tokenizer:
        raise MixError("--api-key-env, --model, --metrics and --tokenizer describe an outside endpoint: give its "
                       "URL with --target, or leave them out to bench the running stack")
    state = ready_stack()
    check_fits(mix, state.spec)
    if args.direct:
        direct_worker(mix, state.workers, args.direct)
    if options.cache == "reset" and not state.spec.worker_dev_endpoints:
        raise MixError("--cache reset empties the workers' prefix caches through vLLM's /reset_prefix_cache, which "
                       "this stack's workers do not serve: restart it with `python -m serve up --set "
                       "worker_dev_endpoints=true`, or run with --cache keep")
    return state, mix


def check_target(options: LoadOptions, mix: ResolvedMix) -> TargetRecord:
    """An outside endpoint's flags, its key and what it serves, checked; warnings printed for what it does not say."""
    if options.direct:
        raise MixError("--direct names one of the running stack's workers; with --target, point --target at that "
                       "server instead")
    if options.cache == "reset":
        raise MixError("--cache reset needs the stack's own workers (vLLM's dev endpoints); an outside --target "
                       "runs with --cache keep")
    if options.tokenizer and not (Path(options.tokenizer) / "tokenizer_config.json").exists():
        raise MixError(f"--tokenizer {options.tokenizer}: no tokenizer_config.json there; give the folder of the "
                       "served model's tokenizer (a Hugging Face model folder)")
    record, _ = describe(options.target, options.api_key_env, options.model, options.metrics,
                         sorted({c.group for c in mix.classes.values()}))
    tokenizer = Path(options.tokenizer) if options.tokenizer else None
    if tokenizer is None:
        print("warning: --target without --tokenizer: prompt lengths are estimated (words and punctuation plus a "
              "margin for the chat template), not counted with the served model's tokenizer", file=sys.stderr, flush=True)
    for warning in check_fits_target(mix, record.models, record.max_model_len, tokenizer):
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    for what in record.unseen:
        print(f"note: not seen: {what}", file=sys.stderr, flush=True)
    return record


def request_timeout_s(state: StackState | None) -> float:
    return state.spec.proxy.timeout_s if state is not None else ProxySpec().timeout_s


def locust_args(args: argparse.Namespace, request_timeout_s: float) -> list[str]:
    # --stop-timeout: at the end, requests in flight finish and are recorded instead of being cut off.
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *LoadOptions.from_args(args).argv(),
            "--stop-timeout", f"{stop_timeout_s(request_timeout_s)}s"]
