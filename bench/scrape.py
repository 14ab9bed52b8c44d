"""Scrape every worker's vLLM `/metrics` and the proxy's `/metrics` into a long-format CSV while a run goes."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from prometheus_client.parser import text_string_to_metric_families

# Histogram buckets and `_created` timestamps are dropped: sums and counts carry what the notebooks use.
DROPPED_SUFFIXES = ("_bucket", "_created")
# Labels worth a series of their own; every other label is summed over (engine, model_name, ...).
KEPT_LABELS = ("finished_reason",)


@dataclass(frozen=True)
class Target:
    source: str  # worker name, or "proxy"
    url: str
    headers: dict[str, str] | None = None


def flatten_for_run(text: str, prefix: str) -> dict[str, float]:
    """Sum each of this server's own metrics (`vllm:` or `litellm_`) over its label sets; a metric with a
    kept label also gets one series per value, e.g. `vllm:request_success_total{finished_reason="abort"}`."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(prefix) or sample.name.endswith(DROPPED_SUFFIXES):
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
