"""docs/studies/harness-ceilings.md: what the load generator, the proxy and Redis each spend per request, on gpu-sim
with a near-instant engine (SIMULATED), from results/harness-ceilings/ and results/overhead-gpu-sim/."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from bench.lab.overhead import OverheadRun, Row
from bench.lab.scaleout import OVERLOADED, busy_share
from bench.records import Manifest
from bench.report.pages import page, render
from bench.report.pages.scale_provenance import SIMULATED_NOTICE, of_manifest, of_overhead, provenance
from bench.rundir import read_manifest

FOLDER = "harness-ceilings"
OVERHEAD = "overhead-gpu-sim"
CPU_OVERHEAD = "overhead-cpu-default"  # the real CPU stack's proxy, for comparison
CPU_RUNS = ["calibration-cpu/real-r0", "calibration-cpu/real-r1"]  # npc-cpu on the real CPU stack
SIM_RUNS = ["calibration-cpu/cpu-sim-r0", "calibration-cpu/cpu-sim-r1"]  # the same mix, simulated workers
FAILING = 0.05  # a run with this share of its requests failed measured no ceiling
PEERS = "load-generators"  # the lean client and the peer tools, same worker, same rate
GOAL_MS = {"plain": 1.0, "streamed": 5.0}  # issue 25: the load generator's CPU ms a request
TARGET_ADDED_MS = 5.0  # the target for what the proxy may add to a request
RUNS = {  # folder -> what it is, in the order of the table
    "harness-plain-p1-sim": "plain, 1 Locust process",
    "harness-plain-p2-sim": "plain, 2 Locust processes",
    "harness-plain-redis-sim": "plain, 2 + 2 proxy processes sharing Redis",
    "harness-streamed-p1-sim": "streamed, 1 Locust process",
    "harness-streamed-p2-sim": "streamed, 2 Locust processes",
    "harness-streamed-redis-sim": "streamed, 2 + 2 proxy processes sharing Redis",
}

TEMPLATE = """# SIMULATED: The harness's own ceilings

{{ notice }}
Each run records what each part of the harness spent: the Locust processes' CPU and how late their 100 ms timers
fired (`summary.client`: a starved load generator times every request late), each stack process's CPU
(`summary.server.cpu_s`) and the commands the stack's Redis processed. Measured on `gpu-sim` with a near-instant
engine (every latency term 0 but a {{ step_ms | num }} ms step), so that the load generator and the proxy are the
limit, with the `harness-plain` (ambient alone, ~{{ plain_prompt | round(-2) | num }}-token prompts) and `harness-streamed`
(dialogue alone, ~{{ streamed_prompt | round(-2) | num }}-token prompts, {{ streamed_tokens }} streamed tokens) mixes at
{{ rates }} requests/s over {{ npcs | num }} NPCs for {{ duration | num }} s, with the
`{{ client_kind }}` client (`results/{{ folder }}/`):

{{ table(runs) }}

(Load-generator CPU is the master's and its workers' together, start-up excluded; proxy CPU is all its processes with
their children, from psutil.)

Read as ceilings per core: **one Locust process carries about {{ lg_plain_rps | num }} plain or
{{ lg_streamed_rps | num }} streamed requests/s**, and **one LiteLLM process about {{ proxy_plain_rps | num }} plain
or {{ proxy_streamed_rps | num }} streamed** (a {{ streamed_tokens }}-token stream costs the proxy
{{ stream_over_plain | num(1) }} times a plain reply: it handles each chunk). Two Locust processes cost
{{ lg_p2_change_plain | signed_pct }} (plain) and {{ lg_p2_change_streamed | signed_pct }} (streamed) CPU a request
against one, and their timers' p99 lateness was {{ lag_p99_ratio_plain | num(2) }} and
{{ lag_p99_ratio_streamed | num(2) }} times one process's; they write one folder.

