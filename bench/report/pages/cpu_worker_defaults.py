"""CPU worker defaults: the `cpu` profile's worker settings, one change at a time, three runs a setting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from bench.records import Manifest
from bench.report.compare import ALL, Subject, compare, interval, load_subjects
from bench.report.pages import measured, page, render, sweep_manifests
from bench.report.stats import Interval
from serve import load_profile

SWEEP, SINGLE = "sweep-cpu-defaults-repeats", "sweep-cpu-defaults"
FIGURES = ["output_tps", "goodput_rps", "ttft_p95_s", "e2e_p50_s"]
MIB_PER_GIB = 1024
CALL_KEYS = {"output_tps": "output", "goodput_rps": "goodput", "ttft_p95_s": "ttft", "e2e_p50_s": "e2e"}

TEMPLATE = """# CPU worker defaults

`python -m bench sweep bench/sweeps/cpu-defaults-repeats.toml` starts the stack once per setting, one change at a time
from the `{{ profile }}` profile, and runs the `{{ mix }}` mix ({{ npcs }} NPCs) {{ repeats }} times for {{ duration_s |
num }} s, the prefix caches emptied before each run. `results/{{ sweep }}/`, measured {{ provenance }}. Each figure is
the mean of the {{ repeats }} runs with its 95 % interval (rates over the runs, percentiles by bootstrap over the
pooled requests); start-up is `serve up` to every process healthy, once per setting; peak RSS is the larger of the
group's workers at its highest over the runs (the runs' peaks {{ "agree" if rss_spread_gib < 0.1 else "differ" }} to
within {{ rss_spread_gib | num(2) }} GiB).

{{ table(settings) }}

{{ table(figures) }}

Against s0, by `python -m bench compare`, {% if differing %}these differ outside the noise: {{ differing | join("; ")
}}. Everything else is within noise{% else %}nothing differs outside the noise{% endif %}:

{{ table(differences) }}

## What the `cpu` profile takes from it

- **Eager{% if profile_eager %} stays{% else %} was dropped{% endif %}.** Compiling (s1) changed output tokens/s by {{
  calls.s1.output }} ({{ calls.s1.output_verdict }}) and TTFT p95 by {{ calls.s1.ttft }} ({{ calls.s1.ttft_verdict }}),
  and took {{ calls.startup_ratio | num(1) }} times the start-up ({{ calls.s1.startup | num }} s against {{
  calls.s0.startup | num }} s), which every sweep point and every CI run pays.
