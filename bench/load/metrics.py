"""Prometheus `/metrics` of vLLM workers and the LiteLLM proxy: fetched and parsed (with prometheus_client's
parser) here and nowhere else, and the figures every reader takes from them: totals, counter windows, the
prefix-cache hit rate, and the KV-cache configuration a worker reports."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, float]

# What a run keeps of each scrape: queue depth, KV cache, prefix cache, token counters, and the sums and
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
PREFIX_CACHE_HITS = "vllm:prefix_cache_hits_total"
PREFIX_CACHE_QUERIES = "vllm:prefix_cache_queries_total"
CACHE_CONFIG_FIELDS = ("kv_cache_size_tokens", "kv_cache_memory_bytes", "num_gpu_blocks", "block_size",
                       "kv_cache_max_concurrency", "gpu_memory_utilization", "enable_prefix_caching", "cache_dtype",
                       "simulated")  # the last only from serve/sim's workers


def fetch(url: str, client: httpx.Client | None = None, headers: dict[str, str] | None = None) -> str:
    """The exposition text of `{url}/metrics` (the proxy answers `/metrics` with a redirect to `/metrics/`)."""
    target = url.rstrip("/") + "/metrics"
    if client is None:
        response = httpx.get(target, headers=headers, timeout=5.0, follow_redirects=True)
    else:
        response = client.get(target, headers=headers, timeout=5.0, follow_redirects=True)
    response.raise_for_status()
    return response.text


def parse_metrics(text: str) -> Samples:
    """Flatten exposition text to {'name{label="v",...}': value}; labels sorted."""
    flat: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            flat[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return flat


def total(samples: Samples, name: str) -> float:
    """Sum of a metric over all its label sets (e.g. `vllm:generation_tokens_total`)."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def scrape(url: str, client: httpx.Client | None = None, headers: dict[str, str] | None = None) -> Samples:
    """GET `{url}/metrics` and parse it."""
    return parse_metrics(fetch(url, client, headers))


def kept_for_run(text: str, prefix: str) -> Samples:
    """Sum each kept metric of this server's own (`vllm:` or `litellm_`) over its label sets; a metric with a
    kept label also gets one series per value, e.g. `vllm:request_success_total{finished_reason="abort"}`."""
    totals: Samples = {}
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


def cache_config(text: str) -> dict[str, str] | None:
    """What a worker reports of its KV cache in `vllm:cache_config_info` (its start-up "KV cache size" line)."""
    for family in text_string_to_metric_families(text):
        if family.name == "vllm:cache_config_info" and family.samples:
            labels = family.samples[0].labels
            return {k: labels[k] for k in CACHE_CONFIG_FIELDS if k in labels}
    return None


class CounterWindow:
    """Counters per source at the start and at the latest reading of a window: what a run, a phase or a
    fidelity leg counted is the last value minus the first."""

    def __init__(self) -> None:
        self.first: dict[str, Samples] = {}
        self.last: dict[str, Samples] = {}

    def add(self, source: str, values: Samples) -> None:
        self.first.setdefault(source, values)
        self.last[source] = values

    def delta(self, metric: str) -> dict[str, float]:
        """Per source: how much the counter grew over the window."""
        return {source: self.last[source].get(metric, 0.0) - self.first[source].get(metric, 0.0)
                for source in self.last if source in self.first}


def hit_rate(hits: dict[str, float], queries: dict[str, float], sources: list[str]) -> float | None:
    """Prompt tokens found in the prefix cache over prompt tokens looked up, over these sources' counters;
    None where nothing was looked up."""
    looked_up = sum(queries.get(s, 0.0) for s in sources)
    return round(sum(hits.get(s, 0.0) for s in sources) / looked_up, 4) if looked_up else None


def prefix_cache_hit_rates(window: CounterWindow, groups: dict[str, str]) -> dict[str, float | None]:
    """The prefix-cache hit rate over a window per worker, per group (`group:heavy`) and for all workers
    (`all`); `groups` maps each worker to its group."""
    hits, queries = window.delta(PREFIX_CACHE_HITS), window.delta(PREFIX_CACHE_QUERIES)
    rates = {name: hit_rate(hits, queries, [name]) for name in groups}
    rates |= {f"group:{g}": hit_rate(hits, queries, [n for n, ng in groups.items() if ng == g])
              for g in sorted(set(groups.values()))}
    rates["all"] = hit_rate(hits, queries, list(groups))
    return rates
