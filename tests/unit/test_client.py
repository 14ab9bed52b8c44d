"""The bench's client against a fake worker (tests/unit/fake_server.py), by each request path (lean and the
OpenAI SDK's): what it records for each kind of reply, and that a stream it cuts off is closed on the server.
No engine is involved: no latency is asserted."""

from __future__ import annotations

import random
import time

import pytest

from bench.load.client import connect, send
from bench.load.exchange import ChatPath
from bench.load.npc import NPC
from bench.spec import load_classes
from tests.unit.fake_server import WORKER, FakeServer, FakeWorker

CLASSES = load_classes("cpu")
PATHS = ["lean", "openai"]


@pytest.fixture
def worker():
    server = FakeServer(FakeWorker(reply_tokens=6))
    yield server.start()
    server.stop()


def client_for(worker: FakeWorker, path: str, timeout_s: float = 10) -> ChatPath:
    return connect(path, worker.url + "/v1", "sk-fake", timeout_s)


def npc() -> NPC:
    return NPC("npc-0", random.Random(0))


def wait_for_disconnect(worker: FakeWorker) -> None:
    deadline = time.monotonic() + 10
    while worker.disconnected == 0 and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("path", PATHS)
def test_a_plain_reply_is_recorded_with_the_servers_token_counts(worker, path) -> None:
    record, reply = send(client_for(worker, path), CLASSES["ambient"], npc())
    assert record.outcome == "ok" and record.worker == WORKER
    assert record.output_tokens == worker.counters["vllm:generation_tokens_total"] == len(reply.split())
    assert record.prompt_tokens == worker.counters["vllm:prompt_tokens_total"] > 0
    assert record.ttft_s is None  # not streamed: no first token to time


@pytest.mark.parametrize("path", PATHS)
def test_a_streamed_reply_has_a_first_token_and_a_gap_per_later_chunk(worker, path) -> None:
    record, reply = send(client_for(worker, path), CLASSES["dialogue"], npc())
    assert record.outcome == "ok" and reply.split() == ["word"] * 6
    assert record.output_tokens == 6 and len(record.token_gaps_s) == 5
    assert 0 < record.ttft_s <= record.e2e_s and record.itl_s is not None
    assert record.prompt_tokens == worker.counters["vllm:prompt_tokens_total"]  # usage came at the stream's end


@pytest.mark.parametrize("path", PATHS)
def test_an_interrupted_stream_is_closed_on_the_server(worker, path) -> None:
    worker.reply_tokens = 200
    cls = CLASSES["interrupted"]
    record, _ = send(client_for(worker, path), cls, npc())
    assert record.outcome == "interrupted" and record.output_tokens == cls.interrupt_after_tokens
    wait_for_disconnect(worker)
    assert worker.disconnected == 1 and worker.counters["vllm:request_success_total"] == 0
    assert worker.counters["vllm:generation_tokens_total"] < 200


@pytest.mark.parametrize("path", PATHS)
def test_tool_calls_are_validated_against_their_schema(worker, path) -> None:
    client = client_for(worker, path)
    record, _ = send(client, CLASSES["tool_call"], npc())
    assert record.outcome == "ok", record.error
    worker.tool_arguments = '{"sector": "B4", "depth": 9}'  # beyond the schema's maximum
    record, _ = send(client, CLASSES["tool_call"], npc())
    assert record.outcome == "tool_invalid" and "do not validate" in record.error


@pytest.mark.parametrize("path", PATHS)
def test_a_server_error_is_an_error_outcome_with_its_status(worker, path) -> None:
    worker.fail_with = 503
    record, reply = send(client_for(worker, path), CLASSES["ambient"], npc(), tick=3, deadline_s=1.0)
    assert record.outcome == "error" and record.status_code == 503 and reply == ""
    assert record.deadline_missed is True  # no decision arrived for tick 3


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cls", ["ambient", "dialogue"])
def test_a_reply_slower_than_the_timeout_is_a_timeout_outcome(worker, path, cls) -> None:
    worker.reply_delay_s = 3.0
    record, reply = send(client_for(worker, path, timeout_s=0.3), CLASSES[cls], npc())
    assert record.outcome == "timeout" and record.status_code is None and reply == ""
    assert record.error == "Request timed out."


@pytest.mark.parametrize("path", PATHS)
def test_a_stream_that_stalls_mid_reply_times_out_and_is_closed(worker, path) -> None:
    worker.token_gap_s = 3.0
    record, _ = send(client_for(worker, path, timeout_s=0.3), CLASSES["dialogue"], npc())
    assert record.outcome == "timeout"
    wait_for_disconnect(worker)
    assert worker.disconnected == 1  # the worker stops generating what nobody reads
