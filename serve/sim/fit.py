"""Fit the step-time model's efficiency factors to public kernel-level GPU measurements, and write them with
their sources and residuals to serve/sim/step_fit.json.

    python -m serve.sim.fit            # kernel factors, then the serving overheads (needs serve/sim/virtual.py)

Kernel fits (each in the functional form serve/sim/steptime.py uses, so a factor means what the model does with it):
- LLMServingSim per-layer vLLM profiles (RTX 4090, RTX PRO 6000; Llama-3.1-8B, BF16, eager):
  dense layer time = weight bytes / (bandwidth x weight_bw_eff) + tokens x GEMM FLOPs / (peak x gemm_eff);
  decode attention = fixed + seqs x per-seq + KV tokens x KV bytes / (bandwidth x kv_bw_eff);
  prefill attention = fixed + tokens x per-token + pairs x attention FLOPs / (peak x attn_eff);
  lm_head and sampler against sequences.
- Vidur mlp.csv (A100, H100, A40; Llama-2-7b, Llama-3-8B on A100; FP16): the dense layer only.
- Qwen2.5 speed benchmark (A100, vLLM, batch 1): KV read efficiency from decode speed against context length,
  and AWQ's weight-read efficiency relative to BF16.
A GPU without a measurement of a factor takes it from a GPU of the same die or architecture, or the median of the
measured ones; `provenance` says which, for every factor.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serve.sim.catalog import GpuSpec, ModelShape, gpu_spec, model_spec
from serve.sim.gpu_data import require_gpu_data

STEP_FIT = Path(__file__).with_name("step_fit.json")
MAX_TOKENS = 2048  # the step budgets the fits cover (vLLM's default max_num_batched_tokens on these GPUs)
KERNEL_FACTORS = ["weight_bw_eff", "gemm_eff", "attn_eff", "kv_bw_eff", "attn_fixed_us_per_layer",
                  "attn_decode_us_per_seq_layer", "attn_prefill_us_per_token_layer", "sampler_fixed_us",
                  "sampler_us_per_seq"]
LLMSERVINGSIM = {"RTX 4090": "RTX4090", "RTX PRO 6000": "RTXPRO6000"}
VIDUR = {"A100-80GB": "a100", "H100-SXM": "h100", "A40": "a40"}
# A GPU with no kernel data of its own takes its factors from a GPU of the same die (L40S and RTX 4090 are both
# AD102; A10 and A40 both GA102) or, failing that, of the same architecture (L4 is AD104, Ada).
DONOR = {"L40S": ("RTX 4090", "same AD102 die"), "A10": ("A40", "same GA102 die"),
         "L4": ("RTX 4090", "same Ada architecture")}


def relative_lstsq(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Least squares of y ~ x @ c on relative errors (each row divided by y), so that small and large batches count
    alike; returns the coefficients and the mean absolute relative error of the fit."""
    w = 1.0 / y
    coef, *_ = np.linalg.lstsq(x * w[:, None], np.ones_like(y), rcond=None)
    return coef, float(np.mean(np.abs(x @ coef / y - 1)))


def dense_fit(tokens: np.ndarray, layer_us: np.ndarray, model: ModelShape, gpu: GpuSpec) -> dict[str, Any]:
    """One decoder layer's non-attention time against batch tokens: weights read once plus GEMM FLOPs a token."""
    coef, mape = relative_lstsq(np.column_stack([np.ones_like(tokens), tokens]), layer_us)
    layer_bytes = model.layer_params * 2.0
    return {"weight_bw_eff": layer_bytes / (gpu.memory_bandwidth_gbps * 1e3 * coef[0]),
            "gemm_eff": 2.0 * model.layer_params / (gpu.bf16_dense_tflops * 1e6 * coef[1]),
            "dense_fit_mape": mape, "dense_points": len(tokens)}


