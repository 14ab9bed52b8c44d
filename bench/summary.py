"""Per-class figures of a run, from its request records: latency percentiles, throughput, goodput."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.kinds import TOOL_KINDS
from bench.records import Figures, MemoryTrend, RunSummary
from bench.scrape import RSS_METRIC

OUTCOMES = ["ok", "error", "timeout", "tool_invalid", "interrupted", "cancelled"]


def _pct(series: pd.Series, q: float) -> float | None:
    series = series.dropna()
    return round(float(series.quantile(q)), 4) if len(series) else None


def class_summary(df: pd.DataFrame, duration_s: float) -> Figures:
    """Figures for one set of requests over a window of `duration_s` seconds."""
    ok = df[df.outcome == "ok"]
    answered = df[df.outcome.isin(["ok", "interrupted"])]  # interrupted streams still have a first token
    deadline = df.deadline_missed.dropna() if "deadline_missed" in df else pd.Series(dtype=bool)
    tools = df[df.kind.isin(TOOL_KINDS)]
    return Figures.model_validate({
        "requests": int(len(df)),
        **{f"n_{o}": int((df.outcome == o).sum()) for o in OUTCOMES},
        "ttft_p50_s": _pct(answered.ttft_s, 0.5), "ttft_p95_s": _pct(answered.ttft_s, 0.95),
        "itl_p50_s": _pct(ok.itl_s, 0.5), "itl_p95_s": _pct(ok.itl_s, 0.95),
        "e2e_p50_s": _pct(ok.e2e_s, 0.5), "e2e_p95_s": _pct(ok.e2e_s, 0.95),
        "throughput_rps": round(len(ok) / duration_s, 4) if duration_s else None,
        "output_tps": round(float(df.output_tokens.sum()) / duration_s, 3) if duration_s else None,
        "goodput_rps": round(float(df.slo_met.sum()) / duration_s, 4) if duration_s else None,
        "slo_attainment": round(float(df.slo_met.mean()), 4) if len(df) else None,
        "deadline_miss_rate": round(float(deadline.astype(bool).mean()), 4) if len(deadline) else None,
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
