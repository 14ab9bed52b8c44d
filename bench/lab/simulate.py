"""A mix on a stack of simulated workers in virtual time: no HTTP, no sleeping (`python -m bench simulate`).

    sim = simulate(load_profile("gpu-sim"), "npc-gpu", npcs=4000, duration_s=3600, seed=0, results_dir=Path("results"))
    sim.run_dir, sim.summary.all.goodput_rps, sim.records[0].ttft_s

The mix's arrival process (its shape, the same spec objects a Locust run uses, and each NPC's random stream seeded
as the locustfile seeds it) decides when each NPC sends; its class comes from the same smooth weighted round-robin
(bench/load/classes.py); the proxy's routing strategy (simple-shuffle, session-affinity, least-busy) picks a worker
of the class's group; each worker is the simulated engine (serve/sim/engine.py) run by serve/sim/virtual.py's
`Cluster`, which interleaves every worker's event loop on one clock (so a closed-loop NPC's next request follows
its reply) and shares a GPU between its workers as the real-time workers do. Requests still queued or running when
the load ends run to completion, as a real run's tail does.

A prompt is what the simulated worker would count (bench/load/npc.py's messages through serve/sim/server.py's
`prompt_words`), built from counts instead of text: a faction's shared prefix is the same blocks for every NPC of
it, and everything after the first word that differs is blocks nobody else has. A multi-turn conversation's next
prompt extends the last one by its reply and a follow-up, so it finds its own earlier blocks cached.

Not modelled: the proxy's own CPU time and queueing, HTTP and the client's own time (a real run's latencies hold
them, a few milliseconds each on the simulated stack), LiteLLM's retries, cooldowns and fallbacks (a simulated
worker never fails), the router cache's 200-entry cap on session pins (set `router_cache_items` high), and the
tick shape (its game-tick ledger is Locust-side state; `simulate` refuses it with a clear error).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.errors import MixError
from bench.kinds import KINDS
from bench.load.classes import ClassPicker
from bench.load.npc import FOLLOW_UPS, MESSAGE_OVERHEAD_TOKENS, NPC_TOOLS
from bench.records import Manifest, RequestRecord, RunSummary, ServerSummary, meets_slo
from bench.report.summary import summarize
from bench.rundir import (
    DIRTY_TREE_NOTE,
    MANIFEST,
    REQUESTS,
    SIMULATED_NOTE,
    env_lock,
    git_info,
    labelled_run_id,
    machine_info,
    package_versions,
    read_requests,
)
from bench.shapes.closed import ClosedLoop
from bench.shapes.poisson import Poisson
from bench.shapes.ramp import SteppedRamp
from bench.shapes.trace import TraceReplay
from bench.spec import ResolvedMix, TrafficClass, load_mix
from serve import Cluster, StackSpec, VirtualRequest, cluster_workers, tool_reply_tokens
from serve.common import now_iso, write_atomic

ENGINE = "virtual-time"
ROUTINGS = ("simple-shuffle", "session-affinity", "least-busy")
VIRTUAL_NOTE = ("VIRTUAL TIME: no process served these requests; `python -m bench simulate` ran the simulated "
                "engine (serve/sim/engine.py) on a virtual clock. Not modelled: the proxy's CPU and queueing, HTTP, "
                "the client's own time, retries, cooldowns and fallbacks")
_SHARED_SPACE = 1 << 62  # block hashes: shared prefixes below, blocks no other prompt has from here up


@dataclass
class Simulation:
    """What a simulation gives: every request's record, the run's summary, and what the simulation itself cost."""

    records: list[RequestRecord]
    summary: RunSummary
    run_dir: Path | None
    wall_s: float
    cpu_s: float
    engine_steps: int
    notes: list[str] = field(default_factory=list)


# -- prompts as the simulated worker counts them ----------------------------------------------------------------

def _words(text: str) -> int:
    return len(text.split())


TOOLS_WORDS = 3 + _words(json.dumps(NPC_TOOLS))  # ["<|im_start|>", "system", *tools JSON, "<|im_end|>"]


@dataclass(frozen=True)
class Prompt:
    """A first-turn prompt as the worker counts it: its tokens, and how many of its leading ones every NPC of its
    faction (and class) sends alike."""

    tokens: int
    common: int
    key: tuple


def first_prompt(cls: TrafficClass, npc_id: str, faction: int, prompt_tokens: int) -> Prompt:
    """The token count of bench/load/npc.py's `NPC.messages` for a first turn, through serve/sim/server.py's
    `prompt_words` (tests/unit/test_simulate.py holds the two together), without making the text."""
    kind = KINDS[cls.kind]
    tools = TOOLS_WORDS if cls.tools else 0
    if kind.bare_prompt:
        return Prompt(tools + 3 + prompt_tokens + 2, tools, ("tools",))
    task = _words(kind.task)
    if cls.shared_prefix_share:
        prefix = round(cls.shared_prefix_share * cls.prompt_tokens.mean)
        system = 8 + max(prefix - MESSAGE_OVERHEAD_TOKENS, 0)  # "You are an NPC of faction F. Doctrine: " + filler
        own = prompt_tokens - prefix
        key: tuple = (cls.name, cls.shared_prefix_share, cls.prompt_tokens.mean, faction % cls.factions, cls.tools)
        common = tools + 2 + system + 1 + 3  # ... "<|im_end|>", "<|im_start|>", "user", "NPC"
    else:
        system, own, key = 4, prompt_tokens, ("tools", cls.tools)  # "You are NPC npc-N."
        common = tools + 4  # "<|im_start|>", "system", "You", "are" ("NPC" too, but then the NPC's id)
    user = 3 + max(own - 2 * MESSAGE_OVERHEAD_TOKENS - 16, 0) + task  # "NPC npc-N state: " + filler + task
    return Prompt(tools + (3 + system) + (3 + user) + 2, common, key)


class Hashes:
    """Block hashes for prompts: the same for the same shared words, new ones for words no other prompt has."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self.fresh = itertools.count(_SHARED_SPACE)

    def shared(self, key: tuple, blocks: int) -> list[int]:
        return [hash((key, i)) % _SHARED_SPACE for i in range(blocks)]

    def extend(self, hashes: list[int], tokens: int) -> list[int]:
        """`hashes` (the full blocks of an earlier prompt this one starts with) and new ones up to `tokens`."""
        full = tokens // self.block_size
        return hashes[:full] + [next(self.fresh) for _ in range(full - min(len(hashes), full))]


