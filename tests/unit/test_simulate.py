"""Virtual time (serve/sim/virtual.py's Cluster, bench/lab/simulate.py, `python -m bench simulate`): the same
timings as the real-time simulated worker, prompts counted as the worker counts them, routing, and a run folder
that `bench show` and `bench compare` read."""

from __future__ import annotations

import asyncio
import json
import random
import selectors
from pathlib import Path

import httpx
import pytest

from bench.cli import main
from bench.kinds import KINDS
from bench.lab.simulate import Router, first_prompt, simulate
from bench.load.npc import NPC, NPC_TOOLS
from bench.rundir import read_manifest, read_requests
from bench.spec import load_mix
from serve import Cluster, VirtualRequest, load_profile
from serve.sim.engine import EngineConfig, SimWorkerConfig
from serve.sim.server import block_hashes, create_app, prompt_words
from serve.spec import SimLatency

LATENCY = SimLatency(source="test", request_overhead_ms=2, step_overhead_ms=10, prefill_ms_per_token=0.1,
                     decode_ms_per_seq=1, decode_ms_per_kv_token=0.001)
CONFIG = EngineConfig(max_model_len=1024, max_num_seqs=3, max_num_batched_tokens=64, block_size=16, num_blocks=60,
                      enable_prefix_caching=True, scheduling_policy="fcfs", latency=LATENCY)
# (arrival s, prompt words, max_tokens): overlapping, queued past max_num_seqs, one sharing another's prefix.
ARRIVALS = [(0.0, 100, 5), (0.004, 60, 8), (0.011, 100, 3), (0.012, 200, 4), (0.05, 30, 6), (0.3, 100, 2)]


class _VirtualSelector(selectors.DefaultSelector):
    """An event loop's selector that, with nothing to read, moves the loop's clock to its next timer instead of
    waiting for it: the real-time worker's own code (its sleeps, its engine loop) runs on a virtual clock."""

    def __init__(self, loop_clock: list[float]) -> None:
        super().__init__()
        self.clock = loop_clock

    def select(self, timeout=None):  # type: ignore[no-untyped-def]
        ready = super().select(0)
        if not ready and timeout:
            self.clock[0] += timeout
        return ready


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.clock = [0.0]
        super().__init__(_VirtualSelector(self.clock))

    def time(self) -> float:
        return self.clock[0]


def _words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def _messages(prompt: int, index: int) -> list[dict]:
    # Requests 0 and 2 send the same prompt, so the second finds the first's blocks cached.
    tag = "shared" if prompt == 100 and index in (0, 2) else f"r{index}-"
    return [{"role": "user", "content": _words(prompt - 5, tag)}]


def real_time_finishes() -> list[float]:
    """Each request's finish (the reply's arrival), with its own arrival time subtracted, from the real-time
    worker (serve/sim/server.py) run on a virtual clock."""
    app = create_app(SimWorkerConfig(served_model_name="m", host="127.0.0.1", port=1, engine=CONFIG))
    loop = _VirtualLoop()

    async def main_() -> list[float]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://w") as client:
            async def one(index: int, at: float, prompt: int, max_tokens: int) -> float:
                await asyncio.sleep(at)
                response = await client.post("/v1/chat/completions", json={
                    "model": "m", "messages": _messages(prompt, index), "max_tokens": max_tokens})
                assert response.status_code == 200, response.text
                assert response.json()["usage"]["completion_tokens"] == max_tokens
                return loop.time() - at

            return list(await asyncio.gather(*(one(i, *a) for i, a in enumerate(ARRIVALS))))

    try:
        return loop.run_until_complete(main_())
    finally:
        loop.close()


def virtual_finishes() -> list[float]:
    cluster = Cluster({"w": (CONFIG, None)})
    requests = []
    for index, (at, prompt, max_tokens) in enumerate(ARRIVALS):
        words = prompt_words(_messages(prompt, index), None)
        request = VirtualRequest(request_id=str(index), worker="w", arrival_s=at, prompt_tokens=len(words),
                                 max_tokens=max_tokens, prompt_hashes=tuple(block_hashes(words, 16)))
        requests.append(request)
        cluster.at(at, lambda r=request: cluster.add(r))
    cluster.run()
    assert all(r.output_tokens == a[2] and len(r.token_times) == a[2] for r, a in zip(requests, ARRIVALS, strict=True))
    return [r.finish_s - r.arrival_s for r in requests]


def test_the_virtual_time_engine_and_the_real_time_worker_give_the_same_per_request_timings() -> None:
    real, virtual = real_time_finishes(), virtual_finishes()
    assert virtual == pytest.approx(real, abs=1e-9)
    assert len({round(v, 6) for v in virtual}) == len(ARRIVALS)  # the list exercises distinct timelines


def test_a_prompt_is_counted_as_the_simulated_worker_counts_the_npcs_messages() -> None:
    for mix_name in ("npc-gpu", "npc-cpu", "harness-streamed"):
        mix = load_mix(mix_name)
        for cls in mix.classes.values():
            if KINDS[cls.kind].keeps_history:
                cls = cls.model_copy(update={"turns": 2})
            for faction in (0, 1):
                drawn = cls.prompt_tokens.sample(random.Random(faction))
                words = [prompt_words(NPC(f"npc-{n}", random.Random(n), faction=faction).messages(cls, drawn),
                                      NPC_TOOLS if cls.tools else None) for n in (faction, faction + 4)]
                prompt = first_prompt(cls, f"npc-{faction}", faction, drawn)
                assert prompt.tokens == len(words[0]), (mix_name, cls.name)
                hashes = [block_hashes(w, 16) for w in words]
                shared = next((i for i, (a, b) in enumerate(zip(*hashes, strict=False)) if a != b), len(hashes[0]))
                assert shared == prompt.common // 16, (mix_name, cls.name)


