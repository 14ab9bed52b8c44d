"""A scale-out plan for a game's load, computed from the harness's measured ceilings, not guessed.

    python -m bench scaleout --npcs 4000 --ambient-every-s 2 --dialogue-share 0.1 [--dialogue-every-s 10]
                             [--ceilings results/harness-ceilings] [--redis-ops-per-s N]

The ceilings are CPU milliseconds per request of each part of the harness, read from the run folders of
`results/harness-ceilings/` (the `harness-plain` and `harness-streamed` mixes on gpu-sim with a near-instant
engine): the load generator's (`RunSummary.client`), the proxy's (`ServerSummary.cpu_s`, all its processes) and
the Redis commands a request costs when the proxy processes share one (`ServerSummary.redis_commands`). A part's
cores are its requests/s times its CPU per request; processes are those cores at a utilisation that leaves
headroom (one process per core: Locust and each LiteLLM process are single-threaded), so the cores to provision
are the processes, not the cores of work. The proxy's figure is read from the runs of the setup the plan prescribes
(several proxy processes sharing one Redis, `<mix>-redis`), the load generator's from one Locust process
(`<mix>-p1`). A run whose processes together asked for 90 % or more of the machine's cores is flagged overloaded:
its CPU a request stands, but was measured on a saturated machine. What the GPU workers need is a separate
question, for real GPUs: this plan sizes only what surrounds them.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, Field

from bench.rundir import read_manifest

HEADROOM = 0.6  # plan each core at 60 %: a core near 100 % answers its timers late, and the bench's times with them
FAILING = 0.05  # a run with this share of its requests failed measured no ceiling
OVERLOADED = 0.9  # a run whose processes used this share of the machine's cores or more measured a saturated machine


class GameLoad(BaseModel):
    """A game's NPC traffic: every NPC ticks an ambient decision; a share of them are in dialogue, streamed."""

    npcs: int = Field(gt=0)
    ambient_every_s: float = Field(gt=0, description="seconds between one NPC's ambient decisions")
    dialogue_share: float = Field(ge=0, le=1, description="share of NPCs in a streamed dialogue at any time")
    dialogue_every_s: float = Field(10.0, gt=0, description="seconds between one talking NPC's dialogue turns")

    @property
    def plain_rps(self) -> float:
        return self.npcs / self.ambient_every_s

    @property
    def streamed_rps(self) -> float:
        return self.npcs * self.dialogue_share / self.dialogue_every_s


class Ceilings(BaseModel):
    """CPU ms per request of each part, plain and streamed, and the Redis commands per request, as measured."""

    load_generator_ms: dict[str, float] = Field(description="`plain` and `streamed`: the Locust processes' CPU")
    proxy_ms: dict[str, float] = Field(description="`plain` and `streamed`: all the proxy's processes' CPU")
    redis_commands_per_request: float | None
    sources: list[str] = Field(description="the run folders the figures come from")
    overloaded: dict[str, float] = Field(default_factory=dict,
                                         description="runs that used >= OVERLOADED of the machine: cores busy / cores")
    failing: dict[str, float] = Field(default_factory=dict,
                                      description="runs with >= FAILING of their requests failed: that share")


class Part(BaseModel):
    cores: float = Field(description="CPU cores of work at the game's load")
    processes: int = Field(description="at HEADROOM per core, one process per core: also the cores to provision")


class ScaleOutPlan(BaseModel):
    load: GameLoad
    plain_rps: float
    streamed_rps: float
    load_generator: Part
    proxy: Part
    redis_commands_per_s: float | None
    redis_instances: int | None
    ceilings: Ceilings
    machine_cores: int = Field(description="cores of one machine of the named size")
    machines: int = Field(description="machines of machine_cores for every process (generator, proxy, Redis)")


def part(load: GameLoad, ms: dict[str, float]) -> Part:
    cores = (load.plain_rps * ms["plain"] + load.streamed_rps * ms["streamed"]) / 1000
    return Part(cores=round(cores, 2), processes=max(1, math.ceil(cores / HEADROOM)))


def plan(load: GameLoad, ceilings: Ceilings, redis_ops_per_s: float | None, machine_cores: int = 16) -> ScaleOutPlan:
    """Each part's cores and processes at the game's load; Redis instances at HEADROOM of `redis_ops_per_s`
    (one Redis is one thread); machines of `machine_cores` for all those processes, one a core."""
    rps = load.plain_rps + load.streamed_rps
    commands = None if ceilings.redis_commands_per_request is None else rps * ceilings.redis_commands_per_request
    instances = None if commands is None or not redis_ops_per_s else max(1, math.ceil(commands / (redis_ops_per_s * HEADROOM)))
    generator, proxy = part(load, ceilings.load_generator_ms), part(load, ceilings.proxy_ms)
    processes = generator.processes + proxy.processes + (instances or 0)
    return ScaleOutPlan(load=load, plain_rps=round(load.plain_rps, 1), streamed_rps=round(load.streamed_rps, 1),
                        load_generator=generator, proxy=proxy,
                        redis_commands_per_s=None if commands is None else round(commands),
                        redis_instances=instances, ceilings=ceilings, machine_cores=machine_cores,
                        machines=math.ceil(processes / machine_cores))


