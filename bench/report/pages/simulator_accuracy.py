"""Simulator accuracy: the SIMULATED step-time model against public real-GPU vLLM measurements
(results/sim-validation, written by `python -m serve.sim.validate`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.report.pages import page, render, snippet
from serve.common import SIM_VALIDATION_MANIFEST as MANIFEST

GOAL_PCT = 15.0  # issue 24: median absolute error on TTFT, ITL and e2e, held out, on three GPU types with an Ada card
ADA = {"L40S", "RTX 4090", "L4"}

TEMPLATE = """# Simulator accuracy (SIMULATED against measured)

Every figure the simulated worker (serve/sim/) produces is SIMULATED. This page shows how far its step-time
model, derived for a GPU, a model and a quantization (serve/sim/steptime.py), lands from public measurements of
real vLLM on real GPUs. Each number below is read from `results/sim-validation/` by code.

**Goal** (issue 24): median absolute percentage error (MdAPE) within {{ goal }} % on TTFT, ITL and end-to-end
latency, on runs the model was not fitted on, on at least three GPU types including an Ada card.
**Verdict: {{ verdict }}** Held-out GPU types within the goal on all three metrics: {{ passing }}.
Outside it: {{ missed }}.

Read the held-out figures with their sample sizes: the A100-80GB and the L40S have two runs each, one compared
stage per run (the `values` column); the H100 has fourteen. The L40S's engine efficiency could only be fitted on
L40S serving runs, so each L40S run is predicted with the factor fitted on the other L40S run (2-fold).

## Median absolute percentage error

Fit: the runs the serving overheads were fitted on. Held-out: runs no fit used (for the L40S, each run is
predicted with the engine efficiency fitted on the other L40S run; see below). `values` counts the (run, stage,
statistic) figures behind each median.

{{ table(summary, floatfmt=",.1f") }}

## Why a run misses: how close it sits to its KV capacity

{% if kv is not none %}`kv-capacity.csv`: per held-out run, the share of the memory plan's KV blocks its measured
steady state holds (`demand_share`: requests in flight by Little's law, the rate times the measured mean e2e, times
the blocks of a request halfway through its output, over the planned blocks; the shared system prompt's blocks are
counted per request, so it overstates a little). A run holding half or more is replayed again (stages cut to
{{ kv_stage_s }} s) with fewer blocks: `binding_blocks` is the fewest at which the predicted mean TTFT stays within
10 % of its value at the planned capacity, `binding_share` that over the plan, and the last columns the predicted
mean TTFT with the cache cut to a share of the plan (measured beside them).

{{ table(kv, floatfmt=",.3g") }}

{{ kv_finding }}
{% else %}Not computed for this results folder (run `python -m serve.sim.validate`).
{% endif %}
## How it was made

- Kernel factors (serve/sim/step_fit.json, `python -m serve.sim.fit`): LLMServingSim per-layer profiles (RTX 4090,
  RTX PRO 6000), Vidur mlp.csv (A100, H100, A40), Qwen2.5 speed benchmark (A100, AWQ against BF16).
- Engine efficiency (a whole vLLM step against its kernels), per GPU: {{ engine_eff }}.
- Per-request cost {{ request_ms }} ms and output released {{ lag }} step(s) late, both fitted on the fit runs only.
- Replay: {{ runs }} runs in virtual time (serve/sim/virtual.py), the same engine code as the simulated worker.
  Command: `{{ command }}` at commit `{{ commit }}`.

## Kernel factors and their fit residuals

Efficiency factors of the additive step model (serve/sim/steptime.py), against each GPU's datasheet peak. They
are fit parameters of that model's form, not measured utilisations: where a dense layer's memory-bound and
compute-bound parts overlap, a factor can exceed 1. `*_mape` columns are the mean absolute relative error of each
kernel fit on its own points (`mixed` is held out of the attention fits). A GPU without kernel data takes its
factors from a GPU of the same die or architecture, or a median: {{ donors }}.
AWQ reads its weights at {{ awq }} x BF16's efficiency (A100, Qwen2.5 speed benchmark).

{{ table(kernel, floatfmt=",.3g") }}

## Reproduce

With the public data at `../shared/gpu-public-data` (or `NPCBENCH_GPU_DATA`):

    python -m serve.sim.fit          # kernel factors and serving fit -> serve/sim/step_fit.json
    {{ command }}    # -> results/sim-validation/
    python -m bench docs             # -> this page

## Assumptions

{% for a in assumptions %}- {{ a }}
{% endfor %}
## Every run, stage and statistic

Errors are (predicted - measured) / measured.

{{ table(rows, floatfmt=",.1f") }}

## Data

