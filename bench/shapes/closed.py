"""Closed loop: `users` NPCs, each sending its next request `think_time_s` (exponential mean) after its last reply."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from bench.shapes.base import LoadShape, Pacer, register


class ClosedLoopPacer(Pacer):
    def step(self) -> None:
        self.run.fire(self.npc)

    def wait_s(self) -> float:
        think = self.shape.think_time_s
        return self.npc.rng.expovariate(1.0 / think) if think else 0.0


@register
class ClosedLoop(LoadShape):
    kind: Literal["closed"] = "closed"
    users: int = Field(gt=0)
    think_time_s: float = Field(1.0, ge=0)
    duration_s: float = Field(60, gt=0)

    pacer: ClassVar = ClosedLoopPacer
    npcs_field: ClassVar = "users"

    def users_at(self, t: float) -> tuple[int, float] | None:
        return (self.users, self.users) if t < self.duration_s else None
