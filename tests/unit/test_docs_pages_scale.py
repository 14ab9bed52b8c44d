"""The "at scale, simulated" study pages hold their key figures as the raw records give them, recomputed here without
the pages' code (plain json and csv), so a page cannot pass by agreeing with its own arithmetic."""

from __future__ import annotations

import csv
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import pytest

from serve.paths import REPO_ROOT

DOCS = REPO_ROOT / "docs" / "studies"
RESULTS = REPO_ROOT / "results"
SIMULATED_PAGES = ["sim-worker.md", "gpu-sim.md", "proxy-redis.md", "harness-ceilings.md", "litellm-paths.md",
                   "routing-at-scale.md", "scale-out.md", "session-affinity.md"]


def page_text(name: str) -> str:
    return (DOCS / name).read_text()


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines() if line.strip()]


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def split_npcs(run_dir: Path, group: str) -> tuple[int, int]:
    """(NPCs of the group that two workers served, NPCs of the group that any worker served)."""
    workers: dict[str, set[str]] = defaultdict(set)
    for r in records(run_dir):
        if r["group"] == group and r["worker"]:
            workers[r["npc_id"]].add(r["worker"])
    return sum(len(w) > 1 for w in workers.values()), len(workers)


@pytest.mark.parametrize("name", SIMULATED_PAGES + ["sim-calibration.md"])
def test_every_simulated_page_says_so_first(name: str) -> None:
    text = page_text(name).split("\n", 1)[1]  # after the generated-by banner
    title, rest = text.split("\n", 1)
    assert title.startswith("# SIMULATED") or rest.lstrip().startswith('!!! warning "SIMULATED"'), name


def test_routing_page_counts_the_npcs_session_affinity_split_at_500() -> None:
    run = RESULTS / "sweep-gpu-sim-routing-scale" / "s1-l2-sim"
    assert manifest(run)["stack"]["proxy"]["routing_strategy"] == "session-affinity"
    heavy, light = split_npcs(run, "heavy"), split_npcs(run, "light")
    assert heavy[0] > 0  # the README said none; the records say otherwise
    assert f"at 500 NPCs, {heavy[0]} of {heavy[1]} heavy and {light[0]} of {light[1]} light" in \
        page_text("routing-at-scale.md")


def test_affinity_page_counts_the_npcs_split_beyond_litellms_cache() -> None:
    point = json.loads((RESULTS / "affinity-scale-sim" / "litellm-cache-300-npcs.json").read_text())
    assert point["spec_proxy"]["router_cache_items"] == 200
    split = sum(len(set(workers)) > 1 for workers in point["served"].values())
    assert split > 0
    row = next(line for line in page_text("session-affinity.md").splitlines()
               if line.startswith("| `litellm-cache-300-npcs` |"))
    assert f"| {point['sessions']} | **{split}** |" in row


def test_affinity_page_says_no_npc_split_after_the_fix_at_500() -> None:
    run = RESULTS / "sweep-gpu-sim-affinity-scale" / "s0-l2-sim"
    assert manifest(run)["stack"]["proxy"]["routing_strategy"] == "session-affinity"
    assert manifest(run)["stack"]["proxy"]["router_cache_items"] > 500
    (heavy, heavy_npcs), (light, light_npcs) = split_npcs(run, "heavy"), split_npcs(run, "light")
    assert heavy == light == 0
    before = RESULTS / "sweep-gpu-sim-routing-scale" / "s1-l2-sim"
    b_heavy, b_light = split_npcs(before, "heavy"), split_npcs(before, "light")
    row = next(line for line in page_text("session-affinity.md").splitlines() if line.startswith("| 500 |"))
    assert (f"| {b_heavy[0]} of {b_heavy[1]} / {b_light[0]} of {b_light[1]} | "
            f"**0 of {heavy_npcs} / 0 of {light_npcs}** |") in row


def test_routing_page_says_affinity_split_no_npc_at_50() -> None:
    run = RESULTS / "sweep-gpu-sim-routing-scale" / "s1-l0-sim"
    assert split_npcs(run, "heavy")[0] == split_npcs(run, "light")[0] == 0
    assert "At 50 NPCs each NPC stayed on one worker" in page_text("routing-at-scale.md")


def test_soak_page_holds_memory_start_and_end_in_mib() -> None:
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with open(RESULTS / "soak-cpu-1h" / "server_metrics.csv") as f:
        for row in csv.DictReader(f):
            if row["metric"] == "process_tree_rss_bytes" and row["source"] != "proxy":
                series[row["source"]].append((float(row["t_s"]), float(row["value"]) / 2**20))
    starts = [min(s)[1] for s in series.values()]
    ends = [max(s)[1] for s in series.values()]
    text = page_text("soak-1h.md")
    assert f"started at\n{min(starts):,.0f}-{max(starts):,.0f} MiB" in text
    assert f"ended at\n{min(ends):,.0f}-{max(ends):,.0f} MiB" in text
    assert max(starts) < 4096  # under 4 GiB: the README's "about 4.04-4.05 GiB" read MiB as GiB
    rises = [e - s for s, e in zip(starts, ends, strict=True)]
    assert f"{min(rises):,.0f} to {max(rises):,.0f} MiB in the hour" in text


