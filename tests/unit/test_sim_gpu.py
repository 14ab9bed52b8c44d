"""The GPU catalog, the step-time model derived from it, the virtual-time engine loop, and the validation's error
on a small held-out subset against its committed band (serve/sim/: catalog, steptime, virtual, validate)."""

from __future__ import annotations

import json
import os

import pytest

from serve.paths import REPO_ROOT
from serve.sim.catalog import catalog, gpu_spec, model_spec
from serve.sim.engine import EngineConfig
from serve.sim.gpu_data import gpu_data_dir
from serve.sim.steptime import derive
from serve.sim.virtual import Arrival, run
from serve.spec import SimLatency


def test_every_catalog_entry_validates_and_the_shapes_give_the_cards_parameter_count() -> None:
    cat = catalog()
    assert {"A40", "L40S", "RTX 4090", "A100-80GB", "H100-SXM", "RTX PRO 6000"} <= set(cat.gpus)
    assert {"Qwen/Qwen2.5-14B-Instruct-AWQ", "Qwen/Qwen3-8B-AWQ", "meta-llama/Llama-3.1-8B-Instruct",
            "meta-llama/Llama-2-7b-hf", "Qwen/Qwen3-14B"} <= set(cat.models)
    assert any(g.memory_gb == 24 for g in cat.gpus.values())
    for model in cat.models.values():
        assert model.params / 1e9 == pytest.approx(model.params_b, rel=0.02), model.name


def test_unknown_names_say_what_the_catalog_has() -> None:
    with pytest.raises(KeyError, match="L40S"):
        gpu_spec("L40")
    with pytest.raises(ValueError, match="catalog"):
        SimLatency(gpu="L40S", model="Qwen/Qwen9-1B", quantization="bf16")


FIT = {
    "gpus": {"L40S": {"factors": {"weight_bw_eff": 0.8, "gemm_eff": 0.5, "attn_eff": 0.4, "kv_bw_eff": 0.9,
                                  "attn_fixed_us_per_layer": 10.0, "attn_decode_us_per_seq_layer": 0.2,
                                  "attn_prefill_us_per_token_layer": 0.01, "sampler_fixed_us": 20.0,
                                  "sampler_us_per_seq": 0.5},
                      "provenance": {}}},
    "awq_vs_bf16_weight_bw": 0.5, "awq_provenance": "test",
    "serving": {"engine_eff": {"L40S": {"value": 0.8, "source": "test"}}, "cpu_step_ms": 1.0,
                "request_overhead_ms": 6.0, "output_lag_steps": 1},
}


def test_derived_coefficients_equal_the_hand_worked_values_for_qwen3_14b_on_an_l40s() -> None:
    # Qwen3-14B (config.json): 40 layers, hidden 5120, 40 heads, 8 KV heads, head_dim 128, intermediate 17408,
    # vocab 151936. L40S (datasheet): 864 GB/s, 362.05 TFLOPS BF16 dense.
    layer = 5120 * 128 * (2 * 40 + 2 * 8) + 3 * 5120 * 17408  # 330,301,440 GEMM weights a layer
    lm_head = 151936 * 5120
    bw_ms, flops_ms = 864e6, 362.05e9  # bytes and FLOPs per millisecond
    step = ((40 * layer + lm_head) * 2 / (bw_ms * 0.8) + (40 * 10 + 20) / 1000) / 0.8 + 1.0
    prefill = (2 * 40 * layer / (flops_ms * 0.5) + 40 * 0.01 / 1000) / 0.8
    pair = 4 * 40 * 40 * 128 / (flops_ms * 0.4) / 0.8
    decode = ((2 * 40 * layer + 2 * lm_head) / (flops_ms * 0.5) + (40 * 0.2 + 0.5) / 1000) / 0.8
    kv = 2 * 40 * 8 * 128 * 2 / (bw_ms * 0.9) / 0.8
    got = derive("L40S", "Qwen/Qwen3-14B", "bf16", fit=FIT).coefficients
    assert got == pytest.approx({"step_overhead_ms": step, "prefill_ms_per_token": prefill,
                                 "prefill_ms_per_token_pair": pair, "decode_ms_per_seq": decode,
                                 "decode_ms_per_kv_token": kv, "request_overhead_ms": 6.0, "output_lag_steps": 1},
                                rel=1e-9)
    assert step == pytest.approx(52.1253, abs=1e-3)  # (27.98 GB at 691.2 GB/s = 40.48 ms, + 0.42) / 0.8 + 1


def test_awq_reads_a_quarter_of_the_weight_bytes_at_its_own_efficiency() -> None:
    bf16 = derive("L40S", "Qwen/Qwen3-14B", "bf16", fit=FIT)
    awq = derive("L40S", "Qwen/Qwen3-14B", "awq", fit=FIT)
    layers = 40 * (5120 * 128 * 96 + 3 * 5120 * 17408)
    assert awq.terms["weight_bytes"] == pytest.approx(layers * (0.5 + 2.5 / 128) + 151936 * 5120 * 2)
    assert awq.terms["weight_eff"] == pytest.approx(0.8 * 0.5)
    assert awq.coefficients["step_overhead_ms"] < bf16.coefficients["step_overhead_ms"]