{% if overloaded %}**Overloaded:** {{ overloaded }} asked for {{ overload_threshold | pct }} or more of the machine's
cores (their own processes' CPU over the run's time), so requests queued (streamed TTFT p50
{{ streamed_ttft_lo | num(1) }}-{{ streamed_ttft_hi | num(1) }} s) and {{ streamed_failed_lo }}-{{ streamed_failed_hi }}
of each streamed run's requests failed; their CPU figures stand, their latencies are the queue's.
{% else %}No run asked for {{ overload_threshold | pct }} or more of the machine's cores (their own processes' CPU over
the run's time; streamed TTFT p50 {{ streamed_ttft_lo | num(2) }}-{{ streamed_ttft_hi | num(2) }} s).
{% endif %}{% if failing %}**Failing:** {{ failing }} of their requests failed (the proxy put both workers in cooldown
after they dropped streams: 500 "Server disconnected", then 429s), so their CPU a request is over a mix of served and
refused requests and is not a ceiling; re-measure them on a quiet machine.
{% endif %}A re-measurement with the lean client on 2026-12-03 failed on the shared, overloaded machine (many of its
requests failed, and its Redis runs never started); it is kept, unread, in `results/harness-ceilings-r2-sim/` with
the load averages it ran under.
One Redis on this machine serves {{ redis_lo | round(-3) | num }}-{{ redis_hi | round(-3) | num }}
commands/s (`redis-benchmark.txt`: {{ redis_tests }}), so at {{ redis_per_request | num(1) }} commands a request it
is not the limit.

## The load generator against its peers

The same near-instant simulated worker (`light-0`, straight, no proxy) was driven at {{ peer_rate | num }} requests/s
by the harness's `{{ client_kind }}` client (`python -m bench run --direct light-0`; CPU from `summary.client`,
start-up excluded) and by `vllm bench serve` and GuideLLM (`python -m bench peers`: each run with
{{ peer_small }} and with {{ peer_large }} requests, the difference of their process trees' CPU over the
difference of requests, start-up cancelled, synthetic-prompt generation included). `vllm bench serve` always
streams, so its "plain" row is a streamed request with the plain shape's tokens (`results/{{ peers_folder }}/`):

{{ table(peer_table) }}

Goals (issue 25): the load generator at most {{ goal_plain | num }} CPU ms a plain and {{ goal_streamed | num }} a
streamed request, and less than either peer. {{ goal_lines }}

## What the proxy adds

Straight to the workers and through the proxy, with the same near-instant engine (`results/{{ overhead }}/`,
`bench overhead --compare two-processes --set proxy.num_workers=2`), so that nothing else loads the cores at
concurrency 1:

{{ table(overhead_table) }}

With the cores free of vLLM the proxy adds {{ added_plain | num(1) }} ms to a plain request and
{{ added_streamed | num(1) }} ms to a short stream at concurrency 1, against {{ cpu_added_lo | num }}-{{ cpu_added_hi
| num }} ms on the real CPU stack (`results/{{ cpu_overhead }}/`): the {{ target_ms | num }} ms target is still
missed, by the CPU LiteLLM spends per plain request ({{ proxy_cpu_lo | num }}-{{ proxy_cpu_hi | num }} ms in one
process). A second process adds {{ second_plain | signed_pct }} (plain) and {{ second_streamed | signed_pct }}
(streamed) saturated throughput on these two cores, which the bench, the simulated workers and the proxy share.
LiteLLM's lighter paths are measured in [LiteLLM's lighter paths](litellm-paths.md).

### Gateway options: not measured yet

Issue 25's gateway comparison (vLLM's `--enable-force-include-usage`, the `lean` settings, LiteLLM's other
throughput settings, and `vllm-router` in front of a group, side by side in one `bench overhead --compare` run) was not
run in this round: the shared machine was overloaded, and its half-the-CPU goal is neither MET nor MISSED here.
From reading, not measuring: LiteLLM 1.106 takes a stream's token counts from the usage in its chunks and counts
with its tokenizer only when they are absent (`calculate_usage` in
`litellm_core_utils/streaming_chunk_builder_utils.py`); the harness's clients already ask for that usage
(`stream_options.include_usage`), so forcing it on the workers should change the proxy's CPU only for clients that do
not. `vllm-router` 0.1.17's `--help` offers `consistent_hash` and `power_of_two` policies, retries, a circuit breaker,
`--api-key` and a Prometheus port; routing heavy and light by model name (one router per group, or its `--enable-igw`
mode) and the heavy-to-light fallback are unchecked, so it is not offered as a `proxy` kind.