def test_soak_page_turns_its_growth_rate_into_gib_a_day_not_three_days() -> None:
    text = page_text("soak-1h.md")
    rate = re.search(r"\(median\s+([0-9.]+)\), a worker grows by .*?\(median\s+([0-9.]+) GiB\)", text, re.S)
    assert rate, "the page states no median growth a day"
    mib_a_minute, gib_a_day = float(rate.group(1)), float(rate.group(2))
    assert gib_a_day == pytest.approx(mib_a_minute * 24 * 60 / 1024, abs=0.15)


def test_harness_page_holds_each_runs_proxy_cpu_a_request() -> None:
    text = page_text("harness-ceilings.md")
    for run in ("harness-plain-p1-sim", "harness-streamed-redis-sim"):
        summary = manifest(RESULTS / "harness-ceilings" / run)["summary"]
        ms = summary["server"]["cpu_s"]["proxy"] * 1000 / summary["all"]["requests"]
        row = next(line for line in text.splitlines() if f"(`{run}`)" in line)
        assert f"| {ms:.1f} |" in row, row


def test_scale_out_page_plans_the_proxy_processes_from_the_ceilings() -> None:
    # The proxy's CPU comes from the setup the plan prescribes: several proxy processes sharing Redis (issue 26).
    summaries = {kind: manifest(RESULTS / "harness-ceilings" / f"harness-{kind}-redis-sim")["summary"]
                 for kind in ("plain", "streamed")}
    ms = {k: round(s["server"]["cpu_s"]["proxy"] * 1000 / s["all"]["requests"], 2) for k, s in summaries.items()}
    plain_rps, streamed_rps = 4000 / 2, 4000 * 0.1 / 10  # the page's example game
    cores = (plain_rps * ms["plain"] + streamed_rps * ms["streamed"]) / 1000
    assert f"-> {math.ceil(cores / 0.6)} LiteLLM processes" in page_text("scale-out.md")
    assert f"= {math.ceil(cores / 0.6)} cores to provision" in page_text("scale-out.md")


def test_litellm_paths_page_holds_the_lean_runs_cpu_at_load() -> None:
    rows = json.loads((RESULTS / "proxy-paths" / "lean-sim" / "overhead.json").read_text())["rows"]
    high = max(r["concurrency"] for r in rows)
    cpu = {r["target"]: r["proxy_cpu_ms_per_request"] for r in rows if r["shape"] == "plain" and r["concurrency"] == high}
    row = next(line for line in page_text("litellm-paths.md").splitlines() if "(`lean`)" in line)
    assert f"{cpu['proxy']:.1f} -> {cpu['lean']:.1f}" in row


def test_calibration_page_counts_each_runs_requests() -> None:
    counts = [len(records(RESULTS / "calibration-cpu" / run)) for run in ("real-r0", "real-r1")]
    sim = [len(records(RESULTS / "calibration-cpu" / run)) for run in ("cpu-sim-r0", "cpu-sim-r1")]
    row = next(line for line in page_text("sim-calibration.md").splitlines() if line.startswith("| requests |"))
    assert f"| {counts[0]}, {counts[1]} | {sim[0]}, {sim[1]} (" in row


def test_proxy_redis_page_counts_the_split_npcs_with_redis() -> None:
    run = RESULTS / "harness-ceilings" / "harness-plain-redis-sim"
    split, npcs = split_npcs(run, "heavy")
    light_split, light_npcs = split_npcs(run, "light")
    row = next(line for line in page_text("proxy-redis.md").splitlines() if "`harness-plain-redis-sim`" in line)
    assert f"| {npcs + light_npcs} | {split + light_split} |" in row


def test_gpu_sim_page_holds_the_blocks_each_worker_reported() -> None:
    kv = manifest(RESULTS / "sweep-gpu-sim-routing-scale" / "s0-l0-sim")["kv_cache"]
    text = page_text("gpu-sim.md")
    for worker, config in kv.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {worker} |"))
        assert f"{int(config['num_gpu_blocks']):,} x {config['block_size']}" in row


def test_sim_worker_page_holds_the_client_and_worker_token_counts() -> None:
    run = RESULTS / "sweep-gpu-sim-routing-scale" / "s1-l2-sim"
    client = sum(r["output_tokens"] for r in records(run))
    server = manifest(run)["summary"]["server"]["generation_tokens_total"]
    row = next(line for line in page_text("sim-worker.md").splitlines() if "s1-l2-sim" in line and "+" in line)
    assert f"| {client:,} | {server:,.0f} | {server - client:+,.0f} |" in row
