"""The report's panels one by one (bench/report/panels/), on committed runs and small hand-made series."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.report.analysis import Run, load_run
from bench.report.panels import cell, panels
from bench.report.panels.classes import classes
from bench.report.panels.cost import cost, process_table
from bench.report.panels.decisions import decisions
from bench.report.panels.latency import latency
from bench.report.panels.provenance import facts
from bench.report.panels.server import interval_hit_rate, server
from tests.unit.test_report import RESULTS, RUNS


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    return {kind: load_run(RESULTS / path) for kind, path in RUNS.items()}


def test_a_cell_is_the_recorded_value_unrounded() -> None:
    assert [cell(v) for v in (None, float("nan"), 0.123456789, 3, "x")] == ["-", "-", "0.123456789", "3", "x"]


def test_the_prefix_cache_hit_rate_is_taken_per_scrape_interval() -> None:
    rows = [(t, "w", metric, value) for t, hits, queries in ((0.0, 0, 0), (2.0, 30, 100), (4.0, 30, 100), (6.0, 130, 200))
            for metric, value in (("vllm:prefix_cache_hits_total", hits), ("vllm:prefix_cache_queries_total", queries))]
    frame = pd.DataFrame(rows, columns=["unix_time", "source", "metric", "value"])
    rates = interval_hit_rate(frame)["w"]
    assert rates.iloc[0] == 0.3 and pd.isna(rates.iloc[1]) and rates.iloc[2] == 1.0  # nothing looked up: no rate


def test_the_harness_cost_is_each_process_cpu_per_request(runs) -> None:
    run = runs["simulated"]
    summary = run.manifest.summary
    assert summary is not None and summary.server is not None and summary.client is not None
    table = process_table(run)
    assert table is not None and set(table.index) == set(summary.server.cpu_s) | set(summary.server.memory)
    proxy = summary.server.cpu_s["proxy"]
    assert table.loc["proxy", "cpu_ms_per_request"] == round(proxy * 1000 / summary.all.requests, 1)
    assert str(summary.client.loop_lag_p99_ms) in (cost(run) or "")


def test_panels_without_data_say_nothing(runs) -> None:
    mix = runs["mix"]
    assert decisions(mix) is None  # no ticks
    assert cost(mix) is None  # recorded before the harness's cost was
    empty = Run(mix.path, mix.manifest, mix.requests.iloc[0:0], mix.server.iloc[0:0])
    assert latency(empty) is None and server(empty) is None


def test_an_unfinished_run_says_why_it_has_no_table(runs) -> None:
    mix = runs["mix"]
    cut = Run(mix.path, mix.manifest.model_copy(update={"summary": None, "status": "interrupted"}), mix.requests, mix.server)
    assert "No summary" in classes(cut) and "interrupted" in classes(cut)


def test_provenance_names_commit_tree_lock_and_simulation(runs) -> None:
    real, sim = facts(runs["mix"]), facts(runs["simulated"])
    assert real["commit"] == runs["mix"].manifest.git.commit and real["dirty tree"] == "no"
    assert real["simulated workers"] == "no" and str(sim["simulated workers"]).startswith("SIMULATED")
    assert real["environment lock"] == "no recorded lock"


def test_every_panel_has_a_unique_name() -> None:
    names = [p.name for p in panels()]
    assert len(names) == len(set(names)) >= 7
