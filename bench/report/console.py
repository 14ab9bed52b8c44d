"""A run's summary as text, for the terminal: what `bench run` prints at the end and `bench show` prints again."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.analysis import sweep_index
from bench.rundir import read_manifest

COLUMNS = ["requests", "n_ok", "n_error", "n_timeout", "n_tool_invalid", "n_interrupted", "n_cancelled", "ttft_p95_s",
           "e2e_p50_s", "e2e_p95_s", "output_tps", "goodput_rps", "slo_attainment", "deadline_miss_rate"]


def run_folders(path: Path) -> list[Path]:
    """A run folder, or a sweep folder's runs that have started."""
    if not (path / "index.json").exists():
        return [path]
    return [path / point for point in sweep_index(path).path if (path / point / "manifest.json").exists()]


def print_summary(run_dir: Path) -> None:
    manifest = read_manifest(run_dir)
    summary = manifest.summary
    print(f"\nrun {manifest.run_id}: {manifest.status}, {manifest.duration_s} s, folder {run_dir}")
    lock = manifest.env_lock
    print(f"  environment: Python {manifest.versions.get('python')}, "
          + (f"installed from {lock.lock} (sha256 {lock.lock_sha256[:12]})" if lock else "no recorded lock"))
    if cache := manifest.cache:
        state = "emptied just before the start" if cache.reset else "warm (earlier runs' prompts may hit)" if cache.warm \
            else "cold (nothing looked up since the workers started)"
        print(f"  prefix caches at the start: {state}")
    for note in manifest.notes:
        print(f"  note: {note}")
    if summary is None:
        print("  (no summary: the run did not finish; requests.jsonl holds what was measured)")
        return
    rows = {**summary.classes, "ALL": summary.all}
    table = pd.DataFrame({name: figures.model_dump() for name, figures in rows.items()}).T[COLUMNS].astype(object)
    print(table.to_string(na_rep="-"))
    if d := summary.decisions:
        print(f"  NPC-ticks: {d.npc_ticks}: fresh {d.fresh_share:.0%}, late {d.late_share:.0%}, fallback "
              f"{d.fallback_share:.0%}; staleness p50 {d.staleness_p50:g} / p95 {d.staleness_p95:g} / max "
              f"{d.staleness_max} ticks; thinking {d.thinking_share:.0%}; skipped {d.skipped}, cancelled {d.cancelled}")
        for cls, c in summary.decisions_by_class.items():
            print(f"    {cls}: {c.npc_ticks} NPC-ticks, fresh {c.fresh_share:.0%}, late {c.late_share:.0%}, fallback "
                  f"{c.fallback_share:.0%}; staleness p95 {c.staleness_p95:g}, max {c.staleness_max}")
    if load := summary.client:
        print(f"  load generator: {load.cpu_s:g} CPU s ({load.cpu_ms_per_request} ms a request); its 100 ms timers "
              f"fired late by {load.loop_lag_p50_ms:g} ms (p50), {load.loop_lag_p99_ms:g} ms (p99), "
              f"{load.loop_lag_max_ms:g} ms (max)")
    if (lateness := manifest.lateness()) is not None:
        print(f"  {'WARNING: ' if lateness.exceeded else ''}{lateness.describe()}")
    if summary.server is None:
        return
    print(f"  output tokens: client {summary.all.output_tokens_total}, "
          f"workers' vllm:generation_tokens_total {summary.server.generation_tokens_total}")
    if summary.server.redis_commands is not None:
        print(f"  the stack's Redis processed {summary.server.redis_commands} commands "
              f"({summary.server.redis_commands / max(summary.all.requests, 1):.1f} a request)")
    if cpu := summary.server.cpu_s:
        per_request = {name: f"{seconds * 1000 / max(summary.all.requests, 1):.1f}" for name, seconds in cpu.items()}
        print(f"  CPU ms per request (each process with its children): {per_request}")
    if memory := summary.server.memory:
        print("  resident memory (MiB, each process with its children; slope over the run's second half):")
        print(pd.DataFrame({name: trend.model_dump() for name, trend in memory.items()}).T.to_string(na_rep="-"))
