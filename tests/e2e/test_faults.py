"""Worker and proxy faults while NPC traffic runs, against the real stack. Each test prints its counts.

Order matters and is kept by the file: a heavy worker is killed under load (and restarts), then both heavy
workers (and both restart), then the proxy. Every test waits until the stack is whole again, but the
last, which runs just before `down` and leaves the stack without a proxy: the supervisor gives up on it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import openai
import pytest

from bench.load.metrics import scrape, total
from serve.supervisor import MAX_RESTARTS
from tests.e2e.conftest import serve, stack_status

pytestmark = pytest.mark.e2e
RESTART_WAIT_S = 900  # back-off, then a full vLLM start-up on a machine that is also running the load
# Plain (non-streamed) heavy traffic: tool calls and multi-turn conversations, closed loop.
HEAVY_MIX = """
description = "fault tests: plain heavy requests"
scale = "cpu"
weights = { tool_call = 1, multi_turn = 2 }
shape = { kind = "closed", users = 4, think_time_s = 0.5, duration_s = 50 }
"""


def process(name: str) -> dict:
    status = stack_status()
    return status["proxy"] if name == "proxy" else next(w for w in status["workers"] if w["name"] == name)


def wait_restarted(name: str, restarts: int) -> dict:
    """Poll `status --json` until the process is healthy after its `restarts`-th restart."""
    deadline = time.monotonic() + RESTART_WAIT_S
    while time.monotonic() < deadline:
        proc = process(name)
        if proc["restarts"] == restarts and proc["healthy"]:
            return proc
        time.sleep(2)
    pytest.fail(f"{name} was not healthy again after restart {restarts}: {process(name)}")


def served(worker: dict) -> float:
    return total(scrape(worker["url"]), "vllm:request_success_total")


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines()]


def open_stream_on(client: openai.OpenAI, worker: str, tries: int = 12):
    """Open heavy streams until LiteLLM routes one to `worker`; the others are closed at once."""
    for i in range(tries):
        raw = client.chat.completions.with_raw_response.create(
            model="heavy", stream=True, max_tokens=400, extra_body={"ignore_eos": True},
            messages=[{"role": "user", "content": f"Tell the long saga of the river kingdom, part {i}."}])
        stream = raw.parse()
        if raw.headers.get("x-litellm-model-id") == worker:
            return stream
        stream.close()
    pytest.fail(f"no heavy stream was routed to {worker} in {tries} tries")


def read_stream(stream, into: dict) -> None:
    chunks = 0
    try:
        for _ in stream:
            chunks += 1
        into.update(outcome="complete", chunks=chunks)
    except openai.APIError as exc:
        into.update(outcome=type(exc).__name__, chunks=chunks, error=str(exc))


def test_killing_one_heavy_worker_under_load_fails_no_plain_request(stack: dict, client: openai.OpenAI,
                                                                     tmp_path: Path, counts) -> None:
    mix = tmp_path / "heavy-plain.toml"
    mix.write_text(HEAVY_MIX)
    run_dir = tmp_path / "run"
    bench = subprocess.Popen([sys.executable, "-m", "bench", "run", "--mix", str(mix), "--results-dir", str(tmp_path),
                              "--run-id", "run", "--no-html-report"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    # The victim is the first heavy worker seen serving the load (with session affinity, the NPCs of a
    # run may all be pinned to one of the two); its twin is the other.
    while not (run_dir / "requests.jsonl").exists() or not any(r["worker"] for r in records(run_dir)):
        assert bench.poll() is None, bench.stdout.read()
        time.sleep(1)
    victim = next(r["worker"] for r in records(run_dir) if r["worker"])
    twin = next(w["name"] for w in stack["workers"] if w["group"] == "heavy" and w["name"] != victim)
    # One stream in flight on the worker to be killed, one on its twin.
    doomed, spared = open_stream_on(client, victim), open_stream_on(client, twin)
    streams = {victim: {}, twin: {}}
    readers = [threading.Thread(target=read_stream, args=(s, streams[w])) for w, s in
               ((victim, doomed), (twin, spared))]
    for reader in readers:
        reader.start()
    time.sleep(2)
    killed_at = time.time()
    os.kill(process(victim)["pid"], signal.SIGKILL)
    for reader in readers:
        reader.join()
    output, _ = bench.communicate()
    assert bench.returncode == 0, output

    done = records(run_dir)
    outcomes = Counter(r["outcome"] for r in done)
    after = Counter(r["worker"] for r in done if r["t_start"] > killed_at)
    failures = [(r["outcome"], r["error"]) for r in done if r["outcome"] in ("error", "timeout")]
    counts(f"{victim} SIGKILLed under load: {len(done)} plain heavy requests, outcomes {dict(outcomes)}, "
           f"started after the kill served by {dict(after)}; failures: {failures}")
    counts(f"streams: on {victim} {streams[victim]}, on {twin} {streams[twin]}")
    assert failures == []
    assert after[twin] > 0
    # The stream on the killed worker ends at once with an error that says what happened, not a hang.
    assert streams[victim]["outcome"] == "APIError" and "Hosted_vllmException" in streams[victim]["error"]
    assert streams[twin] == {"outcome": "complete", "chunks": streams[twin]["chunks"]}

    restarted = wait_restarted(victim, restarts=1)
    # Requests that failed on it while it was down put it in LiteLLM's cooldown; once that has passed,
    # the proxy routes to it again.
    cooldown_s = stack["spec"]["proxy"]["cooldown_time_s"]
    before, sent, healthy_at = served(restarted), 0, time.monotonic()
    while served(restarted) == before and time.monotonic() < healthy_at + 3 * cooldown_s:
        client.chat.completions.create(model="heavy", messages=[{"role": "user", "content": f"Say {sent}."}],
                                       max_tokens=2)
        sent += 1
    counts(f"after its restart {victim} was routed to again within {sent} heavy requests, "
           f"{time.monotonic() - healthy_at:.0f} s after it was healthy (cooldown {cooldown_s:.0f} s)")
    assert served(restarted) > before


def test_with_both_heavy_workers_dead_heavy_requests_fall_back_to_light(stack: dict, client: openai.OpenAI,
                                                                         counts) -> None:
    light_before = {w["name"]: served(w) for w in stack["workers"] if w["group"] == "light"}
    restarts_before = {name: process(name)["restarts"] for name in ("heavy-0", "heavy-1")}
    for name in ("heavy-0", "heavy-1"):
        os.kill(process(name)["pid"], signal.SIGKILL)
    answered_by, failed = Counter(), []
    for i in range(12):
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="heavy", messages=[{"role": "user", "content": f"Name a fruit ({i})."}], max_tokens=4)
            raw.parse()
            answered_by[raw.headers.get("x-litellm-model-id")] += 1
        except openai.APIError as exc:
            failed.append(str(exc)[:200])
    light_served = sum(served(w) for w in stack["workers"] if w["group"] == "light") - sum(light_before.values())
    counts(f"both heavy workers SIGKILLed: 12 heavy requests, answered by {dict(answered_by)}, failed {failed}; "
          f"light workers' own counters +{light_served:.0f}")
    assert failed == []
    assert set(answered_by) <= {"light-0", "light-1"}
    assert light_served >= 12
    for name, restarts in restarts_before.items():
        wait_restarted(name, restarts=restarts + 1)


def test_supervisor_restarts_a_killed_proxy_and_status_shows_it(stack: dict, client: openai.OpenAI,
                                                                 counts) -> None:
    proxy = process("proxy")
    os.kill(proxy["pid"], signal.SIGKILL)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="light", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    restarted = wait_restarted("proxy", restarts=1)
    assert restarted["pid"] != proxy["pid"]
    line = next(line for line in serve("status").stdout.splitlines() if line.strip().startswith("proxy"))
    counts(f"proxy SIGKILLed: a request meanwhile got APIConnectionError; `status` now says: {line.strip()}")
    assert "restarts 1" in line
    reply = client.chat.completions.create(model="light", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert reply.choices[0].message.content is not None


@pytest.mark.last
def test_supervisor_gives_up_on_a_proxy_that_keeps_dying_and_says_so(stack: dict, counts) -> None:
    """After MAX_RESTARTS restarts, one more death is final: `status` shows GAVE UP and the log says why."""
    for restarts in range(process("proxy")["restarts"] + 1, MAX_RESTARTS + 1):
        os.kill(process("proxy")["pid"], signal.SIGKILL)
        wait_restarted("proxy", restarts)
    os.kill(process("proxy")["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not process("proxy")["gave_up"]:
        time.sleep(1)
    proxy = process("proxy")
    line = next(line for line in serve("status").stdout.splitlines() if line.strip().startswith("proxy"))
    counts(f"proxy killed {MAX_RESTARTS + 1} times in all: {line.strip()}")
    assert proxy["gave_up"] and not proxy["healthy"] and proxy["restarts"] == MAX_RESTARTS
    assert "GAVE UP" in line
    assert "giving up on it" in Path(stack["supervisor_log"]).read_text()
