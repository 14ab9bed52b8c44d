"""Bad input through the proxy: each case in the table gets a clear OpenAI-style 4xx, and no worker restarts."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.conftest import stack_status

pytestmark = pytest.mark.e2e
HI = [{"role": "user", "content": "hi"}]


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


# (case, raw request body); the light group has max_model_len 2048 in the cpu profile.
CASES = [
    ("malformed JSON", b'{"model": "light", "messages": ['),
    ("missing messages", body(model="light")),
    ("empty messages", body(model="light", messages=[])),
    ("messages of the wrong type", body(model="light", messages="hi")),
    ("max_tokens of the wrong type", body(model="light", messages=HI, max_tokens="ten")),
    ("unknown model", body(model="no-such-group", messages=HI)),
    ("prompt longer than the context", body(model="light", messages=[{"role": "user", "content": "the " * 3000}],
                                           max_tokens=4)),
    ("max_tokens beyond the context", body(model="light", messages=HI, max_tokens=100_000)),
    ("invalid tool schema", body(model="heavy", messages=HI, max_tokens=8,
                                 tools=[{"type": "function", "function": {"name": "x", "parameters": {"type": "objekt"}}}])),
    pytest.param("unknown tool_choice", body(model="heavy", messages=HI, max_tokens=8, tool_choice="sometimes"),
                 marks=pytest.mark.xfail(strict=True, reason="LiteLLM passes tool_choice='sometimes' on and vLLM "
                                         "answers 200; needs a proxy-side request check (issue 5)")),
    ("non-UTF-8 body", b'{"model": "light", "messages": [{"role": "user", "content": "\xff\xfe"}]}'),
    ("20 MB body", body(model="light", messages=[{"role": "user", "content": "a" * 20_000_000}], max_tokens=4)),
]
TRIED: list[tuple[str, int]] = []


@pytest.fixture(scope="module")
def restarts_before(stack: dict) -> dict:
    return {w["name"]: w["restarts"] for w in stack_status()["workers"]}


@pytest.mark.parametrize("case, raw", CASES, ids=lambda value: value if isinstance(value, str) else "")
def test_bad_request_gets_a_clear_4xx(stack: dict, restarts_before: dict, case: str, raw: bytes) -> None:
    response = httpx.post(stack["base_url"] + "/chat/completions", content=raw, timeout=120,
                          headers={"Authorization": f"Bearer {stack['key']}", "Content-Type": "application/json"})
    TRIED.append((case, response.status_code))
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text[:300])
    error = response.json()["error"]
    assert error["message"] and error["type"], error


def test_no_worker_restarted_and_every_case_was_tried(stack: dict, restarts_before: dict) -> None:
    print(f"bad-input cases tried: {len(TRIED)} of {len(CASES)}: " + ", ".join(f"{c} -> {s}" for c, s in TRIED))
    assert len(TRIED) == len(CASES)
    after = stack_status()["workers"]
    assert all(w["healthy"] for w in after)
    assert {w["name"]: w["restarts"] for w in after} == restarts_before
