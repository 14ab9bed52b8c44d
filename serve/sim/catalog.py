"""The GPUs and models a simulated worker can be derived from (serve/sim/catalog.toml), as typed data with a
source per entry, and the roofline quantities of a model: parameters, weight bytes a step reads, FLOPs a token
costs, KV bytes a token holds.

    >>> gpu, model = gpu_spec("L40S"), model_spec("Qwen/Qwen3-14B")
    >>> model.weight_bytes("bf16") / 1e9  # doctest: +SKIP
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CATALOG = Path(__file__).with_name("catalog.toml")

Quantization = Literal["bf16", "fp8", "awq"]
# Bytes a weight takes in memory. AWQ: 4-bit weights plus, per group of 128, a BF16 scale and a 4-bit zero point
# (AutoAWQ's GEMM layout, `group_size` 128 in the models' quantization_config). FP8 (W8A8): one byte, per-channel
# scales negligible. The embedding and lm_head stay BF16 under both, as vLLM loads them.
BYTES_PER_WEIGHT: dict[Quantization, float] = {"bf16": 2.0, "fp8": 1.0, "awq": 0.5 + (2 + 0.5) / 128}


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str = Field(min_length=10, description="the datasheet or config.json the figures come from")


class GpuSpec(_Entry):
    name: str
    architecture: Literal["ampere", "ada", "hopper", "blackwell"]
    memory_gb: float = Field(gt=0)
    memory_bandwidth_gbps: float = Field(gt=0)
    bf16_dense_tflops: float = Field(gt=0)
    fp8_dense_tflops: float = Field(ge=0, description="0: no FP8 tensor cores")
    int8_dense_tops: float = Field(gt=0)
    sm_count: int = Field(gt=0)

    def tensor_tflops(self, quantization: Quantization) -> float:
        """The GEMM peak a quantization runs at: FP8 where the GPU has FP8 tensor cores; AWQ dequantizes to BF16."""
        if quantization == "fp8" and self.fp8_dense_tflops > 0:
            return self.fp8_dense_tflops
        return self.bf16_dense_tflops


class ModelShape(_Entry):
    name: str
    layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    intermediate: int = Field(gt=0)
    vocab: int = Field(gt=0)
    tied_embeddings: bool
    params_b: float = Field(gt=0, description="the model card's parameter count, billions")
    quantizations: list[Quantization] = Field(min_length=1)

    @property
    def layer_params(self) -> int:
        """Weights of one decoder layer's GEMMs: q, k, v, o and the gated MLP's gate, up, down."""
        attention = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        return attention + 3 * self.hidden * self.intermediate

    @property
    def lm_head_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        """All parameters, counted from the shapes (norms left out): checked against the card's `params_b`."""
        embeddings = self.lm_head_params * (1 if self.tied_embeddings else 2)
        return self.layers * self.layer_params + embeddings

    def weight_bytes(self, quantization: Quantization) -> float:
        """Bytes one engine step reads: every layer's weights once, and the BF16 lm_head (the embedding is
        gathered, a few rows a step)."""
        return self.layers * self.layer_params * BYTES_PER_WEIGHT[quantization] + self.lm_head_params * 2

    @property
    def flops_per_token(self) -> float:
        """GEMM FLOPs of one token through the decoder layers (2 per multiply-add), without the lm_head."""
        return 2.0 * self.layers * self.layer_params

    @property
    def lm_head_flops(self) -> float:
        return 2.0 * self.lm_head_params

    @property
    def attention_flops_per_pair(self) -> float:
        """Attention FLOPs of one (query token, key token) pair over all layers: QK^T and PV, 2 x heads x head_dim
        each."""
        return 4.0 * self.layers * self.heads * self.head_dim

    def kv_bytes_per_token(self, kv_dtype_bytes: int = 2) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * kv_dtype_bytes


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    gpus: dict[str, GpuSpec]
    models: dict[str, ModelShape]


@cache
def catalog() -> Catalog:
    raw = tomllib.loads(CATALOG.read_text())
    return Catalog(gpus={k: {"name": k, **v} for k, v in raw["gpus"].items()},
                   models={k: {"name": k, **v} for k, v in raw["models"].items()})


def gpu_spec(name: str) -> GpuSpec:
    gpus = catalog().gpus
    if name not in gpus:
        raise KeyError(f"GPU {name!r} is not in serve/sim/catalog.toml; known: {', '.join(gpus)}")
    return gpus[name]


def model_spec(name: str) -> ModelShape:
    models = catalog().models
    if name not in models:
        raise KeyError(f"model {name!r} is not in serve/sim/catalog.toml; known: {', '.join(models)}")
    return models[name]
