"""The workers' own series over the run (server_metrics.csv): requests running and waiting, KV-cache use, and the
prefix-cache hit rate of each scrape interval."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from bench.load.metrics import PREFIX_CACHE_HITS, PREFIX_CACHE_QUERIES
from bench.report.analysis import Run, titled
from bench.report.panels import image, panel, run_origin, section

GAUGES = (("vllm:num_requests_running", "requests running"), ("vllm:num_requests_waiting", "requests waiting"),
          ("vllm:kv_cache_usage_perc", "KV cache use (share)"))


def series(server: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One column per source, indexed by Unix time."""
    part = server[server.metric == metric]
    return part.pivot_table(index="unix_time", columns="source", values="value", aggfunc="sum").sort_index()


def interval_hit_rate(server: pd.DataFrame) -> pd.DataFrame:
    """Per source, hits over queries between consecutive scrapes (None where nothing was looked up)."""
    hits, queries = series(server, PREFIX_CACHE_HITS).diff(), series(server, PREFIX_CACHE_QUERIES).diff()
    return (hits / queries.where(queries > 0)).iloc[1:]


@panel("server", order=50)
def server(run: Run) -> str | None:
    metrics = run.server
    if metrics.empty or "unix_time" not in metrics or not metrics.metric.isin([m for m, _ in GAUGES]).any():
        return None
    origin = run_origin(run)
    figure = Figure(figsize=(10, 10))
    axes = figure.subplots(len(GAUGES) + 1, 1, sharex=True)
    panels = [(series(metrics, metric), label) for metric, label in GAUGES]
    panels.append((interval_hit_rate(metrics), "prefix-cache hits (share of looked-up tokens)"))
    for ax, (frame, label) in zip(axes, panels, strict=True):
        for source in frame.columns:
            ax.plot(frame.index - origin, frame[source], label=str(source), lw=1)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7, loc="upper left", ncols=4)
    axes[-1].set_xlabel("seconds since the run started")
    figure.suptitle(titled("The workers' own series, scraped from /metrics", [run.manifest]))
    return section("Server series", image(figure, "requests running and waiting, KV-cache use and prefix-cache hits "
                                                  "per worker over time"))
