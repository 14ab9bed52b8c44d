"""A fake vLLM worker behind a fake proxy, in a thread, for unit tests of the bench's I/O: the OpenAI chat API
(plain, streamed with usage, forced tool calls), `/metrics` with vLLM's counter names, and `/health`.

It has no engine: every reply is `reply_tokens` copies of one word, sent as fast as the client reads. What is
measured against it is the bench's own handling (records, outcomes, token counts, counters), never latency.
The real engine is the end-to-end suite's."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

WORKER = "fake-0"  # what LiteLLM's x-litellm-model-id header names


@dataclass
class FakeWorker:
    reply_tokens: int = 6
    tool_arguments: str = '{"sector": "B4", "depth": 2}'  # what a forced tool call returns
    fail_with: int | None = None  # answer every chat request with this HTTP status
    count_late_s: float = 0.0  # count a plain reply's tokens this long after the response, as vLLM can
    metrics_delay_s: float = 0.0  # answer /metrics this late, as a worker busy with a prefill does
    token_gap_s: float = 0.01  # between streamed tokens
    reply_delay_s: float = 0.0  # before the response's headers, as a queued or prefilling request waits
    stream_error_after: int | None = None  # end streams with an error event after this many tokens, as LiteLLM does
    counters: dict[str, float] = field(default_factory=lambda: {
        "vllm:prompt_tokens_total": 0.0, "vllm:generation_tokens_total": 0.0, "vllm:request_success_total": 0.0,
        "vllm:prefix_cache_queries_total": 0.0, "vllm:prefix_cache_hits_total": 0.0})
    streams: int = 0  # streams begun
    disconnected: int = 0  # streams the client closed before their end
    bodies: list[dict] = field(default_factory=list)  # every chat request's body, as received
    url: str = ""

    def count(self, prompt_tokens: int, output_tokens: int, finished: bool) -> None:
        self.counters["vllm:prompt_tokens_total"] += prompt_tokens
        self.counters["vllm:generation_tokens_total"] += output_tokens
        self.counters["vllm:prefix_cache_queries_total"] += prompt_tokens
        self.counters["vllm:prefix_cache_hits_total"] += prompt_tokens // 2
        self.counters["vllm:request_success_total"] += finished

    def metrics(self) -> str:
        lines = [f"# TYPE {name.removesuffix('_total')} counter" for name in self.counters]
        lines += [f'{name}{{engine="0",model_name="fake"}} {value}' for name, value in self.counters.items()]
        return "\n".join(lines) + "\n"


def app_for(worker: FakeWorker) -> FastAPI:
    app = FastAPI()
    headers = {"x-litellm-model-id": WORKER}

    @app.get("/health")
    def health() -> PlainTextResponse:
        return PlainTextResponse("")

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        await asyncio.sleep(worker.metrics_delay_s)
        return PlainTextResponse(worker.metrics())

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        if worker.fail_with:
            return JSONResponse({"error": {"message": "fake failure", "type": "fake"}}, status_code=worker.fail_with)
        body = await request.json()
        worker.bodies.append(body)
        await asyncio.sleep(worker.reply_delay_s)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        n = min(worker.reply_tokens, body.get("max_tokens") or worker.reply_tokens)
        base = {"id": "fake", "created": int(time.time()), "model": body["model"]}
        if body.get("tools") and body.get("tool_choice") == "required":
            call = {"id": "call-0", "type": "function",
                    "function": {"name": body["tools"][0]["function"]["name"], "arguments": worker.tool_arguments}}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        else:
            message = {"role": "assistant", "content": " word" * n}
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
        if not body.get("stream"):
            if worker.count_late_s:
                asyncio.get_running_loop().call_later(worker.count_late_s, worker.count, prompt_tokens, n, True)
            else:
                worker.count(prompt_tokens, n, finished=True)
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": usage},
                                headers=headers)

        async def events() -> AsyncIterator[str]:
            worker.streams += 1
            sent = 0
            try:
                for _ in range(n):
                    if sent == worker.stream_error_after:
                        yield f"data: {json.dumps({'error': {'message': 'worker went away', 'type': 'fake'}})}\n\n"
                        return
                    delta = {"index": 0, "delta": {"content": " word"}, "finish_reason": None}
                    yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [delta]})}\n\n"
                    sent += 1
                    await asyncio.sleep(worker.token_gap_s)
                yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [], 'usage': usage})}\n\n"
                yield "data: [DONE]\n\n"
                worker.count(prompt_tokens, sent, finished=True)
            except (asyncio.CancelledError, GeneratorExit):  # the client closed the stream: vLLM aborts it
                worker.disconnected += 1
                worker.count(prompt_tokens, sent, finished=False)
                raise

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    return app


class FakeServer:
    """Serve a FakeWorker on a free loopback port in a background thread; stop() joins it."""

    def __init__(self, worker: FakeWorker) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        worker.url = f"http://127.0.0.1:{port}"
        self.worker = worker
        self.server = uvicorn.Server(uvicorn.Config(app_for(worker), host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> FakeWorker:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the fake server did not start")
            time.sleep(0.02)
        return self.worker

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
