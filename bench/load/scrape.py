"""Scrape every worker's vLLM `/metrics` and the proxy's `/metrics` into a long-format CSV while a run goes."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from bench.load.metrics import CounterWindow, fetch, kept_for_run
from serve import process_tree


@dataclass(frozen=True)
class Target:
    source: str  # worker name, or "proxy"
    url: str
    headers: dict[str, str] | None = None
    pid: int | None = None  # a process of the local stack: its memory is recorded too


RSS_METRIC = "process_tree_rss_bytes"
CPU_METRIC = "process_tree_cpu_seconds"


def tree_rss_bytes(pid: int) -> int | None:
    """Resident memory of a process and all its children."""
    try:
        return sum(p.memory_info().rss for p in process_tree(pid))
    except psutil.Error:
        return None


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of a process and all its children so far."""
    try:
        return sum(sum(p.cpu_times()[:2]) for p in process_tree(pid))
    except psutil.Error:
        return None


class ServerScraper:
    """Call `scrape_once()` on a timer; each call appends one row per (source, metric) to the CSV."""

    def __init__(self, path: Path, targets: list[Target], t0: float) -> None:
        self.path = path
        self.targets = targets
        self.t0 = t0
        self.client = httpx.Client(timeout=5.0)
        self.window = CounterWindow()  # the run's counters, first scrape to last
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
                values = kept_for_run(fetch(target.url, self.client, target.headers), prefix)
            except httpx.HTTPError:
                self._csv.writerow([round(now - self.t0, 3), round(now, 3), target.source, "scrape_error", 1])
                continue
            if target.pid is not None and (rss := tree_rss_bytes(target.pid)) is not None:
                values[RSS_METRIC] = rss
            if target.pid is not None and (cpu := tree_cpu_seconds(target.pid)) is not None:
                values[CPU_METRIC] = cpu
            self.window.add(target.source, values)
            self._csv.writerows([round(now - self.t0, 3), round(now, 3), target.source, name, value]
                                for name, value in values.items())

    def scrape_until_settled(self, counters: tuple[str, ...], interval_s: float = 0.5, timeout_s: float = 5.0) -> None:
        """Scrape until these counters hold still between two scrapes (or the timeout passes). A worker counts a
        request's last tokens just after its response has ended, so a window closed at once can miss them."""
        deadline = time.monotonic() + timeout_s
        self.scrape_once()
        while time.monotonic() < deadline:
            before = {name: self.window.delta(name) for name in counters}
            time.sleep(interval_s)
            self.scrape_once()
            if all(self.window.delta(name) == moved for name, moved in before.items()):
                return

    def close(self) -> None:
        self._file.close()
        self.client.close()
