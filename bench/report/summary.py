"""Per-class figures of a run, from its request records: latency percentiles, throughput, goodput."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.kinds import TOOL_KINDS
from bench.load.scrape import RSS_METRIC
from bench.records import Figures, MemoryTrend, RunSummary

OUTCOMES = ["ok", "error", "timeout", "tool_invalid", "interrupted", "cancelled"]


def answered(df: pd.DataFrame) -> pd.DataFrame:
    """Requests that got a reply: completed, or interrupted streams, which still had a first token."""
    return df[df.outcome.isin(["ok", "interrupted"])]


def completed(df: pd.DataFrame) -> pd.DataFrame:
    return df[df.outcome == "ok"]


@dataclass(frozen=True)
class Figure:
    """A summary figure of a set of requests: the per-request values it is taken over, and how they reduce to
    the figure over the last axis given the seconds they ran over. Kept apart so bench/report/stats.py can resample
    the values (a bootstrap) and reduce every resample at once."""

    values: Callable[[pd.DataFrame], pd.Series]
    reduce: Callable[[np.ndarray, float], np.ndarray]
    digits: int = 4
    per_second: bool = False  # a rate over the run's length, undefined without one

    def of(self, df: pd.DataFrame, duration_s: float) -> float | None:
        values = self.values(df).to_numpy(dtype=float)
        if self.per_second and not duration_s:
            return None
        if not len(values):
            return 0.0 if self.per_second else None
        return float(self.reduce(values, duration_s))


def _latency(column: str, q: float, subset: Callable[[pd.DataFrame], pd.DataFrame]) -> Figure:
    return Figure(lambda df: subset(df)[column].dropna(), lambda x, s: np.quantile(x, q, axis=-1))


def _per_second(values: Callable[[pd.DataFrame], pd.Series], digits: int = 4) -> Figure:
    return Figure(values, lambda x, s: x.sum(axis=-1) / s, digits, per_second=True)


def _share(values: Callable[[pd.DataFrame], pd.Series]) -> Figure:
    return Figure(values, lambda x, s: x.mean(axis=-1))


def _deadline_missed(df: pd.DataFrame) -> pd.Series:
    return df.deadline_missed.dropna().astype(bool) if "deadline_missed" in df else pd.Series(dtype=bool)


# The summary's latency percentiles and rates (ttft over answered requests, itl and e2e over completed ones).
FIGURES: dict[str, Figure] = {
    "ttft_p50_s": _latency("ttft_s", 0.5, answered), "ttft_p95_s": _latency("ttft_s", 0.95, answered),
    "itl_p50_s": _latency("itl_s", 0.5, completed), "itl_p95_s": _latency("itl_s", 0.95, completed),
    "e2e_p50_s": _latency("e2e_s", 0.5, completed), "e2e_p95_s": _latency("e2e_s", 0.95, completed),
    "throughput_rps": _per_second(lambda df: df.outcome == "ok"),
    "output_tps": _per_second(lambda df: df.output_tokens, digits=3),
    "goodput_rps": _per_second(lambda df: df.slo_met),
    "slo_attainment": _share(lambda df: df.slo_met),
    "deadline_miss_rate": _share(_deadline_missed),
}
PERCENTILES = [name for name in FIGURES if name.endswith("_s")]


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def class_summary(df: pd.DataFrame, duration_s: float) -> Figures:
    """Figures for one set of requests over a window of `duration_s` seconds."""
    tools = df[df.kind.isin(TOOL_KINDS)]
    return Figures.model_validate({
        "requests": int(len(df)),
        **{f"n_{o}": int((df.outcome == o).sum()) for o in OUTCOMES},
        **{name: _rounded(figure.of(df, duration_s), figure.digits) for name, figure in FIGURES.items()},
        "tool_call_validity": (round(float((tools.outcome == "ok").sum() / len(tools)), 4) if len(tools) else None),
        "prompt_tokens_mean": round(float(df.prompt_tokens.dropna().mean()), 1) if df.prompt_tokens.notna().any() else None,
        "output_tokens_total": int(df.output_tokens.sum()),
    })


def summarize(df: pd.DataFrame, duration_s: float) -> RunSummary:
    """The figures of all requests, of each class and of each group (the server's side is added by the run)."""
    return RunSummary(
        duration_s=round(duration_s, 2),
        all=class_summary(df, duration_s),
        classes={str(name): class_summary(part, duration_s) for name, part in df.groupby("cls")},
        groups={str(name): class_summary(part, duration_s) for name, part in df.groupby("group")},
    )


def memory_trend(server_metrics: pd.DataFrame) -> dict[str, MemoryTrend]:
    """Per stack process (with its children): resident memory at the start, end and peak of the run, in MiB,
    and the slope of a straight line fitted over the run's second half, when warm-up is over, in MiB per
    minute. A leak shows as a slope that stays positive however long the run."""
    rss = server_metrics[server_metrics.metric == RSS_METRIC]
    trend = {}
    for source, part in rss.groupby("source"):
        part = part.sort_values("t_s")
        mib = part.value / 2**20
        late = part.t_s >= part.t_s.iloc[0] + (part.t_s.iloc[-1] - part.t_s.iloc[0]) / 2
        slope = np.polyfit(part.t_s[late] / 60, mib[late], 1)[0] if late.sum() >= 3 else None
        trend[str(source)] = MemoryTrend(start_mib=round(float(mib.iloc[0]), 1), end_mib=round(float(mib.iloc[-1]), 1),
                                         peak_mib=round(float(mib.max()), 1),
                                         late_slope_mib_per_min=None if slope is None else round(float(slope), 2))
    return trend
