"""Every rendered worker command line, the GPU profile's included, parses with vLLM's own serve parser."""

from __future__ import annotations

import pytest

from serve.spec import load_profile, profile_names
from serve.vllm_check import VllmArgsError, check_stack, parse_vllm_args


@pytest.mark.parametrize("profile", profile_names())
def test_profile_command_lines_parse_with_vllm(profile: str) -> None:
    spec = load_profile(profile)
    parsed = check_stack(spec)
    engines = [w for w in spec.workers if not w.is_external and spec.group_of(w).engine == "vllm"]
    assert set(parsed) == {w.name for w in engines}  # simulated workers are not vLLM's to parse
    for worker in engines:
        ns, group = parsed[worker.name], spec.group_of(worker)
        assert ns.model == ns.model_tag == str(spec.model_of(worker).local_dir or spec.model_of(worker).hf_id)
        assert ns.port == worker.port
        assert ns.max_model_len == group.max_model_len
        assert ns.max_num_seqs == group.max_num_seqs
        assert ns.max_num_batched_tokens == group.max_num_batched_tokens
        assert ns.enable_prefix_caching is group.enable_prefix_caching
        if spec.device == "cuda":
            assert ns.gpu_memory_utilization == group.gpu_memory_utilization
            assert ns.quantization == "awq_marlin"


def test_parser_rejects_an_unknown_flag() -> None:
    with pytest.raises(VllmArgsError, match="unrecognized arguments: --max-num-sequences"):
        parse_vllm_args(["--model", "m", "--max-num-sequences", "4"])


def test_unknown_quantization_is_caught() -> None:
    with pytest.raises(VllmArgsError, match="--quantization 'awq-marlin' is not one of vLLM's methods"):
        parse_vllm_args(["--model", "m", "--quantization", "awq-marlin"])
