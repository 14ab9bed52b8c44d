"""Open loop: requests arrive as a Poisson process at `rate_rps`, whether or not earlier ones finished."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import gevent
from pydantic import Field

from bench.shapes.base import LoadShape, Pacer, register


class PoissonPacer(Pacer):
    """Each of `users` NPCs is a Poisson source of rate rate_rps/users; together they make one at rate_rps."""

    started = False

    def step(self) -> None:
        if not self.started:  # Locust runs a task before its first wait; an arrival process starts with a gap
            self.started = True
            gevent.sleep(self.wait_s())
        self.run.spawn(self.npc)

    def wait_s(self) -> float:
        return self.npc.rng.expovariate(self.shape.rate_rps / self.shape.users)


@register
class Poisson(LoadShape):
    kind: Literal["poisson"] = "poisson"
    rate_rps: float = Field(gt=0)
    users: int = Field(16, gt=0, description="NPCs the arrivals are spread over")
    duration_s: float = Field(60, gt=0)

    pacer: ClassVar = PoissonPacer
    npcs_field: ClassVar = "users"

    def users_at(self, t: float) -> tuple[int, float] | None:
        return (self.users, self.users) if t < self.duration_s else None

    def overrides(self, npcs: int = 0, rate_rps: float = 0.0, duration_s: float = 0.0) -> dict[str, Any]:
        return {**super().overrides(npcs, duration_s=duration_s), **({"rate_rps": rate_rps} if rate_rps else {})}
