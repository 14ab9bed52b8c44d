"""Send one NPC request and measure it as a game client sees it. The request travels by one of the registered
paths (bench/load/exchange.py): the lean one (bench/load/lean.py, the default) or the OpenAI SDK's (bench/load/sdk.py); the
record is made here, the same way for both."""

from __future__ import annotations

import itertools
import time
from typing import NamedTuple

import openai

from bench.kinds import KINDS
from bench.load import lean, sdk  # noqa: F401  (each registers its request path)
from bench.load.decisions import Cancelled
from bench.load.exchange import PATHS, ChatPath, ChatRequest, Exchange, Failure, tool_calls_problem
from bench.load.npc import NPC, NPC_TOOLS, faction_prefix
from bench.records import RequestRecord
from bench.spec import TrafficClass

DEFAULT_PATH = "lean"


def connect(path: str, base_url: str, api_key: str, timeout_s: float) -> ChatPath:
    """A client for `base_url` (ending in /v1) by the named request path."""
    if path not in PATHS:
        raise ValueError(f"unknown client {path!r}: choose one of {', '.join(sorted(PATHS))}")
    return PATHS[path](base_url, api_key, timeout_s)


def tool_call_problem(message) -> str | None:
    """None if the reply (an SDK message) calls one known tool with arguments that validate against its schema."""
    return tool_calls_problem([(c.function.name, c.function.arguments) for c in message.tool_calls or []])


class Direct(NamedTuple):
    """A worker that `client` talks to straight, bypassing the proxy, and the model name it serves."""

    worker: str
    model: str


def send(client: ChatPath | openai.OpenAI, cls: TrafficClass, npc: NPC, *, direct: Direct | None = None,
         models: dict[str, str] | None = None, use_priority: bool = False, tick: int | None = None,
         deadline_s: float | None = None, lengths: tuple[int, int] | None = None) -> tuple[RequestRecord, str]:
    """Send one request of `cls` for `npc`; returns its record and the reply text (multi-turn memory).
    Through the proxy the model is the class's group; `direct` when `client` talks to one worker. Cancelled
    (a newer tick of its NPC) while in flight, it closes its connection and is recorded `cancelled`. `lengths`:
    (prompt, output) tokens to send instead of drawing them from the class (a trace's)."""
    path = sdk.OpenAIPath(client) if isinstance(client, openai.OpenAI) else client
    prompt_tokens, max_tokens = lengths or (cls.prompt_tokens.sample(npc.rng), cls.output_tokens.sample(npc.rng))
    messages = npc.messages(cls, prompt_tokens)
    extra: dict = {}
    if KINDS[cls.kind].ignore_eos:
        extra["ignore_eos"] = True
    if use_priority:
        extra["priority"] = cls.priority
    if direct is None and models is None:  # the proxy's session-affinity routing keeps an NPC on one worker by this id
        extra["metadata"] = {"session_id": npc.npc_id}
    request = ChatRequest(
        model=direct.model if direct else models[cls.group] if models else cls.group, messages=messages,
        max_tokens=max_tokens, extra=extra,
        tools=NPC_TOOLS if cls.tools else None, stream=cls.stream,
        stop_after_tokens=cls.interrupt_after_tokens if cls.stream and KINDS[cls.kind].cuts_stream else None,
        prefix=faction_prefix(cls, npc.faction) if cls.shared_prefix_share and not KINDS[cls.kind].bare_prompt else None)
    base = dict(cls=cls.name, kind=cls.kind, group=cls.group, npc_id=npc.npc_id, turn=npc.turn,
                max_tokens=max_tokens, prompt_tokens_drawn=prompt_tokens, tick=tick, deadline_s=deadline_s,
                worker=direct.worker if direct else None)
    t_start, t0 = time.time(), time.perf_counter()
    reply = ""
    try:
        exchange = path.chat(request, t0)
        record = (_streamed(request, exchange, base, t_start, t0) if request.stream
                  else _plain(cls, exchange, base, t_start))
        reply = exchange.text
    except Failure as failure:
        record = RequestRecord(**base, t_start=t_start, e2e_s=time.perf_counter() - t0, outcome=failure.outcome,
                               status_code=failure.status_code, error=failure.error)
    except Cancelled:  # the path closed its connection on the way out: the worker stops generating it
        record = RequestRecord(**base, t_start=t_start, e2e_s=time.perf_counter() - t0, outcome="cancelled")
    if deadline_s is not None:
        record.deadline_missed = record.outcome != "ok" or record.e2e_s > deadline_s
    npc.remember(cls, messages, reply if record.outcome == "ok" else None)
    return record, reply


def _plain(cls: TrafficClass, exchange: Exchange, base: dict, t_start: float) -> RequestRecord:
    problem = tool_calls_problem(exchange.tool_calls) if cls.tools else None
    usage = exchange.usage
    return RequestRecord(
        **{**base, "worker": exchange.worker or base["worker"]}, t_start=t_start, e2e_s=exchange.e2e_s,
        prompt_tokens=usage[0] if usage else None, output_tokens=usage[1] if usage else 0,
        outcome="tool_invalid" if problem else "ok", error=problem,
    )


def _streamed(request: ChatRequest, exchange: Exchange, base: dict, t_start: float, t0: float) -> RequestRecord:
    """A stream's record; one the client closed after `stop_after_tokens` (no usage came) is `interrupted`."""
    token_times, usage = exchange.token_times, exchange.usage
    interrupted = request.stop_after_tokens is not None and usage is None
    output_tokens = usage[1] if usage else len(token_times)
    itl = ((token_times[-1] - token_times[0]) / (output_tokens - 1)) if len(token_times) > 1 and output_tokens > 1 else None
    return RequestRecord(
        **{**base, "worker": exchange.worker or base["worker"]}, t_start=t_start, e2e_s=exchange.e2e_s,
        ttft_s=(token_times[0] - t0) if token_times else None,
        itl_s=itl, token_gaps_s=[round(b - a, 5) for a, b in itertools.pairwise(token_times)] or None,
        prompt_tokens=usage[0] if usage else None, output_tokens=output_tokens,
        outcome="interrupted" if interrupted else ("ok" if token_times else "error"),
        error=None if token_times else "stream ended with no content",
    )
