"""A run's background loops: the stack's /metrics scraped on a timer (and the stack watched), and the load
generator's own cost: how late its timers fire and the CPU it uses."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable

import gevent
import pandas as pd

from bench.load.scrape import ServerScraper
from bench.records import ClientLoad
from serve import pid_alive

LAG_PROBE_S = 0.1


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def scrape_loop(scraper: ServerScraper, interval_s: float, supervisor_pid: int | None,
                on_stack_lost: Callable[[str], None], progress: Callable[[], str]) -> None:
    """Scrape every `interval_s`; say once if the stack's supervisor is gone (None: an outside target, not
    watched); print the run's progress line."""
    lost = False
    while True:
        gevent.sleep(interval_s)
        scraper.scrape_once()
        if not lost and supervisor_pid is not None and not pid_alive(supervisor_pid):
            lost = True  # the shape sees this at its next tick and ends the run, which is then marked failed
            why = f"the stack went down during the run (supervisor pid {supervisor_pid} is gone); the run was stopped early"
            print(f"[bench] {why}", file=sys.stderr, flush=True)
            on_stack_lost(why)
        print(f"[bench] {progress()}", file=sys.stderr, flush=True)


class LoadCost:
    """This process's CPU since the start, and how late its timers fire: the error in every time it takes."""

    def __init__(self) -> None:
        self.cpu_at_start = cpu_seconds()
        self.lags_s: list[float] = []

    def lag_loop(self) -> None:
        while True:
            asked = time.perf_counter()
            gevent.sleep(LAG_PROBE_S)
            self.lags_s.append(time.perf_counter() - asked - LAG_PROBE_S)

    def client_load(self, requests: int, workers: list[ClientLoad]) -> ClientLoad:
        """This process's. With Locust worker processes (`workers`: theirs, at their end), their CPU summed with
        this master's (which only coordinates), and their worst lags."""
        return client_load(cpu_seconds() - self.cpu_at_start, self.lags_s, workers, requests)


def client_load(cpu_s: float, lags_s: list[float], workers: list[ClientLoad], requests: int) -> ClientLoad:
    lags_ms = pd.Series(lags_s or [0.0]) * 1000
    loads = workers or [ClientLoad(
        cpu_s=0.0, cpu_ms_per_request=None, loop_lag_p50_ms=round(lags_ms.quantile(0.5), 3),
        loop_lag_p99_ms=round(lags_ms.quantile(0.99), 3), loop_lag_max_ms=round(lags_ms.max(), 3))]
    cpu_s += sum(load.cpu_s for load in loads)
    return ClientLoad(processes=len(loads), cpu_s=round(cpu_s, 3),
                      cpu_ms_per_request=round(cpu_s * 1000 / requests, 3) if requests else None,
                      loop_lag_p50_ms=max(load.loop_lag_p50_ms for load in loads),
                      loop_lag_p99_ms=max(load.loop_lag_p99_ms for load in loads),
                      loop_lag_max_ms=max(load.loop_lag_max_ms for load in loads))
