"""SLO and goodput arithmetic."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.records import RequestRecord, meets_slo
from bench.report.summary import summarize
from bench.spec import SLO


def record(**fields) -> RequestRecord:
    base = dict(cls="ambient", kind="ambient", group="light", npc_id="npc-0", t_start=0.0, e2e_s=1.0,
                max_tokens=10, output_tokens=10, outcome="ok")
    return RequestRecord(**{**base, **fields})


@pytest.mark.parametrize("fields, met", [
    ({}, True),
    ({"e2e_s": 2.5}, False),
    ({"outcome": "error"}, False),
    ({"outcome": "timeout"}, False),
    ({"deadline_missed": True}, False),
    ({"deadline_missed": False}, True),
])
def test_e2e_budget(fields: dict, met: bool) -> None:
    assert meets_slo(record(**fields), SLO(e2e_max_s=2.0)) is met


def test_streaming_budgets_need_their_measurements() -> None:
    slo = SLO(ttft_max_s=0.5, itl_max_s=0.1)
    assert meets_slo(record(ttft_s=0.4, itl_s=0.05), slo)
    assert not meets_slo(record(ttft_s=0.6, itl_s=0.05), slo)
    assert not meets_slo(record(ttft_s=None, itl_s=0.05), slo)  # no first token: not met


def test_interrupted_stream_counts_when_its_first_token_was_in_time() -> None:
    slo = SLO(ttft_max_s=1.0)
    assert meets_slo(record(outcome="interrupted", ttft_s=0.5), slo)
    assert not meets_slo(record(outcome="interrupted", ttft_s=1.5), slo)


def test_summary_goodput_and_miss_rate() -> None:
    rows = [record(e2e_s=1.0, slo_met=True, deadline_missed=False, output_tokens=10),
            record(e2e_s=3.0, slo_met=False, deadline_missed=True, output_tokens=10),
            record(e2e_s=2.0, slo_met=True, deadline_missed=False, output_tokens=10),
            record(cls="tool_call", kind="tool_call", group="heavy", outcome="tool_invalid", output_tokens=5),
            record(cls="tool_call", kind="tool_call", group="heavy", slo_met=True, output_tokens=5)]
    df = pd.DataFrame([r.model_dump() for r in rows])
    summary = summarize(df, duration_s=10.0)
    ambient = summary.classes["ambient"]
    assert ambient.goodput_rps == 0.2  # 2 good requests in 10 s
    assert ambient.throughput_rps == 0.3
    assert ambient.deadline_miss_rate == pytest.approx(1 / 3, abs=1e-4)
    assert ambient.e2e_p50_s == 2.0
    assert ambient.output_tps == 3.0
    assert summary.classes["tool_call"].tool_call_validity == 0.5
    assert summary.all.requests == 5 and summary.all.n_tool_invalid == 1
    assert summary.groups["heavy"].requests == 2


def test_memory_trend_fits_the_second_half_of_the_run() -> None:
    from bench.load.scrape import RSS_METRIC
    from bench.records import MemoryTrend
    from bench.report.summary import memory_trend

    mib = 2**20
    t = list(range(0, 120, 10))
    rows = [(s, RSS_METRIC, 500 * mib + (40 * mib if s < 30 else 0)) for s in t]  # warm-up jump, then flat
    rows += [(s, RSS_METRIC, 300 * mib + s * mib) for s in t]  # grows 1 MiB/s all along
    frame = pd.DataFrame({"t_s": [r[0] for r in rows], "metric": [r[1] for r in rows], "value": [r[2] for r in rows],
                          "source": ["proxy"] * len(t) + ["heavy-0"] * len(t)})
    trend = memory_trend(frame)
    assert trend["proxy"] == MemoryTrend(start_mib=540.0, end_mib=500.0, peak_mib=540.0, late_slope_mib_per_min=0.0)
    assert trend["heavy-0"].late_slope_mib_per_min == 60.0


def test_prefix_cache_hit_rates_per_worker_group_and_all() -> None:
    from bench.load.metrics import CounterWindow, prefix_cache_hit_rates

    window = CounterWindow()
    for name, hits, queries in (("light-0", 30, 100), ("light-1", 10, 100), ("heavy-0", 0, 0)):
        window.add(name, {"vllm:prefix_cache_hits_total": 5.0, "vllm:prefix_cache_queries_total": 50.0})
        window.add(name, {"vllm:prefix_cache_hits_total": 5.0 + hits, "vllm:prefix_cache_queries_total": 50.0 + queries})
    rates = prefix_cache_hit_rates(window, groups={"light-0": "light", "light-1": "light", "heavy-0": "heavy"})
    assert rates == {"light-0": 0.3, "light-1": 0.1, "heavy-0": None, "group:heavy": None, "group:light": 0.2,
                     "all": 0.2}


def test_slos_written_under_their_old_names_still_load() -> None:
    assert SLO.model_validate({"ttft_p95_s": 1.5, "itl_p95_s": 0.25}) == SLO(ttft_max_s=1.5, itl_max_s=0.25)
