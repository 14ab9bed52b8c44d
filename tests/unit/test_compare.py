"""`bench compare`: synthetic runs whose difference is known, and every committed result folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.records import GitState, Manifest, RequestRecord
from bench.report import stats
from bench.report.compare import (
    ALL,
    CompareError,
    Run,
    Subject,
    by_load,
    compare,
    compare_by_load,
    load_subjects,
    provenance_warnings,
)
from bench.report.summary import summarize
from bench.rundir import machine_info
from bench.spec import load_mix
from serve.common import now_iso
from serve.spec import load_profile

RESULTS = Path(__file__).resolve().parents[2] / "results"


def run(run_id: str, e2e_s: float, served: int, seed: int, commit: str = "abc", duration_s: float = 60.0,
        routing: str = "session-affinity") -> Run:
    """A run of `served` ambient requests over `duration_s`, e2e ~ N(e2e_s, 0.05), every one within its SLO."""
    rng = np.random.default_rng(seed)
    records = [RequestRecord(cls="ambient", kind="ambient", group="light", npc_id=f"npc-{i % 4}", t_start=float(i),
                             e2e_s=float(rng.normal(e2e_s, 0.05)), ttft_s=0.1, max_tokens=8, output_tokens=8,
                             outcome="ok", slo_met=True) for i in range(served)]
    requests = pd.DataFrame([r.model_dump() for r in records])
    stack = load_profile("cpu", [f"proxy.routing_strategy={routing}"])
    manifest = Manifest(run_id=run_id, status="complete", started_at=now_iso(), mix=load_mix("npc-cpu"), stack=stack,
                        endpoints={}, versions={"vllm": "0.32.0"}, git=GitState(commit=commit, dirty=False),
                        machine=machine_info(), summary=summarize(requests, duration_s))
    return Run(manifest, requests)


def row(table: pd.DataFrame, figure: str, subject: str, cls: str = ALL) -> pd.Series:
    return table[(table.cls == cls) & (table.figure == figure) & (table.subject == subject)].iloc[0]


def test_a_known_latency_shift_differs_and_a_rerun_is_within_noise() -> None:
    base = Subject("base", [run("a", 1.0, 120, seed=1)])
    rerun = Subject("rerun", [run("b", 1.0, 120, seed=2)])
    slower = Subject("slower", [run("c", 1.3, 120, seed=3)])
    table = compare([base, rerun, slower], figures=["e2e_p50_s"])
    moved = row(table, "e2e_p50_s", "slower")
    assert moved.verdict == "differs" and moved.diff_low < 0.3 < moved.diff_high
    assert row(table, "e2e_p50_s", "rerun").verdict == "within noise"
    assert row(table, "e2e_p50_s", "base").method == "bootstrap"  # a percentile: over requests


def test_goodput_of_repeats_is_compared_over_runs() -> None:
    # 60, 66 and 63 good requests in 60 s: 1.0, 1.1, 1.05 req/s; the other side 2.0, 2.1, 2.05 req/s
    base = Subject("base", [run(f"a{i}", 1.0, n, seed=i) for i, n in enumerate((60, 66, 63))])
    double = Subject("double", [run(f"b{i}", 1.0, n, seed=10 + i) for i, n in enumerate((120, 126, 123))])
    table = compare([base, double], figures=["goodput_rps"])
    assert row(table, "goodput_rps", "base").value == pytest.approx(1.05)
    assert row(table, "goodput_rps", "base").method == "t"
    moved = row(table, "goodput_rps", "double")
    assert moved["diff"] == pytest.approx(1.0) and moved.verdict == "differs"


def test_each_serve_setting_is_compared_with_the_first_under_the_same_load() -> None:
    def point(name: str, routing: str, mix: str, e2e_s: float, seed: int) -> Subject:
        return Subject(name, [run(name, e2e_s, 60, seed)], {"serve.proxy.routing_strategy": routing, "load.mix": mix})

    points = [point("s0-l0", "a", "npc", 1.0, 1), point("s0-l1", "a", "multi", 5.0, 2),
              point("s1-l0", "b", "npc", 1.0, 3), point("s1-l1", "b", "multi", 5.0, 4)]
    assert [[s.name for s in g] for g in by_load(points)] == [["s0-l0", "s1-l0"], ["s0-l1", "s1-l1"]]
    table = compare_by_load(points, figures=["e2e_p50_s"])
    multi = row(table, "e2e_p50_s", "s1-l1")
    assert multi.baseline == "s0-l1" and multi.verdict == "within noise"  # not 4 s slower than the NPC mix's s0-l0
    # a sweep of load points under one serve setting compares them with its first
    alone = [point("s0-l0", "a", "npc", 1.0, 1), point("s0-l1", "a", "multi", 5.0, 2)]
    assert [[s.name for s in g] for g in by_load(alone)] == [["s0-l0", "s0-l1"]]


def test_a_single_run_against_another_gets_no_interval_for_its_hit_rate() -> None:
    table = compare([Subject("a", [run("a", 1.0, 30, 1)]), Subject("b", [run("b", 1.0, 30, 2)])],
                    figures=["prefix_cache_hit_rate"])
    assert row(table, "prefix_cache_hit_rate", "b").verdict == "no interval"


def test_runs_that_differ_in_code_or_stack_are_flagged() -> None:
    base = Subject("base", [run("a", 1.0, 30, 1, commit="abc", routing="simple-shuffle")])
    other = Subject("other", [run("b", 1.0, 30, 2, commit="def", routing="least-busy")])
    warnings = provenance_warnings([base, other])
    assert any("stack spec" in w and "proxy.routing_strategy: simple-shuffle / least-busy" in w for w in warnings)
    assert any("git commit" in w for w in warnings)
    assert not provenance_warnings([base, Subject("again", [run("c", 1.0, 30, 3, routing="simple-shuffle")])])


def test_a_path_that_is_no_run_gets_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CompareError, match="not a completed run folder"):
        load_subjects(tmp_path)
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 2


def committed_folders() -> list[Path]:
    found = [p for p in sorted(RESULTS.iterdir()) if (p / "index.json").exists() or (p / "manifest.json").exists()]
    return found + sorted(RESULTS.glob("fidelity-*/bench"))


def test_compare_reads_every_committed_run_and_sweep_folder(monkeypatch, capsys) -> None:
    monkeypatch.setattr(stats, "BOOTSTRAP_RESAMPLES", 20)  # reading every folder is the point, not the intervals
    folders = committed_folders()
    assert {p.name for p in folders} >= {"soak-cpu", "sweep-cpu-routing", "sweep-cpu-priority", "bench"}
    for folder in folders:
        subjects = load_subjects(folder)
        assert subjects, folder
        assert main(["compare", str(folder)] + ([str(folders[0])] if folder != folders[0] else [])) == 0, folder
    assert "baseline" in capsys.readouterr().out
    assert main(["compare", str(folders[0]), str(folders[0])]) == 2  # the same subject twice
