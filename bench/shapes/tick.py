"""Game ticks: `npcs` NPCs each send a request on every tick at `tick_hz`; an answer later than the deadline
(default: the next tick) misses its tick."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar, Literal

import gevent
from pydantic import Field

from bench.shapes.base import LoadShape, Pacer, RunContext, register

if TYPE_CHECKING:
    from bench.npc import NPC


class TickPacer(Pacer):
    """All NPCs act on the same game clock: a burst of `npcs` requests every 1/tick_hz seconds."""

    shape: TickBurst

    def __init__(self, shape: TickBurst, run: RunContext, npc: NPC) -> None:
        super().__init__(shape, run, npc)
        self.next_tick = int((time.time() - run.t0) / (1.0 / shape.tick_hz)) + 1

    def step(self) -> None:
        period = 1.0 / self.shape.tick_hz
        gevent.sleep(max(0.0, self.run.t0 + self.next_tick * period - time.time()))  # first tick after spawn
        self.run.spawn(self.npc, tick=self.next_tick, deadline_s=self.shape.tick_deadline_s)
        self.next_tick += 1

    def wait_s(self) -> float:
        return max(0.0, self.run.t0 + self.next_tick / self.shape.tick_hz - time.time())


@register
class TickBurst(LoadShape):
    kind: Literal["tick"] = "tick"
    npcs: int = Field(gt=0)
    tick_hz: float = Field(gt=0)
    deadline_s: float | None = Field(None, gt=0)
    duration_s: float = Field(60, gt=0)

    pacer: ClassVar = TickPacer
    npcs_field: ClassVar = "npcs"

    @property
    def tick_deadline_s(self) -> float:
        return self.deadline_s or 1.0 / self.tick_hz

    def users_at(self, t: float) -> tuple[int, float] | None:
        return (self.npcs, self.npcs) if t < self.duration_s else None