def llmservingsim_fit(root: Path, gpu: GpuSpec) -> dict[str, Any]:
    model = model_spec("meta-llama/Llama-3.1-8B")
    folder = root / "llmservingsim-profiles" / LLMSERVINGSIM[gpu.name] / "meta-llama/Llama-3.1-8B/bf16/tp1"
    dense = pd.read_csv(folder / "dense.csv").pivot_table(index="tokens", columns="layer", values="time_us")
    dense = dense[dense.index <= MAX_TOKENS]
    # One decoder layer: its two RMSNorms (profiled once as `layernorm`), QKV, RoPE, O, gate/up, activation, down.
    layer = (2 * dense["layernorm"] + dense["qkv_proj"] + dense["rotary_emb"] + dense["o_proj"]
             + dense["gate_up_proj"] + dense["act_fn"] + dense["down_proj"])
    fit: dict[str, Any] = dense_fit(layer.index.to_numpy(float), layer.to_numpy(), model, gpu)

    attention = pd.read_csv(folder / "attention.csv")
    kv_layer_bytes = model.kv_bytes_per_token() / model.layers
    decode = attention[(attention.prefill_chunk == 0) & (attention.n_decode > 0)]
    n, kv = decode.n_decode.to_numpy(float), decode.kv_decode.to_numpy(float)
    coef_d, mape_d = relative_lstsq(np.column_stack([np.ones_like(n), n, n * kv]), decode.time_us.to_numpy())
    prefill = attention[(attention.n_decode == 0) & (attention.prefill_chunk > 0)]
    chunk, past = prefill.prefill_chunk.to_numpy(float), prefill.kv_prefill.to_numpy(float)
    pairs = chunk * (past + (chunk + 1) / 2)
    coef_p, mape_p = relative_lstsq(np.column_stack([np.ones_like(chunk), chunk, pairs]), prefill.time_us.to_numpy())
    # Mixed batches (a prefill chunk beside decodes) are held out of both fits: the additive model's test.
    mixed = attention[(attention.n_decode > 0) & (attention.prefill_chunk > 0)]
    mc, mp = mixed.prefill_chunk.to_numpy(float), mixed.kv_prefill.to_numpy(float)
    mn, mk = mixed.n_decode.to_numpy(float), mixed.kv_decode.to_numpy(float)
    mixed_pred = (max(coef_d[0], coef_p[0]) + mn * coef_d[1] + mn * mk * coef_d[2] + mc * coef_p[1]
                  + mc * (mp + (mc + 1) / 2) * coef_p[2])
    per_seq = pd.read_csv(folder / "per_sequence.csv").pivot_table(index="sequences", columns="layer",
                                                                    values="time_us")
    seqs = per_seq.index.to_numpy(float)
    coef_s, mape_s = relative_lstsq(np.column_stack([np.ones_like(seqs), seqs]), per_seq["sampler"].to_numpy())
    coef_h, mape_h = relative_lstsq(np.column_stack([np.ones_like(seqs), seqs]), per_seq["lm_head"].to_numpy())
    fit.update({
        "kv_bw_eff": kv_layer_bytes / (gpu.memory_bandwidth_gbps * 1e3 * coef_d[2]),
        "attn_eff": model.attention_flops_per_pair / model.layers / (gpu.bf16_dense_tflops * 1e6 * coef_p[2]),
        "attn_fixed_us_per_layer": float(max(coef_d[0], coef_p[0])),
        "attn_decode_us_per_seq_layer": float(coef_d[1]),
        "attn_prefill_us_per_token_layer": float(coef_p[1]),
        "sampler_fixed_us": float(coef_s[0]), "sampler_us_per_seq": float(coef_s[1]),
        "decode_attention_fit_mape": mape_d, "decode_attention_points": len(decode),
        "prefill_attention_fit_mape": mape_p, "prefill_attention_points": len(prefill),
        "mixed_attention_heldout_mape": float(np.mean(np.abs(mixed_pred / mixed.time_us.to_numpy() - 1))),
        "mixed_attention_points": len(mixed),
        "sampler_fit_mape": mape_s,
        "lm_head_weight_bw_eff": model.lm_head_params * 2.0 / (gpu.memory_bandwidth_gbps * 1e3 * coef_h[0]),
        "lm_head_gemm_eff": model.lm_head_flops / (gpu.bf16_dense_tflops * 1e6 * coef_h[1]),
        "lm_head_fit_mape": mape_h,
    })
    fit["source"] = (f"LLMServingSim profiler/perf/{LLMSERVINGSIM[gpu.name]}/meta-llama/Llama-3.1-8B/bf16/tp1 "
                     "(casys-kaist/LLMServingSim@5daddb21, MIT): dense.csv, attention.csv, per_sequence.csv")
    return fit


