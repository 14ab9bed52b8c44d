"""A simulated worker's step-time coefficients (serve/spec.py's SimLatency), derived from a catalog GPU, a catalog
model and a quantization: roofline quantities divided by the GPU's datasheet peaks times efficiency factors fitted
to public kernel measurements (serve/sim/fit.py -> serve/sim/step_fit.json), plus the per-step and per-request
CPU costs fitted to public serving runs. Every figure says where it came from (`Derivation.provenance`).

For a step of P prefill tokens (with A attention pairs) and D decoding sequences reading K KV tokens:

    step_overhead_ms         = weight bytes / (bandwidth x weight_bw_eff) + layers x attention fixed + sampler fixed
    prefill_ms_per_token     = GEMM FLOPs a token / (tensor peak x gemm_eff) + layers x attention per token
    prefill_ms_per_token_pair = attention FLOPs a pair / (BF16 peak x attn_eff)
    decode_ms_per_seq        = (GEMM + lm_head FLOPs a token) / (tensor peak x gemm_eff)
                               + layers x attention per sequence + sampler per sequence
    decode_ms_per_kv_token   = KV bytes a token / (bandwidth x kv_bw_eff)

each divided by the GPU's engine efficiency (a whole vLLM step against its kernels, fitted on real vLLM step or
serving times), the step overhead plus the serving fit's per-step CPU cost, and

    request_overhead_ms      = the serving fit's per-request cost (API server, tokenizing, streaming)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from serve.sim.catalog import BYTES_PER_WEIGHT, Quantization, gpu_spec, model_spec

STEP_FIT = Path(__file__).with_name("step_fit.json")
KvCacheDtype = Literal["auto", "fp8"]


@cache
def step_fit() -> dict[str, Any]:
    return json.loads(STEP_FIT.read_text())


@dataclass
class Derivation:
    """The coefficients, in SimLatency's names, and where each part of them comes from."""

    coefficients: dict[str, float]
    terms: dict[str, float]  # the roofline quantities and factors the coefficients are made of
    provenance: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.provenance["summary"]


