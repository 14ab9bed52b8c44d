"""docs/studies/litellm-paths.md: LiteLLM's lighter request paths, each measured beside the stack's own proxy in one
`bench overhead` run on gpu-sim's near-instant engine (SIMULATED engine, real proxy), from results/proxy-paths/."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.lab.overhead import OverheadRun, Row
from bench.report.pages import page, render
from bench.report.pages.scale_provenance import SIMULATED_NOTICE, of_overhead, provenance
from bench.rundir import labelled_run_id

FOLDER = "proxy-paths"
SWITCHES = {  # --compare name -> what it switches, in the order of the table
    "log-warning": "`LITELLM_LOG=WARNING`",
    "httpx": "httpx instead of aiohttp to the workers",
    "granian": "Granian instead of uvicorn (`--run_granian`)",
    "bench-metrics": "only the bench's Prometheus metrics (`prometheus_metrics_config`)",
    "lean": "Granian + the bench's metrics + `LITELLM_LOG=WARNING`",
}
TARGET_ADDED_MS = 5.0  # the target for what the proxy may add to a request

TEMPLATE = """# SIMULATED engine: LiteLLM's lighter paths

{{ notice }}
Here only the engine is simulated (near-instant: every latency term 0 but a {{ step_ms | num }} ms step);
the proxy is the real LiteLLM
{{ litellm }}, and it is what is measured.

What LiteLLM offers to lighten a request's path, read in its source and docs, and kept to what keeps our auth hook,
the request check, retries, fallbacks and the metrics the bench reads. Each was tried with
`bench overhead --compare NAME --set ...` beside the stack's own proxy (`default`) in the same run,
{{ requests_c1 }} requests at concurrency 1 and {{ duration | num }} s at concurrency {{ c_high }}
(`results/{{ folder }}/`, `commands.sh` there; one proxy process each; the `proxy.extra_env`, `extra_settings` and
`extra_args` fields carry the switches). Each cell: the stack's proxy -> the compared one, in the same run.

{{ table(switches) }}

The `default` proxy itself moved by up to {{ default_added_spread | num(1) }} ms (added p50 at c=1) and
{{ default_rps_spread | pct }} (requests/s at c={{ c_high }}) between these runs: the noise to read the single runs
against.

**Nothing changes the latency a proxy adds at concurrency 1**: {{ added_plain_lo | num }}-{{ added_plain_hi | num }}
ms plain and {{ added_stream_lo | num }}-{{ added_stream_hi | num }} ms streamed, of which LiteLLM's own timer
(`x-litellm-overhead-duration-ms`) sees {{ header_lo | num }}-{{ header_hi | num }} ms; the rest is before and after
its handler (ASGI middleware, request parsing, response writing), for which LiteLLM has no switch. The
{{ target_ms | num }} ms target stays missed.

**Under load, the CPU a request costs does change** (plain, concurrency {{ c_high }}): the bench's metrics alone
{{ cpu.plain["bench-metrics"] | signed_pct }}, Granian {{ cpu.plain["granian"] | signed_pct }}, the two together with
the log level (`lean`) {{ cpu.plain["lean"] | signed_pct }} plain and {{ cpu.stream["lean"] | signed_pct }} streamed,
for {{ rps.plain["lean"] | signed_pct }} (plain) and {{ rps.stream["lean"] | signed_pct }} (streamed) requests/s per
process. httpx changed the CPU a plain request costs by {{ cpu.plain["httpx"] | signed_pct }} against the default
aiohttp. The log level changed it by {{ cpu.plain["log-warning"] | signed_pct }} for plain requests (LiteLLM's
loggers are at WARNING already; it removes uvicorn's access line), and by {{ cpu.stream["log-warning"] | signed_pct }}
for streamed ones. With the fewer metrics the others, spend, token
and deployment-state families among them, become no-ops.

They stay off by default: the trimmed metrics drop families a studio's dashboards may want (spend, tokens,
deployment state), and Granian is not LiteLLM's default server; `lean` is the setting to scale out with when those
do not matter. Left out after reading the source: the database switches (`disable_spend_logs`,
`proxy_batch_write_at`: no database here), gunicorn (the same request path), and `/vllm/...`, LiteLLM's pass-through
route: it keeps auth and routing within the group, but never runs the proxy's pre-call hook (our request check),
passes the key's metadata instead of the request's (so no `session_id`, no session affinity), and returns vLLM's
headers (no `x-litellm-model-id`, which the bench records per request), so it was not measured.