def vidur_fit(root: Path, gpu: GpuSpec) -> dict[str, Any]:
    ops = ["input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
           "mlp_up_proj", "mlp_act", "mlp_down_proj", "add"]
    runs = [("meta-llama/Llama-2-7b-hf", "Llama-2-7b-hf")]
    if gpu.name == "A100-80GB":
        runs.append(("meta-llama/Meta-Llama-3-8B", "Meta-Llama-3-8B"))
    effs: dict[str, list[float]] = {"weight_bw_eff": [], "gemm_eff": [], "dense_fit_mape": []}
    points = 0.0
    for model_name, folder in runs:
        mlp = pd.read_csv(root / "vidur" / VIDUR[gpu.name] / "meta-llama" / folder / "mlp.csv")
        mlp = mlp[(mlp.num_tensor_parallel_workers == 1) & (mlp.num_tokens <= MAX_TOKENS)].sort_values("num_tokens")
        layer_us = sum(mlp[f"time_stats.{op}.median"] for op in ops) * 1000.0  # vidur records ms
        # Two residual adds a layer; vidur profiles one `add`.
        layer_us = layer_us + mlp["time_stats.add.median"] * 1000.0
        fit = dense_fit(mlp.num_tokens.to_numpy(float), layer_us.to_numpy(), model_spec(model_name), gpu)
        for key in effs:
            effs[key].append(fit[key])
        points += fit["dense_points"]
    return {"weight_bw_eff": statistics.mean(effs["weight_bw_eff"]), "gemm_eff": statistics.mean(effs["gemm_eff"]),
            "dense_fit_mape": statistics.mean(effs["dense_fit_mape"]), "dense_points": points,
            "source": f"Vidur data/profiling/compute/{VIDUR[gpu.name]}/meta-llama/*/mlp.csv (microsoft/vidur@7d475133, "
                      f"MIT), TP 1, tokens <= {MAX_TOKENS}, models: {', '.join(m for m, _ in runs)}"}


def qwen_speed_fit(root: Path, a100: dict[str, Any]) -> dict[str, Any]:
    """Batch-1 decode on an A100 (vLLM 0.6.3, CUDA graphs): a step lasts 1/speed less the prefill spread over the
    2,048 outputs. BF16 at input 1 for two model sizes gives the weight-read efficiency and a fixed step cost;
    BF16 against context length gives the KV read efficiency; AWQ at input 1 its weight-read efficiency."""
    gpu = gpu_spec("A100-80GB")
    speed = pd.read_csv(root / "qwen-speed" / "qwen25_vllm_speed.csv")
    models = {"Qwen2.5-7B-Instruct": model_spec("Qwen/Qwen2.5-7B-Instruct"),
              "Qwen2.5-14B-Instruct": model_spec("Qwen/Qwen2.5-14B-Instruct")}
    bw = gpu.memory_bandwidth_gbps * 1e3  # bytes per microsecond

    def step_us(row: pd.Series) -> float:
        model = models[row.model]
        prefill_us = row.input_length * model.flops_per_token / (gpu.bf16_dense_tflops * 1e6 * a100["gemm_eff"])
        return 1e6 / row.tokens_per_s - prefill_us / 2048

    rows = speed[speed.model.isin(list(models))].copy()
    rows["step_us"] = rows.apply(step_us, axis=1)
    bf16_1 = rows[(rows.quantization == "BF16") & (rows.input_length == 1)]
    weights = np.array([models[m].weight_bytes("bf16") for m in bf16_1.model])
    coef, mape_w = relative_lstsq(np.column_stack([weights / bw, np.ones_like(weights)]), bf16_1.step_us.to_numpy())
    weight_eff, fixed_us = 1 / coef[0], coef[1]
    awq_1 = rows[(rows.quantization == "AWQ") & (rows.input_length == 1)]
    awq_eff = [models[r.model].weight_bytes("awq") / bw / (r.step_us - fixed_us) for r in awq_1.itertuples()]
    # Context up to 63,488 (the 129,024 rows used another vLLM and sampling config); mean KV over 2,048 outputs.
    long = rows[(rows.quantization == "BF16") & (rows.input_length <= 63488)]
    base = {m: float(bf16_1[bf16_1.model == m].step_us.iloc[0]) for m in models}
    kv_bytes = np.array([models[r.model].kv_bytes_per_token() * (r.input_length + 1024) for r in long.itertuples()])
    extra = np.array([r.step_us - base[r.model] for r in long.itertuples()])
    keep = long.input_length.to_numpy() > 1
    kv_time = kv_bytes[keep] / bw
    kv_eff = float(np.sum(kv_time * kv_time) / np.sum(kv_time * extra[keep]))  # least squares through 0
    return {"batch1_weight_bw_eff": float(weight_eff), "batch1_fixed_us": float(fixed_us),
            "batch1_weight_fit_mape": mape_w,
            "awq_weight_bw_eff": float(statistics.mean(awq_eff)),
            "awq_vs_bf16_weight_bw": float(statistics.mean(awq_eff) / weight_eff),
            "kv_bw_eff": kv_eff,
            "kv_fit_mape": float(np.mean(np.abs(kv_time / kv_eff / extra[keep] - 1))),
            "points": len(rows),
            "source": "Qwen2.5 speed benchmark, vLLM tables for 7B and 14B (QwenLM/Qwen2.5@2abc0f32 "
                      "docs/source/benchmark/speed_benchmark.rst), A100 80GB, batch 1, 2,048 outputs"}


