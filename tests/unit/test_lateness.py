"""The bench's own lateness against a run's tightest latency budget (bench/records.py): pure logic on small records."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.records import LATENESS_SLO_FRACTION, ClientLoad, Manifest, lateness_check, tightest_budget
from bench.report.compare import Run, Subject, lateness_line, provenance_warnings
from bench.rundir import read_manifest
from bench.spec import load_mix

RUN = Path(__file__).parents[2] / "results" / "fidelity-cpu-locked" / "bench"  # a committed run with no client load


def client(p99_ms: float) -> ClientLoad:
    return ClientLoad(cpu_s=1.0, cpu_ms_per_request=2.0, loop_lag_p50_ms=1.0, loop_lag_p99_ms=p99_ms,
                      loop_lag_max_ms=p99_ms * 2)


def with_client(manifest: Manifest, p99_ms: float | None, run_id: str = "run") -> Manifest:
    assert manifest.summary is not None
    summary = manifest.summary.model_copy(update={"client": None if p99_ms is None else client(p99_ms)})
    return manifest.model_copy(update={"summary": summary, "run_id": run_id})


def test_the_default_mix_is_held_to_a_tenth_of_its_tightest_budget() -> None:
    mix = load_mix("npc-cpu")
    assert tightest_budget(mix) == ("dialogue.itl_max_s", 250.0)
    assert LATENESS_SLO_FRACTION == 0.10
    within, over = lateness_check(client(25.0), mix), lateness_check(client(25.1), mix)
    assert (within.limit_ms, within.exceeded, over.exceeded) == (25.0, False, True)
    assert "partly the bench's own" in over.describe() and "partly" not in within.describe()


def test_a_tick_deadline_counts_as_a_budget() -> None:
    assert tightest_budget(load_mix("ambient-10hz")) == ("tick deadline", 50.0)


def test_a_run_with_no_budget_is_never_flagged(tmp_path: Path) -> None:
    path = tmp_path / "free.toml"
    path.write_text('scale = "cpu"\nweights = { fixed = 1 }\n'
                    'shape = { kind = "closed", users = 1, think_time_s = 1.0, duration_s = 10 }\n')
    check = lateness_check(client(5000.0), load_mix(str(path)))
    assert (check.tightest_budget, check.limit_ms, check.exceeded) == (None, None, False)
    assert "no latency budget" in check.describe()


def test_old_runs_are_checked_from_their_client_load_and_a_recorded_check_wins() -> None:
    base = read_manifest(RUN)
    assert with_client(base, None).lateness() is None
    worked_out = with_client(base, 900.0).lateness()
    assert worked_out is not None and worked_out.limit_ms is None  # the fidelity run's fixed class sets no SLO
    recorded = with_client(base, 900.0)
    assert recorded.summary is not None
    recorded.summary.lateness = worked_out.model_copy(update={"limit_ms": 1.0, "exceeded": True})
    assert recorded.lateness() == recorded.summary.lateness


def test_compare_names_each_runs_lateness_and_warns_of_exceeded_ones() -> None:
    base = read_manifest(RUN)
    budgeted = base.model_copy(update={"mix": load_mix("npc-cpu")})
    quiet, late = with_client(budgeted, 4.0, "quiet"), with_client(budgeted, 80.0, "late")
    empty = pd.DataFrame()
    line = lateness_line(Subject("s", [Run(quiet, empty), Run(late, empty)]))
    assert line is not None
    assert "quiet 4 ms" in line and "late 80 ms EXCEEDS" in line and "limit 25 ms" in line and "WARNING" in line
    assert lateness_line(Subject("q", [Run(quiet, empty)])) == ("load generator's p99 timer lateness: quiet 4 ms "
                                                                "(limit 25 ms: 10% of the tightest budget, "
                                                                "dialogue.itl_max_s)")
    warnings = provenance_warnings([Subject("q", [Run(quiet, empty)]), Subject("l", [Run(late, empty)])])
    assert any("exceeded its limit in l:late" in w for w in warnings)
    assert lateness_line(Subject("none", [Run(with_client(base, None), empty)])) is None


@pytest.mark.parametrize("client_name", ["lean", "openai"])
def test_compare_says_when_the_clients_differ(client_name: str) -> None:
    base = read_manifest(RUN)
    a = base.model_copy(update={"client": client_name, "run_id": "a"})
    b = base.model_copy(update={"client": None, "run_id": "b"})
    warnings = provenance_warnings([Subject("a", [Run(a, pd.DataFrame())]), Subject("b", [Run(b, pd.DataFrame())])])
    assert any("load generator client" in w for w in warnings) == (client_name == "lean")
