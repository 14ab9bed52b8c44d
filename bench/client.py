"""Send one NPC request through the proxy with the OpenAI SDK and measure it as a game client sees it."""

from __future__ import annotations

import itertools
import json
import time
from typing import NamedTuple

import jsonschema
import openai

from bench.decisions import Cancelled
from bench.kinds import KINDS
from bench.npc import NPC, NPC_TOOLS, TOOL_SCHEMAS
from bench.records import RequestRecord
from bench.spec import TrafficClass


def tool_call_problem(message) -> str | None:
    """None if the reply calls one known tool with arguments that validate against its schema."""
    calls = message.tool_calls or []
    if not calls:
        return "no tool call in the reply"
    call = calls[0].function
    if call.name not in TOOL_SCHEMAS:
        return f"unknown tool {call.name!r}"
    try:
        jsonschema.validate(json.loads(call.arguments), TOOL_SCHEMAS[call.name])
    except (json.JSONDecodeError, jsonschema.ValidationError) as exc:
        return f"{call.name} arguments do not validate: {str(exc).splitlines()[0]}"
    return None


class Direct(NamedTuple):
    """A worker that `client` talks to straight, bypassing the proxy, and the model name it serves."""

    worker: str
    model: str


def send(client: openai.OpenAI, cls: TrafficClass, npc: NPC, *, direct: Direct | None = None,
         use_priority: bool = False, tick: int | None = None, deadline_s: float | None = None,
         lengths: tuple[int, int] | None = None) -> tuple[RequestRecord, str]:
    """Send one request of `cls` for `npc`; returns its record and the reply text (multi-turn memory).
    Through the proxy the model is the class's group; `direct` when `client` talks to one worker. Cancelled
    (a newer tick of its NPC) while in flight, it closes its connection and is recorded `cancelled`. `lengths`:
    (prompt, output) tokens to send instead of drawing them from the class (a trace's)."""
    prompt_tokens, max_tokens = lengths or (cls.prompt_tokens.sample(npc.rng), cls.output_tokens.sample(npc.rng))
    messages = npc.messages(cls, prompt_tokens)
    extra_body: dict = {}
    if KINDS[cls.kind].ignore_eos:
        extra_body["ignore_eos"] = True
    if use_priority:
        extra_body["priority"] = cls.priority
    if direct is None:  # the proxy's session-affinity routing keeps an NPC on one worker by this id
        extra_body["metadata"] = {"session_id": npc.npc_id}
    request = dict(model=direct.model if direct else cls.group, messages=messages, max_tokens=max_tokens,
                   extra_body=extra_body)
    if cls.tools:
        request.update(tools=NPC_TOOLS, tool_choice="required")
    base = dict(cls=cls.name, kind=cls.kind, group=cls.group, npc_id=npc.npc_id, turn=npc.turn,
                max_tokens=max_tokens, prompt_tokens_drawn=prompt_tokens, tick=tick, deadline_s=deadline_s,
                worker=direct.worker if direct else None)
    t_start, t0 = time.time(), time.perf_counter()
    reply = ""
    try:
        if cls.stream:
            record, reply = _streamed(client, cls, request, base, t_start, t0)
        else:
            record, reply = _plain(client, cls, request, base, t_start, t0)
    except openai.APITimeoutError as exc:
        record = RequestRecord(**base, t_start=t_start, e2e_s=time.perf_counter() - t0, outcome="timeout",
                               error=str(exc)[:300])
    except openai.APIStatusError as exc:
        record = RequestRecord(**base, t_start=t_start, e2e_s=time.perf_counter() - t0, outcome="error",
                               status_code=exc.status_code, error=str(exc)[:300])
    except openai.APIError as exc:
        record = RequestRecord(**base, t_start=t_start, e2e_s=time.perf_counter() - t0, outcome="error",
                               error=f"{type(exc).__name__}: {str(exc)[:300]}")
    except Cancelled:  # leaving the SDK's `with` blocks closed the connection: the worker stops generating it
        record = RequestRecord(**base, t_start=t_start, e2e_s=time.perf_counter() - t0, outcome="cancelled")
    if deadline_s is not None:
        record.deadline_missed = record.outcome != "ok" or record.e2e_s > deadline_s
    npc.remember(cls, messages, reply if record.outcome == "ok" else None)
    return record, reply


def _plain(client, cls, request, base, t_start, t0) -> tuple[RequestRecord, str]:
    raw = client.chat.completions.with_raw_response.create(**request)
    reply = raw.parse()
    e2e = time.perf_counter() - t0
    message = reply.choices[0].message
    problem = tool_call_problem(message) if cls.tools else None
    usage = reply.usage
    record = RequestRecord(
        **{**base, "worker": raw.headers.get("x-litellm-model-id") or base["worker"]}, t_start=t_start, e2e_s=e2e,
        prompt_tokens=usage.prompt_tokens if usage else None, output_tokens=usage.completion_tokens if usage else 0,
        outcome="tool_invalid" if problem else "ok", error=problem,
    )
    return record, message.content or ""


def _streamed(client, cls, request, base, t_start, t0) -> tuple[RequestRecord, str]:
    """Read the SSE stream event by event; a kind that cuts streams closes it after `interrupt_after_tokens`."""
    stop_after = cls.interrupt_after_tokens if KINDS[cls.kind].cuts_stream else None
    token_times: list[float] = []
    usage = None
    text: list[str] = []
    with client.chat.completions.with_streaming_response.create(
        **request, stream=True, stream_options={"include_usage": True}
    ) as raw:
        worker = raw.headers.get("x-litellm-model-id") or base["worker"]
        for chunk in raw.parse():
            if chunk.usage:
                usage = chunk.usage
            if chunk.choices and chunk.choices[0].delta.content:
                token_times.append(time.perf_counter())
                text.append(chunk.choices[0].delta.content)
                if stop_after and len(token_times) >= stop_after:
                    break  # leaving the block closes the connection: the game cancelled this turn
    e2e = time.perf_counter() - t0
    interrupted = stop_after is not None and usage is None
    output_tokens = usage.completion_tokens if usage else len(token_times)
    itl = ((token_times[-1] - token_times[0]) / (output_tokens - 1)) if len(token_times) > 1 and output_tokens > 1 else None
    record = RequestRecord(
        **{**base, "worker": worker}, t_start=t_start, e2e_s=e2e, ttft_s=(token_times[0] - t0) if token_times else None,
        itl_s=itl, token_gaps_s=[round(b - a, 5) for a, b in itertools.pairwise(token_times)] or None,
        prompt_tokens=usage.prompt_tokens if usage else None, output_tokens=output_tokens,
        outcome="interrupted" if interrupted else ("ok" if token_times else "error"),
        error=None if token_times else "stream ended with no content",
    )
    return record, "".join(text)
