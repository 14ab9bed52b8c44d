"""docs/studies/gpu-sim.md: the `gpu` reference deployment with simulated workers, as its runs recorded it (the stack
spec, the KV blocks, the prompt sizes), from results/sweep-gpu-sim-routing-scale/."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.analysis import sweep_index
from bench.report.pages import page, render
from bench.report.pages.scale_provenance import SIMULATED_NOTICE, of_run, provenance
from bench.rundir import read_manifest, read_requests
from serve import plan_worker

FOLDER = "sweep-gpu-sim-routing-scale"
BYTES_PER_GB = 1e9

TEMPLATE = """# SIMULATED: gpu-sim, the reference deployment

{{ notice }}
`serve/profiles/gpu-sim.toml` is the `gpu` profile (its models, groups, contexts, batch settings, KV blocks from the
memory plan, proxy) with simulated workers, so `python -m serve up --detach --profile gpu-sim` starts it on a machine
without a GPU and the `{{ mix }}` mix runs end to end. Every figure below is what its runs recorded
(`results/{{ folder }}/`, the stack spec in each manifest): the profile as it ran, not as it reads today.

## The latency model these runs had: a roofline estimate, not a measurement

When these runs were made, the profile stated its derivation: a GPU's datasheet memory bandwidth and tensor
throughput at an assumed fraction of peak; a decode step reads every weight once and each sequence's KV; prefill
costs 2 x parameters FLOPs a token plus attention's FLOPs a token pair. As run:

{{ table(latency) }}

Read back, the step term is each model's weights read at {{ bandwidth }} GB/s and the per-context-token term its KV
read at {{ kv_bandwidth }} GB/s: one assumed bandwidth, the model's, not a GPU's measured one.
Today `gpu-sim.toml` derives its coefficients instead, from the L40S's datasheet and efficiencies fitted to public
measurements (`sim = { gpu = "L40S", ... }`, serve/sim/steptime.py); their error against real vLLM runs is on
[Simulator accuracy](simulator-accuracy.md). The runs above have not been repeated with it.

## KV blocks

Each simulated worker has the KV blocks `serve/gpu.py`'s memory plan gives on the {{ gpu_gib | num(1) }} GiB GPU the
profile is sized for:

{{ table(kv) }}

## What the mix asks of it

The prompts the `{{ mix }}` runs sent, per class, as the simulated workers counted them (all {{ runs }} runs of the
sweep, {{ requests | num }} requests):

{{ table(prompts) }}

The stack was ready {{ startup_lo | num }}-{{ startup_hi | num }} s after `serve up` in these runs (`startup_s` in the
sweep's `index.json`). The end-to-end test `tests/e2e/test_sim.py` starts `gpu-sim` beside the real stack, runs
`npc-gpu` from two Locust processes, and checks that the folder is complete and labelled, that the client's token
counts agree with the simulator's counters, and that session pins hold across proxy processes; it asserts, and
records no figure here.

## Where the figures come from

`results/{{ folder }}/` (`python -m bench sweep bench/sweeps/gpu-sim-routing-scale.toml`). {{ where }}
"""


def spread(values: list[float]) -> str:
    """'431' when the values round alike, else '420-431'."""
    lo, hi = f"{min(values):,.0f}", f"{max(values):,.0f}"
    return lo if lo == hi else f"{lo}-{hi}"


@page("studies/gpu-sim.md", title="SIMULATED: gpu-sim, the reference deployment")
def gpu_sim(results: Path) -> str:
    sweep = results / FOLDER
    points = sweep_index(sweep)
    paths = [sweep / p for p in points.path]
    manifest = read_manifest(paths[0])
    assert manifest.simulated and manifest.stack_spec.sized_for_gpu_gib, f"{paths[0]}: not a simulated gpu profile run"
    spec = manifest.stack_spec
    latency, bandwidth, kv_bandwidth = [], [], []
    for name, group in spec.groups.items():
        model, sim = spec.models[group.model], group.sim
        assert sim is not None, f"{paths[0]}: group {name} is not simulated"
        weights_bytes = model.weights_gib * 2**30
        kv_bytes = spec.kv_bytes_per_token(name)
        bandwidth.append(weights_bytes / (sim.step_overhead_ms / 1000) / BYTES_PER_GB)
        kv_bandwidth.append(kv_bytes / (sim.decode_ms_per_kv_token / 1000) / BYTES_PER_GB)
        latency.append({"group": name, "model": f"`{model.hf_id}` ({model.quantization})",
                        "weights GiB": f"{model.weights_gib:g}", "step ms": f"{sim.step_overhead_ms:g}",
                        "prefill ms / token": f"{sim.prefill_ms_per_token:g}",
                        "attention ms / token pair": f"{sim.prefill_ms_per_token_pair:g}",
                        "decode ms / sequence": f"{sim.decode_ms_per_seq:g}",
                        "decode ms / context token": f"{sim.decode_ms_per_kv_token:g}",
                        "request ms": f"{sim.request_overhead_ms:g}", "source": sim.source})
    gpu_gib = spec.sized_for_gpu_gib
    assert gpu_gib is not None
    kv = []
    for worker in spec.workers:
        reported = manifest.kv_cache[worker.name]
        plan = plan_worker(spec, worker, gpu_gib)
        kv.append({"worker": worker.name, "group": worker.group, "GPU": worker.gpu,
                   "KV bytes / token": f"{spec.kv_bytes_per_token(worker.group):,}",
                   "plan: KV GiB": f"{plan.kv_gib:.2f}", "plan: tokens": f"{plan.kv_tokens:,}",
                   "simulated worker: blocks x size": f"{int(reported['num_gpu_blocks']):,} x {reported['block_size']}",
                   "tokens": f"{int(reported['kv_cache_size_tokens']):,}"})
    requests = pd.concat([read_requests(p) for p in paths])
    sent = requests[requests.prompt_tokens.notna()]
    prompts = sent.groupby("cls").prompt_tokens.agg(["count", "mean", "min", "max"]).reset_index()
    prompts.columns = ["class", "requests", "mean prompt tokens", "min", "max"]
    return render(
        TEMPLATE, notice=SIMULATED_NOTICE, mix=manifest.mix.name, folder=FOLDER, latency=pd.DataFrame(latency),
        bandwidth=spread(bandwidth), kv_bandwidth=spread(kv_bandwidth), gpu_gib=gpu_gib, kv=pd.DataFrame(kv),
        runs=len(paths), requests=len(requests),
        prompts=prompts.round(0).astype({"mean prompt tokens": int, "min": int, "max": int}),
        startup_lo=points.startup_s.min(), startup_hi=points.startup_s.max(),
        where=provenance([of_run(p) for p in paths]))
