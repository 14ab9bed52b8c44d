"""docs/studies/virtual-time.md: `python -m bench simulate` (virtual time) against the real-time simulated stack on
the same mix, and how fast it simulates an hour; from results/virtual-time-sim/."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.records import Figures, Manifest
from bench.report.pages import page, render
from bench.report.pages.scale_provenance import SIMULATED_NOTICE, of_manifest, provenance
from bench.rundir import read_manifest

FOLDER = "virtual-time-sim"
REALTIME, VIRTUAL, SPEED = "realtime-sim", "virtual-sim", "speed-sim"
FIGURES = ["requests", "ttft_p50_s", "ttft_p95_s", "e2e_p50_s", "e2e_p95_s", "slo_attainment"]

TEMPLATE = """# SIMULATED: Virtual time against the real-time simulated stack

{{ notice }}
`python -m bench simulate` runs a mix on a profile's simulated workers in virtual time: the mix's arrivals, the
proxy's routing strategy and each worker's engine (serve/sim/engine.py) on one clock, with no HTTP and no sleeping
([how to](../how-to/simulate.md)). Its engine code is the real-time simulated worker's; a unit test
(tests/unit/test_simulate.py) runs that worker's own loop on a virtual event-loop clock and gets the same
per-request timings to the nanosecond. What differs in a real-time run is everything around the engine: the load
generator, HTTP, the LiteLLM proxy, and whether the machine keeps the workers' sleeps on time.

## Speed: {{ speed.npcs }} NPCs for {{ speed.duration }} s of the GPU mix

`{{ speed.command }}`, one process; `/usr/bin/time -v` said: {{ speed.time }}.

{{ table(speed_table) }}

{{ speed.finding }}

## Agreement: the same mix through the real-time stack and in virtual time

`{{ agree_mix }}` on `gpu-sim`, the real-time stack (`python -m bench run`, LiteLLM and four simulated workers,
session affinity) against `python -m bench simulate` with the same flags. Per class, real-time / virtual:

{{ table(agreement) }}

{{ agree_finding }}

Load averages on the machine (2 cores) at the real-time run's start and end: {{ realtime_load }}.

## Not modelled in virtual time

The proxy's own CPU time and queueing, HTTP and the client's own time (a few milliseconds a request on an idle
machine), LiteLLM's retries, cooldowns and fallbacks (a simulated worker never fails), the router cache's cap on
session pins, and the tick shape (refused with a clear error).

## Where the figures come from

- `results/{{ folder }}/{{ realtime }}/`: `python -m serve up --profile gpu-sim` (its own ports and home), then
  `{{ realtime_command }}`.
- `results/{{ folder }}/{{ virtual }}/`: `{{ virtual_command }}`.
- `results/{{ folder }}/{{ speed_run }}/manifest.json`: the speed run's manifest (its `simulation` field holds wall
  and CPU seconds; its requests.jsonl was {{ speed.size }} and is not committed).

