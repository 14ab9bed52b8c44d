"""The NPC figures (bench/load/figures.py): what the bench judges of requests and ticks, apart from the requests."""

from __future__ import annotations

import csv
import io

from bench.load.decisions import NpcTick
from bench.load.figures import NONE_SENT, NpcFigures
from bench.records import RequestRecord


def record(outcome: str = "ok", slo_met: bool = True, deadline_missed: bool | None = None, ttft_s: float | None = None,
           e2e_s: float = 0.5) -> RequestRecord:
    return RequestRecord(cls="ambient", kind="plain", group="light", npc_id="npc-0", t_start=0.0, e2e_s=e2e_s,
                         ttft_s=ttft_s, max_tokens=8, outcome=outcome, slo_met=slo_met, deadline_missed=deadline_missed)


def by_figure(figures: NpcFigures) -> dict[tuple[str, str, str], dict]:
    return {(row["kind"], row["cls"], row["decision"]): row for row in figures.rows()}


def test_slo_and_deadline_misses_are_counted_as_misses_of_those_figures_and_failed_requests_are_not_judged() -> None:
    figures = NpcFigures()
    figures.add_record(record(slo_met=True, deadline_missed=False))
    figures.add_record(record(slo_met=False, deadline_missed=True, e2e_s=2.0))
    figures.add_record(record(slo_met=False, deadline_missed=False))
    figures.add_record(record(outcome="error", slo_met=False))  # a failed request is Locust's failure, not an SLO miss
    rows = by_figure(figures)
    assert set(rows) == {("SLO", "ambient", ""), ("DEADLINE", "ambient", "")}
    slo, deadline = rows["SLO", "ambient", ""], rows["DEADLINE", "ambient", ""]
    assert (slo["count"], slo["misses"], slo["share"]) == (3, 2, round(1 / 3, 4))
    assert (deadline["count"], deadline["misses"], deadline["share"]) == (3, 1, round(2 / 3, 4))
    assert deadline["max_ms"] == 2000.0
    assert "SLO" in slo["figure"] and "deadline" in deadline["figure"]


def test_streams_give_ttft_and_an_interrupted_stream_is_not_judged_against_the_slo() -> None:
    figures = NpcFigures()
    figures.add_record(record(ttft_s=0.2))
    figures.add_record(record(outcome="interrupted", ttft_s=0.1, slo_met=True))
    rows = by_figure(figures)
    assert rows["TTFT", "ambient", ""]["count"] == 2 and rows["TTFT", "ambient", ""]["median_ms"] == 150.0
    assert rows["INTERRUPTED", "ambient", ""]["count"] == 1 and rows["SLO", "ambient", ""]["count"] == 1


def test_decisions_are_named_by_class_and_outcome_with_their_share_of_all_ticks() -> None:
    figures = NpcFigures()
    ticks = [NpcTick(npc_id="npc-0", tick=1, decision="fresh", staleness=0, cls="ambient"),
             NpcTick(npc_id="npc-0", tick=2, decision="late", staleness=1, cls="ambient"),
             NpcTick(npc_id="npc-0", tick=3, decision="fallback", staleness=2),
             NpcTick(npc_id="npc-0", tick=4, decision="fallback", staleness=3)]
    figures.add_ticks(ticks, period_ms=100.0)
    rows = by_figure(figures)
    fallback = rows["DECISION", NONE_SENT, "fallback"]
    assert (fallback["count"], fallback["misses"], fallback["share"], fallback["max_ms"]) == (2, 2, 0.5, 300.0)
    assert fallback["figure"] == "NPC-ticks: fallback" and "no request" not in fallback["cls"]
    assert rows["DECISION", "ambient", "late"]["misses"] == 0 and rows["DECISION", "ambient", "late"]["share"] == 0.25
    tab = {(r["figure"], r["cls"]): r for r in figures.tab_rows()}
    assert tab["NPC-ticks: fallback", NONE_SENT]["share"] == "50% of all NPC-ticks"


def test_the_csv_holds_every_row_and_a_reset_empties_the_table() -> None:
    figures = NpcFigures()
    figures.add_record(record(slo_met=False, deadline_missed=True))
    rows = list(csv.DictReader(io.StringIO(figures.csv_text())))
    assert [(r["kind"], r["cls"], r["misses"]) for r in rows] == [("SLO", "ambient", "1"), ("DEADLINE", "ambient", "1")]
    figures.reset()
    assert figures.rows() == []
