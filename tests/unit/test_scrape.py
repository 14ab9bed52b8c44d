"""The run's scraper against a fake worker's /metrics: one CSV row per kept series, and counter windows."""

from __future__ import annotations

import os
import random

import openai
import pandas as pd

from bench.load.client import send
from bench.load.metrics import prefix_cache_hit_rates
from bench.load.npc import NPC
from bench.load.scrape import CPU_METRIC, RSS_METRIC, ServerScraper, Target
from bench.spec import load_classes
from tests.unit.fake_server import FakeServer, FakeWorker


def test_scraper_writes_each_scrape_and_windows_the_counters(tmp_path) -> None:
    server = FakeServer(FakeWorker(reply_tokens=5))
    worker = server.start()
    try:
        scraper = ServerScraper(tmp_path / "server_metrics.csv", [Target("light-0", worker.url, pid=os.getpid()),
                                                                  Target("gone", "http://127.0.0.1:9")], t0=0.0)
        scraper.scrape_once()
        client = openai.OpenAI(base_url=worker.url + "/v1", api_key="sk-fake", max_retries=0, timeout=10)
        for _ in range(3):
            send(client, load_classes("cpu")["ambient"], NPC("npc-0", random.Random(0)))
        scraper.scrape_once()
        scraper.close()
    finally:
        server.stop()
    assert scraper.window.delta("vllm:generation_tokens_total") == {"light-0": 15.0}
    assert prefix_cache_hit_rates(scraper.window, {"light-0": "light"})["light-0"] == 0.5  # the fake hits half
    rows = pd.read_csv(tmp_path / "server_metrics.csv")
    assert set(rows[rows.source == "gone"].metric) == {"scrape_error"}  # an unreachable target is recorded, not fatal
    ours = rows[rows.source == "light-0"]
    assert {"vllm:generation_tokens_total", RSS_METRIC, CPU_METRIC} <= set(ours.metric) and ours.t_s.nunique() == 2
    # This process (the target's pid) sent three requests between the scrapes: its CPU time grew.
    assert scraper.window.delta(CPU_METRIC)["light-0"] > 0



def test_the_window_waits_for_counts_that_land_after_the_response(tmp_path) -> None:
    server = FakeServer(FakeWorker(reply_tokens=5, count_late_s=0.3))
    worker = server.start()
    try:
        scraper = ServerScraper(tmp_path / "server_metrics.csv", [Target("light-0", worker.url)], t0=0.0)
        scraper.scrape_once()
        client = openai.OpenAI(base_url=worker.url + "/v1", api_key="sk-fake", max_retries=0, timeout=10)
        send(client, load_classes("cpu")["ambient"], NPC("npc-0", random.Random(0)))
        scraper.scrape_until_settled(("vllm:generation_tokens_total",))
        scraper.close()
    finally:
        server.stop()
    assert scraper.window.delta("vllm:generation_tokens_total") == {"light-0": 5.0}
