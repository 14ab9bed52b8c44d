"""The scale-out plan's arithmetic, worked by hand (bench/lab/scaleout.py)."""

from __future__ import annotations

from bench.lab.scaleout import Ceilings, GameLoad, plan


def test_a_scale_out_plan_is_the_games_requests_times_each_parts_cpu() -> None:
    # 4,000 NPCs: 2,000 ambient requests/s; 400 in dialogue, a turn every 10 s: 40 streamed requests/s.
    load = GameLoad(npcs=4000, ambient_every_s=2, dialogue_share=0.1, dialogue_every_s=10)
    ceilings = Ceilings(load_generator_ms={"plain": 10, "streamed": 30}, proxy_ms={"plain": 20, "streamed": 50},
                        redis_commands_per_request=6, sources=[])
    result = plan(load, ceilings, redis_ops_per_s=50_000)
    assert (result.plain_rps, result.streamed_rps) == (2000, 40)
    # Load generator: 2,000 x 10 ms + 40 x 30 ms = 21.2 cores; at 60 % a core, 36 processes.
    assert (result.load_generator.cores, result.load_generator.processes) == (21.2, 36)
    # Proxy: 2,000 x 20 + 40 x 50 = 42 cores: 70 processes.
    assert (result.proxy.cores, result.proxy.processes) == (42.0, 70)
    # Redis: 2,040 x 6 = 12,240 commands/s, one instance at 60 % of 50,000.
    assert (result.redis_commands_per_s, result.redis_instances) == (12240, 1)


def test_the_plan_counts_cores_to_provision_and_machines_of_a_named_size() -> None:
    load = GameLoad(npcs=4000, ambient_every_s=2, dialogue_share=0.1, dialogue_every_s=10)
    ceilings = Ceilings(load_generator_ms={"plain": 10, "streamed": 30}, proxy_ms={"plain": 20, "streamed": 50},
                        redis_commands_per_request=6, sources=[])
    # 36 Locust + 70 LiteLLM + 1 Redis processes, one a core: 107 cores, 7 machines of 16.
    assert plan(load, ceilings, redis_ops_per_s=50_000, machine_cores=16).machines == 7
    assert plan(load, ceilings, redis_ops_per_s=50_000, machine_cores=8).machines == 14