- **One core per worker, each group on both cores{% if profile_binding_kept %}, stays{% endif %}.** Putting every
  worker on both cores (s3) changed output tokens/s by {{ calls.s3.output }} ({{ calls.s3.output_verdict }}; {{
  calls.s3_output_share | pct }} of s0's) and goodput by {{ calls.s3.goodput }} ({{ calls.s3.goodput_verdict }}): the
  OpenMP threads spin and wait for each other. One group per core (s2) {% if calls.s2.all_within %}came out level with
  the profile (every figure within noise){% else %}differed: {{ calls.s2.differing | join("; ") }}{% endif %}.
- **The heavy workers' KV space{% if profile_heavy_kv == 1 %} stays at 1 GiB{% else %} is {{ profile_heavy_kv }}
  GiB{% endif %}.** {{ calls.s4.label }} {% if calls.s4.all_within %}changed nothing measurable (every figure within
  noise){% else %}differed: {{ calls.s4.differing | join("; ") }}{% endif %}, and raised the heavy workers' peak RSS to
  {{ calls.s4.rss_heavy | num(1) }} GiB from {{ calls.s0.rss_heavy | num(1) }}.
- **{{ profile_seqs }} sequences per worker stay,** for want of a measured reason to change them: {{ calls.s5.label }}
  {% if calls.s5.all_within %}was within noise on every figure{% else %}differed: {{ calls.s5.differing | join("; ") }}{%
  endif %} (goodput {{ calls.s5.goodput }}).

## The single-run study this replaces

`results/{{ single }}/` ({{ single_duration_s | num }} s, one run a setting, measured {{ single_provenance }}) read the
same settings from one run each. Its figures beside this study's means:

{{ table(single_table) }}

A single run's difference of a few tokens/s is within the run-to-run spread the intervals above show, so the reasons
drawn from it (eager costing output tokens/s, 4 sequences lowering throughput) were replaced by the calls above.
"""


def _known(x: object) -> float | None:
    return None if x is None or pd.isna(x) else float(x)  # type: ignore[arg-type]


def _shown(iv: Interval, digits: int, unit: str = "", signed: bool = False) -> str:
    if iv.value is None:
        return "-"
    value = f"{iv.value:{'+' if signed else ''}.{digits}f}{unit}"
    return f"{value} [{iv.low:.{digits}f}, {iv.high:.{digits}f}]" if iv.known else f"{value} (no interval)"


DISPLAY = {"output_tps": (1, "", "output tok/s"), "goodput_rps": (2, " req/s", "goodput req/s"),
           "ttft_p95_s": (1, " s", "TTFT p95"), "e2e_p50_s": (1, " s", "e2e p50")}


def _point(subject: Subject) -> str:
    return subject.name.rsplit("/", 1)[-1].split("-")[0]  # `sweep/s1-l0` -> `s1`


def _describe(manifest: Manifest) -> str:
    """A stack's worker settings in one line: eager, thread binding, KV space and sequences per group."""
    stack = manifest.stack_spec
    eager = {g.enforce_eager for g in stack.groups.values()}
    binding = ", ".join(f"{w.name} on {w.cpu_bind}" for w in stack.workers)
    kv = " / ".join(f"{g.kv_cache_space_gib:g}" for g in stack.groups.values())
    seqs = " / ".join(str(g.max_num_seqs) for g in stack.groups.values())
    return (f"{'eager' if eager == {True} else 'compiled' if eager == {False} else 'mixed'}; {binding}; "
            f"KV {kv} GiB, {seqs} seqs ({' / '.join(stack.groups)})")


def _peak_gib(manifest: Manifest, group: str) -> float:
    memory = manifest.summary.server.memory  # type: ignore[union-attr]
    return max(memory[w.name].peak_mib for w in manifest.stack_spec.workers if w.group == group) / MIB_PER_GIB


@page("studies/cpu-worker-defaults.md", title="CPU worker defaults",
      summary="The cpu profile's worker settings (eager, thread binding, KV space, sequences) one at a time.")
def cpu_worker_defaults(results: Path) -> str:
    sweep_dir = results / SWEEP
    subjects = load_subjects(sweep_dir)
    index = pd.DataFrame(json.loads((sweep_dir / "index.json").read_text()))
    startup = {run_id.split("-")[0]: s for run_id, s in zip(index.run_id, index.startup_s, strict=True)}
    sweep_spec = json.loads((sweep_dir / "sweep.json").read_text())
    first = subjects[0].runs[0].manifest

    settings, rows, rss, rss_spread = [], [], {}, 0.0
    for subject, overrides in zip(subjects, sweep_spec["points"], strict=True):
        point = _point(subject)
        changed = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in overrides.items()) or "the profile as is"
        settings.append({"setting": point, "change": changed, "stack": _describe(subject.runs[0].manifest)})
        peaks = {g: [_peak_gib(r.manifest, g) for r in subject.runs] for g in ("heavy", "light")}
        rss_spread = max(rss_spread, *(max(v) - min(v) for v in peaks.values()))
        rss[point] = {g: max(v) for g, v in peaks.items()}
        row = {"setting": point, "start-up": f"{startup[point]:.0f} s"}
        for figure in FIGURES:
            digits, unit, label = DISPLAY[figure]
            row[label] = _shown(interval(subject, ALL, figure), digits, unit)
        row["peak RSS heavy / light"] = f"{rss[point]['heavy']:.1f} / {rss[point]['light']:.1f} GiB"
        rows.append(row)

    table = compare(subjects, FIGURES)
    table = table[(table.cls == ALL) & table.verdict.notna()]
    differences: list[dict[str, str]] = []
    differing: list[str] = []
    calls: dict[str, dict[str, Any]] = {}
    for r in table.itertuples():
        point = r.subject.rsplit("/", 1)[-1].split("-")[0]
        digits, unit, label = DISPLAY[str(r.figure)]
        diff = _shown(Interval(value=_known(r.diff), low=_known(r.diff_low), high=_known(r.diff_high), n=0), digits,
                      unit, signed=True)
        differences.append({"setting": point, "figure": label, "difference from s0": diff, "verdict": r.verdict})
        if r.verdict == "differs":
            differing.append(f"{point}'s {label} {diff}")
        call = calls.setdefault(point, {"differing": [], "label": point})
        call[CALL_KEYS[str(r.figure)]] = diff
        call[f"{CALL_KEYS[str(r.figure)]}_verdict"] = r.verdict
        if r.verdict == "differs":
            call["differing"].append(f"{label} {diff}")
    for point, call in calls.items():
        call |= {"all_within": not call["differing"], "startup": startup[point], "rss_heavy": rss[point]["heavy"]}
    calls["s0"] = {"startup": startup["s0"], "rss_heavy": rss["s0"]["heavy"]}
    calls["s4"]["label"] = f"{subjects[4].runs[0].manifest.stack_spec.groups['heavy'].kv_cache_space_gib:g} GiB (s4)"
    calls["s5"]["label"] = " and ".join(str(g.max_num_seqs) for g in subjects[5].runs[0].manifest.stack_spec.groups.values()) \
        + " sequences (s5)"
    output = {_point(s): interval(s, ALL, "output_tps").value for s in subjects}
    calls_all = {**calls, "startup_ratio": startup["s1"] / startup["s0"],
                 "s3_output_share": (output["s3"] or 0) / (output["s0"] or 1)}

    single = sweep_manifests(results / SINGLE)
    single_rows = []
    single_index = pd.DataFrame(json.loads((results / SINGLE / "index.json").read_text()))
    for m, (_, srow) in zip(single, single_index.iterrows(), strict=True):
        point = m.run_id.split("-")[0]
        single_rows.append({"setting": point, "single run: start-up": f"{srow.startup_s:.0f} s",
                            "single run: output tok/s": f"{m.summary.all.output_tps:.1f}",  # type: ignore[union-attr]
                            "repeated: start-up": f"{startup[point]:.0f} s",
                            "repeated: output tok/s": _shown(interval(subjects[int(point[1:])], ALL, "output_tps"), 1),
                            "single run's stack": _describe(m)})

    profile = load_profile(sweep_spec["profile"])  # what the profile sets now, which the calls are about
    return render(
        TEMPLATE, profile=sweep_spec["profile"], mix=first.mix.mix.name,
        npcs=getattr(first.mix.mix.shape, "users", None), repeats=len(subjects[0].runs),
        duration_s=first.mix.mix.shape.duration_s, sweep=SWEEP,
        provenance=measured([r.manifest for s in subjects for r in s.runs]), rss_spread_gib=rss_spread,
        settings=pd.DataFrame(settings), figures=pd.DataFrame(rows), differing=differing,
        differences=pd.DataFrame(differences), calls=calls_all,
        profile_eager=all(g.enforce_eager for g in profile.groups.values()),
        profile_binding_kept=len({w.cpu_bind for w in profile.workers}) > 1,
        profile_heavy_kv=profile.groups["heavy"].kv_cache_space_gib,
        profile_seqs=" and ".join(str(g.max_num_seqs) for g in profile.groups.values()), single=SINGLE,
        single_duration_s=single[0].mix.mix.shape.duration_s, single_provenance=measured(single),
        single_table=pd.DataFrame(single_rows))
