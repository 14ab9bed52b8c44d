"""Bad input through the proxy: each case in the table gets a clear OpenAI-style 4xx, and no worker restarts."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from bench.load.metrics import scrape
from bench.load.npc import NPC_TOOLS
from tests.e2e.conftest import stack_status

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


# (case, raw request body, words the error message must contain, whether a worker sees it); the light group has
# max_model_len 2048 in the cpu profile. serve/proxy_hooks.py checks messages, tool_choice and tool schemas in the
# proxy; LiteLLM answers malformed JSON and unknown models. Lengths and max_tokens are vLLM's to check: the proxy
# does not know the model's tokenizer, so those requests reach a worker, which refuses them before scheduling.
CASES = [
    ("malformed JSON", b'{"model": "light", "messages": [', "Invalid JSON", False),
    ("missing messages", body(model="light"), "messages: Field required", False),
    ("empty messages", body(model="light", messages=[]), "messages", False),
    ("messages of the wrong type", body(model="light", messages="hi"), "messages: Input should be a valid list", False),
    ("message without a role", body(model="light", messages=[{"content": "hi"}]), "role", False),
    ("max_tokens of the wrong type", body(model="light", messages=HI, max_tokens="ten"), "max_tokens", True),
    ("unknown model", body(model="no-such-group", messages=HI), "no-such-group", False),
    ("prompt longer than the context", body(model="light", messages=[{"role": "user", "content": "the " * 3000}],
                                           max_tokens=4), "maximum context length is 2048", True),
    ("max_tokens beyond the context", body(model="light", messages=HI, max_tokens=100_000), "max_tokens=100000", True),
    ("invalid tool schema", body(model="heavy", messages=HI, max_tokens=8,
                                 tools=[{"type": "function", "function": {"name": "x", "parameters": {"type": "objekt"}}}]),
     "tools[0].function.parameters is not a valid JSON Schema", False),
    ("unknown tool_choice", body(model="heavy", messages=HI, max_tokens=8, tool_choice="sometimes"), "tool_choice must be",
     False),
    ("tool_choice naming no given tool", body(model="heavy", messages=HI, max_tokens=8, tools=NPC_TOOLS,
                                              tool_choice={"type": "function", "function": {"name": "fly"}}), "'fly'",
     False),
    # LiteLLM reads a body it cannot decode as an empty one, so the message is about what is missing.
    ("non-UTF-8 body", b'{"model": "light", "messages": [{"role": "user", "content": "\xff\xfe"}]}', "messages", False),
    ("20 MB body", body(model="light", messages=[{"role": "user", "content": "a" * 20_000_000}], max_tokens=4),
     "maximum context length is 2048", True),
]
CHAT_REQUESTS = 'http_requests_total{handler="/v1/chat/completions"'  # vLLM's HTTP counter, per handler and status


def chat_requests_seen(stack: dict) -> float:
    """Chat requests the workers have answered, any status, from their own /metrics."""
    return sum(value for worker in stack_status()["workers"] for key, value in scrape(worker["url"]).items()
               if key.startswith(CHAT_REQUESTS))


TRIED: list[tuple[str, int]] = []


@pytest.fixture(scope="module")
def restarts_before(stack: dict) -> dict:
    return {w["name"]: w["restarts"] for w in stack_status()["workers"]}


@pytest.mark.parametrize("case, raw, says, reaches_worker", CASES, ids=[case[0] for case in CASES])
def test_bad_request_gets_a_clear_4xx(stack: dict, restarts_before: dict, case: str, raw: bytes, says: str,
                                      reaches_worker: bool) -> None:
    before = chat_requests_seen(stack)
    response = httpx.post(stack["base_url"] + "/chat/completions", content=raw, timeout=120,
                          headers={"Authorization": f"Bearer {stack['key']}", "Content-Type": "application/json"})
    TRIED.append((case, response.status_code))
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text[:300])
    error = response.json()["error"]
    assert says in error["message"] and error["type"], error
    # A worker counts a request once its response has gone out, a moment after the proxy has it: look a few times.
    seen = chat_requests_seen(stack) - before
    for _ in range(10 if reaches_worker else 0):
        if seen:
            break
        time.sleep(0.2)
        seen = chat_requests_seen(stack) - before
    assert bool(seen) == reaches_worker, f"{case}: workers counted {seen:g} chat requests"


def test_client_that_disconnects_mid_stream(stack: dict, restarts_before: dict) -> None:
    """The client hangs up after a few chunks; the stack goes on serving. (That the worker then stops
    generating for it is checked in test_bench, from the workers' own token counters.)"""
    headers = {"Authorization": f"Bearer {stack['key']}"}
    request = {"model": "light", "messages": HI, "max_tokens": 200, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", stack["base_url"] + "/chat/completions", json=request, headers=headers,
                      timeout=120) as response:
        chunks = 0
        for line in response.iter_lines():
            chunks += line.startswith("data: ")
            if chunks == 3:
                break  # leaving the block closes the connection
    TRIED.append(("client disconnects mid-stream", response.status_code))
    assert response.status_code == 200 and chunks == 3
    after = httpx.post(stack["base_url"] + "/chat/completions", headers=headers, timeout=120,
                       json={"model": "light", "messages": HI, "max_tokens": 4})
    assert after.status_code == 200, after.text


def test_no_worker_restarted_and_every_case_was_tried(stack: dict, restarts_before: dict, counts) -> None:
    counts(f"bad-input cases tried: {len(TRIED)} of {len(CASES) + 1}: " + ", ".join(f"{c} -> {s}" for c, s in TRIED))
    assert len(TRIED) == len(CASES) + 1  # the table and the mid-stream disconnect
    after = stack_status()["workers"]
    assert all(w["healthy"] for w in after)
    assert {w["name"]: w["restarts"] for w in after} == restarts_before
