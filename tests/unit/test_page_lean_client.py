"""The lean-client study page's pure parts (bench/report/pages/lean_client.py): the load log and the runs' table."""

from __future__ import annotations

from pathlib import Path

from bench.records import ClientLoad
from bench.report.pages.lean_client import _load_table, _runs_table
from bench.rundir import read_manifest
from bench.spec import load_mix

RUN = Path(__file__).parents[2] / "results" / "fidelity-cpu-locked" / "bench"


def test_load_log_readings_become_rows(tmp_path: Path) -> None:
    log = tmp_path / "session-load.txt"
    log.write_text("== 2026-12-03T21:07:27Z session start | 20.01 33.11 23.36 12/235 22982\n"
                   " 31.0 01:02 python -m something\n"
                   "== 2026-12-03T21:09:00Z before default-lean-r0 | 1.20 2.00 3.00 1/200 1\n")
    table = _load_table(log)
    assert table.to_dict("records") == [
        {"UTC": "21:07:27", "step": "session start", "load 1 / 5 / 15 min": "20.01 / 33.11 / 23.36"},
        {"UTC": "21:09:00", "step": "before default-lean-r0", "load 1 / 5 / 15 min": "1.20 / 2.00 / 3.00"}]


def test_runs_table_says_met_or_missed_against_the_goal_and_flags_the_limit() -> None:
    base = read_manifest(RUN)
    assert base.summary is not None

    def run(run_id: str, client: str | None, p99_ms: float):
        load = ClientLoad(cpu_s=1, cpu_ms_per_request=1, loop_lag_p50_ms=1, loop_lag_p99_ms=p99_ms, loop_lag_max_ms=99)
        summary = base.summary.model_copy(update={"client": load})  # type: ignore[union-attr]
        return base.model_copy(update={"run_id": run_id, "client": client, "summary": summary,
                                       "mix": load_mix("npc-cpu")})

    rows = _runs_table([run("a", "lean", 20.0), run("b", None, 40.0), run("c", "openai", 60.0)]).to_dict("records")
    assert [(r["client"], r["goal p99 ≤ 50 ms"], r["flag"]) for r in rows] == [
        ("lean", "MET", "within"), ("openai", "MET", "EXCEEDS 25 ms"), ("openai", "MISSED", "EXCEEDS 25 ms")]