{% for key, value in sources.items() %}- {{ key }}: {{ value }}
{% endfor %}"""


@page("studies/simulator-accuracy.md", title="Simulator accuracy")
def simulator_accuracy(results: Path) -> str:
    folder = results / "sim-validation"
    manifest = json.loads((folder / MANIFEST).read_text())
    summary = pd.read_csv(folder / "summary.csv")
    rows = pd.read_csv(folder / "validation.csv")
    held = summary[(summary.split == "held-out") & (summary.gpu != "all")]
    within = held.groupby("gpu").mdape_pct.max() <= GOAL_PCT
    passing = sorted(within[within].index)
    over = held[held.mdape_pct > GOAL_PCT]
    missed = "; ".join(f"{r.gpu} {r.family.upper()} {r.mdape_pct:.1f} %" for r in over.itertuples()) or "nothing"
    met = len(passing) >= 3 and bool(ADA & set(passing))
    verdict = (f"met on {len(passing)} GPU types." if met else
               f"MISSED. {len(passing)} GPU type(s) are within {GOAL_PCT:g} % on every metric"
               + ("" if ADA & set(passing) else ", and no Ada card is among them") + ".")
    serving = manifest["serving_fit"]
    engine_eff = "; ".join(f"{gpu} {v['value']:.3f} ({v['source'].split(':')[0]})"
                           for gpu, v in serving["engine_eff"].items() if gpu in set(rows.gpu))
    kernel_rows = []
    for gpu, k in manifest["kernel_fit"].items():
        f, r = k["factors"], k["residuals"]
        kernel_rows.append({"gpu": gpu, "weight_bw": f["weight_bw_eff"], "gemm": f["gemm_eff"], "attn": f["attn_eff"],
                            "kv_bw": f["kv_bw_eff"], "dense_mape": r.get("dense_fit_mape"),
                            "decode_attn_mape": r.get("decode_attention_fit_mape"),
                            "prefill_attn_mape": r.get("prefill_attention_fit_mape"),
                            "mixed_attn_mape": r.get("mixed_attention_heldout_mape"),
                            "from": ", ".join(k["provenance"]).replace(
                                "ASSUMED", "ASSUMED median of RTX 4090 and RTX PRO 6000")})
    kernel = pd.DataFrame(kernel_rows)
    donors = "; ".join(f"{row['gpu']}: {row['from']}" for row in kernel_rows if "measured" not in row["from"])
    shown = rows[["split", "gpu", "run", "stage", "metric", "predicted_ms", "measured_ms", "error_pct"]]
    kv, kv_finding = _kv(folder, rows)
    return render(TEMPLATE, goal=f"{GOAL_PCT:g}", verdict=verdict, passing=", ".join(passing) or "none",
                  missed=missed, kernel=kernel, donors=donors, awq=f"{manifest['awq_vs_bf16_weight_bw']:.2f}",
                  summary=summary, rows=shown, engine_eff=engine_eff, request_ms=f"{serving['request_overhead_ms']:.1f}",
                  lag=serving["output_lag_steps"], runs=len(manifest["runs"]), command=manifest["command"],
                  commit=manifest["code_commit"][:10], assumptions=manifest["assumptions"],
                  sources=manifest["data_sources"], kv=kv, kv_finding=kv_finding,
                  kv_stage_s=f"{manifest.get('kv_analysis', {}).get('max_stage_s', 0):g}")


def _kv(folder: Path, rows: pd.DataFrame) -> tuple[pd.DataFrame | None, str]:
    """The KV capacity table, and what it says about the run with the largest TTFT error."""
    path = folder / "kv-capacity.csv"
    if not path.exists():
        return None, ""
    kv = pd.read_csv(path)
    ttft = rows[(rows.split == "held-out") & (rows.metric == "ttft_mean")]
    worst = ttft.loc[ttft.error_pct.abs().idxmax()]
    mine = kv[kv.run == worst.run].iloc[0]
    others = kv[kv.run != worst.run]
    cuts = [c for c in kv.columns if c.startswith("ttft_mean_ms_at_")]
    at = ", ".join(f"{float(c.rsplit('_', 1)[1]):.0%} of it {mine[c]:,.0f} ms" for c in cuts)
    finding = (
        f"The largest held-out TTFT error is {worst.run} on the {worst.gpu} ({worst.error_pct:+.0f} % on the mean "
        f"TTFT; its ITL and mean end-to-end latency are within a few per cent, so the steps are right). It is the run "
        f"at its KV capacity: its measured steady state holds {mine.demand_share:.0%} of the planned "
        f"{mine.planned_blocks:,.0f} blocks, every other held-out run at most {others.demand_share.max():.0%}. "
        f"In the replay the cache starts to bind at {mine.binding_share:.0%} of the plan; the predicted mean TTFT is "
        f"{worst.predicted_ms:,.0f} ms at the planned capacity and, with the cache cut to {at}, against "
        f"{mine.measured_ttft_mean_ms:,.0f} ms (p90 {mine.measured_ttft_p90_ms:,.0f} ms) measured. The replay has no "
        "regime between no queue and a queue that grows for the whole stage: its arrivals are evenly spaced and every "
        "request has the same lengths, so once the cache binds it binds for every request. The measurement, a mean a "
        "few times its unqueued value and a p90 far above the mean with ITL unchanged, looks like requests waiting "
        "for KV blocks now and then: a cache at its limit, with the jitter of real arrivals and steps. Cause as far "
        "as established: the run sits at its KV capacity, and the replay cannot reproduce intermittent waiting "
        "there. Not fixed: it would need that run's real KV capacity (vLLM's 'GPU KV cache size' log line, not in "
        "the public data; the plan is an estimate, serve/gpu.py) and a model of that jitter, and neither can be "
        "fitted on the fit runs (an 80 GB H100 with a 7B model, far from its KV capacity); tuning either to this "
        "run would fit the held-out set. Read the L40S TTFT figure as: within the goal away from KV capacity "
        "(the other L40S run), not predictable at it.")
    return kv, finding


@snippet("simulator-error")
def simulator_error(results: Path) -> str:
    """The README's one line on the simulator's error against public real-GPU vLLM runs it was not fitted on."""
    summary = pd.read_csv(results / "sim-validation" / "summary.csv")
    held = summary[summary.split == "held-out"]
    overall = held[held.gpu == "all"].set_index("family").mdape_pct
    worst = held[held.gpu != "all"].sort_values("mdape_pct").iloc[-1]
    return (f"The simulator's median error against public real-GPU vLLM runs it was not fitted on: TTFT "
            f"{overall['ttft']:.0f} %, ITL {overall['itl']:.0f} %, end to end {overall['e2e']:.0f} %; worst, "
            f"{worst.gpu} {worst.family.upper()} at {worst.mdape_pct:.0f} % "
            f"([Simulator accuracy](docs/studies/simulator-accuracy.md))")
