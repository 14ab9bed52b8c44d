"""Scrape every worker's vLLM `/metrics` and the proxy's `/metrics` into a long-format CSV while a run goes."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

# What is kept of each scrape: queue depth, KV cache, prefix cache, token counters, and the sums and
# counts of the latency histograms (their buckets are dropped). Everything else stays on the server.
KEPT_METRICS = (
    "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
    "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:num_preemptions_total",
    "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total",
    "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds", "vllm:request_prefill_time_seconds", "vllm:request_decode_time_seconds",
    "litellm_overhead_latency_metric", "litellm_request_total_latency_metric", "litellm_llm_api_latency_metric",
    "litellm_requests_metric_total", "litellm_proxy_total_requests_metric_total",
    "litellm_proxy_failed_requests_metric_total", "litellm_deployment_failure_responses_total",
)
DROPPED_SUFFIXES = ("_bucket", "_created")
# Labels worth a series of their own; every other label is summed over (engine, model_name, ...).
KEPT_LABELS = ("finished_reason",)


@dataclass(frozen=True)
class Target:
    source: str  # worker name, or "proxy"
    url: str
    headers: dict[str, str] | None = None
    pid: int | None = None  # a process of the local stack: its memory is recorded too


RSS_METRIC = "process_tree_rss_bytes"


def process_tree(pid: int) -> list[psutil.Process]:
    """A stack process and all its children (a vLLM worker's engine core is a child)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_rss_bytes(pid: int) -> int | None:
    """Resident memory of a process and all its children."""
    try:
        return sum(p.memory_info().rss for p in process_tree(pid))
    except psutil.Error:
        return None


def flatten_for_run(text: str, prefix: str) -> dict[str, float]:
    """Sum each kept metric of this server's own (`vllm:` or `litellm_`) over its label sets; a metric with a
    kept label also gets one series per value, e.g. `vllm:request_success_total{finished_reason="abort"}`."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (not sample.name.startswith(prefix) or sample.name.endswith(DROPPED_SUFFIXES)
                    or not sample.name.startswith(KEPT_METRICS)):
                continue
            keys = [sample.name] + [f'{sample.name}{{{label}="{sample.labels[label]}"}}'
                                    for label in KEPT_LABELS if label in sample.labels]
            for key in keys:
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


class ServerScraper:
    """Call `scrape_once()` on a timer; each call appends one row per (source, metric) to the CSV."""

    def __init__(self, path: Path, targets: list[Target], t0: float) -> None:
        self.path = path
        self.targets = targets
        self.t0 = t0
        self.client = httpx.Client(timeout=5.0, follow_redirects=True)  # the proxy answers /metrics with a 307
        self.first: dict[str, dict[str, float]] = {}
        self.last: dict[str, dict[str, float]] = {}
        new = not path.exists()
        self._file = open(path, "a", newline="", buffering=1)
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(["t_s", "unix_time", "source", "metric", "value"])

    def scrape_once(self) -> None:
        now = time.time()
        for target in self.targets:
            prefix = "litellm_" if target.source == "proxy" else "vllm:"
            try:
                response = self.client.get(target.url.rstrip("/") + "/metrics", headers=target.headers)
                response.raise_for_status()
            except httpx.HTTPError:
                self._csv.writerow([round(now - self.t0, 3), round(now, 3), target.source, "scrape_error", 1])
                continue
            values = flatten_for_run(response.text, prefix)
            if target.pid is not None and (rss := tree_rss_bytes(target.pid)) is not None:
                values[RSS_METRIC] = rss
            self.first.setdefault(target.source, values)
            self.last[target.source] = values
            self._csv.writerows([round(now - self.t0, 3), round(now, 3), target.source, name, value]
                                for name, value in values.items())

    def delta(self, metric: str) -> dict[str, float]:
        """Per source: last minus first scraped value of a counter over the run."""
        return {source: self.last[source].get(metric, 0.0) - self.first[source].get(metric, 0.0)
                for source in self.last if source in self.first}

    def close(self) -> None:
        self._file.close()
        self.client.close()
