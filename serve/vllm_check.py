"""Check rendered worker command lines with vLLM's own serve-argument parser, without loading any model.

This is how the GPU profile stays exact on machines that cannot run it.
"""

from __future__ import annotations

import argparse
import contextlib
import io

from serve.render import vllm_args
from serve.spec import StackSpec


class VllmArgsError(ValueError):
    pass


def parse_vllm_args(args: list[str]) -> argparse.Namespace:
    """Parse and validate `vllm serve` arguments the way vLLM does; raise VllmArgsError with its message."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            namespace = parser.parse_args(args)
    except SystemExit as exc:
        raise VllmArgsError(stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue() else str(exc)) from None
    if getattr(namespace, "model_tag", None):  # as `vllm serve MODEL` does (vllm/entrypoints/cli/serve.py)
        namespace.model = namespace.model_tag
    validate_parsed_serve_args(namespace)
    # The parser takes any string for --quantization; vLLM only rejects an unknown one at engine start.
    if namespace.quantization is not None and namespace.quantization not in QUANTIZATION_METHODS:
        raise VllmArgsError(f"--quantization {namespace.quantization!r} is not one of vLLM's methods")
    return namespace


def check_stack(spec: StackSpec) -> dict[str, argparse.Namespace]:
    """Every started vLLM worker's arguments, parsed by vLLM: {worker name: namespace}. Simulated workers are
    not vLLM; their config is checked by its own model when it is rendered."""
    problems, parsed = [], {}
    for worker in spec.workers:
        if not spec.starts_vllm(worker):
            continue
        try:
            parsed[worker.name] = parse_vllm_args(vllm_args(spec, worker))
        except (VllmArgsError, ValueError, TypeError) as exc:
            problems.append(f"{worker.name}: {exc}")
    if problems:
        raise VllmArgsError(f"profile {spec.profile}: vLLM rejects " + "; ".join(problems))
    return parsed
