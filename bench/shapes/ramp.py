"""Stepped ramp: closed loop from `start_users`, adding `step_users` every `step_s` up to `max_users`; finds the knee."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field

from bench.errors import MixError
from bench.shapes.base import LoadShape, register
from bench.shapes.closed import ClosedLoopPacer


@register
class SteppedRamp(LoadShape):
    kind: Literal["ramp"] = "ramp"
    start_users: int = Field(1, gt=0)
    step_users: int = Field(gt=0)
    step_s: float = Field(gt=0)
    max_users: int = Field(gt=0)
    think_time_s: float = Field(0.5, ge=0)

    pacer: ClassVar = ClosedLoopPacer
    npcs_field: ClassVar = "max_users"

    @property
    def duration_s(self) -> float:
        steps = math.ceil((self.max_users - self.start_users) / self.step_users) + 1  # the last one at max_users
        return steps * self.step_s

    def users_at(self, t: float) -> tuple[int, float] | None:
        if t >= self.duration_s:
            return None
        users = min(self.start_users + int(t // self.step_s) * self.step_users, self.max_users)
        return users, max(users, 1)

    def overrides(self, npcs: int = 0, rate_rps: float = 0.0, duration_s: float = 0.0,
                  tick_policy: str = "") -> dict[str, Any]:
        if duration_s:
            raise MixError("a ramp's duration follows from its steps; change step_s or max_users instead")
        return super().overrides(npcs, rate_rps, tick_policy=tick_policy)
