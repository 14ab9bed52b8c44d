"""The simulated engine (serve/sim/engine.py) in virtual time: a discrete-event loop that admits each arrival when
the clock reaches it and advances the clock by each step's computed duration. No sleeping, no HTTP; the same
`schedule`/`complete` calls as the real-time worker (serve/sim/server.py), so the same per-request timings.

    timings = run(engine_config, arrivals)

A request enters the engine `request_overhead_ms` after it arrives (the real-time worker sleeps that long before
`Engine.add`), and arrivals during a step are queued for the next one, as the worker's loop sees them.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from serve.sim.engine import Engine, EngineConfig, Sequence, Step
from serve.spec import StackSpec


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


# -- several workers on one clock ------------------------------------------------------------------------------

@dataclass
class Request:
    """One request in a cluster: what the engine needs, and what happened to it (times in virtual seconds).
    `stop_after`: the client closes the stream after this many tokens (the engine aborts it then)."""

    request_id: str
    worker: str
    arrival_s: float
    prompt_tokens: int
    max_tokens: int
    prompt_hashes: tuple[int, ...] = ()
    priority: int = 0
    stop_after: int | None = None
    token_times: list[float] = field(default_factory=list)  # each release of a new token (one chunk a step)
    output_tokens: int = 0
    finish_s: float = math.nan
    cut: bool = False  # the client closed it after `stop_after` tokens
    seq: Sequence | None = None


class _Worker:
    def __init__(self, name: str, config: EngineConfig, device: str | None) -> None:
        self.name, self.config, self.device = name, config, device
        self.engine = Engine(config)
        self.step: Step | None = None  # the step under way
        self.busy = False  # has work (what serve/sim/device.py's shared byte says)
        self.held: list[tuple[Request, int, bool]] = []
        self.requests: dict[Sequence, Request] = {}


class Cluster:
    """Simulated workers on one virtual clock: the real-time worker's loop (serve/sim/server.py) for each, with
    workers of one device sharing it as serve/sim/device.py does (a step lasts its cost times the workers busy on
    the device when it starts). The caller adds requests and timers (`at`); `run` processes events in time order
    and calls `on_done(request)` as each request finishes or is cut, so a closed-loop client can send its next."""

    _ADMIT, _STEP_END, _START, _CALL = 0, 1, 2, 3  # order of events at one instant: as the real loop sees them

    def __init__(self, workers: dict[str, tuple[EngineConfig, str | None]],
                 on_done: Callable[[Request], None] | None = None) -> None:
        self.workers = {name: _Worker(name, config, device) for name, (config, device) in workers.items()}
        self.on_done = on_done or (lambda request: None)
        self.clock = 0.0
        self._events: list[tuple[float, int, int, Any]] = []
        self._order = itertools.count()
        self.steps = 0

    def _push(self, at: float, kind: int, payload: Any) -> None:
        heapq.heappush(self._events, (at, kind, next(self._order), payload))

    def at(self, time_s: float, call: Callable[[], None]) -> None:
        """Call `call` when the clock reaches `time_s` (an arrival process's next request)."""
        self._push(time_s, self._CALL, call)

    def add(self, request: Request) -> None:
        """A request reaching its worker's API server at `request.arrival_s` (not before the clock)."""
        overhead_s = self.workers[request.worker].config.latency.request_overhead_ms / 1000
        self._push(max(request.arrival_s, self.clock) + overhead_s, self._ADMIT, request)

    def in_flight(self, worker: str) -> int:
        w = self.workers[worker]
        return len(w.requests)

    def run(self, until_s: float = math.inf) -> None:
        """Process events until none is left (every request finished) or the next is after `until_s`."""
        while self._events and self._events[0][0] <= until_s:
            at, kind, _, payload = heapq.heappop(self._events)
            self.clock = at
            if kind == self._CALL:
                payload()
            elif kind == self._ADMIT:
                self._admit(payload)
            elif kind == self._STEP_END:
                self._step_end(payload)
            else:
                self._start(payload)

    def _admit(self, request: Request) -> None:
        worker = self.workers[request.worker]
        seq = Sequence(request_id=request.request_id, prompt_tokens=request.prompt_tokens,
                       max_tokens=request.max_tokens, prompt_hashes=list(request.prompt_hashes),
                       priority=request.priority)
        request.seq = seq
        worker.requests[seq] = request
        worker.engine.add(seq)
        if worker.step is None and not worker.busy:
            worker.busy = True  # claimed now, so that a second admission at this instant starts no second step
            self._push(self.clock, self._START, worker)

    def _sharers(self, worker: _Worker) -> int:
        if worker.device is None:
            return 1
        return max(1, sum(1 for w in self.workers.values() if w.device == worker.device and w.busy))

    def _start(self, worker: _Worker) -> None:
        step = worker.engine.schedule()
        if not step.work:
            self._release(worker, worker.held)
            worker.held, worker.busy = [], False
            return
        worker.busy, worker.step = True, step
        self.steps += 1
        self._push(self.clock + step.duration_s * self._sharers(worker), self._STEP_END, worker)

    def _step_end(self, worker: _Worker) -> None:
        assert worker.step is not None
        emitted = worker.engine.complete(worker.step)
        worker.step = None
        tokens = [(worker.requests[seq], seq.output_tokens, seq.state == "finished") for seq in emitted
                  if seq in worker.requests]
        self._release(worker, worker.held)
        if worker.config.latency.output_lag_steps:
            worker.held = tokens
        else:
            worker.held = []
            self._release(worker, tokens)
        self._start(worker)

    def _release(self, worker: _Worker, tokens: list[tuple[Request, int, bool]]) -> None:
        for request, n, finished in tokens:
            if request.seq not in worker.requests:
                continue  # cut by its client already
            request.token_times.append(self.clock)
            request.output_tokens = n
            if request.stop_after is not None and len(request.token_times) >= request.stop_after and not finished:
                request.cut = True
                assert request.seq is not None
                worker.engine.abort(request.seq)
                finished = True
            if finished:
                request.finish_s = self.clock
                del worker.requests[request.seq]
                self.on_done(request)


def cluster_workers(spec: StackSpec) -> dict[str, tuple[str, EngineConfig, str | None]]:
    """{worker: (group, engine config, shared device or None)} of a stack spec whose workers are all simulated:
    the configs its simulated workers would be started with (serve/render.py)."""
    from serve.render import sim_config

    found: dict[str, tuple[str, EngineConfig, str | None]] = {}
    for worker in spec.workers:
        if worker.is_external or spec.group_of(worker).engine != "sim":
            raise ValueError(f"worker {worker.name} of profile {spec.profile} is not simulated (engine "
                             f"{spec.group_of(worker).engine!r}); virtual time needs a profile of simulated "
                             "workers only, such as gpu-sim or cpu-sim")
        config = sim_config(spec, worker)
        found[worker.name] = (worker.group, config.engine, config.device.name if config.device else None)
    return found


def tool_reply_tokens(tools: list[dict[str, Any]], rng: random.Random) -> int:
    """The tokens of a forced tool call's reply, as the simulated worker makes it (serve/sim/server.py): one of the
    tools, arguments valid for its schema, counted as the worker counts them."""
    from serve.sim.server import example_value

    function = rng.choice([t["function"] for t in tools if t.get("type") == "function"])
    arguments = example_value(function.get("parameters", {"type": "object"}), rng)
    return max(1, len(json.dumps(arguments).replace('"', ' " ').split()))