def test_a_profile_sim_given_by_gpu_model_and_quantization_is_derived_and_explicit_terms_win() -> None:
    derived = SimLatency(gpu="L40S", model="Qwen/Qwen2.5-14B-Instruct-AWQ", quantization="awq")
    expected = derive("L40S", "Qwen/Qwen2.5-14B-Instruct-AWQ", "awq").coefficients
    assert derived.step_overhead_ms == pytest.approx(expected["step_overhead_ms"])
    assert "SIMULATED" in derived.source
    pinned = SimLatency(gpu="L40S", model="Qwen/Qwen2.5-14B-Instruct-AWQ", quantization="awq", step_overhead_ms=30.0)
    assert pinned.step_overhead_ms == 30.0
    assert pinned.decode_ms_per_seq == pytest.approx(expected["decode_ms_per_seq"])
    with pytest.raises(ValueError, match="quantization"):
        SimLatency(gpu="L40S", model="Qwen/Qwen3-14B")


def _config(lag: int, overhead_ms: float = 0.0) -> EngineConfig:
    latency = SimLatency(source="test", request_overhead_ms=overhead_ms, step_overhead_ms=10.0,
                         prefill_ms_per_token=0.1, decode_ms_per_seq=1.0, output_lag_steps=lag)
    return EngineConfig(max_model_len=4096, max_num_seqs=8, max_num_batched_tokens=2048, block_size=16,
                        num_blocks=100, enable_prefix_caching=False, scheduling_policy="fcfs", latency=latency)


def test_virtual_time_gives_the_hand_worked_timeline_of_one_request() -> None:
    # Prefill of 100 tokens: 10 + 10 = 20 ms, first token; two decode steps of 10 + 1 ms each: 31, 42 ms.
    [t] = run(_config(lag=0), [Arrival("a", 1.0, prompt_tokens=100, max_tokens=3)])
    assert (t.ttft_s, t.e2e_s, t.output_tokens) == (pytest.approx(0.020), pytest.approx(0.042), 3)
    # Released one step late: the first token when the second step ends; the last one when the engine idles.
    [t] = run(_config(lag=1), [Arrival("a", 1.0, prompt_tokens=100, max_tokens=3)])
    assert (t.ttft_s, t.e2e_s) == (pytest.approx(0.031), pytest.approx(0.042))
    [t] = run(_config(lag=0, overhead_ms=5.0), [Arrival("a", 1.0, prompt_tokens=100, max_tokens=3)])
    assert t.ttft_s == pytest.approx(0.025)


def test_a_request_arriving_mid_step_waits_for_the_next_step() -> None:
    timings = run(_config(lag=0), [Arrival("a", 0.0, prompt_tokens=100, max_tokens=3),
                                   Arrival("b", 0.005, prompt_tokens=100, max_tokens=2)])
    # b arrives during a's 20 ms prefill; the next step decodes a and prefills b: 10 + 10 + 1 = 21 ms.
    assert timings[1].first_token_s == pytest.approx(0.041)
    assert timings[0].finish_s > timings[0].first_token_s


RESULTS = REPO_ROOT / "results" / "sim-validation"


def test_the_validation_subset_stays_in_its_committed_band() -> None:
    if not (gpu_data_dir() / "README.md").exists():
        message = f"the public GPU data is not at {gpu_data_dir()} (set NPCBENCH_GPU_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from serve.sim.validate import MANIFEST, subset_mdape, subset_table

    band = json.loads((RESULTS / MANIFEST).read_text())["ci_subset"]
    table = subset_table(gpu_data_dir())
    assert set(table.run) == set(band["runs"])
    assert len(set(table.gpu)) == 3
    assert abs(subset_mdape(table) - band["mdape_pct"]) <= band["tolerance_pct"], table.to_string()


def test_model_spec_kv_bytes_match_the_gpu_profiles_arithmetic() -> None:
    assert model_spec("Qwen/Qwen2.5-14B-Instruct-AWQ").kv_bytes_per_token() == 196608  # the gpu profile's figure
    assert model_spec("Qwen/Qwen3-8B-AWQ").kv_bytes_per_token() == 147456


@pytest.mark.parametrize(("profile", "gpu"), [("gpu-sim", "L40S"), ("gpu-sim-a40", "A40")])
def test_gpu_sim_profiles_derive_each_workers_step_times_for_their_gpu_and_keep_the_memory_plan(
        profile: str, gpu: str) -> None:
    from serve.gpu import plan_worker
    from serve.render import sim_config
    from serve.spec import load_profile

    spec, real = load_profile(profile), load_profile("gpu")
    for worker in spec.workers:
        latency = spec.groups[worker.group].sim
        model = spec.model_of(worker).hf_id
        assert latency is not None and (latency.gpu, latency.model, latency.quantization) == (gpu, model, "awq")
        assert latency.step_overhead_ms == pytest.approx(derive(gpu, model, "awq").coefficients["step_overhead_ms"])
        assert sim_config(spec, worker).engine.num_blocks == plan_worker(real, worker, 44.5).kv_blocks


def test_the_accuracy_page_names_the_run_nearest_its_kv_capacity_as_the_worst_ttft() -> None:
    import pandas as pd

    from bench.report.pages.simulator_accuracy import _kv

    rows = pd.read_csv(RESULTS / "validation.csv")
    kv, finding = _kv(RESULTS, rows)
    assert kv is not None
    nearest = kv.sort_values("demand_share").iloc[-1]
    ttft = rows[(rows.split == "held-out") & (rows.metric == "ttft_mean")]
    assert ttft.loc[ttft.error_pct.abs().idxmax()].run == nearest.run
    assert f"{nearest.run} on the {nearest.gpu}" in finding and f"{nearest.demand_share:.0%}" in finding
    assert kv[kv.run != nearest.run].demand_share.max() < 0.5 <= nearest.demand_share  # only it was replayed again
    assert kv[kv.run != nearest.run].binding_share.isna().all() and nearest.binding_blocks < nearest.planned_blocks
