"""Prompt fitting: a class's longest request counted as the worker counts it, and a mix refused before it runs
when that would not fit its group's context on the stack.

vLLM renders the messages (and a tool class's tool definitions) with the model's chat template before it holds
the prompt against --max-model-len, so a prompt is longer than the words the bench draws. Where the model's
tokenizer is on this machine the count is exact; elsewhere it is an estimate with a stated margin.
"""

from __future__ import annotations

import json
import math
import random
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from bench.errors import MixError
from bench.load.npc import NPC, NPC_TOOLS
from bench.spec import BENCH_DIR, CLASSES_FILE
from serve import is_provisioned

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from bench.spec import ResolvedMix, TrafficClass
    from serve import GroupSpec, ModelSpec, StackSpec

# The estimate counts words and punctuation marks: the filler words are one token each, and a name such as
# "npc-12" is three pieces, about what a BPE vocabulary makes of it (2-5 tokens short per request, measured).
WORDS_AND_PUNCTUATION = re.compile(r"\w+|[^\w\s]")
# Per request, what the estimate adds for the chat template (and the 2-5 tokens above). SmolLM2's template
# adds 14 tokens to a system + user request, and 30 to a lone user message (its default system prompt),
# measured. Qwen2.5's and Qwen3's ChatML adds 5 a message (<|im_start|>role\n ... <|im_end|>\n) and 3 for
# the generation prompt; Qwen3's empty think block (enable_thinking=false) 4 more; Qwen2.5's default
# system prompt, sent only without a system message, ~21. So at most ~35 in all; 48 leaves a third more.
TEMPLATE_MARGIN_TOKENS = 48
# Qwen's templates render the tools into the system message: the JSON of each, between fixed instructions
# ("# Tools ... </tool_call>") of 87 tokens by cl100k_base, whose vocabulary Qwen's extends, and 106 by
# SmolLM2's. The JSON itself is estimated by its words and punctuation, which overcounts it (381 against
# 278 by cl100k_base): ~500 in all against ~365-400.
TOOL_INSTRUCTIONS_TOKENS = 120


class PromptCount(BaseModel):
    """The prompt tokens of a class's longest request, and how they were counted."""

    model_config = ConfigDict(frozen=True)

    tokens: int
    words: int = Field(description="words and punctuation marks of its messages: about what the bench drew")
    tokenizer_dir: Path | None = Field(description="whose tokenizer and chat template counted; None: estimated")
    how: str = Field(description="for error messages: which tokenizer measured, or what the estimate added")


def longest_request(cls: TrafficClass) -> tuple[list[dict], list[dict[str, Any]] | None]:
    """The messages and tools the bench sends for `cls` at its longest prompt (a conversation's first turn)."""
    # A five-digit NPC id and the highest faction number: no run's names are longer.
    npc = NPC(npc_id="npc-99999", rng=random.Random(0), faction=cls.factions - 1)
    return npc.messages(cls, cls.prompt_tokens.upper), NPC_TOOLS if cls.tools else None


def tokenizer_dir(model: ModelSpec) -> Path | None:
    """The model's folder on this machine, provisioned or in the Hugging Face cache; never downloads."""
    if model.local_dir is not None:
        return model.local_dir if is_provisioned(model.local_dir) else None
    from huggingface_hub import snapshot_download  # a quarter of a second, for hub models only
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(model.hf_id, local_files_only=True))
    except LocalEntryNotFoundError:
        return None
    return folder if (folder / "tokenizer_config.json").exists() else None


@cache
def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer  # imports torch: seconds, so only where there is a tokenizer to load

    return AutoTokenizer.from_pretrained(folder)


def count_words(text: str) -> int:
    return len(WORDS_AND_PUNCTUATION.findall(text))


def count_prompt(cls: TrafficClass, model: ModelSpec, group: GroupSpec) -> PromptCount:
    """The prompt tokens of `cls`'s longest request on a worker of `group`, which serves `model`."""
    return count_with(cls, tokenizer_dir(model), model.hf_id, group.chat_template_kwargs)


def count_with(cls: TrafficClass, folder: Path | None, model_name: str,
               chat_template_kwargs: dict[str, Any] | None = None) -> PromptCount:
    """The prompt tokens of `cls`'s longest request: by the tokenizer and chat template in `folder`, else estimated."""
    messages, tools = longest_request(cls)
    words = sum(count_words(m["content"]) for m in messages)
    if folder is not None:
        tokenizer = load_tokenizer(folder)
        ids = tokenizer.apply_chat_template(messages, tools=[*tools] if tools else None, add_generation_prompt=True,
                                            tokenize=True, return_dict=False, **(chat_template_kwargs or {}))
        return PromptCount(tokens=len(ids), words=words, tokenizer_dir=folder,
                           how=f"measured with the tokenizer and chat template in {folder}")
    tool_tokens = TOOL_INSTRUCTIONS_TOKENS + count_words(json.dumps(tools)) if tools else 0
    how = (f"estimated, as no tokenizer of {model_name} is on this machine: {words} words and punctuation marks "
           f"+ {TEMPLATE_MARGIN_TOKENS} for the chat template" + (f" + {tool_tokens} for the tools" if tools else ""))
    return PromptCount(tokens=words + TEMPLATE_MARGIN_TOKENS + tool_tokens, words=words, tokenizer_dir=None, how=how)


