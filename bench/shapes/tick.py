"""Game ticks: `npcs` NPCs on one game clock at `tick_hz`. At each tick an NPC asks for a decision, which is due by
the deadline (default: the next tick); what it does while its last request is still in flight is the policy:

- `overlap`: it asks again anyway; requests pile up (how the first round's headline was measured);
- `skip`: it is "thinking" and does not ask again until the reply is in (a tick-based world simulator);
- `cancel`: a newer tick cancels the request in flight, closing its stream, and asks anew (a streamed-turn NPC
  server, where a newer game event replaces the turn). Every request is streamed, so closing it stops the
  worker generating it.

`max_in_flight` caps the requests in flight across all NPCs, as a game server's pool of LLM threads does;
requests beyond it wait for a slot, and the wait counts against their deadline. Each NPC-tick ends fresh,
late or fallback (bench/load/decisions.py).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import gevent
from pydantic import Field

from bench.load.decisions import Cancelled, TickLedger
from bench.shapes.base import LoadShape, Pacer, RunContext, register

if TYPE_CHECKING:
    from bench.load.npc import NPC


class TickPacer(Pacer):
    """One NPC on the shared game clock: each step is one tick, at which it asks, skips or cancels."""

    shape: TickBurst

    def __init__(self, shape: TickBurst, run: RunContext, npc: NPC) -> None:
        super().__init__(shape, run, npc)
        self.next_tick = int((time.time() - run.t0) / (1.0 / shape.tick_hz)) + 1
        self.ledger: TickLedger = run.track(npc, TickLedger(npc.npc_id, run.t0, shape.tick_hz, shape.tick_deadline_s))
        self.pending: gevent.Greenlet | None = None

    def step(self) -> None:
        period, tick = 1.0 / self.shape.tick_hz, self.next_tick
        gevent.sleep(max(0.0, self.run.t0 + tick * period - time.time()))  # first tick after spawn
        self.next_tick += 1
        thinking = self.pending is not None and not self.pending.dead
        if thinking and self.shape.policy == "skip":
            self.ledger.saw(tick)
            self.ledger.skipped += 1
        else:
            if thinking and self.shape.policy == "cancel":
                assert self.pending is not None
                self.pending.kill(Cancelled, block=False)
                self.ledger.cancelled += 1
            self.pending = self.run.spawn(self.npc, tick=tick, deadline_s=self.shape.tick_deadline_s,
                                          stream=self.shape.policy == "cancel")
            self.pending.link_value(self._answered)
            self.ledger.saw(tick)
        self.run.closed(self.ledger.close(time.time()))

    def _answered(self, greenlet: gevent.Greenlet) -> None:
        record = greenlet.value
        if record is None or record.tick is None:  # cancelled before it was sent
            return
        self.ledger.answered(record.tick, record.cls, record.t_start, record.t_start + record.e2e_s, record.outcome == "ok")

    def wait_s(self) -> float:
        return max(0.0, self.run.t0 + self.next_tick / self.shape.tick_hz - time.time())


@register
class TickBurst(LoadShape):
    kind: Literal["tick"] = "tick"
    npcs: int = Field(gt=0)
    tick_hz: float = Field(gt=0)
    deadline_s: float | None = Field(None, gt=0)
    duration_s: float = Field(60, gt=0)
    policy: Literal["overlap", "skip", "cancel"] = Field(
        "overlap", description="an NPC still awaiting its last reply: asks again anyway, skips the tick, or "
        "cancels the request in flight and asks anew")
    max_in_flight: int | None = Field(None, gt=0, description="requests in flight across all NPCs, as a game "
                                      "server's pool of LLM threads allows; more wait for a slot")

    pacer: ClassVar = TickPacer
    npcs_field: ClassVar = "npcs"

    @property
    def tick_deadline_s(self) -> float:
        return self.deadline_s or 1.0 / self.tick_hz

    def users_at(self, t: float) -> tuple[int, float] | None:
        return (self.npcs, self.npcs) if t < self.duration_s else None

    def overrides(self, npcs: int = 0, rate_rps: float = 0.0, duration_s: float = 0.0,
                  tick_policy: str = "") -> dict[str, Any]:
        return {**super().overrides(npcs, rate_rps, duration_s), **({"policy": tick_policy} if tick_policy else {})}