def fit_kernels(root: Path) -> dict[str, Any]:
    measured: dict[str, dict[str, Any]] = {}
    for name in LLMSERVINGSIM:
        measured[name] = llmservingsim_fit(root, gpu_spec(name))
    for name in VIDUR:
        measured[name] = vidur_fit(root, gpu_spec(name))
    # Its batch-1 KV efficiency (one long sequence, split-KV decode) is a different regime from a serving step's
    # many sequences; it is recorded as a cross-check and not used for the A100.
    qwen = qwen_speed_fit(root, measured["A100-80GB"])

    full = list(LLMSERVINGSIM)
    gpus: dict[str, dict[str, Any]] = {}
    for name in ["RTX 4090", "RTX PRO 6000", "A100-80GB", "H100-SXM", "A40", "L40S", "L4", "A10"]:
        own = measured.get(name, {})
        donor, relation = DONOR.get(name, (None, ""))
        factors: dict[str, float] = {}
        provenance: dict[str, str] = {}
        for key in KERNEL_FACTORS:
            if key in own:
                factors[key] = float(own[key])
                provenance[key] = f"measured: {own['source']}"
            elif donor is not None and key in measured.get(donor, {}):
                factors[key] = float(measured[donor][key])
                provenance[key] = f"from {donor} ({relation}), {measured[donor]['source']}"
            elif donor is not None and key in gpus.get(donor, {}).get("factors", {}):
                factors[key] = gpus[donor]["factors"][key]
                provenance[key] = f"from {donor} ({relation}): {gpus[donor]['provenance'][key]}"
            else:
                factors[key] = statistics.median(float(measured[g][key]) for g in full)
                provenance[key] = f"ASSUMED: median of {' and '.join(full)} (no measurement on this GPU)"
        gpus[name] = {"factors": factors, "provenance": provenance,
                      "residuals": {k: v for k, v in own.items() if k.endswith(("mape", "points"))}}
    return {"gpus": gpus, "awq_vs_bf16_weight_bw": qwen["awq_vs_bf16_weight_bw"],
            "awq_provenance": f"measured on A100 only, applied to every GPU: {qwen['source']}",
            "qwen_speed": qwen,
            "unmeasured": ["FP8 (W8A8) GEMMs: gemm_eff of BF16 applied to the FP8 peak",
                           "AWQ GEMMs at large batches: gemm_eff of BF16 applied (AWQ dequantizes to BF16)",
                           "tensor parallelism: not modelled (no all-reduce data); derive refuses tp > 1",
                           "CUDA graphs: kernel profiles are eager; the serving fit's per-step cost absorbs the "
                           "difference"]}


def load_step_fit() -> dict[str, Any]:
    return json.loads(STEP_FIT.read_text())


def write_step_fit(data: dict[str, Any]) -> None:
    STEP_FIT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def main() -> None:
    root = require_gpu_data()
    data = fit_kernels(root)
    old = load_step_fit() if STEP_FIT.exists() else {}
    data["serving"] = old.get("serving")  # kept until the serving fit below replaces it
    write_step_fit(data)
    from serve.sim.validate import fit_serving  # the serving overheads need the kernel factors above
    data["serving"] = fit_serving(root)
    write_step_fit(data)
    print(json.dumps({g: v["factors"] for g, v in data["gpus"].items()}, indent=1))
    print(json.dumps(data["serving"], indent=1))


if __name__ == "__main__":
    main()
