"""Read Prometheus `/metrics` from vLLM workers and the LiteLLM proxy, with prometheus_client's parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, float]


def parse_metrics(text: str) -> Samples:
    """Flatten exposition text to {'name{label="v",...}': value}; label order as exposed."""
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
    get = client.get if client else httpx.get
    response = get(url.rstrip("/") + "/metrics", headers=headers, timeout=5.0)
    response.raise_for_status()
    return parse_metrics(response.text)
