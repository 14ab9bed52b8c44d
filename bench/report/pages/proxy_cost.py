"""What the LiteLLM proxy costs: `python -m bench overhead`, the stack's proxy against LiteLLM's defaults."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.lab.overhead import OverheadRun
from bench.report.pages import measured, page, render

RUN = "overhead-cpu-before-after"
# The proxy issue's targets (goals, not measurements): at most 5 ms added median latency at concurrency 1, and at
# least twice the default proxy's saturated requests/s on the same machine.
TARGET_ADDED_MS = 5.0
TARGET_SATURATED_FACTOR = 2

TEMPLATE = """# What the proxy costs

`python -m bench overhead` sends the same {{ settings.group }}-group requests ({{ settings.output_tokens.plain }}
output token plain, {{ settings.output_tokens.stream }} streamed) straight to the workers and through the proxy. At
concurrency 1 the targets alternate request by request, so drift hits all alike; then each is loaded closed-loop
(`--concurrency`). With `--compare NAME --set proxy.KEY=VALUE ...` a second proxy, rendered from the running stack's
spec with those overrides, starts beside the stack's own in front of the same workers and is measured in the same run;
it is stopped at the end. LiteLLM's own switches go through three proxy fields, so trying one needs no new code:
`proxy.extra_env` (environment, e.g. `--set proxy.extra_env.LITELLM_LOG=WARNING`), `proxy.extra_settings` (more
`litellm_settings`, `general_settings` and `router_settings`) and `proxy.extra_args` (more `litellm` flags, e.g. `--set
'proxy.extra_args=["--run_granian"]'`). The spec refuses any of them that would replace what the harness renders from
the other fields: the key and auth hook, the callbacks, routing, retries, fallbacks, cooldowns, timeouts, Redis, host,
port and processes. Each run writes `overhead.json` (settings, both proxies' settings, stack, versions, machine, the
table) and `requests.csv`.

