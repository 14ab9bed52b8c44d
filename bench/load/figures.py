"""The NPC figures of a run: what the bench judges of its requests and of the NPCs' game ticks, which are not
requests and so are not in Locust's request stats (bench/load/events.py). Live on the web UI's "NPC figures" tab
(bench/load/webform.py), and written by a run as `locust_npc_figures.csv`.

Pure Python, so it is tested without Locust (importing Locust monkey-patches the whole interpreter for gevent).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.load.decisions import NpcTick
from bench.records import RequestRecord

FAILED_OUTCOMES = ("error", "timeout", "tool_invalid")  # a failed request: a failure in Locust's request stats
NONE_SENT = "(none sent)"  # a tick's class when the NPC sent nothing at it (still thinking, `skip`)

# kind -> (what the tab calls it, what its share counts: met for a judgement, of all NPC-ticks for decisions)
FIGURES: dict[str, tuple[str, str | None]] = {
    "TTFT": ("time to first token", None),
    "ITL": ("inter-token latency", None),
    "SLO": ("requests within their class's SLO", "met"),
    "DEADLINE": ("requests in by their tick's deadline", "met"),
    "INTERRUPTED": ("streams cut off by the client as planned", None),
    "DECISION": ("NPC-ticks", "of all NPC-ticks"),  # per class and decision; the time is the decision's age
}
CSV_COLUMNS = ["kind", "figure", "cls", "decision", "count", "misses", "share", "median_ms", "p95_ms", "max_ms"]


@dataclass
class Figure:
    times_ms: list[float] = field(default_factory=list)
    misses: int = 0


class NpcFigures:
    """Kept by the process that keeps the run: the only one, or the master of several Locust processes."""

    def __init__(self) -> None:
        self.figures: dict[tuple[str, str, str], Figure] = {}  # (kind, class, decision)

    def reset(self) -> None:
        self.figures = {}

    def log(self, kind: str, cls: str, ms: float, missed: bool = False, decision: str = "") -> None:
        figure = self.figures.setdefault((kind, cls, decision), Figure())
        figure.times_ms.append(ms)
        figure.misses += missed

    def add_record(self, record: RequestRecord) -> None:
        ms = record.e2e_s * 1000
        if record.ttft_s is not None:
            self.log("TTFT", record.cls, record.ttft_s * 1000)
        if record.itl_s is not None:
            self.log("ITL", record.cls, record.itl_s * 1000)
        if record.outcome == "interrupted":
            self.log("INTERRUPTED", record.cls, ms)
        elif record.outcome not in FAILED_OUTCOMES:
            self.log("SLO", record.cls, ms, missed=not record.slo_met)
        if record.deadline_missed is not None:
            self.log("DEADLINE", record.cls, ms, missed=record.deadline_missed)

    def add_ticks(self, ticks: list[NpcTick], period_ms: float) -> None:
        for t in ticks:  # a fallback is a miss: the NPC ran its cached behaviour
            self.log("DECISION", t.cls or NONE_SENT, t.staleness * period_ms, missed=t.decision == "fallback",
                     decision=t.decision)

    def rows(self) -> list[dict[str, Any]]:
        """One row per kind, class (and decision), in FIGURES' order: its count, misses, share and times."""
        kinds = list(FIGURES)
        ticks = sum(len(f.times_ms) for (kind, _, _), f in self.figures.items() if kind == "DECISION")
        rows = []
        for (kind, cls, decision), figure in sorted(self.figures.items(), key=lambda i: (kinds.index(i[0][0]), i[0][1:])):
            name, share_of = FIGURES[kind]
            count, times = len(figure.times_ms), np.array(figure.times_ms)
            share = count / ticks if kind == "DECISION" else (count - figure.misses) / count if share_of else None
            rows.append({"kind": kind, "figure": f"{name}: {decision}" if decision else name, "cls": cls,
                         "decision": decision, "count": count, "misses": figure.misses,
                         "share": None if share is None else round(share, 4),
                         "median_ms": round(float(np.median(times)), 1), "p95_ms": round(float(np.quantile(times, 0.95)), 1),
                         "max_ms": round(float(times.max()), 1)})
        return rows

    def tab_rows(self) -> list[dict[str, Any]]:
        """The rows as the web UI's tab shows them (bench/load/webform.py's FIGURES_COLUMNS)."""
        return [{"figure": r["figure"], "cls": r["cls"], "count": r["count"],
                 "share": "" if r["share"] is None else f"{r['share']:.0%} {FIGURES[r['kind']][1]}",
                 "median": r["median_ms"], "p95": r["p95_ms"], "max": r["max_ms"]} for r in self.rows()]

    def csv_text(self) -> str:
        text = io.StringIO()
        writer = csv.DictWriter(text, CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(self.rows())
        return text.getvalue()