def test_session_affinity_pins_an_npc_least_busy_takes_the_emptiest_and_unknown_strategies_are_refused() -> None:
    groups = {"light": ["a", "b", "c"]}
    busy = {"a": 2, "b": 0, "c": 1}
    sticky = Router("session-affinity", groups, 0, busy.__getitem__)
    assert len({sticky.pick("light", "npc-1") for _ in range(20)}) == 1
    assert len({sticky.pick("light", f"npc-{n}") for n in range(40)}) == 3
    assert Router("least-busy", groups, 0, busy.__getitem__).pick("light", "x") == "b"
    with pytest.raises(Exception, match="not modelled"):
        Router("latency-based-routing", groups, 0, busy.__getitem__)


def test_a_closed_loop_npc_sends_its_next_request_only_after_its_reply(tmp_path: Path) -> None:
    mix = tmp_path / "closed.toml"
    mix.write_text('scale = "cpu"\nweights = { ambient = 1, dialogue = 1 }\n'
                   'shape = { kind = "closed", users = 6, think_time_s = 0.2, duration_s = 20 }\n')
    sim = simulate(load_profile("cpu-sim"), str(mix), seed=3)
    by_npc: dict[str, list] = {}
    for record in sim.records:
        by_npc.setdefault(record.npc_id, []).append(record)
    assert len(by_npc) == 6
    for records in by_npc.values():
        for before, after in zip(records, records[1:], strict=False):
            assert after.t_start >= before.t_start + before.e2e_s - 1e-6


def test_workers_of_one_device_share_it_and_others_do_not() -> None:
    def finishes(devices: tuple[str | None, str | None]) -> list[float]:
        cluster = Cluster({"a": (CONFIG, devices[0]), "b": (CONFIG, devices[1])})
        requests = [VirtualRequest(request_id=w, worker=w, arrival_s=0.0, prompt_tokens=40, max_tokens=3)
                    for w in ("a", "b")]
        for request in requests:
            cluster.add(request)
        cluster.run()
        return [r.finish_s - r.arrival_s - LATENCY.request_overhead_ms / 1000 for r in requests]

    alone = finishes((None, None))
    assert alone[0] == pytest.approx(alone[1])
    assert finishes(("gpu0", "gpu0")) == pytest.approx([2 * t for t in alone])
    assert finishes(("gpu0", "gpu1")) == pytest.approx(alone)


def test_a_simulated_run_folder_is_complete_and_reads_in_show_and_compare(tmp_path: Path, capsys, monkeypatch) -> None:
    from bench.report import stats

    monkeypatch.setattr(stats, "BOOTSTRAP_RESAMPLES", 20)  # reading the folders is the point, not the intervals
    # gpu-sim: its fit check estimates the prompts (cpu-sim's loads a tokenizer, seconds of a unit test)
    flags = ["--profile", "gpu-sim", "--mix", "npc-gpu", "--duration-s", "30", "--npcs", "8", "--rate-rps", "1",
             "--results-dir", str(tmp_path)]
    code = main(["simulate", *flags, "--run-id", "virtual"])
    assert code == 0
    run_dir = tmp_path / "virtual-sim"
    manifest = read_manifest(run_dir)
    assert (manifest.simulated, manifest.engine, manifest.status) == (True, "virtual-time", "complete")
    assert any(note.startswith("SIMULATED") for note in manifest.notes)
    requests = read_requests(run_dir)
    assert manifest.summary is not None and len(requests) == manifest.summary.all.requests > 0
    assert set(requests.worker) <= {w.name for w in manifest.stack.workers}
    assert manifest.summary.server is not None
    assert manifest.summary.server.generation_tokens_total >= requests.output_tokens.sum()
    streamed = requests[requests.cls.isin(["dialogue", "interrupted"])]
    assert streamed.ttft_s.notna().all() and (streamed.e2e_s >= streamed.ttft_s).all()
    assert (requests[requests.cls == "interrupted"].outcome == "interrupted").all()
    capsys.readouterr()
    assert main(["show", str(run_dir)]) == 0
    assert "virtual-sim" in capsys.readouterr().out
    assert main(["simulate", *flags, "--run-id", "other-seed", "--seed", "7"]) == 0
    assert main(["compare", str(run_dir), str(tmp_path / "other-seed-sim")]) == 0
    assert main(["simulate", "--profile", "cpu", "--results-dir", str(tmp_path)]) == 2  # real workers: refused
    assert json.loads((run_dir / "manifest.json").read_text())["simulated"] is True


def test_a_trace_mix_replays_the_recorded_arrivals_and_lengths() -> None:
    mix = load_mix("trace-sample")
    sim = simulate(load_profile("cpu-sim"), mix)
    events = mix.mix.shape.events()  # type: ignore[union-attr]
    t0 = sim.records[0].t_start - events[0].t_s
    got = sorted((round(r.t_start - t0, 4), r.npc_id, r.cls, r.prompt_tokens_drawn, r.max_tokens) for r in sim.records)
    assert got == sorted((round(e.t_s, 4), e.npc_id, e.cls, e.prompt_tokens, e.output_tokens) for e in events)


def test_a_tick_mix_is_refused_with_a_clear_error() -> None:
    with pytest.raises(Exception, match="not simulated in virtual time"):
        simulate(load_profile("cpu-sim"), "ambient-10hz", duration_s=2)
