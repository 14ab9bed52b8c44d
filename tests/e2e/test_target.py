"""`python -m bench run --target URL` against outside endpoints: the session's CPU stack addressed only by its
URL (the proxy, key from a variable), one of its vLLM workers alone, and GuideLLM's mock server (another
implementation of the API). Each writes a complete folder with no secret in it; a refused key stops the run
before Locust starts."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench.rundir import read_manifest, read_requests

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
KEY_ENV = "NPCBENCH_TEST_TARGET_KEY"
SHORT = ("--mix", "dialogue", "--npcs", "2", "--duration-s", "12", "--no-html-report", "--scrape-interval-s", "2")


def bench_target(results: Path, run_id: str, *args: str, key: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({KEY_ENV: key} if key else {})}
    command = [sys.executable, "-m", "bench", "run", "--results-dir", str(results), "--run-id", run_id, *SHORT, *args]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    print(result.stdout[-3000:], result.stderr[-3000:])
    return result


def assert_complete_and_clean(run_dir: Path, secret: str | None) -> None:
    manifest, requests = read_manifest(run_dir), read_requests(run_dir)
    assert manifest.status == "complete" and manifest.stack is None and manifest.target is not None
    assert len(requests) > 0 and set(requests.outcome) == {"ok"}
    for name in ("requests.jsonl", "manifest.json", "locust_stats.csv", "report.html"):
        assert (run_dir / name).stat().st_size > 0, name
    if secret:
        for path in run_dir.iterdir():
            assert secret not in path.read_text(errors="replace"), f"the key is in {path.name}"


def test_the_stack_by_url_alone(stack: dict, tmp_path: Path) -> None:
    result = bench_target(tmp_path, "proxy", "--target", stack["base_url"], "--api-key-env", KEY_ENV,
                          "--model", "heavy=heavy,light=light", key=stack["key"])
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "proxy"
    assert_complete_and_clean(run_dir, stack["key"])
    manifest = read_manifest(run_dir)
    assert manifest.target.url == stack["base_url"] and manifest.target.api_key_env == KEY_ENV
    assert manifest.summary.server is None  # no --metrics: absent, not zero
    assert any("absent, not zero" in note for note in manifest.notes)


def test_a_refused_key_stops_before_locust(stack: dict, tmp_path: Path) -> None:
    result = bench_target(tmp_path, "refused", "--target", stack["base_url"], "--api-key-env", KEY_ENV,
                          "--model", "light", key="sk-not-the-key-0123456789")
    assert result.returncode == 2 and "refused the key in $" + KEY_ENV in result.stderr
    assert not (tmp_path / "refused").exists()


def test_a_lone_vllm_worker(stack: dict, tmp_path: Path) -> None:
    worker = next(w for w in stack["workers"] if w["group"] == "light")
    served = httpx.get(worker["url"] + "/v1/models", timeout=10).json()["data"][0]["id"]
    result = bench_target(tmp_path, "worker", "--target", worker["url"] + "/v1", "--model", served,
                          "--metrics", worker["url"] + "/metrics")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "worker"
    assert_complete_and_clean(run_dir, stack["key"])
    manifest, requests = read_manifest(run_dir), read_requests(run_dir)
    assert manifest.target.max_model_len["light"]  # vLLM reports it in /v1/models
    assert set(requests.worker.dropna()) == set()  # no LiteLLM header: the worker is unknown, not an error
    # The worker's own count of the tokens it generated, beside the client's.
    assert manifest.summary.server.generation_tokens_total == manifest.summary.all.output_tokens_total


def guidellm() -> str | None:
    for candidate in (REPO / ".venv" / "peers" / "bin" / "guidellm", Path("/work/peers/bin/guidellm")):
        if candidate.exists():
            return str(candidate)
    return shutil.which("guidellm")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(guidellm() is None, reason="guidellm is not installed (.venv/peers)")
def test_guidellm_mock_server(tmp_path: Path) -> None:
    port = free_port()
    command = [str(guidellm()), "mock-server", "--host", "127.0.0.1", "--port", str(port), "--model", "mock-npc",
               "--ttft-ms", "20", "--itl-ms", "5"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "guidellm mock-server did not start"
            time.sleep(1)
        result = bench_target(tmp_path, "mock", "--target", f"http://127.0.0.1:{port}")
        assert result.returncode == 0, result.stderr[-3000:]
        run_dir = tmp_path / "mock"
        assert_complete_and_clean(run_dir, None)
        assert read_manifest(run_dir).target.models == {"light": "mock-npc"}
    finally:
        server.terminate()
        server.wait(30)