## The load generator on the real CPU stack

On the real CPU stack the load generator shares the two cores with four vLLM workers, and it shows: in the two
`npc-cpu` runs of the calibration ({{ cpu_runs }}), its timers fired late by {{ cpu_lag_p50_lo | num(1) }}-{{
cpu_lag_p50_hi | num(1) }} ms at the median but {{ cpu_lag_p99_lo | num }}-{{ cpu_lag_p99_hi | num }} ms at p99 (up
to {{ cpu_lag_max | num(1) }} s), so the CPU stack's tail latencies include up to that much of the bench's own
lateness. With the same mix on simulated workers ({{ sim_runs }}, the `cpu-sim` profile, whose simulated workers
used at most {{ sim_worker_cpu_hi | num(1) }} CPU-s in all a run), the p99 was
{{ sim_lag_p99_lo | num }}-{{ sim_lag_p99_hi | num }} ms.

## Where the figures come from

- `results/{{ folder }}/`: `results/{{ folder }}/commands.sh` has every command, in order. {{ runs_provenance }}
- `results/{{ overhead }}/`: the same `commands.sh`. {{ overhead_provenance }}
- `results/{{ peers_folder }}/`: `results/{{ peers_folder }}/commands.sh`, its log `measure.log` (load averages
  around each run). {{ peers_provenance }}
- `results/{{ cpu_overhead }}/` and the calibration runs are described in `results/README.md`.
  {{ cpu_provenance }}
"""


def redis_rates(text: str) -> dict[str, float]:
    """redis-benchmark's summary lines: 'SET: 81366.97 requests per second, ...' -> {'SET': 81366.97}."""
    return {name: float(rate) for name, rate in re.findall(r"(\w+): ([0-9.]+) requests per second", text)}


def proxy_ms_per_request(manifest: Manifest) -> float:
    summary = manifest.summary
    assert summary is not None and summary.server is not None, manifest.run_id
    return summary.server.cpu_s["proxy"] * 1000 / summary.all.requests


def worker_cpu_s(manifest: Manifest) -> float:
    """CPU seconds all the run's workers (every stack process but the proxy) used."""
    assert manifest.summary is not None and manifest.summary.server is not None, manifest.run_id
    return sum(v for k, v in manifest.summary.server.cpu_s.items() if k != "proxy")


def prompt_mean(manifest: Manifest) -> float:
    assert manifest.summary is not None, manifest.run_id
    return manifest.summary.all.prompt_tokens_mean or 0.0


def run_row(name: str, manifest: Manifest) -> dict[str, object]:
    summary = manifest.summary
    assert summary is not None and summary.client is not None and summary.server is not None, name
    client, commands = summary.client, summary.server.redis_commands
    failed = summary.all.requests - summary.all.n_ok
    return {"run": f"{RUNS[name]} (`{name}`)", "requests (failed)": f"{summary.all.requests:,} ({failed:,})",
            "load generator: CPU ms a request": f"{client.cpu_ms_per_request:.1f}",
            "its timers late: p50 / p99 / max": f"{client.loop_lag_p50_ms:.1f} / {client.loop_lag_p99_ms:.0f} / "
                                                f"{client.loop_lag_max_ms:.0f} ms",
            "proxy: CPU ms a request": f"{proxy_ms_per_request(manifest):.1f}",
            "Redis commands a request": "" if commands is None else f"{commands / summary.all.requests:.1f}"}


def overhead_rows(run: OverheadRun) -> dict[tuple[str, int, str], Row]:
    return {(r.shape, r.concurrency, r.target): r for r in run.rows}


