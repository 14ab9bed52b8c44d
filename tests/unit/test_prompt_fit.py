"""Prompt fit: a class's longest request counted as the worker counts it, through the model's chat template."""

from __future__ import annotations

import json
import re

import pytest

from bench import fit as tokens
from bench.fit import (
    TEMPLATE_MARGIN_TOKENS,
    TOOL_INSTRUCTIONS_TOKENS,
    check_fits,
    count_prompt,
    count_words,
    load_tokenizer,
    longest_request,
    tokenizer_dir,
)
from bench.load.npc import NPC_TOOLS
from bench.spec import MixError, load_classes, load_mix, mix_names
from serve.spec import load_profile

CPU = load_profile("cpu")
SMOLLM2 = CPU.models[CPU.groups["light"].model]
needs_smollm2 = pytest.mark.skipif(
    tokenizer_dir(SMOLLM2) is None,
    reason=f"SmolLM2 is not provisioned at {SMOLLM2.local_dir}: run `python -m serve provision` first",
)
CPU_MIXES = [name for name in mix_names() if load_mix(name).mix.scale == "cpu"]
GPU_MIXES = [name for name in mix_names() if load_mix(name).mix.scale == "gpu"]


@pytest.fixture
def no_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without the model's tokenizer (the Qwen models, where they are not downloaded)."""
    monkeypatch.setattr(tokens, "tokenizer_dir", lambda model: None)


@needs_smollm2
@pytest.mark.parametrize("name", ["ambient", "tool_call", "multi_turn", "fixed"])
def test_the_counted_prompt_is_the_longest_request_through_the_chat_template(name: str) -> None:
    cls = load_classes("cpu")[name]
    counted = count_prompt(cls, SMOLLM2, CPU.groups[cls.group])
    messages, tools = longest_request(cls)
    tokenizer = load_tokenizer(SMOLLM2.local_dir)
    rendered = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=True,
                                             return_dict=False)
    content = sum(len(tokenizer.encode(m["content"])) for m in messages)
    blank = [{"role": m["role"], "content": ""} for m in messages]
    template = len(tokenizer.apply_chat_template(blank, add_generation_prompt=True, tokenize=True, return_dict=False))
    assert counted.tokens == len(rendered)
    assert template >= 5 * len(messages) + 3  # <|im_start|>role\n ... <|im_end|>\n around each, and the reply's
    assert counted.tokens == content + template > cls.prompt_tokens.upper
    assert counted.tokenizer_dir == SMOLLM2.local_dir and "measured with the tokenizer" in counted.how


@needs_smollm2
def test_a_mix_that_fits_without_the_template_but_not_with_it_is_refused() -> None:
    ambient = load_classes("cpu")["ambient"]
    without_template = ambient.prompt_tokens.upper + ambient.output_tokens.upper
    with_template = count_prompt(ambient, SMOLLM2, CPU.groups["light"]).tokens + ambient.output_tokens.upper
    limit = (without_template + with_template) // 2
    assert without_template <= limit < with_template
    stack = load_profile("cpu", [f"groups.light.max_model_len={limit}"])
    expected = (f"class ambient: up to {with_template} tokens but group light has max_model_len {limit}, "
                f"{with_template - limit} over: a prompt of {with_template - ambient.output_tokens.upper} tokens "
                f"(measured with the tokenizer and chat template in {SMOLLM2.local_dir}) and a reply of up to "
                f"{ambient.output_tokens.upper}.\n    To fit, lower prompt_tokens.max to "
                f"{ambient.prompt_tokens.upper - (with_template - limit)}")
    with pytest.raises(MixError, match=re.escape(expected)) as refused:
        check_fits(load_mix("ambient"), stack)
    assert "[ambient.cpu] of bench/classes.toml" in str(refused.value)
    check_fits(load_mix("ambient"), load_profile("cpu", [f"groups.light.max_model_len={with_template}"]))


@needs_smollm2
@pytest.mark.parametrize("name", CPU_MIXES)
def test_shipped_cpu_mixes_fit_the_cpu_profile_as_measured(name: str) -> None:
    check_fits(load_mix(name), CPU)