# Per later turn of a conversation: the follow-up question (a few words) and the template around it and the reply.
TURN_OVERHEAD_TOKENS = 40


def check_fits(mix: ResolvedMix, stack: StackSpec) -> None:
    """Fail before a run whose longest request would not fit its group's context on this stack: the longest
    prompt as the worker counts it, plus the reply and, in a conversation, the turns before it."""
    problems = []
    for cls in mix.classes.values():
        if cls.group not in stack.groups:
            continue
        group = stack.groups[cls.group]
        prompt = count_prompt(cls, stack.models[group.model], group)
        if (problem := _problem(mix, cls, prompt, group.max_model_len)) is not None:
            problems.append(problem)
    if problems:
        raise MixError(f"mix {mix.name} does not fit the running stack:\n" + "\n".join(f"  - {p}" for p in problems))


def longest_tokens(cls: TrafficClass, prompt: PromptCount) -> int:
    turns = cls.turns or 1
    return prompt.tokens + turns * cls.output_tokens.upper + (turns - 1) * TURN_OVERHEAD_TOKENS


def _problem(mix: ResolvedMix, cls: TrafficClass, prompt: PromptCount, limit: int) -> str | None:
    longest = longest_tokens(cls, prompt)
    return _does_not_fit(mix, cls, prompt, longest, limit) if longest > limit else None


def check_fits_target(mix: ResolvedMix, models: dict[str, str], max_model_len: dict[str, int | None],
                      tokenizer: Path | None) -> list[str]:
    """An outside target (`--target`): fail where a class's longest request exceeds the context length the target
    reported for its group's model; the warnings to print where it reported none. `tokenizer`: a folder with the
    served model's tokenizer and chat template (`--tokenizer`); without it the count is estimated."""
    problems, warnings = [], []
    for cls in mix.classes.values():
        limit = max_model_len.get(cls.group)
        if limit is None:
            warnings.append(f"class {cls.group}/{cls.name}: the target reports no max_model_len for "
                            f"{models.get(cls.group)}, so whether its prompts fit is not checked")
            continue
        prompt = count_with(cls, tokenizer, models.get(cls.group, cls.group))
        if (problem := _problem(mix, cls, prompt, limit)) is not None:
            problems.append(problem.replace(f"raise groups.{cls.group}.max_model_len to",
                                            "serve it with a --max-model-len of at least"))
    if problems:
        raise MixError(f"mix {mix.name} does not fit the target:\n" + "\n".join(f"  - {p}" for p in problems))
    return warnings


def _does_not_fit(mix: ResolvedMix, cls: TrafficClass, prompt: PromptCount, longest: int, limit: int) -> str:
    over, turns = longest - limit, cls.turns or 1
    replies = (f"{turns} replies of up to {cls.output_tokens.upper} and {turns - 1} follow-ups of up to "
               f"{TURN_OVERHEAD_TOKENS}" if turns > 1 else f"a reply of up to {cls.output_tokens.upper}")
    table = (f"[lengths.{cls.name}] of mix {mix.name}" if cls.name in mix.mix.lengths
             else f"[classes.{cls.name}] of mix {mix.name}" if cls.name in mix.mix.classes
             else f"[{cls.name}.{mix.mix.scale}] of {CLASSES_FILE.relative_to(BENCH_DIR.parent)}")
    fixes = [f"{field}.max to {upper}" for field, upper, lowest in (
        ("prompt_tokens", cls.prompt_tokens.upper - over, cls.prompt_tokens.min),
        ("output_tokens", cls.output_tokens.upper - math.ceil(over / turns), cls.output_tokens.min)) if upper >= lowest]
    lower = f"lower {' or '.join(fixes)} in {table}, or " if fixes else ""
    return (f"class {cls.name}: up to {longest} tokens but group {cls.group} has max_model_len {limit}, {over} over: "
            f"a {'first ' if turns > 1 else ''}prompt of {prompt.tokens} tokens ({prompt.how}) and {replies}.\n"
            f"    To fit, {lower}raise groups.{cls.group}.max_model_len to {longest}.")
