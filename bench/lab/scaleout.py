"""A scale-out plan for a game's load, computed from the harness's measured ceilings, not guessed.

    python -m bench scaleout --npcs 4000 --ambient-every-s 2 --dialogue-share 0.1 [--dialogue-every-s 10]
                             [--ceilings results/harness-ceilings] [--redis-ops-per-s N]

The ceilings are CPU milliseconds per request of each part of the harness, read from the run folders of
`results/harness-ceilings/` (the `harness-plain` and `harness-streamed` mixes on gpu-sim with a near-instant
engine): the load generator's (`RunSummary.client`), the proxy's (`ServerSummary.cpu_s`, all its processes) and
the Redis commands a request costs when the proxy processes share one (`ServerSummary.redis_commands`). A part's
cores are its requests/s times its CPU per request; processes are those cores at a utilisation that leaves
headroom (one process per core: Locust and each LiteLLM process are single-threaded). What the GPU workers need
is a separate question, for real GPUs: this plan sizes only what surrounds them.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, Field

from bench.rundir import read_manifest

HEADROOM = 0.6  # plan each core at 60 %: a core near 100 % answers its timers late, and the bench's times with them


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


class Part(BaseModel):
    cores: float = Field(description="CPU cores of work at the game's load")
    processes: int = Field(description="at HEADROOM per core, one process per core")


class ScaleOutPlan(BaseModel):
    load: GameLoad
    plain_rps: float
    streamed_rps: float
    load_generator: Part
    proxy: Part
    redis_commands_per_s: float | None
    redis_instances: int | None
    ceilings: Ceilings


def part(load: GameLoad, ms: dict[str, float]) -> Part:
    cores = (load.plain_rps * ms["plain"] + load.streamed_rps * ms["streamed"]) / 1000
    return Part(cores=round(cores, 2), processes=max(1, math.ceil(cores / HEADROOM)))


def plan(load: GameLoad, ceilings: Ceilings, redis_ops_per_s: float | None) -> ScaleOutPlan:
    """Each part's cores and processes at the game's load; Redis instances at HEADROOM of `redis_ops_per_s`
    (one Redis is one thread)."""
    rps = load.plain_rps + load.streamed_rps
    commands = None if ceilings.redis_commands_per_request is None else rps * ceilings.redis_commands_per_request
    instances = None if commands is None or not redis_ops_per_s else max(1, math.ceil(commands / (redis_ops_per_s * HEADROOM)))
    return ScaleOutPlan(load=load, plain_rps=round(load.plain_rps, 1), streamed_rps=round(load.streamed_rps, 1),
                        load_generator=part(load, ceilings.load_generator_ms), proxy=part(load, ceilings.proxy_ms),
                        redis_commands_per_s=None if commands is None else round(commands),
                        redis_instances=instances, ceilings=ceilings)


def measured_ceilings(folder: Path) -> Ceilings:
    """The ceilings from the harness runs: per reply kind, the single-process runs (`<mix>-p1`) give the load
    generator's and the proxy's CPU per request; the Redis runs (`<mix>-redis`) the commands per request."""
    generator, proxy, commands, sources = {}, {}, [], []
    for kind in ("plain", "streamed"):
        run = folder / f"harness-{kind}-p1-sim"
        summary = read_manifest(run).summary
        assert summary is not None and summary.client is not None and summary.server is not None, run
        generator[kind] = summary.client.cpu_ms_per_request or 0.0
        proxy[kind] = round(summary.server.cpu_s["proxy"] * 1000 / summary.all.requests, 2)
        sources.append(run.name)
        redis_run = folder / f"harness-{kind}-redis-sim"
        if redis_run.exists():
            redis_summary = read_manifest(redis_run).summary
            if redis_summary and redis_summary.server and redis_summary.server.redis_commands is not None:
                commands.append(redis_summary.server.redis_commands / redis_summary.all.requests)
                sources.append(redis_run.name)
    return Ceilings(load_generator_ms=generator, proxy_ms=proxy,
                    redis_commands_per_request=round(max(commands), 1) if commands else None, sources=sources)


def render(p: ScaleOutPlan, redis_ops_per_s: float | None) -> str:
    c = p.ceilings
    lines = [
        f"game load: {p.load.npcs} NPCs, an ambient decision every {p.load.ambient_every_s:g} s, "
        f"{p.load.dialogue_share:.0%} in dialogue (a turn every {p.load.dialogue_every_s:g} s): "
        f"{p.plain_rps:g} plain + {p.streamed_rps:g} streamed requests/s",
        f"load generator: {c.load_generator_ms['plain']:g} / {c.load_generator_ms['streamed']:g} CPU ms a plain / "
        f"streamed request -> {p.load_generator.cores:g} cores -> {p.load_generator.processes} Locust processes "
        f"(--processes) at {HEADROOM:.0%} a core",
        f"proxy: {c.proxy_ms['plain']:g} / {c.proxy_ms['streamed']:g} CPU ms a plain / streamed request -> "
        f"{p.proxy.cores:g} cores -> {p.proxy.processes} LiteLLM processes at {HEADROOM:.0%} a core",
    ]
    if p.redis_commands_per_s is not None:
        capacity = f"at {HEADROOM:.0%} of {redis_ops_per_s:,.0f} commands/s" if redis_ops_per_s else \
            "(give --redis-ops-per-s, e.g. from redis-benchmark, for a count)"
        lines.append(f"redis: {c.redis_commands_per_request:g} commands a request -> {p.redis_commands_per_s:,.0f} "
                     f"commands/s -> {p.redis_instances or '?'} Redis {capacity}")
    lines.append(f"from: {', '.join(c.sources)}")
    return "\n".join(lines)