def overhead_table(rows: dict[tuple[str, int, str], Row], targets: list[str], c_high: int,
                   stream_tokens: int) -> pd.DataFrame:
    def latency(shape: str, target: str) -> str:
        r = rows[(shape, 1, target)]
        return f"{r.latency_p50_ms:.1f} ms" + (f" (+{r.added_p50_ms:.1f})" if r.added_p50_ms is not None else "")

    def cpu(shape: str, target: str) -> str:
        low, high = rows[(shape, 1, target)], rows[(shape, c_high, target)]
        return "" if low.proxy_cpu_ms_per_request is None else \
            f"{low.proxy_cpu_ms_per_request:.1f} / {high.proxy_cpu_ms_per_request:.1f}"

    names = {"direct": "direct", "proxy": "one proxy process", "two-processes": "two proxy processes"}
    table = {
        "plain, c=1: p50 (added)": [latency("plain", t) for t in targets],
        f"streamed ({stream_tokens} tokens), c=1: p50 (added)": [latency("stream", t) for t in targets],
        f"plain, c={c_high}: requests/s": [f"{rows[('plain', c_high, t)].rps:.0f}" for t in targets],
        f"streamed, c={c_high}: requests/s": [f"{rows[('stream', c_high, t)].rps:.0f}" for t in targets],
        f"proxy CPU ms a request (c=1 / c={c_high}), plain": [cpu("plain", t) for t in targets],
        f"proxy CPU ms a request (c=1 / c={c_high}), streamed": [cpu("stream", t) for t in targets],
    }
    return pd.DataFrame([{"": k, **{names.get(t, t): v for t, v in zip(targets, cells, strict=True)}}
                         for k, cells in table.items()])


def rates_text(plain: float, streamed: float) -> str:
    return f"{plain:g}" if plain == streamed else f"{plain:g} (plain) and {streamed:g} (streamed)"


def peer_figures(folder: Path) -> tuple[pd.DataFrame, str, list[Manifest], dict[str, object]]:
    """The lean client's and the peers' CPU a request per shape, and the goals' verdicts, from `folder`."""
    from bench.lab.peers import read

    peers = read(folder / "peers-sim" / "peers.json")
    lean = {kind: read_manifest(folder / f"lean-harness-{kind}-sim") for kind in ("plain", "streamed")}
    ms: dict[str, dict[str, float]] = {"harness (lean)": {}}
    for kind, manifest in lean.items():
        assert manifest.summary is not None and manifest.summary.client is not None, manifest.run_id
        ms["harness (lean)"][kind] = manifest.summary.client.cpu_ms_per_request or 0.0
    for row in peers:
        shape = row["shape"]
        assert isinstance(shape, dict)
        ms.setdefault(str(row["tool"]), {})[str(shape["name"]).removeprefix("harness-")] = float(str(row["cpu_ms_per_request"]))
    table = pd.DataFrame([{"tool": tool, **{f"{k}: CPU ms a request (requests/s a core)": f"{v[k]:.2f} ({1000 / v[k]:,.0f})"
                                            for k in ("plain", "streamed") if k in v}} for tool, v in ms.items()])
    lines = []
    for kind, goal in GOAL_MS.items():
        mine = ms["harness (lean)"][kind]
        peers_ms = {t: v[kind] for t, v in ms.items() if t != "harness (lean)" and kind in v}
        verdict = "NOT MEASURED" if not peers_ms else "MET" if all(mine < v for v in peers_ms.values()) else "MISSED"
        lines.append(f"{kind.capitalize()}: {mine:.2f} ms against {goal:g}: **{'MET' if mine <= goal else 'MISSED'}**; "
                     f"against the peers ({', '.join(f'{t} {v:.2f}' for t, v in peers_ms.items())}): "
                     f"**{verdict}**.")
    first = peers[0]
    small, large = first["small"], first["large"]
    assert isinstance(small, dict) and isinstance(large, dict)
    return table, " ".join(lines), list(lean.values()), {"peer_rate": first["rate_rps"], "peer_small": small["requests"],
                                                            "peer_large": large["requests"]}