{{ where }}
"""


def _load(text: str) -> str:
    return text.strip() if text else "not recorded"


def figures_row(cls: str, real: Figures | None, virtual: Figures | None) -> dict[str, str]:
    def pair(name: str) -> str:
        values = [getattr(f, name) if f is not None else None for f in (real, virtual)]
        digits = 0 if name == "requests" else 2
        return " / ".join("-" if v is None else f"{v:,.{digits}f}" for v in values)

    return {"class": cls, **{name: pair(name) for name in FIGURES}}


def agreement_table(real: Manifest, virtual: Manifest) -> pd.DataFrame:
    assert real.summary is not None and virtual.summary is not None
    rows = [figures_row(c, real.summary.classes.get(c), virtual.summary.classes.get(c))
            for c in sorted(set(real.summary.classes) | set(virtual.summary.classes))]
    rows.append(figures_row("ALL", real.summary.all, virtual.summary.all))
    hit = [m.summary.server.prefix_cache_hit_rate.get("all") if m.summary and m.summary.server else None
           for m in (real, virtual)]
    rows.append({"class": "prefix-cache hit rate", **dict.fromkeys(FIGURES, ""),
                 "requests": " / ".join("-" if h is None else f"{h:.2f}" for h in hit)})
    return pd.DataFrame(rows)


@page("studies/virtual-time.md", title="SIMULATED: Virtual time",
      summary="`bench simulate` against the real-time simulated stack, and an hour of 4,000 NPCs simulated.")
def virtual_time(results: Path) -> str:
    folder = results / FOLDER
    real, virtual, speed = (read_manifest(folder / name) for name in (REALTIME, VIRTUAL, SPEED))
    assert real.simulated and virtual.engine == "virtual-time" and speed.engine == "virtual-time"
    assert speed.simulation is not None and speed.summary is not None
    notes = {key: value for name in ("speed.txt", "agreement.txt")
             for key, value in (line.split(": ", 1) for line in (folder / name).read_text().splitlines() if ": " in line)}
    sim = speed.simulation
    shape = speed.mix.mix.shape
    speed_table = pd.DataFrame([{
        "requests": f"{speed.summary.all.requests:,}", "virtual s (load + tail)": f"{sim['virtual_s']:,.0f}",
        "engine steps": f"{sim['engine_steps']:,.0f}", "wall s": f"{sim['wall_s']:,.1f}",
        "CPU s": f"{sim['cpu_s']:,.1f}", "virtual s per wall s": f"{sim['virtual_s'] / sim['wall_s']:,.0f}",
        "load average before / after": f"{notes.get('before', '-')} / {notes.get('after', '-')}"}])
    target = 120.0
    finding = (f"The target was one hour of 4,000 NPCs in under {target:.0f} s on one core: "
               f"{'met' if sim['cpu_s'] < target else 'not met'} in CPU time ({sim['cpu_s']:,.1f} s), "
               f"{'met' if sim['wall_s'] < target else 'not met'} in wall time ({sim['wall_s']:,.1f} s, on a machine "
               "other jobs were loading). The mix's Poisson rate, not the NPC count, sets the requests: "
               f"{getattr(shape, 'rate_rps', 0):g} requests/s. At that rate `gpu-sim` is saturated, so the queue grows "
               "through the hour and the tail after it is long; the latencies of this run say so, not the speed.")
    real_summary, virtual_summary = real.summary, virtual.summary
    assert real_summary is not None and real_summary.client is not None and virtual_summary is not None
    ratios = []
    for name in ("ttft_p50_s", "e2e_p50_s", "e2e_p95_s"):
        a, b = getattr(real_summary.all, name), getattr(virtual_summary.all, name)
        if a and b is not None:
            ratios.append(f"{name} {b / a:.0%}")
    agree_finding = (f"Over all requests, virtual time's figures as a share of the real-time run's: {', '.join(ratios)}. "
                     f"The real-time run's load generator fired its 100 ms timers late by "
                     f"{real_summary.client.loop_lag_p50_ms:,.0f} ms (p50), {real_summary.client.loop_lag_p99_ms:,.0f} ms "
                     f"(p99) and {real_summary.client.loop_lag_max_ms:,.0f} ms at most; what the real-time run adds "
                     "beyond the engine (HTTP, the proxy, a machine that may not keep the workers' sleeps on time) is "
                     "in its figures and not in virtual time's.")
    if real_summary.client.loop_lag_p99_ms > 100:
        agree_finding += (" Timers that late mean the machine was loaded past its two cores by other jobs while the "
                          "real-time run ran, so its latencies may hold some of that delay; how much of the gap is the "
                          "machine's and how much the proxy's and HTTP's was not separated.")
    return render(
        TEMPLATE, notice=SIMULATED_NOTICE, folder=FOLDER, realtime=REALTIME, virtual=VIRTUAL, speed_run=SPEED,
        speed={"npcs": f"{getattr(shape, 'users', 0):,}", "duration": f"{shape.duration_s:,.0f}",
               "command": notes.get("command", ""), "time": notes.get("time -v", ""), "finding": finding,
               "size": notes.get("requests.jsonl", "")},
        speed_table=speed_table, agree_mix=notes.get("agreement mix", ""),
        agreement=agreement_table(real, virtual), agree_finding=agree_finding,
        realtime_load=_load(notes.get("realtime load", "")),
        realtime_command=notes.get("realtime command", ""), virtual_command=notes.get("virtual command", ""),
        where=provenance([of_manifest(f"{FOLDER}/{n}", m) for n, m in ((REALTIME, real), (VIRTUAL, virtual),
                                                                        (SPEED, speed))]))
