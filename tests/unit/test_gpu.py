"""The GPU preflight and memory plan, on made-up `nvidia-smi` output (pure logic: no GPU is needed)."""

from __future__ import annotations

import pandas as pd
import pytest

from serve import gpu
from serve.gpu import GIB, Gpu, GpuInventory, MemoryAssumptions
from serve.spec import GPU_PROFILES, SpecError, load_profile
from serve.supervisor import preflight

QUERY_OUTPUT = """0, NVIDIA L40S, 46068, 1, 580.65.06
1, NVIDIA L40S, 46068, 20480, 580.65.06
"""
HEADER = """+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.65.06              Driver Version: 580.65.06      CUDA Version: 13.0     |
+-----------------------------------------------------------------------------------------+"""


def machine(count: int, gib: float, cuda: str = "13.0", used_gib: float = 0.0) -> GpuInventory:
    gpus = [Gpu(index=i, name="NVIDIA TEST", memory_total_mib=int(gib * 1024), memory_used_mib=int(used_gib * 1024))
            for i in range(count)]
    return GpuInventory(driver_version="580.65.06", cuda_version=cuda, gpus=gpus)


def test_nvidia_smi_output_is_read() -> None:
    gpus, driver = gpu.parse_query(QUERY_OUTPUT)
    assert [g.index for g in gpus] == [0, 1] and driver == "580.65.06"
    assert gpus[0].memory_gib == pytest.approx(44.99, abs=0.01)  # a "48 GB" card is not 48 GiB
    assert gpus[1].memory_used_mib == 20480
    assert gpu.parse_cuda_version(HEADER) == "13.0"
    assert gpu.parse_cuda_version("no header here") is None


def test_kv_block_bytes_agree_with_vllms_own_kv_cache_spec() -> None:
    import torch
    from vllm.v1.kv_cache_interface import FullAttentionSpec

    spec = load_profile("gpu")
    for group_name, group in spec.groups.items():
        model = spec.models[group.model]
        layer = FullAttentionSpec(block_size=16, num_kv_heads=model.num_kv_heads, head_size=model.head_dim,
                                  dtype=torch.bfloat16)
        # vLLM: num_blocks = available // bytes_per_block, where a block is one page in every layer.
        assert layer.page_size_bytes * model.num_layers == 16 * spec.kv_bytes_per_token(group_name)