@needs_smollm2
@pytest.mark.parametrize("scale", ["cpu", "gpu"])
def test_the_estimate_is_no_lower_than_a_real_template_count(scale: str, monkeypatch: pytest.MonkeyPatch) -> None:
    group = CPU.groups["light"]
    measured = {name: count_prompt(cls, SMOLLM2, group).tokens for name, cls in load_classes(scale).items()}
    monkeypatch.setattr(tokens, "tokenizer_dir", lambda model: None)
    for name, cls in load_classes(scale).items():
        assert count_prompt(cls, SMOLLM2, group).tokens >= measured[name], name


@pytest.mark.parametrize("name", GPU_MIXES)
def test_shipped_gpu_mixes_fit_the_gpu_profile_as_estimated(name: str, no_tokenizer: None) -> None:
    check_fits(load_mix(name), load_profile("gpu"))


def test_the_estimate_adds_the_template_margin_and_the_tools(no_tokenizer: None) -> None:
    gpu = load_profile("gpu")
    heavy = gpu.groups["heavy"]
    planning, tool_call = load_classes("gpu")["planning"], load_classes("gpu")["tool_call"]
    plain = count_prompt(planning, gpu.models[heavy.model], heavy)
    with_tools = count_prompt(tool_call, gpu.models[heavy.model], heavy)
    assert plain.tokens == plain.words + TEMPLATE_MARGIN_TOKENS and plain.tokenizer_dir is None
    tool_tokens = TOOL_INSTRUCTIONS_TOKENS + count_words(json.dumps(NPC_TOOLS))
    assert with_tools.tokens == with_tools.words + TEMPLATE_MARGIN_TOKENS + tool_tokens
    assert f"+ {tool_tokens} for the tools" in with_tools.how and "for the tools" not in plain.how


def test_a_tightened_context_fails_with_the_estimate(no_tokenizer: None) -> None:
    gpu = load_profile("gpu")
    ambient = load_classes("gpu")["ambient"]
    prompt = count_prompt(ambient, gpu.models[gpu.groups["light"].model], gpu.groups["light"])
    longest = prompt.tokens + ambient.output_tokens.upper
    limit = longest - 10
    message = (f"class ambient: up to {longest} tokens but group light has max_model_len {limit}, 10 over: "
               f"a prompt of {prompt.tokens} tokens (estimated, as no tokenizer of Qwen/Qwen3-8B-AWQ is on this "
               f"machine: {prompt.words} words and punctuation marks + {TEMPLATE_MARGIN_TOKENS} for the chat template)")
    with pytest.raises(MixError, match=re.escape(message)):
        check_fits(load_mix("npc-gpu"), load_profile("gpu", [f"groups.light.max_model_len={limit}"]))


def test_a_multi_turn_class_keeps_its_turn_arithmetic(no_tokenizer: None) -> None:
    heavy = CPU.groups["heavy"]
    cls = load_classes("cpu")["multi_turn"]
    first = count_prompt(cls, SMOLLM2, heavy).tokens
    turns = cls.turns or 1
    longest = first + turns * cls.output_tokens.upper + (turns - 1) * 40
    with pytest.raises(MixError, match=rf"class multi_turn: up to {longest} tokens .* a first prompt of {first} tokens"):
        check_fits(load_mix("multi-turn"), load_profile("cpu", [f"groups.heavy.max_model_len={longest - 1}"]))
    check_fits(load_mix("multi-turn"), load_profile("cpu", [f"groups.heavy.max_model_len={longest}"]))


def test_a_hub_model_is_found_in_the_local_cache_only(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    model = SMOLLM2.model_copy(update={"hf_id": "npcbench/cached-model", "provision": None})
    assert tokenizer_dir(model) is None  # not cached, and nothing downloaded
    commit = "0" * 40
    snapshot = tmp_path / "models--npcbench--cached-model" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(commit)
    assert tokenizer_dir(model) is None  # a snapshot without a tokenizer
    (snapshot / "tokenizer_config.json").write_text("{}")
    assert tokenizer_dir(model) == snapshot