def busy_share(run: Path) -> float:
    """The run's processes' CPU (load generator, workers, proxy) over its time and the machine's cores."""
    manifest = read_manifest(run)
    summary = manifest.summary
    assert summary is not None and summary.server is not None and summary.client is not None, run
    cpu = sum(summary.server.cpu_s.values()) + summary.client.cpu_s
    return round(cpu / summary.duration_s / manifest.machine.cores, 2)


def measured_ceilings(folder: Path) -> Ceilings:
    """The ceilings from the harness runs: per reply kind, the single-Locust-process runs (`<mix>-p1`) give the
    load generator's CPU per request; the runs of the prescribed proxy setup, several processes sharing Redis
    (`<mix>-redis`), the proxy's CPU and the Redis commands per request."""
    generator, proxy, commands, sources, overloaded, failing = {}, {}, [], [], {}, {}
    for kind in ("plain", "streamed"):
        run, redis_run = folder / f"harness-{kind}-p1-sim", folder / f"harness-{kind}-redis-sim"
        summary = read_manifest(run).summary
        assert summary is not None and summary.client is not None, run
        generator[kind] = summary.client.cpu_ms_per_request or 0.0
        redis_summary = read_manifest(redis_run).summary
        assert redis_summary is not None and redis_summary.server is not None, redis_run
        proxy[kind] = round(redis_summary.server.cpu_s["proxy"] * 1000 / redis_summary.all.requests, 2)
        if redis_summary.server.redis_commands is not None:
            commands.append(redis_summary.server.redis_commands / redis_summary.all.requests)
        for r in (run, redis_run):
            sources.append(r.name)
            if (share := busy_share(r)) >= OVERLOADED:
                overloaded[r.name] = share
            run_summary = read_manifest(r).summary
            assert run_summary is not None, r
            if (lost := 1 - run_summary.all.n_ok / max(run_summary.all.requests, 1)) >= FAILING:
                failing[r.name] = round(lost, 2)
    return Ceilings(load_generator_ms=generator, proxy_ms=proxy,
                    redis_commands_per_request=round(max(commands), 1) if commands else None, sources=sources,
                    overloaded=overloaded, failing=failing)


def render(p: ScaleOutPlan, redis_ops_per_s: float | None) -> str:
    c = p.ceilings
    lines = [
        f"game load: {p.load.npcs} NPCs, an ambient decision every {p.load.ambient_every_s:g} s, "
        f"{p.load.dialogue_share:.0%} in dialogue (a turn every {p.load.dialogue_every_s:g} s): "
        f"{p.plain_rps:g} plain + {p.streamed_rps:g} streamed requests/s",
        f"load generator: {c.load_generator_ms['plain']:g} / {c.load_generator_ms['streamed']:g} CPU ms a plain / "
        f"streamed request -> {p.load_generator.cores:g} cores of work -> {p.load_generator.processes} Locust "
        f"processes (--processes) at {HEADROOM:.0%} a core = {p.load_generator.processes} cores to provision",
        f"proxy (several processes sharing Redis): {c.proxy_ms['plain']:g} / {c.proxy_ms['streamed']:g} CPU ms a "
        f"plain / streamed request -> {p.proxy.cores:g} cores of work -> {p.proxy.processes} LiteLLM processes at "
        f"{HEADROOM:.0%} a core = {p.proxy.processes} cores to provision",
    ]
    if p.redis_commands_per_s is not None:
        capacity = f"at {HEADROOM:.0%} of {redis_ops_per_s:,.0f} commands/s" if redis_ops_per_s else \
            "(give --redis-ops-per-s, e.g. from redis-benchmark, for a count)"
        lines.append(f"redis: {c.redis_commands_per_request:g} commands a request -> {p.redis_commands_per_s:,.0f} "
                     f"commands/s -> {p.redis_instances or '?'} Redis {capacity}")
    total = p.load_generator.processes + p.proxy.processes + (p.redis_instances or 0)
    lines.append(f"machines: {total} processes, one a core -> {p.machines} machines of {p.machine_cores} cores")
    lines.append(f"from: {', '.join(c.sources)}")
    for name, share in c.overloaded.items():
        lines.append(f"warning: {name} was measured on an overloaded machine ({share:.0%} of its cores busy)")
    for name, share in c.failing.items():
        lines.append(f"warning: {share:.0%} of {name}'s requests failed: its CPU a request is no ceiling")
    return "\n".join(lines)