def test_memory_plan_follows_vllms_sizing_on_a_worked_example() -> None:
    spec = load_profile("gpu")
    heavy = spec.workers[0]
    assumptions = MemoryAssumptions(non_torch_gib=0.25, cuda_graph_gib=0.75)
    p = gpu.plan_worker(spec, heavy, 44.5, assumptions)
    # Activations: 8,192 batched tokens x (3 x 13,824 + 4 x 5,120) x 2 bytes, and 16 x 152,064 float32 logits twice.
    assert p.activations_gib == pytest.approx((8192 * 61_952 * 2 + 16 * 152_064 * 8) / GIB, abs=1e-3)
    kv_bytes = (44.5 * 0.55 - 9.4 - p.activations_gib - 0.25 - 0.75) * GIB
    assert p.kv_blocks == int(kv_bytes // (16 * 196_608))
    assert p.kv_tokens == p.kv_blocks * 16  # vLLM's "GPU KV cache size" counts the null block too
    assert p.full_sequences == pytest.approx((p.kv_blocks - 1) / 512)
    # Eager workers capture no CUDA graphs, so vLLM subtracts no estimate for them.
    eager = load_profile("gpu", ["groups.heavy.enforce_eager=true"])
    assert gpu.plan_worker(eager, eager.workers[0], 44.5, assumptions).cuda_graph_gib == 0


def test_the_null_block_is_not_a_usable_sequence() -> None:
    spec = load_profile("gpu", ["groups.heavy.max_model_len=16"])
    p = gpu.plan_worker(spec, spec.workers[0], 44.5)
    assert p.full_sequences == p.kv_blocks - 1


def test_reference_profile_fits_two_l40s_class_gpus() -> None:
    assert gpu.preflight_problems(load_profile("gpu"), machine(2, 44.5), GPU_PROFILES) == []
    assert gpu.size_warnings(load_profile("gpu"), machine(2, 44.5)) == []


def test_no_gpu_is_refused() -> None:
    assert gpu.preflight_problems(load_profile("gpu"), GpuInventory(), GPU_PROFILES) == [
        "profile gpu needs NVIDIA GPUs and none is visible (`nvidia-smi`); use `--profile cpu` on this machine"]


def test_a_cuda_12_driver_is_refused_before_any_worker_starts() -> None:
    problems = gpu.preflight_problems(load_profile("gpu"), machine(2, 44.5, cuda="12.8"), GPU_PROFILES)
    assert "supports CUDA 12.8, but vLLM 0.32's wheel is built for CUDA 13.0" in problems[0]
    assert len(problems) == 2 and problems[1].startswith("profiles that fit this machine: gpu-1gpu, gpu-24gb")


def test_one_gpu_is_refused_with_the_one_gpu_profile_suggested() -> None:
    problems = gpu.preflight_problems(load_profile("gpu"), machine(1, 44.5), GPU_PROFILES)
    assert "runs workers on GPUs [0, 1], but this machine has 1" in problems[0]
    assert problems[-1] == "profiles that fit this machine: gpu-1gpu (`--profile NAME`)"


def test_24_gb_cards_are_refused_where_one_sequence_does_not_fit() -> None:
    problems = gpu.preflight_problems(load_profile("gpu"), machine(2, 22.0), GPU_PROFILES)
    heavy = next(p for p in problems if p.startswith("worker heavy-0"))
    assert "one 8,192-token sequence needs 1.50 GiB" in heavy and "leaves 0.94 GiB of KV cache" in heavy
    assert problems[-1] == "profiles that fit this machine: gpu-24gb (`--profile NAME`)"
    assert gpu.preflight_problems(load_profile("gpu-24gb"), machine(2, 22.0), GPU_PROFILES) == []


def test_a_24_gib_card_starts_the_reference_profile_with_a_warning() -> None:
    # An RTX 4090 (24.0 GiB): the heavy worker keeps ~2 GiB of KV, one sequence and a bit: it starts, but is warned.
    spec = load_profile("gpu")
    assert gpu.fit_problems(spec, machine(2, 24.0)) == []
    assert "smaller than the 44.5 GiB profile gpu is sized for" in gpu.size_warnings(spec, machine(2, 24.0))[0]
    assert gpu.fitting_profiles(machine(2, 24.0), GPU_PROFILES) == ["gpu-24gb"]


def test_memory_already_in_use_and_too_little_headroom_are_refused() -> None:
    problems = gpu.fit_problems(load_profile("gpu"), machine(2, 44.5, used_gib=4.0))
    assert "of which 4.0 GiB is already in use" in problems[0] and "but 40.5 GiB is free" in problems[0]
    tight = load_profile("gpu", ["groups.heavy.gpu_memory_utilization=0.57"])  # 0.95 in all: 2.2 GiB for 2 contexts
    assert gpu.fit_problems(tight, machine(2, 44.5)) == []
    heavy_contexts = MemoryAssumptions(cuda_context_gib=1.5)  # 3.0 GiB for two, more than the 2.2 left
    assert "their CUDA contexts about 3.0 GiB more" in gpu.fit_problems(tight, machine(2, 44.5), heavy_contexts)[0]


def test_default_profile_is_the_first_that_fits(monkeypatch) -> None:
    from serve.spec import default_profile

    for gpus, expected in [(machine(0, 0), "cpu"), (machine(2, 44.5), "gpu"), (machine(1, 44.5), "gpu-1gpu"),
                           (machine(2, 22.0), "gpu-24gb"), (machine(1, 22.0), "gpu")]:
        monkeypatch.setattr("serve.gpu.inventory", lambda gpus=gpus: gpus)
        assert default_profile() == expected


def test_preflight_refuses_without_gpus_before_starting_anything(monkeypatch) -> None:
    monkeypatch.setattr("serve.gpu.inventory", lambda: GpuInventory())
    with pytest.raises(SpecError, match="needs NVIDIA GPUs and none is visible"):
        preflight(load_profile("gpu"))


def test_variants_state_only_what_differs() -> None:
    base, one, small = load_profile("gpu"), load_profile("gpu-1gpu"), load_profile("gpu-24gb")
    assert one.models == base.models and one.groups == base.groups and one.proxy == base.proxy
    assert [(w.name, w.gpu) for w in one.workers] == [("heavy-0", 0), ("light-0", 0)]
    assert small.groups["heavy"].gpu_memory_utilization == 0.9 and small.groups["heavy"].model == base.groups["heavy"].model
    assert small.sized_for_gpu_gib == 22.0 and one.sized_for_gpu_gib == base.sized_for_gpu_gib == 44.5


def test_an_extends_loop_is_refused(tmp_path) -> None:
    (tmp_path / "a.toml").write_text(f'extends = "{tmp_path / "b.toml"}"\n')
    (tmp_path / "b.toml").write_text(f'extends = "{tmp_path / "a.toml"}"\n')
    with pytest.raises(SpecError, match="`extends` loops"):
        load_profile(str(tmp_path / "a.toml"))


def test_a_gpu_runs_kv_prediction_is_compared_with_what_vllm_reported() -> None:
    from pathlib import Path

    from bench.report.analysis import kv_prediction_vs_vllm
    from bench.rundir import parse_startup, read_manifest

    sample = read_manifest(next(Path("results/sweep-cpu-sample").glob("*/manifest.json")).parent)
    spec = load_profile("gpu")
    planned = gpu.plan_worker(spec, spec.workers[0], 44.99)  # an L40S as nvidia-smi reports it: 46,068 MiB
    blocks = planned.kv_blocks - 50  # say vLLM measured a little more activation memory than planned
    reported = {w.name: {"num_gpu_blocks": str(blocks), "block_size": "16", "kv_cache_size_tokens": str(blocks * 16)}
                for w in spec.workers}
    log = ("INFO [gpu_model_runner.py:5150] Model loading took 9.31 GiB memory and 21.5 seconds\n"
           "INFO [gpu_model_runner.py:6475] Estimated CUDA graph memory: 0.62 GiB total\n"
           "INFO [gpu_worker.py:760] Available KV cache memory: 13.05 GiB\n"
           f"INFO [kv_cache_utils.py:2327] GPU KV cache size: {blocks * 16:,} tokens, Maximum concurrency for "
           "8,192 tokens per request: 8.79x\n")
    run = sample.model_copy(update={
        "stack": spec, "kv_cache": reported, "startup": {"heavy-0": parse_startup(log)},
        "machine": sample.machine.model_copy(update={"gpus": gpu.parse_query(QUERY_OUTPUT)[0]})})
    table = kv_prediction_vs_vllm(run).set_index("worker")
    assert list(table.index) == ["heavy-0", "light-0", "heavy-1", "light-1"]
    heavy = table.loc["heavy-0"]
    assert heavy.predicted_tokens == planned.kv_tokens and heavy.vllm_tokens == blocks * 16
    assert heavy.error_pct == round(100 * 50 / blocks, 3)
    assert (heavy.logged_weights_gib, heavy.logged_kv_gib, heavy.logged_cuda_graph_gib) == (9.31, 13.05, 0.62)
    assert heavy.gpu == "GPU 0 (NVIDIA L40S, 45.0 GiB)"
    assert table.loc["heavy-1"].logged_kv_gib is None or pd.isna(table.loc["heavy-1"].logged_kv_gib)
