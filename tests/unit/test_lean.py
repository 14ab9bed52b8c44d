"""The lean request path (bench/load/lean.py) against a fake worker: for every kind of reply it sends the same body
and records the same as the OpenAI SDK's path (timings aside, which must be present and ordered alike), and
it closes every connection it abandons, so the worker stops generating."""

from __future__ import annotations

import random
import socket
import time

import gevent
import pytest

from bench.load.client import Direct, connect, send
from bench.load.decisions import Cancelled
from bench.load.lean import LeanPath
from bench.load.npc import NPC
from bench.records import RequestRecord
from bench.spec import load_classes
from tests.unit.fake_server import FakeServer, FakeWorker

CLASSES = load_classes("cpu")
TIMINGS = ("t_start", "e2e_s", "ttft_s", "itl_s", "token_gaps_s")


@pytest.fixture
def worker():
    server = FakeServer(FakeWorker(reply_tokens=6))
    yield server.start()
    server.stop()


def by_each_path(worker: FakeWorker, cls: str, *, timeout_s: float = 10, turns: int = 1, **kwargs):
    """The records, replies and received bodies of `turns` requests of one NPC (the same seed) by each path."""
    seen = {}
    for path in ("openai", "lean"):
        client, npc = connect(path, worker.url + "/v1", "sk-fake", timeout_s), NPC("npc-7", random.Random(7), faction=3)
        worker.bodies.clear()
        sent = [send(client, CLASSES[cls], npc, **kwargs) for _ in range(turns)]
        seen[path] = ([record for record, _ in sent], [reply for _, reply in sent], list(worker.bodies), client)
    return seen["openai"], seen["lean"]


def assert_same_record(sdk: RequestRecord, lean: RequestRecord) -> None:
    a, b = sdk.model_dump(), lean.model_dump()
    for name in TIMINGS:
        assert (a.pop(name) is None) == (b.pop(name) is None), name
    assert a == b
    for record in (sdk, lean):
        assert record.t_start > 0 and record.e2e_s > 0
        if record.ttft_s is not None:
            assert 0 < record.ttft_s <= record.e2e_s
    assert len(sdk.token_gaps_s or []) == len(lean.token_gaps_s or [])
    assert all(gap >= 0 for gap in lean.token_gaps_s or [])


CASES = {  # name: (class, the fake worker's reply, send's options, the outcome both record)
    "plain": ("ambient", {}, {}, "ok"),
    "streamed with usage": ("dialogue", {}, {}, "ok"),
    "tool call valid": ("tool_call", {}, {}, "ok"),
    "tool call invalid": ("tool_call", {"tool_arguments": '{"sector": "B4", "depth": 9}'}, {}, "tool_invalid"),
    "tool call not JSON": ("tool_call", {"tool_arguments": '{"sector": '}, {}, "tool_invalid"),
    "cut stream": ("interrupted", {"reply_tokens": 200}, {}, "interrupted"),
    "plain error": ("ambient", {"fail_with": 503}, {}, "error"),
    "stream error": ("dialogue", {"fail_with": 429}, {}, "error"),
    "error event mid-stream": ("dialogue", {"stream_error_after": 2}, {}, "error"),
    "timeout before headers": ("ambient", {"reply_delay_s": 3.0}, {"timeout_s": 0.3}, "timeout"),
    "timeout mid-stream": ("dialogue", {"token_gap_s": 3.0}, {"timeout_s": 0.3}, "timeout"),
    "direct, priority, tick": ("dialogue", {}, {"direct": Direct("light-0", "smol"), "use_priority": True, "tick": 4,
                                                "deadline_s": 30.0}, "ok"),
    "multi-turn": ("multi_turn", {}, {"turns": 3}, "ok"),
}


@pytest.mark.parametrize("case", CASES)
def test_the_lean_path_sends_and_records_what_the_sdk_path_does(worker, case) -> None:
    cls, reply_kind, options, outcome = CASES[case]
    for name, value in reply_kind.items():
        setattr(worker, name, value)
    (sdk_records, sdk_replies, sdk_bodies, _), (lean_records, lean_replies, lean_bodies, _) = by_each_path(
        worker, cls, **options)
    assert lean_bodies == sdk_bodies  # parsed: the same request, field for field
    assert len(lean_bodies) == (0 if "fail_with" in reply_kind else options.get("turns", 1))
    assert lean_replies == sdk_replies
    for sdk, lean in zip(sdk_records, lean_records, strict=True):
        assert_same_record(sdk, lean)
    assert {r.outcome for r in lean_records} == {outcome}


def test_each_kind_of_reply_sets_what_its_record_holds(worker) -> None:
    (_, _, _, _), (records, _, bodies, _) = by_each_path(worker, "dialogue", direct=Direct("light-0", "smol"),
                                                         use_priority=True)
    record, body = records[0], bodies[0]
    assert record.worker == "fake-0"  # the response's header wins over the direct worker's name
    assert body["model"] == "smol" and "metadata" not in body and body["priority"] == CLASSES["dialogue"].priority
    assert body["ignore_eos"] is True and body["stream_options"] == {"include_usage": True}
    (_, _, _, _), (records, _, bodies, _) = by_each_path(worker, "ambient")
    assert bodies[0]["metadata"] == {"session_id": "npc-7"} and bodies[0]["model"] == CLASSES["ambient"].group
    worker.fail_with = 503
    (_, _, _, _), (records, _, _, _) = by_each_path(worker, "ambient")
    assert records[0].status_code == 503 and "fake failure" in records[0].error and records[0].worker is None


