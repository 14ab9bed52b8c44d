"""The simulated engine (serve/sim/engine.py) in virtual time: a discrete-event loop that admits each arrival when
the clock reaches it and advances the clock by each step's computed duration. No sleeping, no HTTP; the same
`schedule`/`complete` calls as the real-time worker (serve/sim/server.py), so the same per-request timings.

    timings = run(engine_config, arrivals)

A request enters the engine `request_overhead_ms` after it arrives (the real-time worker sleeps that long before
`Engine.add`), and arrivals during a step are queued for the next one, as the worker's loop sees them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from serve.sim.engine import Engine, EngineConfig, Sequence


@dataclass(frozen=True)
class Arrival:
    """One request as the engine sees it: when it arrives, its prompt's length and block hashes, its output."""

    request_id: str
    time_s: float
    prompt_tokens: int
    max_tokens: int
    prompt_hashes: tuple[int, ...] = ()
    priority: int = 0


@dataclass
class Timing:
    """One request's simulated timeline, in seconds of virtual time."""

    request_id: str
    arrival_s: float
    first_token_s: float = math.nan
    finish_s: float = math.nan
    output_tokens: int = 0

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> float:
        return self.finish_s - self.arrival_s


def run(config: EngineConfig, arrivals: Iterable[Arrival]) -> list[Timing]:
    """Every request to completion (a queued or running request at the end still finishes, as a real run's tail
    does); timings in the order of `arrivals`."""
    overhead_s = config.latency.request_overhead_ms / 1000
    pending = sorted(arrivals, key=lambda a: a.time_s)
    timings = {a.request_id: Timing(a.request_id, a.time_s) for a in pending}
    engine = Engine(config)
    lag = config.latency.output_lag_steps
    held: list[tuple[str, int, bool]] = []  # the last step's tokens, under output_lag_steps = 1

    def release(tokens: list[tuple[str, int, bool]], at: float) -> None:
        for request_id, n, finished in tokens:
            t = timings[request_id]
            if math.isnan(t.first_token_s):
                t.first_token_s = at
            t.output_tokens = n
            if finished:
                t.finish_s = at

    clock, i = 0.0, 0
    while True:
        while i < len(pending) and pending[i].time_s + overhead_s <= clock:
            a = pending[i]
            engine.add(Sequence(request_id=a.request_id, prompt_tokens=a.prompt_tokens, max_tokens=a.max_tokens,
                                prompt_hashes=list(a.prompt_hashes), priority=a.priority))
            i += 1
        step = engine.schedule()
        if not step.work:
            release(held, clock)
            held = []
            if i == len(pending):
                break
            clock = max(clock, pending[i].time_s + overhead_s)
            continue
        clock += step.duration_s
        tokens = [(seq.request_id, seq.output_tokens, seq.state == "finished") for seq in engine.complete(step)]
        release(held, clock)
        if lag:
            held = tokens
        else:
            release(tokens, clock)
    return [timings[a.request_id] for a in sorted(pending, key=lambda a: a.time_s)]
