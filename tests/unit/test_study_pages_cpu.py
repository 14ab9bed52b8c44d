"""The CPU study pages show what their raw records give: one key figure per page recomputed here from the run's own
files (requests.jsonl, ticks.csv, fidelity.json, requests.csv) with pandas, not through the page's code."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.report import pages
from serve.paths import REPO_ROOT

RESULTS = REPO_ROOT / "results"


def rendered(path: str) -> str:
    return pages.pages()[path].render(RESULTS)


def test_headline_fresh_shares_are_the_ticks_records() -> None:
    page = rendered("studies/headline-ambient-1hz.md")
    sweep = RESULTS / "sweep-cpu-tick-policies"
    for point in json.loads((sweep / "index.json").read_text()):
        ticks = pd.read_csv(sweep / point["path"] / "ticks.csv")
        fresh = (ticks.decision == "fresh").mean()
        row = f"| {point['load.npcs']} | {point['load.tick_policy']} | {fresh * 100:.0f} % |"
        assert row in page, row
    ok = (pd.read_json(RESULTS / "sweep-cpu-tick-10hz" / "s0-l2" / "requests.jsonl", lines=True).outcome == "ok").sum()
    assert f"under `cancel`, {ok} of" in page


def test_fidelity_bench_itl_is_the_median_of_the_pooled_chunk_gaps() -> None:
    page = rendered("studies/fidelity.md")
    for run_id in ("fidelity-cpu-locked", "fidelity-cpu-locked-2", "fidelity-cpu-locked-3"):
        records = pd.read_json(RESULTS / run_id / "bench" / "requests.jsonl", lines=True)
        gaps = [gap for row in records[records.outcome == "ok"].token_gaps_s.dropna() for gap in row]
        vllm_itl_ms = json.loads((RESULTS / run_id / "vllm_bench.json").read_text())["median_itl_ms"]
        assert f"{vllm_itl_ms:,.1f} / {pd.Series(gaps).median() * 1000:,.1f} ms" in page, run_id


def test_proxy_cost_latencies_are_the_requests_medians() -> None:
    page = rendered("studies/proxy-cost.md")
    requests = pd.read_csv(RESULTS / "overhead-cpu-before-after" / "requests.csv")
    at_c1 = requests[(requests.concurrency == 1) & requests.ok]
    p50 = at_c1.groupby(["shape", "target"]).latency_ms.median()
    assert f"| plain, c=1 | {p50['plain', 'direct']:,.1f} ms | " in page
    added = p50["stream", "proxy"] - p50["stream", "direct"]
    assert f" | {added:,.1f} ms | " in page.split("| streamed, c=1 |")[1].splitlines()[0]


def test_routing_goodput_and_placement_are_the_request_records() -> None:
    page = rendered("studies/routing.md")
    sweep = RESULTS / "sweep-cpu-routing-repeats"
    goodput = []
    for run_id in ("s3-l1-r0", "s3-l1-r1", "s3-l1-r2"):  # session affinity, multi-turn
        records = pd.read_json(sweep / run_id / "requests.jsonl", lines=True)
        duration_s = json.loads((sweep / run_id / "manifest.json").read_text())["summary"]["duration_s"]
        goodput.append(records.slo_met.sum() / duration_s)
    row = next(line for line in page.splitlines() if line.startswith("| **session-affinity"))
    assert f"| {sum(goodput) / 3:.2f} [" in row
    workers = pd.read_json(sweep / "s2-l1-r0" / "requests.jsonl", lines=True).worker.value_counts()
    assert f"| s2-l1-r0 | {workers.get('heavy-0', 0)} / {workers.get('heavy-1', 0)} |" in page


def test_realtime_background_ambient_p50_is_the_pooled_requests_median() -> None:
    page = rendered("studies/realtime-background.md")
    sweep = RESULTS / "sweep-cpu-priority-repeats"
    for point, column in (("s0-l0", 2), ("s1-l0", 3)):  # fcfs, priority
        records = pd.concat([pd.read_json(sweep / f"{point}-r{r}" / "requests.jsonl", lines=True) for r in range(3)])
        ambient = records[(records.cls == "ambient") & (records.outcome == "ok")]
        row = next(line for line in page.splitlines() if line.startswith("| `ambient`"))
        assert row.split(" | ")[column].startswith(f"{ambient.e2e_s.median():.1f} s ["), row


@pytest.mark.parametrize("point", ["s0", "s3"])
def test_cpu_defaults_output_rate_is_the_runs_tokens_over_their_length(point: str) -> None:
    page = rendered("studies/cpu-worker-defaults.md")
    sweep = RESULTS / "sweep-cpu-defaults-repeats"
    rates = []
    for r in range(3):
        records = pd.read_json(sweep / f"{point}-l0-r{r}" / "requests.jsonl", lines=True)
        duration_s = json.loads((sweep / f"{point}-l0-r{r}" / "manifest.json").read_text())["summary"]["duration_s"]
        rates.append(records.output_tokens.fillna(0).sum() / duration_s)
    row = next(line for line in page.splitlines() if line.startswith(f"| {point} | ") and " s | " in line)
    assert f"| {np.mean(rates):.1f} [" in row, row


def test_the_studies_index_lists_every_registered_study_page(monkeypatch) -> None:
    registered = dict(pages.pages())
    extra = pages.Page("studies/new-study.md", "A new study", lambda results: "", "What it found.")
    monkeypatch.setattr(pages, "_PAGES", {**registered, extra.path: extra})
    index = pages.pages()["studies/index.md"].render(RESULTS)
    for path, p in pages.pages().items():
        if path.startswith("studies/") and path != "studies/index.md":
            assert f"- [{p.title}]({path.removeprefix('studies/')})" in index
    assert "- [A new study](new-study.md): What it found." in index


def test_provenance_says_when_where_which_commit_and_a_dirty_tree() -> None:
    from types import SimpleNamespace

    from bench.records import EnvLock, GitState, Machine

    machine = Machine(hostname="vm", cpu_model="AMD EPYC", cores=2, memory_gib=23.5, platform="linux")

    def record(start: str, end: str, commit: str, dirty: bool) -> SimpleNamespace:
        return SimpleNamespace(started_at=start, ended_at=end, git=GitState(commit=commit, dirty=dirty),
                               machine=machine, simulated=False,
                               env_lock=EnvLock(name="cpu", lock="serve/locks/cpu.txt", lock_sha256="0" * 64))

    clean = record("2026-12-01T10:05:00+00:00", "2026-12-01T10:06:00+00:00", "2caa6a8aaaa", False)
    dirty = record("2026-12-01T10:40:00+00:00", "2026-12-01T10:43:00+00:00", "8185f8cbbbb", True)
    assert pages.measured([clean, dirty]) == (
        "on 2026-12-01 10:05-10:43 UTC on a 2-core AMD EPYC machine with 23.5 GiB and no GPU, at `2caa6a8`, `8185f8c`, "
        "1 of 2 runs from a dirty tree, environment installed from serve/locks/cpu.txt")
