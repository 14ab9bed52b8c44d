"""An NPC's game loop, tick by tick: did a fresh decision arrive in time, was a late one applied, or did the
NPC fall back to its cached behaviour?

A game server ticks its world at `tick_hz`. At each tick an agent asks the LLM for a decision and gives it
`deadline_s` (by default one tick) to arrive. Each NPC-tick then ends one of three ways:

- `fresh`: the reply to this tick's own request arrived by the deadline, and is applied;
- `late`: no fresh reply, but a reply to an earlier request arrived (after its own deadline, by this one), and
  is applied now: the NPC acts on an older view of the world;
- `fallback`: nothing new arrived; the NPC runs its cached behaviour.

Staleness is the age, in ticks, of the decision the NPC acts on: 0 when fresh, k - j for a decision requested
at tick j and applied at tick k, and ticks since the NPC's first tick while it has had none. Only completed
replies (`ok`) are decisions: an error, a cancelled request or a skipped tick gives none.

`TickLedger` keeps one NPC's account as the run goes (the pacer feeds it, and Locust shows each outcome live);
`decision_figures` sums the ledgers up for the run's summary.
"""

from __future__ import annotations

import math
from typing import Literal

import gevent
import numpy as np
from pydantic import BaseModel, Field

Decision = Literal["fresh", "late", "fallback"]


class Cancelled(gevent.GreenletExit):
    """Raised in a request's greenlet when a newer tick of its NPC cancels it (the `cancel` tick policy)."""


class NpcTick(BaseModel):
    """One tick of one NPC."""

    npc_id: str
    tick: int
    decision: Decision
    staleness: int = Field(description="ticks since the request behind the decision the NPC acts on")
    cls: str | None = Field(None, description="the class of the request sent at this tick, if one was")


class TickLedger:
    """One NPC's ticks: which it saw, what it sent at each, when replies came; closes each tick at its deadline."""

    def __init__(self, npc_id: str, t0: float, tick_hz: float, deadline_s: float) -> None:
        self.npc_id, self.t0, self.period_s, self.deadline_s = npc_id, t0, 1.0 / tick_hz, deadline_s
        self.first_tick: int | None = None
        self.last_seen: int | None = None
        self.next_to_close: int | None = None
        self.replies: dict[int, float] = {}  # tick of the request -> Unix time its completed reply arrived
        self.classes: dict[int, str] = {}
        self.decision_tick: int | None = None  # the tick whose request gave the decision the NPC acts on
        self.busy: list[tuple[float, float]] = []  # (sent, ended) of every request: the NPC was thinking
        self.skipped = 0  # ticks it sent nothing at, still thinking (`skip`)
        self.cancelled = 0  # its requests a newer tick cancelled (`cancel`)

    def deadline(self, tick: int) -> float:
        return self.t0 + tick * self.period_s + self.deadline_s

    def saw(self, tick: int) -> None:
        """The NPC's loop reached `tick`."""
        if self.first_tick is None:
            self.first_tick = self.next_to_close = tick
        self.last_seen = tick

    def answered(self, tick: int, cls: str, sent_at: float, ended_at: float, ok: bool) -> None:
        """The request of `cls` sent at `tick` ended at `ended_at`; `ok`: with a decision."""
        self.classes[tick] = cls
        self.busy.append((sent_at, ended_at))
        if ok:
            self.replies[tick] = ended_at

    def close(self, now: float = math.inf) -> list[NpcTick]:
        """Every tick seen whose deadline has passed by `now` (all seen ticks by default), in order."""
        closed: list[NpcTick] = []
        while (self.next_to_close is not None and self.last_seen is not None and self.next_to_close <= self.last_seen
               and self.deadline(self.next_to_close) <= now):
            closed.append(self._close(self.next_to_close))
            self.next_to_close += 1
        return closed

    def _close(self, tick: int) -> NpcTick:
        due = self.deadline(tick)
        decision: Decision = "fallback"
        if tick in self.replies and self.replies[tick] <= due:
            decision, self.decision_tick = "fresh", tick
        else:
            newer = [j for j, at in self.replies.items()
                     if j < tick and at <= due and (self.decision_tick is None or j > self.decision_tick)]
            if newer:
                decision, self.decision_tick = "late", max(newer)
        assert self.first_tick is not None
        staleness = tick - self.decision_tick if self.decision_tick is not None else tick - self.first_tick + 1
        return NpcTick(npc_id=self.npc_id, tick=tick, decision=decision, staleness=staleness,
                       cls=self.classes.get(tick))

    def thinking_s(self) -> float:
        """Seconds of its ticks the NPC spent awaiting at least one reply (overlapping requests counted once)."""
        if self.first_tick is None or self.last_seen is None:
            return 0.0
        begin, finish = self.t0 + self.first_tick * self.period_s, self.t0 + (self.last_seen + 1) * self.period_s
        total, end = 0.0, begin
        for start, stop in sorted(self.busy):
            start, stop = max(start, end), min(stop, finish)
            if stop > start:
                total += stop - start
                end = stop
        return total

    def span_s(self) -> float:
        """From the NPC's first tick to the end of its last one."""
        if self.first_tick is None or self.last_seen is None:
            return 0.0
        return (self.last_seen + 1 - self.first_tick) * self.period_s


class DecisionFigures(BaseModel):
    """A tick run's NPC-ticks, summed up: how many NPCs got a fresh decision in time, and how stale they ran."""

    npc_ticks: int
    fresh_share: float
    late_share: float
    fallback_share: float
    staleness_p50: float
    staleness_p95: float
    staleness_max: int
    thinking_share: float | None = Field(None, description="of the NPCs' time, the share spent awaiting a reply")
    cancelled: int | None = Field(0, description="requests cancelled by a newer tick (the `cancel` policy); None for "
                                  "a class: counted per run")
    skipped: int | None = Field(0, description="ticks an NPC sent nothing because it was still thinking (`skip`); "
                                "None for a class: a skipped tick sends no request, so it has none")


def decision_figures(ticks: list[NpcTick], ledgers: list[TickLedger]) -> DecisionFigures | None:
    """The run's NPC-ticks summed up; None for a run without ticks."""
    if not ticks:
        return None
    staleness = np.array([t.staleness for t in ticks])
    share = {d: round(sum(t.decision == d for t in ticks) / len(ticks), 4) for d in ("fresh", "late", "fallback")}
    span = sum(ledger.span_s() for ledger in ledgers)
    thinking = round(sum(ledger.thinking_s() for ledger in ledgers) / span, 4) if span else None
    return DecisionFigures(
        npc_ticks=len(ticks), fresh_share=share["fresh"], late_share=share["late"], fallback_share=share["fallback"],
        staleness_p50=float(np.percentile(staleness, 50)), staleness_p95=float(np.percentile(staleness, 95)),
        staleness_max=int(staleness.max()), thinking_share=thinking,
        cancelled=sum(ledger.cancelled for ledger in ledgers), skipped=sum(ledger.skipped for ledger in ledgers))


def decisions_by_class(ticks: list[NpcTick]) -> dict[str, DecisionFigures]:
    """Each class's NPC-ticks (those whose tick sent a request of that class) summed up: shares and staleness.
    Thinking time, skips and cancellations belong to an NPC's whole loop, so they are given per run only."""
    classes = sorted({t.cls for t in ticks if t.cls is not None})
    figures = {cls: decision_figures([t for t in ticks if t.cls == cls], []) for cls in classes}
    return {cls: f.model_copy(update={"cancelled": None, "skipped": None}) for cls, f in figures.items() if f}