def derive(gpu_name: str, model_name: str, quantization: Quantization, kv_cache_dtype: KvCacheDtype = "auto",
           fit: dict[str, Any] | None = None) -> Derivation:
    fit = fit if fit is not None else step_fit()
    gpu, model = gpu_spec(gpu_name), model_spec(model_name)
    if quantization not in model.quantizations:
        raise ValueError(f"{model_name} is not catalogued in {quantization}; it has {', '.join(model.quantizations)}")
    if gpu_name not in fit["gpus"]:
        raise ValueError(f"no fitted factors for {gpu_name} in serve/sim/step_fit.json; run `python -m serve.sim.fit`")
    f = fit["gpus"][gpu_name]["factors"]
    serving = fit.get("serving") or {}
    engine = (serving.get("engine_eff") or {}).get(gpu_name) or {"value": 1.0, "source": "NOT FITTED"}
    bw = gpu.memory_bandwidth_gbps * 1e6  # bytes per ms
    peak = gpu.tensor_tflops(quantization) * 1e9  # FLOPs per ms
    bf16 = gpu.bf16_dense_tflops * 1e9
    weight_eff = f["weight_bw_eff"] * (fit["awq_vs_bf16_weight_bw"] if quantization == "awq" else 1.0)
    kv_bytes = model.kv_bytes_per_token(1 if kv_cache_dtype == "fp8" else 2)
    terms = {
        "weight_bytes": model.weight_bytes(quantization), "bytes_per_weight": BYTES_PER_WEIGHT[quantization],
        "flops_per_token": model.flops_per_token, "lm_head_flops": model.lm_head_flops,
        "attention_flops_per_pair": model.attention_flops_per_pair, "kv_bytes_per_token": kv_bytes,
        "bandwidth_bytes_per_ms": bw, "tensor_flops_per_ms": peak, "bf16_flops_per_ms": bf16,
        "weight_eff": weight_eff, **f, "engine_eff": engine["value"],
        "cpu_step_ms": serving.get("cpu_step_ms", 0.0), "request_overhead_ms": serving.get("request_overhead_ms", 0.0),
    }
    layers = model.layers
    gpu_ms = {
        "step_overhead_ms": (terms["weight_bytes"] / (bw * weight_eff)
                             + (layers * f["attn_fixed_us_per_layer"] + f["sampler_fixed_us"]) / 1000),
        "prefill_ms_per_token": (model.flops_per_token / (peak * f["gemm_eff"])
                                 + layers * max(f["attn_prefill_us_per_token_layer"], 0.0) / 1000),
        "prefill_ms_per_token_pair": model.attention_flops_per_pair / (bf16 * f["attn_eff"]),
        "decode_ms_per_seq": ((model.flops_per_token + model.lm_head_flops) / (peak * f["gemm_eff"])
                              + (layers * f["attn_decode_us_per_seq_layer"] + f["sampler_us_per_seq"]) / 1000),
        "decode_ms_per_kv_token": kv_bytes / (bw * f["kv_bw_eff"]),
    }
    # A whole vLLM step runs slower than its kernels back to back (launch gaps, synchronisation): the GPU's
    # engine efficiency, fitted on real vLLM step or serving times, scales every kernel term.
    coefficients = {k: v / engine["value"] for k, v in gpu_ms.items()}
    coefficients["step_overhead_ms"] += terms["cpu_step_ms"]
    coefficients["request_overhead_ms"] = terms["request_overhead_ms"]
    coefficients["output_lag_steps"] = serving.get("output_lag_steps", 0)
    provenance = dict(fit["gpus"][gpu_name]["provenance"])
    provenance["gpu"] = gpu.source
    provenance["model"] = model.source
    if quantization == "awq":
        provenance["awq"] = fit["awq_provenance"]
    provenance["serving"] = serving.get("source", "NOT FITTED: no per-step or per-request CPU cost")
    provenance["engine_eff"] = engine["source"]
    provenance["output_lag_steps"] = serving.get("output_lag_source", "not set: tokens released when their step ends")
    provenance["summary"] = (f"SIMULATED: derived for {model_name} ({quantization}, KV {kv_cache_dtype}) on {gpu_name} "
                             "from datasheet peaks x efficiencies fitted to public kernel measurements "
                             "(serve/sim/step_fit.json)")
    return Derivation(coefficients=coefficients, terms=terms, provenance=provenance)


def derived_latency_fields(gpu_name: str, model_name: str, quantization: Quantization,
                           kv_cache_dtype: KvCacheDtype = "auto") -> dict[str, Any]:
    """SimLatency's fields for a profile's `sim = { gpu = ..., model = ..., quantization = ... }`."""
    d = derive(gpu_name, model_name, quantization, kv_cache_dtype)
    return {"source": d.source, **d.coefficients}


def describe(latency: Any) -> list[str]:
    """What `python -m serve check` prints for a simulated worker's SimLatency: its coefficients, and for a derived
    one where each part comes from."""
    names = ["request_overhead_ms", "step_overhead_ms", "prefill_ms_per_token", "prefill_ms_per_token_pair",
             "decode_ms_per_seq", "decode_ms_per_kv_token", "output_lag_steps"]
    lines = ["  " + ", ".join(f"{n} {getattr(latency, n):.6g}" for n in names), f"  source: {latency.source}"]
    if latency.gpu is not None:
        d = derive(latency.gpu, latency.model, latency.quantization, latency.kv_cache_dtype)
        by_source: dict[str, list[str]] = {}
        for key, value in d.provenance.items():
            if key != "summary":
                by_source.setdefault(value, []).append(key)
        lines += [f"  {', '.join(keys)}: {value}" for value, keys in by_source.items()]
    return lines
