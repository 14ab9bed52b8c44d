"""One chat request and what came back, independent of the library that carried it. A request path (the lean
one in bench/load/lean.py, the OpenAI SDK's in bench/load/sdk.py) turns a `ChatRequest` into an `Exchange`, or raises
`Failure`; bench/load/client.py makes the one RequestRecord from either, so both record alike by construction.
A new path is one module that registers itself with `@register("name")`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import jsonschema

from bench.load.npc import TOOL_SCHEMAS


@dataclass
class ChatRequest:
    model: str
    messages: list[dict]
    max_tokens: int
    extra: dict[str, Any]  # top-level body fields beyond the OpenAI API's: ignore_eos, priority, metadata
    tools: list[dict] | None = None  # sent with tool_choice "required"
    stream: bool = False  # with stream_options.include_usage, so the server's token counts arrive at the end
    stop_after_tokens: int | None = None  # close the stream after this many content chunks (an interrupted turn)
    prefix: str | None = None  # the system message's text when it is a shared faction prefix (the same object
    # each time), which a path may encode once


@dataclass
class Exchange:
    """What one completed (or deliberately cut) reply held."""

    worker: str | None  # the x-litellm-model-id header: the deployment LiteLLM chose
    e2e_s: float
    text: str = ""
    usage: tuple[int, int] | None = None  # (prompt_tokens, completion_tokens) as the server counted them
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # plain replies: (name, arguments JSON)
    token_times: list[float] = field(default_factory=list)  # streamed: perf_counter() of each content chunk


class Failure(Exception):
    """The request ended without a reply: `outcome` is timeout or error; `status_code` when the server answered."""

    def __init__(self, outcome: str, error: str, status_code: int | None = None) -> None:
        super().__init__(error)
        self.outcome, self.error, self.status_code = outcome, error, status_code


TIMED_OUT = "Request timed out."  # the OpenAI SDK's words, so both paths record a timeout alike


def status_error(status_code: int, text: str) -> str:
    """An HTTP error's message as the OpenAI SDK words it (`Error code: 503 - {...}`)."""
    text = text.strip()
    try:
        return f"Error code: {status_code} - {json.loads(text)}"
    except ValueError:
        return text or f"Error code: {status_code}"


def stream_error(data: dict) -> str | None:
    """An error event inside an SSE stream (LiteLLM sends them), worded as the SDK raises it; None if not one."""
    error = data.get("error")
    if not error:
        return None
    message = error.get("message") if isinstance(error, dict) else None
    return f"APIError: {message if isinstance(message, str) and message else 'An error occurred during streaming'}"


def tool_calls_problem(calls: list[tuple[str, str]]) -> str | None:
    """None if the first call names a known tool with arguments that validate against its schema."""
    if not calls:
        return "no tool call in the reply"
    name, arguments = calls[0]
    if name not in TOOL_SCHEMAS:
        return f"unknown tool {name!r}"
    try:
        jsonschema.validate(json.loads(arguments), TOOL_SCHEMAS[name])
    except (json.JSONDecodeError, jsonschema.ValidationError) as exc:
        return f"{name} arguments do not validate: {str(exc).splitlines()[0]}"
    return None


class ChatPath(Protocol):
    """Carries chat requests to one base URL (the proxy's, or a worker's with `--direct`)."""

    def chat(self, request: ChatRequest, t0: float) -> Exchange:
        """Send `request` (begun at perf_counter() `t0`) and read its reply; raise Failure if none came."""
        ...


PathFactory = Callable[[str, str, float], ChatPath]  # (base_url ending in /v1, api_key, timeout_s)
PATHS: dict[str, PathFactory] = {}


def register(name: str) -> Callable[[PathFactory], PathFactory]:
    def add(factory: PathFactory) -> PathFactory:
        PATHS[name] = factory
        return factory

    return add