@page("studies/harness-ceilings.md", title="SIMULATED: The harness's own ceilings")
def harness_ceilings(results: Path) -> str:
    folder = results / FOLDER
    manifests = {name: read_manifest(folder / name) for name in RUNS}
    assert all(m.simulated for m in manifests.values()), f"{folder}: a run was not simulated, and this page says it is"
    first = manifests["harness-plain-p1-sim"]
    summaries = {name: m.summary for name, m in manifests.items()}
    assert all(s is not None and s.client is not None for s in summaries.values())
    client = {name: s.client for name, s in summaries.items() if s is not None and s.client is not None}
    shape = first.mix.mix.shape
    streamed = [n for n in RUNS if "streamed" in n]
    streamed_mix = manifests["harness-streamed-p1-sim"].mix
    lg_ms = {k: client[f"harness-{k}-p1-sim"].cpu_ms_per_request or 0.0 for k in ("plain", "streamed")}
    proxy_ms = {k: proxy_ms_per_request(manifests[f"harness-{k}-p1-sim"]) for k in ("plain", "streamed")}
    rates = redis_rates((folder / "redis-benchmark.txt").read_text())
    redis_per_request = [run.summary.server.redis_commands / run.summary.all.requests for run in manifests.values()
                         if run.summary and run.summary.server and run.summary.server.redis_commands is not None]

    overhead_path = results / OVERHEAD / "overhead.json"
    overhead = OverheadRun.model_validate_json(overhead_path.read_text())
    rows = overhead_rows(overhead)
    c_high = max(r.concurrency for r in overhead.rows)
    cpu_rows = overhead_rows(OverheadRun.model_validate_json((results / CPU_OVERHEAD / "overhead.json").read_text()))
    cpu_added = [r.added_p50_ms for (shape_, c, target), r in cpu_rows.items()
                 if c == 1 and target == "proxy" and r.added_p50_ms is not None]
    one_cpu = [r.proxy_cpu_ms_per_request for (s, _, t), r in rows.items()
               if s == "plain" and t == "proxy" and r.proxy_cpu_ms_per_request is not None]
    cpu_manifests = [read_manifest(results / run) for run in CPU_RUNS]
    sim_manifests = [read_manifest(results / run) for run in SIM_RUNS]
    cpu_lag = [m.summary.client for m in cpu_manifests if m.summary and m.summary.client]
    sim_lag = [m.summary.client for m in sim_manifests if m.summary and m.summary.client]
    group_sim = next(iter(first.stack_spec.groups.values())).sim
    peer_table, goal_lines, lean_manifests, peer_settings = peer_figures(results / PEERS)
    shares = {name: busy_share(folder / name) for name in RUNS}
    overloaded = ", ".join(f"`{n}` ({v:.0%})" for n, v in shares.items() if v >= OVERLOADED)
    return render(
        TEMPLATE, notice=SIMULATED_NOTICE, folder=FOLDER, overhead=OVERHEAD, cpu_overhead=CPU_OVERHEAD,
        step_ms=group_sim.step_overhead_ms if group_sim else 0,
        plain_prompt=prompt_mean(manifests["harness-plain-p1-sim"]),
        streamed_prompt=prompt_mean(manifests["harness-streamed-p1-sim"]),
        streamed_tokens=max(c.output_tokens.mean for c in streamed_mix.classes.values() if c.stream),
        peers_folder=PEERS, peer_table=peer_table, goal_lines=goal_lines, goal_plain=GOAL_MS["plain"],
        goal_streamed=GOAL_MS["streamed"], **peer_settings, client_kind=first.client or "openai",
        peers_provenance=provenance([of_manifest(m.run_id, m) for m in lean_manifests]),
        overloaded=overloaded, overload_threshold=OVERLOADED, failing=", ".join(
            f"`{n}` ({(s.all.requests - s.all.n_ok) / s.all.requests:.0%})" for n, s in summaries.items()
            if s and s.all.requests and (s.all.requests - s.all.n_ok) / s.all.requests >= FAILING),
        rates=rates_text(getattr(shape, "rate_rps", 0), getattr(streamed_mix.mix.shape, "rate_rps", 0)),
        rate=getattr(shape, "rate_rps", 0), npcs=getattr(shape, "users", 0), duration=getattr(shape, "duration_s", 0),
        runs=pd.DataFrame([run_row(n, m) for n, m in manifests.items()]),
        lg_plain_rps=1000 / lg_ms["plain"], lg_streamed_rps=1000 / lg_ms["streamed"],
        proxy_plain_rps=1000 / proxy_ms["plain"], proxy_streamed_rps=1000 / proxy_ms["streamed"],
        proxy_streamed_ms=proxy_ms["streamed"], stream_over_plain=proxy_ms["streamed"] / proxy_ms["plain"],
        lg_p2_change_plain=(client["harness-plain-p2-sim"].cpu_ms_per_request or 0) / lg_ms["plain"] - 1,
        lg_p2_change_streamed=(client["harness-streamed-p2-sim"].cpu_ms_per_request or 0) / lg_ms["streamed"] - 1,
        lag_p99_ratio_plain=client["harness-plain-p2-sim"].loop_lag_p99_ms / client["harness-plain-p1-sim"].loop_lag_p99_ms,
        lag_p99_ratio_streamed=(client["harness-streamed-p2-sim"].loop_lag_p99_ms
                                / client["harness-streamed-p1-sim"].loop_lag_p99_ms),
        streamed_proxy_cores=getattr(shape, "rate_rps", 0) * proxy_ms["streamed"] / 1000,
        streamed_ttft_lo=min(s.all.ttft_p50_s or 0 for n, s in summaries.items() if n in streamed and s),
        streamed_ttft_hi=max(s.all.ttft_p50_s or 0 for n, s in summaries.items() if n in streamed and s),
        streamed_failed_lo=min(s.all.requests - s.all.n_ok for n, s in summaries.items() if n in streamed and s),
        streamed_failed_hi=max(s.all.requests - s.all.n_ok for n, s in summaries.items() if n in streamed and s),
        redis_lo=min(rates.values()), redis_hi=max(rates.values()), redis_tests=", ".join(rates),
        redis_per_request=max(redis_per_request),
        overhead_table=overhead_table(rows, ["direct", "proxy", "two-processes"], c_high,
                                      overhead.settings["output_tokens"]["stream"]),
        added_plain=rows[("plain", 1, "proxy")].added_p50_ms, added_streamed=rows[("stream", 1, "proxy")].added_p50_ms,
        cpu_added_lo=min(cpu_added), cpu_added_hi=max(cpu_added), target_ms=TARGET_ADDED_MS,
        proxy_cpu_lo=min(one_cpu), proxy_cpu_hi=max(one_cpu),
        second_plain=rows[("plain", c_high, "two-processes")].rps / rows[("plain", c_high, "proxy")].rps - 1,
        second_streamed=rows[("stream", c_high, "two-processes")].rps / rows[("stream", c_high, "proxy")].rps - 1,
        cpu_runs=", ".join(f"`{r.split('/')[-1]}`" for r in CPU_RUNS),
        sim_runs=", ".join(f"`{r.split('/')[-1]}`" for r in SIM_RUNS),
        cpu_lag_p50_lo=min(c.loop_lag_p50_ms for c in cpu_lag), cpu_lag_p50_hi=max(c.loop_lag_p50_ms for c in cpu_lag),
        cpu_lag_p99_lo=min(c.loop_lag_p99_ms for c in cpu_lag), cpu_lag_p99_hi=max(c.loop_lag_p99_ms for c in cpu_lag),
        cpu_lag_max=max(c.loop_lag_max_ms for c in cpu_lag) / 1000,
        sim_worker_cpu_hi=max(worker_cpu_s(m) for m in sim_manifests),
        sim_lag_p99_lo=min(c.loop_lag_p99_ms for c in sim_lag), sim_lag_p99_hi=max(c.loop_lag_p99_ms for c in sim_lag),
        runs_provenance=provenance([of_manifest(n, m) for n, m in manifests.items()]),
        overhead_provenance=provenance([of_overhead(overhead_path, OVERHEAD)]),
        cpu_provenance=provenance([of_overhead(results / CPU_OVERHEAD / "overhead.json", CPU_OVERHEAD),
                                   *[of_manifest(m.run_id, m) for m in cpu_manifests + sim_manifests]]))
