"""Open loop: requests arrive as a Poisson process at `rate_rps`, whether or not earlier ones finished."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from bench.shapes.base import LoadShape, Pacer, register


class PoissonPacer(Pacer):
    """Each of `users` NPCs is a Poisson source of rate rate_rps/users; together they make one at rate_rps."""

    started = False

    def step(self) -> None:
        # Locust runs a task before its first wait, and an arrival process starts with a gap: the first task sends
        # nothing, so that gap is Locust's wait, which a stopping run cuts short (a sleep inside the task would
        # hold the run's end for up to the stop timeout, and then send after the shape had ended).
        if not self.started:
            self.started = True
            return
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

    def overrides(self, npcs: int = 0, rate_rps: float = 0.0, duration_s: float = 0.0,
                  tick_policy: str = "") -> dict[str, Any]:
        return {**super().overrides(npcs, duration_s=duration_s, tick_policy=tick_policy),
                **({"rate_rps": rate_rps} if rate_rps else {})}
