"""KV-cache and VRAM arithmetic, and capacity plans from measured runs.

The KV arithmetic follows vLLM: each token holds K and V for every layer and KV head; the cache is
cut into blocks of `block_size` tokens, and only whole blocks count. How much of a GPU is left for the
cache is serve/gpu.py's memory plan, which the preflight uses too.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field

from serve import ModelSpec, kv_blocks

GIB = 2**30


def kv_bytes_per_token(model: ModelSpec, dtype_bytes: int = 2) -> int:
    """2 (K and V) x layers x KV heads x head dim x bytes per value; the one formula lives on ModelSpec."""
    return model.kv_bytes_per_token(dtype_bytes)


def kv_tokens(kv_space_bytes: float, bytes_per_token: int, block_size: int = 16) -> int:
    """Tokens a KV space holds, in whole blocks, as vLLM counts them."""
    return kv_blocks(kv_space_bytes, bytes_per_token, block_size) * block_size


def max_concurrency(tokens: int, context_tokens: int) -> float:
    """vLLM's start-up figure: how many requests of `context_tokens` fit in the KV cache at once."""
    return tokens / context_tokens


# -- capacity plans --------------------------------------------------------------------------------


def npcs_within_staleness(points: pd.DataFrame, max_staleness_ticks: float = 0, min_fresh_share: float = 0.0
                          ) -> pd.DataFrame:
    """Per tick rate and policy: the most NPCs measured whose decisions were at most `max_staleness_ticks` old at
    p95 (0: fresh at 95 % of NPC-ticks) and fresh at `min_fresh_share` of them at least, with every smaller NPC
    count measured meeting it too (a capacity is not claimed past a count that failed). `points` has one row per
    tick run: tick_hz, tick_policy, offered_npcs, staleness_p95, fresh_share, run_id."""
    rows = []
    for (hz, policy), runs in points.groupby(["tick_hz", "tick_policy"]):
        runs = runs.sort_values("offered_npcs")
        ok = (runs.staleness_p95 <= max_staleness_ticks) & (runs.fresh_share >= min_fresh_share)
        held = runs[ok.cumprod().astype(bool)]
        best = held.iloc[-1] if len(held) else None
        rows.append({"tick_hz": hz, "tick_policy": policy, "max_staleness_ticks_p95": max_staleness_ticks,
                     "npcs": int(best.offered_npcs) if best is not None else 0,
                     "fresh_share": best.fresh_share if best is not None else None,
                     "staleness_p95": best.staleness_p95 if best is not None else None,
                     "source_run": best.run_id if best is not None else None,
                     "measured_npcs": sorted(int(n) for n in runs.offered_npcs)})
    return pd.DataFrame(rows)




class ExtrapolationError(ValueError):
    """The plan would need numbers that were not measured; the message says which."""


class ClassLoad(BaseModel):
    """One traffic class in a game design: how many NPCs send it, and how often each does."""

    npcs: int = Field(ge=0)
    every_s: float = Field(gt=0, description="each NPC sends one request of this class every every_s seconds")

    @property
    def rps(self) -> float:
        return self.npcs / self.every_s


class GameLoad(BaseModel):
    """A game design: e.g. 4,000 NPCs with an ambient tick every 2 s, 10 % of them in dialogue."""

    name: str
    classes: dict[str, ClassLoad]

    def rps_by_group(self, class_groups: dict[str, str]) -> dict[str, float]:
        missing = sorted(set(self.classes) - set(class_groups))
        if missing:
            raise ExtrapolationError(f"classes {missing} were not in the measured mix, so nothing was measured for them")
        totals: dict[str, float] = {}
        for name, load in self.classes.items():
            totals[class_groups[name]] = totals.get(class_groups[name], 0.0) + load.rps
        return totals


def plan_capacity(game: GameLoad, measured: pd.DataFrame, headroom: float = 0.3,
                  assume_linear_scale_out: bool = False) -> pd.DataFrame:
    """Workers each group needs to carry `game` within SLO, from measured goodput.

    `measured` has one row per (run, group): run_id, group, workers, goodput_rps (requests/s that met their
    class's SLO), and the classes served. Each group's best measured goodput per worker is the rate one worker
    is planned at, less `headroom`. A plan that needs more workers than were measured assumes throughput
    scales linearly with workers: that is extrapolation, refused unless `assume_linear_scale_out` says so.
    """
    class_groups = {c: g for _, row in measured.iterrows() for c in row["classes"] for g in [row["group"]]}
    required = game.rps_by_group(class_groups)
    rows: list[dict[str, Any]] = []
    for group, rps in sorted(required.items()):
        runs = measured[measured.group == group]
        per_worker = runs.goodput_rps / runs.workers
        if runs.empty or per_worker.max() <= 0:
            raise ExtrapolationError(f"group {group}: no measured run met its SLOs, so no rate can be planned")
        best = runs.loc[per_worker.idxmax()]
        rate = per_worker.max() * (1 - headroom)
        workers = max(1, math.ceil(rps / rate))
        beyond = workers > best.workers
        if beyond and not assume_linear_scale_out:
            raise ExtrapolationError(
                f"group {group}: {game.name} needs {rps:.2f} req/s, about {workers} workers, but the runs measured "
                f"{int(best.workers)}; pass assume_linear_scale_out=True to plan on linear scale-out, "
                "or measure a larger stack"
            )
        rows.append({
            "group": group, "required_rps": round(rps, 3), "goodput_per_worker_rps": round(per_worker.max(), 4),
            "planned_rps_per_worker": round(rate, 4), "headroom": headroom, "workers_needed": workers,
            "utilisation_at_plan": round(rps / (workers * per_worker.max()), 3), "measured_workers": int(best.workers),
            "source_run": best.run_id, "extrapolated": beyond,
        })
    return pd.DataFrame(rows)
