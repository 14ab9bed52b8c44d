"""The simulated worker's HTTP side: the part of vLLM's OpenAI server that the stack and the bench use.

`/v1/chat/completions` (plain and streamed, with usage; tool calls valid for the request's schema), `/health`,
`/v1/models`, `/version` and `/metrics` under vLLM's metric names. Tokens are counted without a tokenizer: a
prompt is its messages' whitespace-separated words plus three per message for the chat template (the bench's
filler words are one token each), and a reply's tokens are words too. Each token is released when the engine
step that computes it has lasted its simulated time (serve/sim/engine.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sys
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field

from serve.sim.device import Device
from serve.sim.engine import Engine, Sequence, SimWorkerConfig

VERSION = "simulated (npcbench serve/sim)"  # what /version says in place of vLLM's version
REPLY_WORDS = ["the", "guard", "walks", "north", "and", "watches", "road", "quietly"]


class ChatRequest(BaseModel):
    """The fields of an OpenAI chat request the simulation reads; the rest is accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    ignore_eos: bool = False
    priority: int = 0


def prompt_words(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[str]:
    """The prompt as the simulation counts it: like ChatML, each message between its markers, tools first."""
    words = ["<|im_start|>", "system", *json.dumps(tools).split(), "<|im_end|>"] if tools else []
    for message in messages:
        content = message.get("content") or ""
        if isinstance(content, list):  # content parts: their text
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        words += ["<|im_start|>", str(message.get("role")), *str(content).split(), "<|im_end|>"]
    return words + ["<|im_start|>", "assistant"]


def block_hashes(words: list[str], block_size: int) -> list[int]:
    """One hash per full block of tokens, each of its block and every block before it (vLLM's chained hashes)."""
    hashes, parent = [], b""
    for start in range(0, len(words) - block_size + 1, block_size):
        parent = hashlib.blake2b(parent + "\x00".join(words[start:start + block_size]).encode(), digest_size=8).digest()
        hashes.append(int.from_bytes(parent))
    return hashes


def example_value(schema: dict[str, Any], rng: random.Random) -> Any:
    """A value valid for a JSON schema of the kinds tool parameters use (objects, enums, strings, numbers)."""
    if "enum" in schema:
        return rng.choice(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: example_value(props.get(name, {}), rng) for name in schema.get("required", props)}
    if kind == "array":
        return [example_value(schema.get("items", {}), rng) for _ in range(schema.get("minItems", 0))]
    if kind == "integer":
        return rng.randint(schema.get("minimum", 0), schema.get("maximum", schema.get("minimum", 0) + 9))
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return "s" + str(rng.randint(0, 9)) * max(0, min(schema.get("maxLength", 3), 3) - 1)


def tool_call(request: ChatRequest, rng: random.Random) -> dict[str, Any] | None:
    """The call the reply makes: the named tool, or one of them (any, under `auto`); None without tools."""
    if not request.tools or request.tool_choice == "none":
        return None
    functions = [t["function"] for t in request.tools if t.get("type") == "function"]
    if isinstance(request.tool_choice, dict):
        name = request.tool_choice.get("function", {}).get("name")
        functions = [f for f in functions if f["name"] == name] or functions
    function = rng.choice(functions)
    arguments = example_value(function.get("parameters", {"type": "object"}), rng)
    return {"id": f"chatcmpl-tool-{uuid.uuid4().hex[:16]}", "type": "function",
            "function": {"name": function["name"], "arguments": json.dumps(arguments)}}


class EngineCollector:
    """The engine's state as vLLM names it, read at each scrape."""

    def __init__(self, engine: Engine, model_name: str) -> None:
        self.engine, self.labels = engine, {"engine": "0", "model_name": model_name}

    def _family(self, kind, name: str, doc: str, value: float, **extra: str):
        family = kind(name, doc, labels=[*self.labels, *extra])
        family.add_metric([*self.labels.values(), *extra.values()], value)
        return family

    def collect(self) -> Iterable:
        engine, counters, config = self.engine, self.engine.counters, self.engine.config
        yield self._family(GaugeMetricFamily, "vllm:num_requests_running", "running", len(engine.running))
        yield self._family(GaugeMetricFamily, "vllm:num_requests_waiting", "waiting", len(engine.waiting))
        yield self._family(GaugeMetricFamily, "vllm:kv_cache_usage_perc", "KV-cache usage", engine.kv_usage)
        for name, value in [("prefix_cache_queries", counters.prefix_cache_queries),
                            ("prefix_cache_hits", counters.prefix_cache_hits),
                            ("prompt_tokens", counters.prompt_tokens),
                            ("generation_tokens", counters.generation_tokens),
                            ("num_preemptions", counters.preemptions)]:
            yield self._family(CounterMetricFamily, f"vllm:{name}", name, value)
        success = CounterMetricFamily("vllm:request_success", "finished requests", labels=[*self.labels, "finished_reason"])
        for reason, count in counters.finished.items():
            success.add_metric([*self.labels.values(), reason], count)
        yield success
        info = {"block_size": str(config.block_size), "num_gpu_blocks": str(config.num_blocks),
                "enable_prefix_caching": str(config.enable_prefix_caching),
                "kv_cache_size_tokens": str(config.num_blocks * config.block_size), "simulated": "True"}
        yield self._family(GaugeMetricFamily, "vllm:cache_config_info", "cache config", 1.0, **info)


def error(status: int, message: str) -> JSONResponse:
    """vLLM's error body."""
    return JSONResponse({"error": {"message": message, "type": "BadRequestError", "param": None, "code": status}},
                        status_code=status)


def exit_if_failed(task: asyncio.Task) -> None:
    """The engine loop raised: say why and exit, so that the supervisor restarts the worker (up, it would answer
    /health with 503 and leave every request waiting)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        traceback.print_exception(exc, file=sys.stderr)
        print("simulated engine loop failed; exiting", file=sys.stderr, flush=True)
        os._exit(1)


def create_app(config: SimWorkerConfig) -> FastAPI:
    engine = Engine(config.engine)
    device = Device(config.device)
    streams: dict[Sequence, asyncio.Queue[int | None]] = {}
    wake = asyncio.Event()
    registry = CollectorRegistry()
    registry.register(EngineCollector(engine, config.served_model_name))

    def release(tokens: list[tuple[Sequence, int, bool]]) -> None:
        for seq, n, finished in tokens:
            queue = streams.get(seq)
            if queue is not None:
                queue.put_nowait(n)
                if finished:
                    queue.put_nowait(None)

    async def engine_loop() -> None:
        loop, deadline = asyncio.get_running_loop(), 0.0
        held: list[tuple[Sequence, int, bool]] = []  # the last step's tokens, under output_lag_steps = 1
        while True:
            step = engine.schedule()
            if not step.work:
                release(held)
                held = []
                device.busy(False)
                wake.clear()
                await wake.wait()
                continue
            device.busy(True)
            # Back to back, a step starts when the last one was due to end, so the loop's own lateness
            # (a late wake-up, the Python between steps) does not add up over a reply's steps.
            deadline = max(loop.time(), deadline) + step.duration_s * device.stretch(config.engine.latency.device_share)
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            tokens = [(seq, seq.output_tokens, seq.state == "finished") for seq in engine.complete(step)]
            release(held)
            if config.engine.latency.output_lag_steps:
                held = tokens
            else:
                release(tokens)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.loop_task = asyncio.create_task(engine_loop())
        app.state.loop_task.add_done_callback(exit_if_failed)
        yield
        app.state.loop_task.cancel()

    app = FastAPI(title="npcbench simulated vLLM worker", lifespan=lifespan)

    @app.get("/health")
    async def health() -> PlainTextResponse:
        return PlainTextResponse("", status_code=503 if app.state.loop_task.done() else 200)

    @app.get("/version")
    async def version() -> dict[str, str]:
        return {"version": VERSION}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": config.served_model_name, "object": "model", "owned_by": "npcbench-sim",
                                            "max_model_len": config.engine.max_model_len}]}

    @app.post("/reset_prefix_cache")
    async def reset_prefix_cache() -> dict[str, bool]:  # vLLM serves it only in dev mode; a simulation always does
        return {"success": engine.reset_prefix_cache()}

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry).decode())

    @app.post("/v1/chat/completions")
    async def chat(http: Request):
        try:
            request = ChatRequest.model_validate(await http.json())
        except Exception as exc:  # noqa: BLE001 - any malformed body is the client's 400, as in vLLM
            return error(400, f"invalid request: {str(exc)[:500]}")
        if request.model != config.served_model_name:
            return error(404, f"The model `{request.model}` does not exist.")
        words = prompt_words(request.messages, request.tools)
        max_len = config.engine.max_model_len
        if len(words) > max_len:
            return error(400, f"This model's maximum context length is {max_len} tokens. However, your request has "
                              f"{len(words)} input tokens. Please reduce the length of the input messages.")
        max_tokens = request.max_completion_tokens or request.max_tokens or max_len - len(words)
        if len(words) + max_tokens > max_len:
            return error(400, f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's "
                              f"maximum context length is {max_len} tokens and your request has {len(words)} input "
                              f"tokens ({max_tokens} > {max_len} - {len(words)}).")
        rng = random.Random(" ".join(words[-8:]))  # the same request calls the same way
        call = tool_call(request, rng)
        if call is not None:  # the call ends the reply: its arguments' tokens, at most max_tokens
            max_tokens = min(max_tokens, max(1, len(call["function"]["arguments"].replace('"', ' " ').split())))
        if config.engine.latency.request_overhead_ms:
            await asyncio.sleep(config.engine.latency.request_overhead_ms / 1000)
        seq = Sequence(request_id=f"chatcmpl-{uuid.uuid4().hex}", prompt_tokens=len(words), max_tokens=max_tokens,
                       prompt_hashes=block_hashes(words, config.engine.block_size), priority=request.priority)
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        streams[seq] = queue
        engine.add(seq)
        wake.set()
        reply = Reply(seq, request, call, config.served_model_name)
        if request.stream:
            return StreamingResponse(reply.stream(queue, engine, streams), media_type="text/event-stream")
        return await reply.whole(queue, engine, streams, http)

    return app


class Reply:
    """One request's answer, in OpenAI's chat-completion shapes."""

    def __init__(self, seq: Sequence, request: ChatRequest, call: dict[str, Any] | None, model: str) -> None:
        self.seq, self.request, self.call, self.model = seq, request, call, model
        self.created = int(time.time())

    def _usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.seq.prompt_tokens, "completion_tokens": self.seq.output_tokens,
                "total_tokens": self.seq.prompt_tokens + self.seq.output_tokens}

    def _finish_reason(self) -> str:
        return "tool_calls" if self.call else "length"

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        body = {"id": self.seq.request_id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
        return f"data: {json.dumps(body)}\n\n"

    async def stream(self, queue: asyncio.Queue[int | None], engine: Engine,
                     streams: dict[Sequence, asyncio.Queue[int | None]]) -> AsyncIterator[str]:
        try:
            yield self._chunk({"role": "assistant", "content": ""})
            while (n := await queue.get()) is not None:
                if not self.call:
                    yield self._chunk({"content": " " + REPLY_WORDS[n % len(REPLY_WORDS)]})
            if self.call:
                yield self._chunk({"tool_calls": [{"index": 0, **self.call}]})
            yield self._chunk({}, self._finish_reason())
            if (self.request.stream_options or {}).get("include_usage"):
                body = {"id": self.seq.request_id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": self._usage()}
                yield f"data: {json.dumps(body)}\n\n"
            yield "data: [DONE]\n\n"
        finally:  # the client closed the stream: stop generating it, as vLLM does
            engine.abort(self.seq)
            streams.pop(self.seq, None)

    async def whole(self, queue: asyncio.Queue[int | None], engine: Engine,
                    streams: dict[Sequence, asyncio.Queue[int | None]], http: Request) -> JSONResponse:
        try:
            while True:
                try:
                    if await asyncio.wait_for(queue.get(), timeout=1.0) is None:
                        break
                except TimeoutError:
                    if await http.is_disconnected():
                        return error(499, "client disconnected")
        finally:
            engine.abort(self.seq)
            streams.pop(self.seq, None)
        n = self.seq.output_tokens
        message: dict[str, Any] = {"role": "assistant", "content": None if self.call else
                                   " ".join(REPLY_WORDS[i % len(REPLY_WORDS)] for i in range(1, n + 1))}
        if self.call:
            message["tool_calls"] = [self.call]
        return JSONResponse({"id": self.seq.request_id, "object": "chat.completion", "created": self.created,
                             "model": self.model, "usage": self._usage(),
                             "choices": [{"index": 0, "message": message, "finish_reason": self._finish_reason()}]})
