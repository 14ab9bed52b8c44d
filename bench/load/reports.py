"""What a run writes at its end besides its records: the servers' own counts beside the client's, and Locust's
reports (its CSVs, its HTML unless skipped, and the NPC figures in Locust's neighbourhood)."""

from __future__ import annotations

import csv

from locust.html import get_html_report
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from bench.load.figures import NpcFigures
from bench.load.metrics import CounterWindow, prefix_cache_hit_rates
from bench.load.scrape import CPU_METRIC
from bench.records import ServerSummary
from bench.report.summary import memory_trend
from bench.rundir import RunDir, read_server_metrics

NPC_FIGURES_CSV = "locust_npc_figures.csv"  # what Locust's stats do not count as requests (bench/load/figures.py)


def server_summary(window: CounterWindow, worker_groups: dict[str, str], run_dir: RunDir,
                   redis_commands: int | None) -> ServerSummary:
    """Token counts the workers counted themselves, beside what the client counted, and each process's memory.
    `worker_groups`: {worker: group}; `redis_commands`: the stack's Redis's commands over the run, if it has one."""
    delta = window.delta
    workers = list(worker_groups)
    per_worker = {name: delta("vllm:generation_tokens_total").get(name) for name in workers}
    return ServerSummary(
        generation_tokens=per_worker,
        generation_tokens_total=sum(v for v in per_worker.values() if v is not None),
        prompt_tokens_total=sum(v for k, v in delta("vllm:prompt_tokens_total").items() if k in workers),
        finished_requests=sum(v for k, v in delta("vllm:request_success_total").items() if k in workers),
        preemptions=sum(v for k, v in delta("vllm:num_preemptions_total").items() if k in workers),
        prefix_cache_hit_rate=prefix_cache_hit_rates(window, worker_groups),
        memory=memory_trend(read_server_metrics(run_dir.path)),
        redis_commands=redis_commands,
        cpu_s={source: round(seconds, 3) for source, seconds in delta(CPU_METRIC).items()
               if CPU_METRIC in window.last[source]},
    )


def write_locust_reports(environment, run_dir: RunDir, figures: NpcFigures, html: bool) -> None:
    stats_csv = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for name, write in (("locust_stats.csv", stats_csv.requests_csv), ("locust_failures.csv", stats_csv.failures_csv),
                        ("locust_exceptions.csv", stats_csv.exceptions_csv)):
        with open(run_dir.path / name, "w", newline="") as f:
            write(csv.writer(f))
        run_dir.manifest.files[name.removesuffix(".csv")] = name
    (run_dir.path / NPC_FIGURES_CSV).write_text(figures.csv_text())
    run_dir.manifest.files[NPC_FIGURES_CSV.removesuffix(".csv")] = NPC_FIGURES_CSV
    if html:
        (run_dir.path / "locust_report.html").write_text(get_html_report(environment, show_download_link=False))
        run_dir.manifest.files["locust_report"] = "locust_report.html"