`results/{{ run.run_id }}/`: the stack's proxy as configured then (`{{ run.label }}`: {{ tuned_settings }}) against
LiteLLM's defaults (`--compare {{ settings.compare }}{% for o in settings.compare_overrides %} --set {{ o }}{% endfor
%}`: {{ defaults_settings }}), in one run ({{ settings.requests_at_c1 }} requests a target at concurrency 1, {{
settings.duration_s | num }} s at concurrency {{ settings.concurrency }}), measured {{ provenance }}:

{{ table(rows) }}

At concurrency 1 the figure is each target's p50 latency (direct) or what the proxy adds to it (proxied, p50 against
p50); under load it is requests per second. LiteLLM's header is its own `x-litellm-overhead-duration-ms`.

What changed between the two: the workers are declared free (`proxy.zero_cost`, cost 0 per token in each deployment's
`model_info`), because LiteLLM otherwise looks for a price for every response of a model it has none for and logs that
it found none; and routing is {{ tuned.routing_strategy }} instead of {{ defaults.routing_strategy }}. The tuned proxy
used {{ cpu_saving_min | pct }} to {{ cpu_saving_max | pct }} less CPU per request, but this run changed both settings
at once, so that saving belongs to the two together: how much of it is zero cost alone was not measured. Retries,
fallbacks, auth, the request check and the Prometheus metrics are all kept. This is one run: no interval is given, and
a difference of a few milliseconds between the two proxies is within what a rerun moves.

## The issue's targets

- **{{ target_added_ms | num }} ms added at concurrency 1.** {% if tuned_added_plain > target_added_ms %}Missed: the
  tuned proxy added {{ tuned_added_plain | num(1) }} ms to a plain request and {{ tuned_added_stream | num(1) }} ms to a
  streamed one.{% else %}Met on plain requests ({{ tuned_added_plain | num(1) }} ms).{% endif %} The proxy spends about
  {{ cpu_plain | num(1) }} ms of CPU on every plain request here, {{ cpu_stream | num(1) }} ms on a streamed one, and at
  concurrency 1 that is most of what it adds. An exploratory py-spy profile of the proxy under load (not kept in
  `results/`, so its shares are not quoted here) showed the time spread over LiteLLM's Python request path: its ASGI
  middleware stack, the pricing lookup (gone now), the Prometheus callback, routing, logging objects and the provider
  call. LiteLLM's own header reports {{ header_share_min | pct }} to {{ header_share_max | pct }} of the added time at
  concurrency 1: its timer starts inside the request handler, after the middleware, and stops before the response is
  written. LiteLLM's lighter paths (log level, Granian, fewer metrics) were measured later, on the simulated engine:
  `results/proxy-paths/`.
- **{{ target_factor }} times the default proxy's saturated requests/s.** {% if saturated_factor < target_factor
  %}Missed: the tuned proxy served {{ saturated_factor | num(2) }} times LiteLLM's defaults' plain requests/s at concurrency {{
  settings.concurrency }}.{% else %}Met: {{ saturated_factor | num(2) }} times LiteLLM's defaults.{% endif %} Nothing on
  this machine loads the proxy to its own limit: its {{ cores }} cores also run the {{ workers }} workers, which
  saturate first ({{ direct_plain_rps | num(2) }} req/s straight to them), and the proxy's CPU comes out of theirs
  (hence {{ tuned_plain_rps | num(2) }} req/s through it).
  At {{ cpu_plain | num(1) }} ms of CPU per request one proxy process tops out near {{ ceiling_rps | num }} req/s per
  core; `proxy.num_workers=2` runs two (their `/metrics` merged through a shared Prometheus folder), which doubles that
  ceiling on a machine with cores to spare. The `cpu` profile keeps one: on {{ cores }} cores a second process adds no
  throughput, costs a second proxy's memory, and would keep its own session pins and cooldowns unless the processes
  share a Redis (`proxy.redis_host`).

Reproduce with `python -m serve up`, then `python -m bench overhead --requests {{ settings.requests_at_c1 }}
--concurrency {{ settings.concurrency }} --duration-s {{ settings.duration_s | num }} --compare {{ settings.compare
}}{% for o in settings.compare_overrides %} --set {{ o }}{% endfor %} --run-id {{ run.run_id }}`.
"""


def _row(run: OverheadRun, shape: str, concurrency: int, target: str) -> dict:
    rows = [r for r in run.rows if (r.shape, r.concurrency, r.target) == (shape, concurrency, target)]
    assert len(rows) == 1, f"{run.run_id}: {len(rows)} rows for {shape}, c={concurrency}, {target}"
    return rows[0].model_dump()


def _setting(run: OverheadRun, proxy: str, *keys: str) -> str:
    spec = run.proxies[proxy]
    return ", ".join(f"`{k}` {getattr(spec, k)}" for k in keys)


@page("studies/proxy-cost.md", title="What the proxy costs",
      summary="What LiteLLM adds per request and costs in CPU, the stack's proxy against LiteLLM's defaults.")
def proxy_cost(results: Path) -> str:
    run = OverheadRun.model_validate_json((results / RUN / "overhead.json").read_text())
    compared = str(run.settings["compare"])
    tuned_target = next(t for t in run.proxies if t != compared)

    def row(shape: str, c: int, target: str) -> dict:
        return _row(run, shape, c, target)

    def fmt(value: float | None, unit: str, digits: int = 1) -> str:
        return "" if value is None else f"{value:,.{digits}f}{unit}"

    rows = []
    for shape, label in (("plain", "plain"), ("stream", "streamed")):
        d, a, t = row(shape, 1, "direct"), row(shape, 1, compared), row(shape, 1, tuned_target)
        rows.append({"": f"{label}, c=1", "direct p50": fmt(d["latency_p50_ms"], " ms"),
                     "LiteLLM defaults: added p50": fmt(a["added_p50_ms"], " ms"),
                     "tuned: added p50": fmt(t["added_p50_ms"], " ms"),
                     "LiteLLM's header p50 (defaults / tuned)":
                         f"{fmt(a['litellm_header_p50_ms'], '')} / {fmt(t['litellm_header_p50_ms'], ' ms')}",
                     "proxy CPU per request (defaults / tuned)":
                         f"{fmt(a['proxy_cpu_ms_per_request'], '')} / {fmt(t['proxy_cpu_ms_per_request'], ' ms')}"})
    concurrency = int(run.settings["concurrency"])
    for shape, label in (("plain", "plain"), ("stream", "streamed")):
        d, a, t = (row(shape, concurrency, x) for x in ("direct", compared, tuned_target))
        rows.append({"": f"{label}, c={concurrency}", "direct p50": fmt(d["rps"], " req/s", 2),
                     "LiteLLM defaults: added p50": fmt(a["rps"], " req/s", 2),
                     "tuned: added p50": fmt(t["rps"], " req/s", 2), "LiteLLM's header p50 (defaults / tuned)": "",
                     "proxy CPU per request (defaults / tuned)":
                         f"{fmt(a['proxy_cpu_ms_per_request'], '')} / {fmt(t['proxy_cpu_ms_per_request'], ' ms')}"})

    savings = [1 - row(s, c, tuned_target)["proxy_cpu_ms_per_request"] / row(s, c, compared)["proxy_cpu_ms_per_request"]
               for s in ("plain", "stream") for c in (1, concurrency)]
    header_share = [row(s, 1, x)["litellm_header_p50_ms"] / row(s, 1, x)["added_p50_ms"]
                    for s in ("plain", "stream") for x in (compared, tuned_target)]
    cpu_plain = row("plain", 1, tuned_target)["proxy_cpu_ms_per_request"]
    keys = ("zero_cost", "routing_strategy")
    return render(
        TEMPLATE, run=run, settings=run.settings, provenance=measured([run]), rows=pd.DataFrame(rows),
        tuned=run.proxies[tuned_target], defaults=run.proxies[compared],
        tuned_settings=_setting(run, tuned_target, *keys), defaults_settings=_setting(run, compared, *keys),
        cpu_saving_min=min(savings), cpu_saving_max=max(savings), target_added_ms=TARGET_ADDED_MS,
        target_factor=TARGET_SATURATED_FACTOR, tuned_added_plain=row("plain", 1, tuned_target)["added_p50_ms"],
        tuned_added_stream=row("stream", 1, tuned_target)["added_p50_ms"], cpu_plain=cpu_plain,
        cpu_stream=row("stream", 1, tuned_target)["proxy_cpu_ms_per_request"],
        header_share_min=min(header_share), header_share_max=max(header_share), cores=run.machine.cores,
        workers=len(run.stack_spec.workers), direct_plain_rps=row("plain", concurrency, "direct")["rps"],
        tuned_plain_rps=row("plain", concurrency, tuned_target)["rps"], ceiling_rps=1000 / cpu_plain,
        saturated_factor=row("plain", concurrency, tuned_target)["rps"] / row("plain", concurrency, compared)["rps"])
