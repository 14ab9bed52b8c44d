"""The measurement commands against the real CPU stack: fidelity against `vllm bench serve`, the proxy-overhead
comparison with a second proxy, and session-affinity routing."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from openai import OpenAI

pytestmark = pytest.mark.e2e
# Looser than the documented 5 %: this short run has few requests, so its medians move more. It runs at
# concurrency 1: at 2, the two streams on light-0's one core arrive in lock-step and one of each pair waits for
# the other's prefill (TTFT ~0.42 s or ~0.75 s), so the median of 12 jumped between the modes for either tool
# (CI saw the bench 27 % above vLLM, a rerun 21 % below).
SHORT_RUN_TOLERANCE = 0.25


def bench(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True)
    print(result.stdout[-3000:], result.stderr[-3000:])
    return result


def test_bench_agrees_with_vllm_bench_serve_on_a_short_run(stack: dict, tmp_path: Path, counts) -> None:
    result = bench("fidelity", "--direct", "light-0", "--input-len", "128", "--output-len", "32", "--concurrency", "1",
                   "--num-prompts", "12", "--tolerance", str(SHORT_RUN_TOLERANCE), "--results-dir", str(tmp_path),
                   "--run-id", "fidelity")
    record = json.loads((tmp_path / "fidelity" / "fidelity.json").read_text())
    counts(f"fidelity: vllm {record['vllm']}, bench {record['bench']}, differences {record['differences']}")
    vllm, ours = record["vllm"], record["bench"]
    # Both sent the same workload, by the worker's own counters: the same reply length, near the same prompt.
    assert vllm["worker_output_tokens_per_request"] == ours["worker_output_tokens_per_request"] == 32
    assert ours["worker_prompt_tokens_per_request"] == pytest.approx(vllm["worker_prompt_tokens_per_request"], rel=0.1)
    assert record["agree"] and result.returncode == 0, record["differences"]


def test_a_compared_proxy_is_measured_beside_the_stacks_and_then_stopped(stack: dict, tmp_path: Path, counts) -> None:
    result = bench("overhead", "--requests", "5", "--concurrency", "2", "--duration-s", "3", "--compare", "one-process",
                   "--set", "proxy.num_workers=1", "--set", "proxy.zero_cost=false", "--results-dir", str(tmp_path),
                   "--run-id", "overhead")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "overhead" / "overhead.json").read_text())
    targets = {(row["shape"], row["concurrency"], row["target"]): row for row in record["rows"]}
    counts(f"overhead: {len(record['rows'])} rows, targets {sorted({t for _, _, t in targets})}")
    for shape in ("plain", "stream"):
        for level in (1, 2):
            for target in ("direct", "proxy", "one-process"):
                row = targets[(shape, level, target)]
                assert row["requests"] > 0 and row["errors"] == 0
            assert targets[(shape, level, "one-process")]["proxy_cpu_ms_per_request"] > 0
    assert record["proxies"]["one-process"]["zero_cost"] is False
    assert "sk-" not in (tmp_path / "overhead" / "compared-litellm.yaml").read_text()
    compared_port = str(record["proxies"]["one-process"]["port"])
    left = [p.info for p in psutil.process_iter(["pid", "cmdline"]) if compared_port in (p.info["cmdline"] or [])]
    assert not left, f"the compared proxy is still running: {left}"


def test_session_affinity_keeps_each_npc_on_one_worker(stack: dict, counts) -> None:
    if stack["spec"]["proxy"]["routing_strategy"] != "session-affinity":
        pytest.skip("the stack does not route by session affinity")
    client = OpenAI(base_url=stack["base_url"], api_key=stack["key"], max_retries=0, timeout=60)
    workers: dict[str, list[str]] = collections.defaultdict(list)
    for i in range(24):
        npc = f"affinity-npc-{i % 6}"
        raw = client.chat.completions.with_raw_response.create(
            model="light", messages=[{"role": "user", "content": "Hello."}], max_tokens=1,
            extra_body={"metadata": {"session_id": npc}})
        workers[npc].append(raw.headers["x-litellm-model-id"])
    counts(f"session affinity: {dict(workers)}")
    assert all(len(set(seen)) == 1 for seen in workers.values()), dict(workers)
