"""`python -m bench run` against the real CPU stack: result folders, token agreement, interrupted streams."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from openai import OpenAI

from bench.load.metrics import PREFIX_CACHE_HITS, scrape, total
from bench.rundir import env_lock, read_manifest, read_requests, read_server_metrics, read_ticks, reset_prefix_caches
from bench.spec import load_mix

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def bench_run(results: Path, run_id: str, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "bench", "run", "--results-dir", str(results), "--run-id", run_id, *args]
    result = subprocess.run(command, capture_output=True, text=True)
    print(result.stdout[-3000:], result.stderr[-3000:])
    return result


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def default_run(stack: dict, results: Path) -> Path:
    result = bench_run(results, "default", "--mix", "npc-cpu", "--duration-s", "45")
    assert result.returncode == 0, result.stderr[-2000:]
    return results / "default"


def test_default_mix_writes_a_complete_self_describing_folder(default_run: Path, stack: dict) -> None:
    for name in ("manifest.json", "requests.jsonl", "server_metrics.csv", "locust_stats.csv", "locust_report.html"):
        assert (default_run / name).stat().st_size > 0, name
    manifest = read_manifest(default_run)
    assert manifest.status == "complete"
    assert manifest.mix.name == "npc-cpu"
    assert manifest.stack.profile == "cpu" and len(manifest.stack.workers) == 4
    assert manifest.versions["litellm"] and manifest.versions["locust"]
    assert all(manifest.versions[f"vllm@{w['name']}"] for w in stack["workers"])
    assert manifest.git.commit and manifest.machine.cores >= 1
    assert manifest.env_lock == env_lock()  # the lock this environment was installed from (None outside tasks.py)
    assert manifest.summary.all.requests > 0
    # Each worker's start-up log, read into the manifest, says what its /metrics cache config says.
    for worker in manifest.stack.workers:
        assert manifest.startup[worker.name].kv_cache_tokens == int(manifest.kv_cache[worker.name]["kv_cache_size_tokens"])


def test_every_class_of_the_default_mix_produced_requests(default_run: Path) -> None:
    df = read_requests(default_run)
    expected = set(load_mix("npc-cpu").classes)
    answered = df[df.outcome.isin(["ok", "interrupted", "tool_invalid"])]
    assert set(answered.cls) == expected, df.groupby("cls").outcome.value_counts()
    assert set(df[df.cls == "interrupted"].outcome) == {"interrupted"}
    assert (df.outcome.isin(["error", "timeout"])).sum() == 0, df[df.outcome.isin(["error", "timeout"])].error


def test_tool_call_arguments_were_validated(default_run: Path) -> None:
    tools = read_requests(default_run).query("cls == 'tool_call'")
    assert len(tools) > 0 and set(tools.outcome) <= {"ok", "tool_invalid"}
    assert (tools.outcome == "ok").sum() > 0
    assert tools[tools.outcome == "tool_invalid"].error.notna().all()  # each failure says why


def test_client_token_counts_agree_with_vllm_counters(default_run: Path) -> None:
    """Interrupted streams are counted by the tokens the client read; the workers may have made a few more
    before they saw the disconnect, and no more than the rest of those requests' max_tokens."""
    df = read_requests(default_run)
    server = read_manifest(default_run).summary.server
    client_tokens = int(df.output_tokens.sum())
    slack = int((df.max_tokens - df.output_tokens)[df.outcome == "interrupted"].sum())
    assert client_tokens <= server.generation_tokens_total <= client_tokens + slack, (client_tokens, server)
    metrics = read_server_metrics(default_run)
    assert {"heavy-0", "heavy-1", "light-0", "light-1", "proxy"} <= set(metrics.source)
    assert "vllm:kv_cache_usage_perc" in set(metrics.metric)


