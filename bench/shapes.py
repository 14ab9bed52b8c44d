"""Load shapes, each a small class: how many NPCs run at time t (`users_at`, for Locust's LoadTestShape),
and how one NPC paces its requests: `step` is its Locust task, `wait_s` its wait_time.

A closed-loop step sends and waits for the reply, so Locust's graceful stop (--stop-timeout) lets it
finish and be recorded; open-loop steps spawn the request and return at once."""

from __future__ import annotations

import time
from typing import Any

import gevent

from bench.spec import ClosedLoop, Poisson, SteppedRamp, TickBurst


class _Pacer:
    def __init__(self, shape: Any, run: Any, npc: Any) -> None:
        self.shape, self.run, self.npc = shape, run, npc

    def spawn(self, **kwargs: Any) -> None:
        """Open loop: send without waiting for the reply."""
        self.run.inflight.spawn(self.run.fire, self.npc, **kwargs)


class ClosedLoopPacer(_Pacer):
    shape: ClosedLoop

    @staticmethod
    def users_at(shape: ClosedLoop, t: float) -> tuple[int, float] | None:
        return (shape.users, shape.users) if t < shape.duration_s else None

    def step(self) -> None:
        self.run.fire(self.npc)

    def wait_s(self) -> float:
        think = self.shape.think_time_s
        return self.npc.rng.expovariate(1.0 / think) if think else 0.0


class PoissonPacer(_Pacer):
    """Each of `users` NPCs is a Poisson source of rate rate_rps/users; together they make one at rate_rps."""

    shape: Poisson

    @staticmethod
    def users_at(shape: Poisson, t: float) -> tuple[int, float] | None:
        return (shape.users, shape.users) if t < shape.duration_s else None

    def __init__(self, shape: Poisson, run: Any, npc: Any) -> None:
        super().__init__(shape, run, npc)
        self.started = False

    def step(self) -> None:
        if not self.started:  # Locust runs a task before its first wait; an arrival process starts with a gap
            self.started = True
            gevent.sleep(self.wait_s())
        self.spawn()

    def wait_s(self) -> float:
        return self.npc.rng.expovariate(self.shape.rate_rps / self.shape.users)


class TickPacer(_Pacer):
    """All NPCs act on the same game clock: a burst of `npcs` requests every 1/tick_hz seconds."""

    shape: TickBurst

    def __init__(self, shape: TickBurst, run: Any, npc: Any) -> None:
        super().__init__(shape, run, npc)
        period = 1.0 / shape.tick_hz
        self.next_tick = int((time.time() - run.t0) / period) + 1

    @staticmethod
    def users_at(shape: TickBurst, t: float) -> tuple[int, float] | None:
        return (shape.npcs, shape.npcs) if t < shape.duration_s else None

    def step(self) -> None:
        period = 1.0 / self.shape.tick_hz
        gevent.sleep(max(0.0, self.run.t0 + self.next_tick * period - time.time()))  # first tick after spawn
        self.spawn(tick=self.next_tick, deadline_s=self.shape.tick_deadline_s)
        self.next_tick += 1

    def wait_s(self) -> float:
        return max(0.0, self.run.t0 + self.next_tick / self.shape.tick_hz - time.time())


class SteppedRampPacer(ClosedLoopPacer):
    shape: SteppedRamp

    @staticmethod
    def users_at(shape: SteppedRamp, t: float) -> tuple[int, float] | None:
        if t >= shape.duration_s:
            return None
        users = min(shape.start_users + int(t // shape.step_s) * shape.step_users, shape.max_users)
        return users, max(users, 1)


SHAPES = {"closed": ClosedLoopPacer, "poisson": PoissonPacer, "tick": TickPacer, "ramp": SteppedRampPacer}