@dataclass
class _Npc:
    npc_id: str
    index: int
    rng: random.Random
    history: tuple[int, list[int]] | None = None  # multi-turn: the last prompt's tokens and block hashes, and reply
    turn: int = 0


# -- routing ---------------------------------------------------------------------------------------------------

class Router:
    """The proxy's choice of worker within a group: simple-shuffle (uniform random, seeded: the rendered deployments
    carry no weights), session-affinity (an NPC's first request by simple-shuffle, then pinned to that worker per
    group), least-busy (fewest requests in flight through the proxy; a tie by simple-shuffle)."""

    def __init__(self, strategy: str, groups: dict[str, list[str]], seed: int,
                 in_flight: Callable[[str], int]) -> None:
        if strategy not in ROUTINGS:
            raise MixError(f"routing strategy {strategy!r} is not modelled in virtual time; it models "
                           f"{', '.join(ROUTINGS)} (set proxy.routing_strategy with --set)")
        self.strategy, self.groups, self.in_flight = strategy, groups, in_flight
        self.rng = random.Random(f"{seed}/routing")
        self.pins: dict[tuple[str, str], str] = {}

    def pick(self, group: str, npc_id: str) -> str:
        workers = self.groups[group]
        if self.strategy == "least-busy":
            least = min(self.in_flight(w) for w in workers)
            return self.rng.choice([w for w in workers if self.in_flight(w) == least])
        if self.strategy == "session-affinity":
            pinned = self.pins.get((npc_id, group))
            if pinned is None:
                pinned = self.pins[(npc_id, group)] = self.rng.choice(workers)
            return pinned
        return self.rng.choice(workers)


# -- the run ---------------------------------------------------------------------------------------------------