## Where the figures come from

`results/{{ folder }}/<name>-sim/overhead.json` (`-sim`: the workers were simulated), one per switch, made by
`results/{{ folder }}/commands.sh`.
{{ where }}
"""


def overhead_json(results: Path, switch: str) -> Path:
    """A switch's record; its folder says SIMULATED in its name (`granian-sim`), as every simulated record's does."""
    return results / FOLDER / labelled_run_id(switch, simulated=True) / "overhead.json"


def rows_of(run: OverheadRun) -> dict[tuple[str, int, str], Row]:
    return {(r.shape, r.concurrency, r.target): r for r in run.rows}


def change(new: float | None, old: float | None) -> float:
    return (new or 0.0) / old - 1 if old else 0.0


@page("studies/litellm-paths.md", title="SIMULATED engine: LiteLLM's lighter paths")
def litellm_paths(results: Path) -> str:
    runs = {name: OverheadRun.model_validate_json((overhead_json(results, name)).read_text())
            for name in SWITCHES}
    assert all(getattr(r, "simulated", False) for r in runs.values()), f"results/{FOLDER}: a run was not simulated"
    rows = {name: rows_of(run) for name, run in runs.items()}
    c_high = max(r.concurrency for run in runs.values() for r in run.rows)
    table: list[dict[str, str]] = []
    cpu: dict[str, dict[str, float]] = {"plain": {}, "stream": {}}
    rps: dict[str, dict[str, float]] = {"plain": {}, "stream": {}}
    added: dict[str, list[float]] = {"plain": [], "stream": []}
    headers: list[float] = []
    for name, r in rows.items():
        cells: dict[str, str] = {"switch (`--compare` name)": f"{SWITCHES[name]} (`{name}`)"}
        for shape, label in (("plain", "plain"), ("stream", "streamed")):
            low = {t: r[(shape, 1, t)] for t in ("proxy", name)}
            high = {t: r[(shape, c_high, t)] for t in ("proxy", name)}
            cells[f"added p50 at c=1, {label} (ms)"] = f"{low['proxy'].added_p50_ms:.1f} -> {low[name].added_p50_ms:.1f}"
            cells[f"CPU ms a request at c={c_high}, {label}"] = (f"{high['proxy'].proxy_cpu_ms_per_request:.1f} -> "
                                                               f"{high[name].proxy_cpu_ms_per_request:.1f}")
            cells[f"requests/s at c={c_high}, {label}"] = f"{high['proxy'].rps:.0f} -> {high[name].rps:.0f}"
            cpu[shape][name] = change(high[name].proxy_cpu_ms_per_request, high["proxy"].proxy_cpu_ms_per_request)
            rps[shape][name] = change(high[name].rps, high["proxy"].rps)
            added[shape] += [x for x in (low["proxy"].added_p50_ms, low[name].added_p50_ms) if x is not None]
            headers += [x for x in (low["proxy"].litellm_header_p50_ms, low[name].litellm_header_p50_ms) if x is not None]
        table.append(cells)
    default_added = [r[("plain", 1, "proxy")].added_p50_ms or 0.0 for r in rows.values()]
    default_rps = [r[("plain", c_high, "proxy")].rps for r in rows.values()]
    first = next(iter(runs.values()))
    return render(
        TEMPLATE, notice=SIMULATED_NOTICE, step_ms=max(g.sim.step_overhead_ms for g in first.stack_spec.groups.values() if g.sim),
        litellm=first.versions.get("litellm"), folder=FOLDER,
        requests_c1=first.settings.get("requests_at_c1"), duration=first.settings.get("duration_s"), c_high=c_high,
        switches=pd.DataFrame(table), default_added_spread=max(default_added) - min(default_added),
        default_rps_spread=max(default_rps) / min(default_rps) - 1,
        added_plain_lo=min(added["plain"]), added_plain_hi=max(added["plain"]),
        added_stream_lo=min(added["stream"]), added_stream_hi=max(added["stream"]),
        header_lo=min(headers), header_hi=max(headers), target_ms=TARGET_ADDED_MS, cpu=cpu, rps=rps,
        where=provenance([of_overhead(overhead_json(results, name), name) for name in runs]))