def test_completed_streams_agree_exactly_with_vllm(stack: dict, results: Path, counts) -> None:
    """The bench's token total (each reply's `usage`, summed by the client) equals the workers' own counter, so no
    request is lost or counted twice. `usage` is vLLM's figure; the client's own count is the content chunks it
    read, one per token unless a token decodes to no text of its own (then it rides with the next chunk), so it
    can fall short of vLLM's count and never exceed it."""
    assert bench_run(results, "dialogue", "--mix", "dialogue", "--duration-s", "20").returncode == 0
    df = read_requests(results / "dialogue")
    server = read_manifest(results / "dialogue").summary.server
    assert len(df) > 0 and set(df.outcome) == {"ok"}
    assert df.ttft_s.notna().all() and df.itl_s.notna().all()
    assert int(df.output_tokens.sum()) == server.generation_tokens_total
    # the first chunk, then one gap before each further one (a one-chunk reply has no gaps: None)
    chunks = df.token_gaps_s.map(lambda gaps: len(gaps) if isinstance(gaps, list) else 0) + 1
    counts(f"dialogue replies: {len(df)}; content chunks read {int(chunks.sum())}, tokens by vLLM "
           f"{server.generation_tokens_total:g}; equal in {(chunks == df.output_tokens).mean():.0%} of replies")
    assert (chunks <= df.output_tokens).all() and (chunks > 0).all()


def test_interrupted_streams_stop_generating_on_the_server(stack: dict, results: Path) -> None:
    assert bench_run(results, "interrupted", "--mix", "interrupted", "--duration-s", "20").returncode == 0
    df = read_requests(results / "interrupted")
    server = read_manifest(results / "interrupted").summary.server
    interrupted = df[df.outcome == "interrupted"]
    assert len(interrupted) == len(df) > 0
    # Every request reached a worker, and (nearly) none ran to its end: the workers stopped when the client
    # left. A straggler can finish before the disconnect reaches it through the proxy; most must not.
    assert server.prompt_tokens_total >= len(interrupted) * 150
    assert server.finished_requests < len(interrupted) / 2, server
    # Each asked for 64 tokens and read 6; a server that kept going would have made 64 for each.
    assert server.generation_tokens_total < interrupted.max_tokens.sum() / 2, server


def test_cancel_policy_stops_generating_what_a_newer_tick_cancelled(stack: dict, results: Path) -> None:
    # Six ambient NPCs at 1 Hz are more than the CPU stack answers within a tick, so newer ticks cancel.
    assert bench_run(results, "cancel", "--mix", "ambient", "--tick-policy", "cancel", "--npcs", "6",
                     "--duration-s", "20").returncode == 0
    df, manifest = read_requests(results / "cancel"), read_manifest(results / "cancel")
    server, decisions = manifest.summary.server, manifest.summary.decisions
    ok, cancelled = df[df.outcome == "ok"], df[df.outcome == "cancelled"]
    assert manifest.mix.mix.shape.policy == "cancel" and decisions.cancelled == len(cancelled) > 0
    assert decisions.npc_ticks == len(read_ticks(results / "cancel")) > 0
    # The workers finished the requests the client took, not the ones it cancelled (a straggler may finish
    # before the cancel reaches it through the proxy), and did not generate a cancelled request's tokens.
    assert server.finished_requests <= len(ok) + len(cancelled) / 4, server
    assert server.generation_tokens_total < ok.output_tokens.sum() + cancelled.max_tokens.sum() / 2, server


def test_skip_policy_never_asks_while_an_npc_is_thinking(stack: dict, results: Path) -> None:
    assert bench_run(results, "skip", "--mix", "ambient", "--tick-policy", "skip", "--npcs", "6",
                     "--duration-s", "20").returncode == 0
    df, decisions = read_requests(results / "skip"), read_manifest(results / "skip").summary.decisions
    assert set(df.outcome) == {"ok"} and decisions.skipped > 0 and decisions.cancelled == 0
    for _, npc in df.sort_values("t_start").groupby("npc_id"):
        ends = (npc.t_start + npc.e2e_s).to_numpy()
        assert (npc.t_start.to_numpy()[1:] >= ends[:-1]).all()
    assert 0 < decisions.thinking_share <= 1 and decisions.fresh_share + decisions.late_share + \
        decisions.fallback_share == pytest.approx(1, abs=1e-3)


