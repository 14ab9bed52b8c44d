"""What a load shape is: a pydantic model, whose fields are a mix's `[shape]` table, that knows how many
NPCs run at each moment (`users_at`, for Locust's LoadTestShape) and which command-line overrides it takes;
and a pacer that paces one NPC (`step` is its Locust task, `wait_s` its wait_time).

A shape is one module in this package with both, registered by its `kind` with `@register`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from bench.errors import MixError

if TYPE_CHECKING:
    import gevent

    from bench.load.decisions import NpcTick, TickLedger
    from bench.load.npc import NPC
    from bench.records import RequestRecord
    from bench.spec import TrafficClass


class RunContext(Protocol):
    """What a pacer may use of the running test."""

    t0: float  # Unix time the test started: the shared game clock's zero

    def fire(self, npc: NPC, tick: int | None = None, deadline_s: float | None = None,
             stream: bool = False) -> RequestRecord | None:
        """Send one request for the NPC and wait for its reply (closed loop); `stream`: stream it whatever its
        class says. None if it was cancelled before it was sent."""

    def spawn(self, npc: NPC, tick: int | None = None, deadline_s: float | None = None, stream: bool = False,
              planned: tuple[str, int, int] | None = None) -> gevent.Greenlet:
        """Send one request for the NPC without waiting for it (open loop); the greenlet's value is `fire`'s.
        `planned`: (class, prompt tokens, output tokens) instead of the mix's next class and drawn lengths."""

    def track(self, npc: NPC, ledger: TickLedger) -> TickLedger:
        """Keep the NPC's tick ledger: the run closes its last ticks and sums the ledgers up at its end."""

    def closed(self, ticks: list[NpcTick]) -> None:
        """NPC-ticks that have just ended (shown live)."""


class Pacer:
    """Paces one NPC. A closed-loop step sends and waits for the reply, so Locust's graceful stop
    (--stop-timeout) lets it finish and be recorded; an open-loop step spawns the request and returns."""

    def __init__(self, shape: Any, run: RunContext, npc: NPC) -> None:
        self.shape, self.run, self.npc = shape, run, npc

    def step(self) -> None:
        raise NotImplementedError

    def wait_s(self) -> float:
        raise NotImplementedError


class LoadShape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    REGISTRY: ClassVar[dict[str, type[LoadShape]]] = {}
    pacer: ClassVar[type[Pacer]]
    npcs_field: ClassVar[str]  # the field `--npcs` sets
    if TYPE_CHECKING:  # every shape has one: a field, or a property derived from its fields
        @property
        def duration_s(self) -> float: ...

    def users_at(self, t: float) -> tuple[int, float] | None:
        """(NPCs, spawn rate) at `t` seconds into the test, or None once the shape is over."""
        raise NotImplementedError

    def check(self, classes: dict[str, TrafficClass]) -> None:
        """Fail with a MixError if the shape cannot run with the mix's classes (a trace naming another class)."""

    def overrides(self, npcs: int = 0, rate_rps: float = 0.0, duration_s: float = 0.0,
                  tick_policy: str = "") -> dict[str, Any]:
        """Command-line overrides as fields of this shape (0 or "" keeps the mix's value)."""
        fields: dict[str, Any] = {}
        if npcs:
            fields[self.npcs_field] = npcs
        if rate_rps:
            raise MixError(f"--rate-rps applies to a poisson shape; this mix's shape is {self.kind}")
        if tick_policy:
            raise MixError(f"--tick-policy applies to a tick shape; this mix's shape is {self.kind}")
        if duration_s:
            fields["duration_s"] = duration_s
        return fields


def register(cls: type[LoadShape]) -> type[LoadShape]:
    """Make a shape usable in mixes under its `kind`."""
    LoadShape.REGISTRY[cls.model_fields["kind"].default] = cls
    return cls
