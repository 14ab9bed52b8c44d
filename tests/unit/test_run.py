"""`python -m bench run` end to end against fake servers standing in for the stack (tests/unit/fake_server.py, the
`fake_stack` fixture in tests/unit/conftest.py): the run logic, Locust included, writes a complete folder. Whether
the figures are right for a real engine is the end-to-end suite's job; here only the bench's own bookkeeping is checked."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from bench.rundir import read_manifest, read_requests, read_ticks


@pytest.mark.parametrize("client", ["lean", "openai"])
def test_a_run_writes_a_complete_folder_from_what_the_client_saw(fake_stack, tmp_path, client) -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "run", "--mix", "dialogue", "--npcs", "2", "--duration-s", "4",
                             "--results-dir", str(tmp_path / "results"), "--run-id", "fake", "--no-html-report",
                             "--scrape-interval-s", "1", "--client", client], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "results" / "fake"
    manifest, requests = read_manifest(run_dir), read_requests(run_dir)
    assert manifest.status == "complete" and manifest.mix.name == "dialogue" and manifest.stack.profile == "cpu"
    assert manifest.client == client
    assert len(requests) > 0 and set(requests.outcome) == {"ok"} and set(requests.worker) == {"fake-0"}
    assert manifest.summary.all.requests == len(requests) == fake_stack["proxy"].counters["vllm:request_success_total"]
    assert manifest.summary.all.output_tokens_total == 4 * len(requests)
    # The run's counter window holds every token the client counted: first reading before any NPC sends,
    # last once the counters stood still.
    assert manifest.summary.server.generation_tokens == {"heavy-0": 0, "heavy-1": 0, "light-0": 4 * len(requests),
                                                         "light-1": 0}
    assert requests.ttft_s.notna().all()  # the dialogue mix streams
    for name in ("requests.jsonl", "server_metrics.csv", "locust_stats.csv"):
        assert (run_dir / name).stat().st_size > 0, name
    assert f"report: {run_dir / 'report.html'}" in result.stdout  # the run's page, drawn as it ends
    assert "<title>run fake (dialogue, complete)</title>" in (run_dir / "report.html").read_text()


def tick_mix(tmp_path, policy: str) -> str:
    """Ambient NPCs at 5 Hz whose streamed replies take longer than a tick (fake worker: 0.1 s a token)."""
    path = tmp_path / f"ticks-{policy}.toml"
    path.write_text(f'scale = "cpu"\nweights = {{ ambient = 1 }}\n'
                    f'shape = {{ kind = "tick", npcs = 2, tick_hz = 5, duration_s = 4, policy = "{policy}" }}\n')
    return str(path)


def run_ticks(tmp_path, policy: str):
    result = subprocess.run([sys.executable, "-m", "bench", "run", "--mix", tick_mix(tmp_path, policy),
                             "--results-dir", str(tmp_path / "results"), "--run-id", policy, "--no-html-report",
                             "--scrape-interval-s", "1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "results" / policy
    return read_manifest(run_dir), read_requests(run_dir), read_ticks(run_dir)


@pytest.mark.parametrize("policy", ["skip", "cancel"])
def test_tick_policies_keep_one_request_per_npc_in_flight(fake_stack, tmp_path, policy: str) -> None:
    for server in fake_stack.values():
        server.reply_tokens, server.token_gap_s = 20, 0.1
        if policy == "skip":  # its plain replies, too, outlast a tick (they were slow only by the SDK's own cost)
            server.reply_delay_s = 0.3
    manifest, requests, ticks = run_ticks(tmp_path, policy)
    decisions = manifest.summary.decisions
    assert decisions is not None and decisions.npc_ticks == len(ticks) > 0
    assert set(ticks.decision) <= {"fresh", "late", "fallback"} and (ticks.decision == "fallback").any()
    for _, npc in requests.sort_values("t_start").groupby("npc_id"):  # never two of one NPC's requests at once
        ends = (npc.t_start + npc.e2e_s).to_numpy()
        assert (npc.t_start.to_numpy()[1:] >= ends[:-1] - 0.05).all()
    # Locust counts requests only: its total is the requests sent, and no SLO miss, late tick or fallback is a
    # failed request there; those are NPC figures, in a file of their own.
    locust = pd.read_csv(tmp_path / "results" / policy / "locust_stats.csv")
    total = locust[locust.Name == "Aggregated"].iloc[0]
    assert set(locust.Type.dropna()) <= {"chat", "stream"}
    assert total["Request Count"] == len(requests) and total["Failure Count"] == 0
    figures = pd.read_csv(tmp_path / "results" / policy / "locust_npc_figures.csv")
    fallbacks = figures[(figures.kind == "DECISION") & (figures.decision == "fallback")]
    assert fallbacks["count"].sum() == fallbacks.misses.sum() == (ticks.decision == "fallback").sum() > 0
    slo = figures[figures.kind == "SLO"]
    judged = ~requests.outcome.isin(["error", "timeout", "tool_invalid", "interrupted"])
    assert slo["count"].sum() == judged.sum() and slo.misses.sum() == (judged & ~requests.slo_met).sum()
    if policy == "skip":
        assert decisions.skipped > 0 and decisions.cancelled == 0 and "cancelled" not in set(requests.outcome)
    else:
        cancelled = int((requests.outcome == "cancelled").sum())
        assert cancelled == decisions.cancelled == manifest.summary.all.n_cancelled > 0
        # Every stream the server began either ran to its end for a reply the client took, or was closed by a
        # cancel: a cancelled stream left open would have run on to its end on the server. (A request cancelled
        # while still connecting never reached the server, so closed streams can be fewer than cancels.)
        proxy = fake_stack["proxy"]
        assert proxy.streams == int((requests.outcome == "ok").sum()) + proxy.disconnected
        assert proxy.disconnected <= cancelled
        assert requests.ttft_s.notna().any()  # cancel streams the (plain) ambient class


def test_a_trace_replay_sends_what_the_trace_says_and_exports_back(fake_stack, tmp_path) -> None:
    import json

    events = [{"t_s": 0.2 * i, "npc_id": f"npc-{'ab'[i % 2]}", "cls": "ambient", "prompt_tokens": 250 + i,
               "output_tokens": 4 + i} for i in range(8)]
    trace = tmp_path / "session.jsonl"
    trace.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    mix = tmp_path / "replay.toml"
    mix.write_text(f'scale = "cpu"\nweights = {{ ambient = 1 }}\nshape = {{ kind = "trace", file = "{trace}" }}\n')
    result = subprocess.run([sys.executable, "-m", "bench", "run", "--mix", str(mix), "--results-dir",
                             str(tmp_path / "results"), "--run-id", "replay", "--no-html-report"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    sent = read_requests(tmp_path / "results" / "replay").sort_values("t_start")
    for npc in ("npc-a", "npc-b"):  # each NPC sends its own requests, in its trace's order
        assert [(r.cls, r.prompt_tokens_drawn, r.max_tokens) for r in sent[sent.npc_id == npc].itertuples()] == [
            (e["cls"], e["prompt_tokens"], e["output_tokens"]) for e in events if e["npc_id"] == npc]
    # ... and written back as a trace, it is the same session.
    out = tmp_path / "again.jsonl"
    assert subprocess.run([sys.executable, "-m", "bench", "trace", str(tmp_path / "results" / "replay"), "--out",
                           str(out)], capture_output=True, timeout=60).returncode == 0
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((e["npc_id"], e["prompt_tokens"], e["output_tokens"]) for e in again) == sorted(
        (e["npc_id"], e["prompt_tokens"], e["output_tokens"]) for e in events)


def test_a_run_whose_shape_ends_before_its_start_is_done_still_closes_its_folder(fake_stack, tmp_path) -> None:
    """Locust fires test_stop from the shape's greenlet while test_start's listener may still be scraping the stack's
    first counters (slow /metrics here: longer than the whole run). The run waits for its start before it closes."""
    for worker in fake_stack.values():
        worker.metrics_delay_s = 1.0  # five targets: the first reading takes longer than the 2-s run
    result = subprocess.run([sys.executable, "-m", "bench", "run", "--mix", "ambient", "--npcs", "1", "--duration-s", "2",
                             "--results-dir", str(tmp_path / "results"), "--run-id", "short", "--no-html-report",
                             "--scrape-interval-s", "1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_manifest(tmp_path / "results" / "short").status == "complete"


def test_locust_uses_the_mix_bench_run_resolved_instead_of_resolving_it_again(fake_stack, tmp_path) -> None:
    """`bench run` resolves and checks the mix once and hands it over (--resolved-mix): a Locust process that
    resolved `--mix` again would reload the tokenizer, and could run another mix than the one checked."""
    from bench.cli import build_parser
    from bench.cli._stack import locust_args
    from bench.spec import load_mix

    handed = load_mix("dialogue", npcs=2, duration_s=3)
    handed = handed.model_copy(update={"mix": handed.mix.model_copy(update={"description": "as bench run resolved it"})})
    resolved = tmp_path / "mix.json"
    resolved.write_text(handed.model_dump_json())
    args = build_parser().parse_args(["run", "--mix", "dialogue", "--results-dir", str(tmp_path / "results")])
    command = [*locust_args(args, 10), "--headless", "--only-summary", "--run-dir", str(tmp_path / "results" / "handed"),
               "--exit-code-on-error", "0", "--host", "http://127.0.0.1:1", "--skip-html-report",
               "--resolved-mix", str(resolved)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = read_manifest(tmp_path / "results" / "handed")
    assert manifest.status == "complete"
    assert manifest.mix.mix.description == "as bench run resolved it"
    assert manifest.mix == handed