class _Run:
    def __init__(self, spec: StackSpec, mix: ResolvedMix, seed: int) -> None:
        self.spec, self.mix, self.seed = spec, mix, seed
        workers = cluster_workers(spec)
        self.groups: dict[str, list[str]] = {}
        for name, (group, _, _) in workers.items():
            self.groups.setdefault(group, []).append(name)
        self.block_size = {name: config.block_size for name, (_, config, _) in workers.items()}
        self.max_model_len = {group: spec.groups[group].max_model_len for group in self.groups}  # type: ignore[index]
        self.cluster = Cluster({name: (config, device) for name, (_, config, device) in workers.items()}, self._done)
        self.proxy_in_flight = dict.fromkeys(workers, 0)
        self.router = Router(spec.proxy.routing_strategy, self.groups, seed, self.proxy_in_flight.__getitem__)
        self.priority_groups = {name for name, g in spec.groups.items() if g.scheduling_policy == "priority"}
        self.hashes = {size: Hashes(size) for size in set(self.block_size.values())}
        self.picker = ClassPicker(mix)
        self.ids = itertools.count()
        self.pending: dict[str, tuple[TrafficClass, _Npc, tuple[int, int], Callable[[], None] | None]] = {}
        self.records: list[RequestRecord] = []
        self.t0 = time.time()
        self.shape = mix.mix.shape

    # one request
    def send(self, npc: _Npc, then: Callable[[], None] | None = None,
             planned: tuple[str, int, int] | None = None) -> None:
        cls = self.mix.classes[planned[0]] if planned else self.picker.next()
        drawn, max_tokens = planned[1:] if planned else (cls.prompt_tokens.sample(npc.rng),
                                                         cls.output_tokens.sample(npc.rng))
        kind = KINDS[cls.kind]
        worker = self.router.pick(cls.group, npc.npc_id)
        hashes = self.hashes[self.block_size[worker]]
        if kind.keeps_history and npc.history:
            npc.turn += 1
            last_tokens, last_hashes = npc.history
            tokens = last_tokens + 3 + _words(npc.rng.choice(FOLLOW_UPS)) + 2  # the follow-up and the reply marker
            prompt_hashes = hashes.extend(last_hashes, tokens)
        else:
            npc.turn = 0
            prompt = first_prompt(cls, npc.npc_id, npc.index, drawn)
            tokens = prompt.tokens
            prompt_hashes = hashes.extend(hashes.shared(prompt.key, prompt.common // hashes.block_size), tokens)
        if cls.tools:  # the simulated worker's reply is the call's arguments, at most max_tokens
            output = min(max_tokens, tool_reply_tokens(NPC_TOOLS, npc.rng))
        else:
            output = max_tokens
        request = VirtualRequest(
            request_id=str(next(self.ids)), worker=worker, arrival_s=self.cluster.clock, prompt_tokens=tokens,
            max_tokens=output, prompt_hashes=tuple(prompt_hashes),
            priority=cls.priority if cls.group in self.priority_groups else 0,
            stop_after=cls.interrupt_after_tokens if cls.stream and kind.cuts_stream else None)
        if tokens + output > self.max_model_len[cls.group]:
            raise MixError(f"class {cls.name}: a prompt of {tokens} tokens and a reply of {output} exceed group "
                           f"{cls.group}'s max_model_len {self.max_model_len[cls.group]}")
        self.pending[request.request_id] = (cls, npc, (drawn, max_tokens), then)
        self.proxy_in_flight[worker] += 1
        self.cluster.add(request)

    def _done(self, request: VirtualRequest) -> None:
        cls, npc, (drawn, max_tokens), then = self.pending.pop(request.request_id)
        self.proxy_in_flight[request.worker] -= 1
        times = request.token_times
        e2e = request.finish_s - request.arrival_s
        base = dict(cls=cls.name, kind=cls.kind, group=cls.group, worker=request.worker, npc_id=npc.npc_id,
                    turn=npc.turn, t_start=round(self.t0 + request.arrival_s, 6), e2e_s=round(e2e, 6),
                    prompt_tokens_drawn=drawn, max_tokens=max_tokens)
        if cls.stream:
            n = len(times) if request.cut else request.output_tokens
            record = RequestRecord(
                **base, ttft_s=round(times[0] - request.arrival_s, 6),
                itl_s=round((times[-1] - times[0]) / (n - 1), 6) if len(times) > 1 and n > 1 else None,
                token_gaps_s=[round(b - a, 5) for a, b in itertools.pairwise(times)] or None,
                prompt_tokens=None if request.cut else request.prompt_tokens, output_tokens=n,
                outcome="interrupted" if request.cut else "ok")
        else:
            record = RequestRecord(**base, prompt_tokens=request.prompt_tokens, output_tokens=request.output_tokens,
                                   outcome="ok")
        record.slo_met = meets_slo(record, cls.slo)
        self.records.append(record)
        if KINDS[cls.kind].keeps_history:  # the reply joins the conversation, until `turns` turns
            keep = npc.turn + 1 < (cls.turns or 1)
            tokens = request.prompt_tokens + request.output_tokens + 1  # reply words and "<|im_end|>"
            npc.history = (tokens, list(request.prompt_hashes)) if keep else None
        if then is not None:
            then()

    # arrival processes, as the shapes' pacers send
    def npc(self, index: int, npc_id: str | None = None) -> _Npc:
        return _Npc(npc_id or f"npc-{index}", index, random.Random(f"{self.seed}/{index}"))

    def poisson(self, shape: Poisson) -> None:
        for k in range(shape.users):  # Locust spawns `users` a second; the first task waits one gap
            self._next_arrival(self.npc(k), shape, k / shape.users)

    def _next_arrival(self, npc: _Npc, shape: Poisson, after: float) -> None:
        at = after + npc.rng.expovariate(shape.rate_rps / shape.users)
        if at < shape.duration_s:
            self.cluster.at(at, lambda: self._arrive(npc, shape))

    def _arrive(self, npc: _Npc, shape: Poisson) -> None:
        self.send(npc)
        self._next_arrival(npc, shape, self.cluster.clock)

    def closed(self, starts: list[float], think_s: float, end_s: float) -> None:
        for k, start in enumerate(starts):
            npc = self.npc(k)
            self.cluster.at(start, functools.partial(self._fire, npc, think_s, end_s))

    def _fire(self, npc: _Npc, think_s: float, end_s: float) -> None:
        self.send(npc, then=lambda: self._think(npc, think_s, end_s))

    def _think(self, npc: _Npc, think_s: float, end_s: float) -> None:
        at = self.cluster.clock + (npc.rng.expovariate(1.0 / think_s) if think_s else 0.0)
        if at < end_s:
            self.cluster.at(at, lambda: self._fire(npc, think_s, end_s))

    def trace(self, shape: TraceReplay) -> None:
        ids = shape.npc_ids()
        npcs = {npc_id: self.npc(index, npc_id) for index, npc_id in enumerate(ids)}
        for event in shape.events():
            self.cluster.at(event.t_s / shape.speed, functools.partial(
                self.send, npcs[event.npc_id], planned=(event.cls, event.prompt_tokens, event.output_tokens)))

    def start(self) -> None:
        shape = self.shape
        if isinstance(shape, Poisson):
            self.poisson(shape)
        elif isinstance(shape, ClosedLoop):
            self.closed([k / shape.users for k in range(shape.users)], shape.think_time_s, shape.duration_s)
        elif isinstance(shape, SteppedRamp):
            self.closed(ramp_starts(shape), shape.think_time_s, shape.duration_s)
        elif isinstance(shape, TraceReplay):
            self.trace(shape)
        else:
            raise MixError(f"a {shape.kind} shape is not simulated in virtual time yet (its pacing is Locust-side "
                           f"state); `bench simulate` runs poisson, closed, ramp and trace mixes")

    def server_summary(self) -> ServerSummary:
        engines = {name: w.engine for name, w in self.cluster.workers.items()}
        counters = {name: e.counters for name, e in engines.items()}

        def rate(names: list[str]) -> float | None:
            queries = sum(counters[n].prefix_cache_queries for n in names)
            return round(sum(counters[n].prefix_cache_hits for n in names) / queries, 4) if queries else None

        hit_rate = {name: rate([name]) for name in engines}
        hit_rate.update({f"group:{g}": rate(names) for g, names in self.groups.items()})
        hit_rate["all"] = rate(list(engines))
        return ServerSummary(
            generation_tokens={n: float(c.generation_tokens) for n, c in counters.items()},
            generation_tokens_total=float(sum(c.generation_tokens for c in counters.values())),
            prompt_tokens_total=float(sum(c.prompt_tokens for c in counters.values())),
            finished_requests=float(sum(sum(c.finished.values()) for c in counters.values())),
            preemptions=float(sum(c.preemptions for c in counters.values())),
            prefix_cache_hit_rate=hit_rate)


def ramp_starts(shape: SteppedRamp) -> list[float]:
    """When each NPC of a ramp starts: at its step, spawned at the shape's rate (Locust's spawn rate)."""
    starts: list[float] = []
    step = 0
    while (at := step * shape.step_s) < shape.duration_s:
        users_and_rate = shape.users_at(at)
        assert users_and_rate is not None
        users, spawn_rate = users_and_rate
        starts += [at + (k - len(starts)) / spawn_rate for k in range(len(starts), users)]
        step += 1
    return starts


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def simulate(spec: StackSpec, mix: str | ResolvedMix, npcs: int = 0, duration_s: float = 0.0, seed: int | None = None,
             *, rate_rps: float = 0.0, results_dir: Path | None = None, run_id: str | None = None) -> Simulation:
    """Run `mix` (a name, a .toml path, or a resolved mix) on the simulated workers of `spec` (a profile of
    `engine = "sim"` groups, as `serve.load_profile` gives it, overrides applied) in virtual time. `npcs`,
    `duration_s` and `rate_rps` override the mix's shape (0 keeps it); `seed` the mix's seed. With `results_dir`,
    writes an ordinary run folder there (`run_id`, which ends in -sim; default <UTC time>-<mix>-sim)."""
    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    if isinstance(mix, str):
        mix = load_mix(mix, npcs, rate_rps, duration_s)
    elif npcs or rate_rps or duration_s:
        raise MixError("give npcs, duration_s and rate_rps with a mix's name, not with a resolved mix")
    if seed is not None:
        mix = mix.model_copy(update={"mix": mix.mix.model_copy(update={"seed": seed})})
    if unknown := sorted({c.group for c in mix.classes.values()} - set(spec.groups)):
        raise MixError(f"mix {mix.name} has classes of group {', '.join(unknown)}, which profile {spec.profile} lacks")
    try:
        run = _Run(spec, mix, mix.mix.seed)
    except ValueError as exc:
        raise MixError(str(exc)) from None
    started_at = now_iso()
    run.start()
    run.cluster.run()
    run.records.sort(key=lambda r: r.t_start)
    last = max((r.t_start - run.t0 + r.e2e_s for r in run.records), default=0.0)
    duration = max(mix.mix.shape.duration_s, last)
    notes = [SIMULATED_NOTE, VIRTUAL_NOTE]
    if results_dir is None:
        import pandas as pd

        summary = summarize(pd.DataFrame([r.model_dump() for r in run.records], columns=list(RequestRecord.model_fields)),
                            duration)
        summary.server = run.server_summary()
        return Simulation(run.records, summary, None, time.perf_counter() - wall0, cpu_seconds() - cpu0,
                          run.cluster.steps, notes)
    run_id = labelled_run_id(run_id, True) if run_id else labelled_run_id(
        f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{mix.name}", True)
    path = Path(results_dir) / run_id
    if path.exists():
        raise MixError(f"{path} exists already; choose another --run-id")
    path.mkdir(parents=True)
    with open(path / REQUESTS, "w") as out:
        out.writelines(r.model_dump_json(exclude_none=False) + "\n" for r in run.records)
    summary = summarize(read_requests(path), duration)
    summary.server = run.server_summary()
    git = git_info()
    if git.dirty:
        notes.append(DIRTY_TREE_NOTE)
    wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    manifest = Manifest(
        run_id=run_id, status="complete", started_at=started_at, ended_at=now_iso(), duration_s=round(duration, 1),
        mix=mix, endpoints={}, client=None, engine=ENGINE, files={"requests": REQUESTS}, summary=summary,
        notes=notes, stack=spec, versions=package_versions(), env_lock=env_lock(), git=git, machine=machine_info(),
        simulation={"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "engine_steps": run.cluster.steps,
                    "virtual_s": round(duration, 3)})
    write_atomic(path / MANIFEST, manifest.model_dump_json(indent=2))
    return Simulation(run.records, summary, path, wall, cpu, run.cluster.steps, notes)


def virtual_seconds(records: list[RequestRecord]) -> float:
    """The span of virtual time the records cover (first arrival to last finish)."""
    if not records:
        return 0.0
    first = min(r.t_start for r in records)
    return max(r.t_start + r.e2e_s for r in records) - first if not math.isnan(first) else 0.0