def test_a_trace_replay_sends_what_the_trace_says(stack: dict, results: Path, tmp_path: Path) -> None:
    # The first seconds of the shipped sample trace (three NPCs of the game-loop model at 1 Hz).
    lines = (Path(__file__).parents[2] / "bench" / "traces" / "sample.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines if json.loads(line)["t_s"] < 4]
    trace = tmp_path / "start.jsonl"
    trace.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    mix = tmp_path / "replay.toml"
    mix.write_text(f'scale = "cpu"\nweights = {{ ambient = 1 }}\nshape = {{ kind = "trace", file = "{trace}" }}\n')
    assert bench_run(results, "replay", "--mix", str(mix)).returncode == 0
    sent = read_requests(results / "replay").sort_values("t_start")
    assert set(sent.outcome) == {"ok"} and len(sent) == len(events) > 3
    for npc in {e["npc_id"] for e in events}:  # each NPC sent its own requests, in the trace's order and lengths
        assert [(r.prompt_tokens_drawn, r.max_tokens, r.output_tokens) for r in sent[sent.npc_id == npc].itertuples()] \
            == [(e["prompt_tokens"], e["output_tokens"], e["output_tokens"]) for e in events if e["npc_id"] == npc]
    assert (sent.prompt_tokens >= sent.prompt_tokens_drawn).all()  # the worker counts the chat template too


def test_reset_empties_a_workers_prefix_cache(stack: dict, counts) -> None:
    """The same long prompt twice hits the cache; after vLLM's /reset_prefix_cache it finds nothing cached."""
    worker = next(w for w in stack["workers"] if w["name"] == "light-0")
    client = OpenAI(base_url=worker["url"] + "/v1", api_key="none", max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "the old mill by the river " * 60}]  # over two 128-token blocks

    def hits_of_one_request() -> float:
        before = scrape(worker["url"])
        client.chat.completions.create(model=worker["model"], messages=messages, max_tokens=2)
        return total(scrape(worker["url"]), PREFIX_CACHE_HITS) - total(before, PREFIX_CACHE_HITS)

    hits_of_one_request()
    warm = hits_of_one_request()
    reset_prefix_caches({"light-0": worker["url"]})
    cold = hits_of_one_request()
    counts(f"prefix-cache hits of one request: {warm:g} tokens on a warm cache, {cold:g} after the reset")
    assert warm >= 256 and cold == 0