def test_an_error_event_in_a_stream_is_recorded_with_its_message(worker) -> None:
    worker.stream_error_after = 2
    (records, _, _, _), (lean_records, _, _, _) = by_each_path(worker, "dialogue")
    assert records[0].error == lean_records[0].error == "APIError: worker went away"


def test_a_shared_prefix_is_encoded_once_per_faction(worker) -> None:
    (_, _, sdk_bodies, _), (_, _, lean_bodies, client) = by_each_path(worker, "ambient", turns=3)
    assert isinstance(client, LeanPath) and len(client.encoded) == 1
    assert lean_bodies == sdk_bodies and len({b["messages"][0]["content"] for b in lean_bodies}) == 1


def test_a_cancelled_stream_closes_its_connection_and_is_recorded_cancelled(worker) -> None:
    worker.reply_tokens, worker.token_gap_s = 200, 0.05
    client = connect("lean", worker.url + "/v1", "sk-fake", 10)
    greenlet = gevent.spawn(send, client, CLASSES["dialogue"], NPC("npc-0", random.Random(0)), tick=1, deadline_s=5.0)
    deadline = time.monotonic() + 10
    while worker.streams == 0 and time.monotonic() < deadline:
        gevent.sleep(0.02)
    gevent.sleep(0.1)  # some tokens in
    greenlet.kill(Cancelled, block=True)
    record, reply = greenlet.value
    assert record.outcome == "cancelled" and record.deadline_missed is True and reply == ""
    assert record.ttft_s is None and record.output_tokens == 0 and record.error is None
    while worker.disconnected == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.disconnected == 1 and worker.counters["vllm:request_success_total"] == 0
    assert worker.counters["vllm:generation_tokens_total"] < 200
    assert isinstance(client, LeanPath) and client.idle == []  # not kept for another request


def test_a_request_cancelled_before_its_headers_is_not_kept_alive(worker) -> None:
    worker.reply_delay_s = 2.0
    client = connect("lean", worker.url + "/v1", "sk-fake", 10)
    greenlet = gevent.spawn(send, client, CLASSES["ambient"], NPC("npc-0", random.Random(0)))
    deadline = time.monotonic() + 10
    while not worker.bodies and time.monotonic() < deadline:
        gevent.sleep(0.02)
    greenlet.kill(Cancelled, block=True)
    assert greenlet.value[0].outcome == "cancelled"
    assert isinstance(client, LeanPath) and client.idle == []  # its late reply cannot reach the next request
    worker.reply_delay_s = 0.0
    record, _ = send(client, CLASSES["ambient"], NPC("npc-1", random.Random(1)))
    assert record.outcome == "ok" and record.npc_id == "npc-1"


def test_connections_are_kept_after_a_complete_reply_and_dropped_after_a_cut_one(worker) -> None:
    worker.reply_tokens = 200
    client = connect("lean", worker.url + "/v1", "sk-fake", 10)
    assert isinstance(client, LeanPath)
    npc = NPC("npc-0", random.Random(0))
    for cls, idle_after in (("ambient", 1), ("dialogue", 1), ("interrupted", 0), ("ambient", 1)):
        record, _ = send(client, CLASSES[cls], npc)
        assert record.outcome in ("ok", "interrupted") and len(client.idle) == idle_after, cls


def test_a_kept_connection_the_server_closed_is_replaced() -> None:
    server = FakeServer(FakeWorker(reply_tokens=3))
    worker = server.start()
    try:
        client = connect("lean", worker.url + "/v1", "sk-fake", 10)
        assert isinstance(client, LeanPath)
        with socket.create_server(("127.0.0.1", 0)) as listener:
            stale = gevent.socket.create_connection(listener.getsockname())
            peer, _ = listener.accept()
            peer.close()  # as a server whose keep-alive ran out
        gevent.sleep(0.05)
        client.idle.append(stale)
        record, _ = send(client, CLASSES["ambient"], NPC("npc-0", random.Random(0)))
        assert record.outcome == "ok" and stale.fileno() < 0 and len(client.idle) == 1
    finally:
        server.stop()


def test_an_unreachable_server_is_an_error_outcome() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once closed
    record, _ = send(connect("lean", f"http://127.0.0.1:{port}/v1", "sk-fake", 5), CLASSES["ambient"],
                     NPC("npc-0", random.Random(0)))
    assert record.outcome == "error" and record.status_code is None and "Connection" in record.error


def test_an_unknown_client_or_an_https_url_is_refused_with_the_choice() -> None:
    with pytest.raises(ValueError, match="lean, openai"):
        connect("curl", "http://127.0.0.1:1/v1", "k", 1)
    with pytest.raises(ValueError, match="--client openai"):
        connect("lean", "https://example.com/v1", "k", 1)