def test_repeats_start_from_emptied_caches_and_report_intervals(stack: dict, results: Path) -> None:
    run = bench_run(results, "repeated", "--mix", "ambient", "--duration-s", "8", "--repeats", "2", "--cache", "reset",
                    "--no-html-report")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "2 repeats, each figure with its 95% interval" in run.stdout and "goodput_rps" in run.stdout
    for k in range(2):
        manifest = read_manifest(results / f"repeated-r{k}")
        assert manifest.status == "complete" and manifest.cache.reset and not manifest.cache.warm
        assert set(manifest.cache.at_start) == {w["name"] for w in stack["workers"]}
    kept = bench_run(results, "kept", "--mix", "ambient", "--duration-s", "5", "--no-html-report")
    assert kept.returncode == 0 and read_manifest(results / "kept").cache.warm  # the repeats' prompts are cached
    assert "prefix caches at the start: warm" in kept.stdout


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_still_leaves_a_readable_folder(stack: dict, results: Path, stop: signal.Signals) -> None:
    run_id = f"stopped-{stop.name}"
    run_dir = results / run_id
    command = [sys.executable, "-m", "bench", "run", "--results-dir", str(results), "--run-id", run_id,
               "--mix", "npc-cpu", "--duration-s", "600"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(read_requests(run_dir)) < 3:
            time.sleep(1)
        assert len(read_requests(run_dir)) >= 3, "the run recorded nothing to interrupt"
        locust = psutil.Process(process.pid).children(recursive=True)
    finally:
        process.send_signal(stop)  # Ctrl-C, or a service manager stopping it
        output = process.communicate(timeout=300)[0]
    print(output[-3000:])
    assert process.returncode == 130
    assert locust and not [p for p in locust if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], locust
    manifest = read_manifest(run_dir)
    assert manifest.status == "interrupted" and manifest.ended_at
    assert manifest.summary.all.requests == len(read_requests(run_dir)) >= 3


def test_results_and_logs_never_contain_the_proxy_key(stack: dict, default_run: Path) -> None:
    logs = [stack["supervisor_log"], stack["proxy"]["log"], *(w["log"] for w in stack["workers"])]
    for path in [*default_run.iterdir(), *map(Path, logs)]:
        assert stack["key"] not in path.read_text(errors="replace"), path
    assert stack["key"] not in json.dumps(read_manifest(default_run).model_dump())
    # Nor in the repository: not in a tracked file, not anywhere in its history.
    assert subprocess.run(["git", "grep", "-q", "-F", stack["key"]], cwd=REPO).returncode == 1
    assert subprocess.run(["git", "log", "--all", "--oneline", f"-S{stack['key']}"], cwd=REPO,
                          capture_output=True, text=True, check=True).stdout == ""


def test_web_ui_runs_a_selected_mix(stack: dict, tmp_path: Path) -> None:
    """Start the web UI as a person would, pick a mix in its start form (bench/load/webform.py), start, and get a results
    folder."""
    import httpx

    port = "8093"
    ui = subprocess.Popen([sys.executable, "-m", "bench", "ui", "--web-port", port, "--results-dir", str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/", timeout=2, follow_redirects=True).url.path == "/npc":  # opens on the form
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        form = {"mix": "ambient", "tick_policy": "skip", "npcs": "2", "duration_s": "10"}
        started = httpx.post(base + "/npc", data=form, timeout=10)
        assert started.status_code == 303 and started.headers["location"] == "/?tab=charts", started.text[-2000:]
        manifests = []
        while time.monotonic() < deadline + 120 and not manifests:
            manifests = [m for m in tmp_path.glob("*/manifest.json") if read_manifest(m.parent).status == "complete"]
            time.sleep(1)
        assert manifests, "the web UI run wrote no complete results folder"
        run = read_manifest(manifests[0].parent)
        assert run.mix.name == "ambient" and run.mix.mix.shape.npcs == 2 and run.mix.mix.shape.policy == "skip"
        assert run.summary.all.requests > 0
        assert (manifests[0].parent / "locust_report.html").exists()
    finally:
        # Stopped as a service manager stops it: SIGTERM to `bench ui` takes its Locust child down too.
        locust = psutil.Process(ui.pid).children(recursive=True)
        ui.send_signal(signal.SIGTERM)
        print(ui.communicate(timeout=60)[0][-3000:])
        assert locust and not [p for p in locust if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], locust


def test_soak_holds_a_steady_rate_with_no_errors_and_records_memory(stack: dict, results: Path,
                                                                   counts) -> None:
    """The CI version of the soak run (the long one is `python -m bench run --mix soak`, ten minutes)."""
    result = bench_run(results, "soak", "--mix", "soak", "--duration-s", "120", "--no-html-report")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = read_manifest(results / "soak").summary
    counts(f"soak: {summary.all.requests} requests, {summary.all.n_error} errors, {summary.all.n_timeout} timeouts")
    assert summary.all.requests > 0
    assert summary.all.n_error == 0 and summary.all.n_timeout == 0
    memory = summary.server.memory
    assert set(memory) == {"proxy", *(w["name"] for w in stack["workers"])}
    for source, trend in memory.items():
        assert 0 < trend.start_mib <= trend.peak_mib and trend.late_slope_mib_per_min is not None, source
