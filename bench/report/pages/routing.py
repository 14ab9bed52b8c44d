"""Routing NPC traffic: LiteLLM's routing strategies and session affinity, three runs a point, per mix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.compare import ALL, Subject, by_load, compare, interval, load_subjects
from bench.report.pages import measured, page, render
from bench.report.stats import Interval
from serve import ProxySpec

SWEEP = "sweep-cpu-routing-repeats"
STRATEGY = "serve.proxy.routing_strategy"
MIX_NAMES = {"npc-cpu": "NPC mix", "multi-turn": "multi-turn mix"}
# Per mix, the latency figure shown: TTFT over the streamed classes, or e2e where the mix streams nothing.
FIGURES = {"goodput_rps": "goodput req/s", "ttft_p95_s": "TTFT p95", "e2e_p95_s": "e2e p95",
           "slo_attainment": "SLO attainment", "prefix_cache_hit_rate": "prefix-cache hits"}

TEMPLATE = """# Routing NPC traffic

`python -m bench sweep bench/sweeps/cpu-routing-repeats.toml` starts a fresh stack for each of {{ strategies |
join(", ") }}, and runs the default NPC mix (`{{ mixes[0].name }}`, {{ mixes[0].npcs }} NPCs) and the multi-turn mix
(`{{ mixes[1].name }}`, {{ mixes[1].npcs }} NPCs) {{ repeats }} times for {{ duration_s | num }} s each, the workers'
prefix caches emptied before every run. `session-affinity` is LiteLLM's own `session_affinity` pre-call check on top of
simple-shuffle: the bench sends each NPC's id as `metadata.session_id` (as a game client would), and the proxy keeps
that NPC on the worker that served it first, where its prefix is cached. `results/{{ sweep }}/`, measured {{
provenance }}.

Each figure is the mean of the {{ repeats }} runs with its 95 % interval: goodput and prefix-cache hits over the runs
(Student's t), TTFT and e2e p95 by bootstrap over the runs' pooled requests (TTFT over the streamed classes; multi-turn
replies are not streamed, so its column is e2e p95):

{{ table(overview) }}

## Differences, each mix against its own default routing

`python -m bench compare` gives each difference its own interval. Each point is compared with {{ baseline }} under
the same mix (`results/{{ sweep }}/intervals.csv`, column `baseline`); a difference whose interval holds zero is within
noise:

{{ table(differences) }}

Outside the noise, against {{ baseline }}:
{% for mix, found in differing.items() %}
- on the {{ mix }}: {% if found %}{{ found | join("; ") }}{% else %}nothing{% endif %}.
{%- endfor %}

Latency-based routing against session affinity, the two with the most prefix-cache hits, on each mix (`python -m
bench compare` with session affinity's point as the baseline):

{{ table(head_to_head) }}

## Where the requests went

Requests per worker in each run, from the client's records:

{{ table(placement) }}

Latency-based routing routes each request to the deployment with the lowest average of its recent latencies, and a
worker that gets no requests gets no new samples, so the first worker to look slower is left idle: {{ lbr_idle }}. On
this {{ cores }}-core machine an idle worker frees CPU for its busy twin, which is why that pays here; on GPUs, where
each worker has its own, it would leave half the workers unused, and a restarted worker would not get traffic back until
its twin slowed down. Session affinity {% if sa_split == 0 %}kept every NPC on one worker per group in every run{% else
%}moved {{ sa_split }} NPC-groups across workers over its runs{% endif %}, and with {{ mixes[0].npcs }} NPCs its pins
also landed unevenly ({{ sa_light }}), which on this machine helps it the same way. Its runs are not independent draws
of that placement: the same NPC ids run on the same stack, and emptying the prefix caches does not clear LiteLLM's
pins.

## The call

**{{ default }} is the default** (`proxy.routing_strategy`, `serve/spec.py`). Against LiteLLM's default it differs
outside the noise in: {{ sa_calls }}. Where latency-based routing beats it, it does so by idling workers, which only
pays where twins share a CPU; session affinity keeps each NPC's prefix on one worker, which is what pays on GPUs.
Requests without a session id are spread by simple-shuffle; the restarted-worker and fault tests rely on that.

## The single-run studies this replaces

`results/sweep-cpu-routing/` ({{ single.durations[0] | num }} s) and `results/sweep-cpu-routing-60s/` ({{
single.durations[1] | num }} s) ran each point once, measured {{ single.provenance }}. Their figures beside this study's
means and intervals; a single run's lead that falls inside the intervals above is not a lead:

{{ table(single.table) }}
"""


def _fmt(value: float | None, digits: int, scale: float = 1.0, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * scale:{'+' if signed else ''},.{digits}f}"


def _shown(iv: Interval, digits: int, scale: float = 1.0, unit: str = "", signed: bool = False) -> str:
    """`0.33 [0.14, 0.51]`, `10.4 s [4.1, 12.4]`."""
    if iv.value is None:
        return "-"
    body = _fmt(iv.value, digits, scale, signed) + unit
    if not iv.known:
        return f"{body} (no interval)"
    return f"{body} [{_fmt(iv.low, digits, scale)}, {_fmt(iv.high, digits, scale)}]"


def _display(figure: str) -> tuple[int, float, str]:
    """Digits, scale and unit a figure is shown in."""
    return {"goodput_rps": (2, 1.0, ""), "ttft_p95_s": (1, 1.0, " s"), "e2e_p95_s": (1, 1.0, " s"),
            "slo_attainment": (0, 100.0, " points"), "prefix_cache_hit_rate": (1, 100.0, " %")}[figure]


def _latency(subject: Subject) -> str:
    """TTFT p95 where the mix streams, e2e p95 where it does not."""
    return "ttft_p95_s" if interval(subject, ALL, "ttft_p95_s").value is not None else "e2e_p95_s"


def _label(strategy: str, default: str) -> str:
    return {"simple-shuffle": "simple-shuffle (LiteLLM's default)"}.get(strategy, strategy) + (
        " (the stack's default)" if strategy == default else "")


SINGLE_RUNS = ["sweep-cpu-routing", "sweep-cpu-routing-60s"]


def _single_runs(results: Path, repeated: list[Subject]) -> dict:
    """The single-run routing studies' goodput and hits per point, beside the repeated study's."""
    by_point = {(s.settings[STRATEGY], s.settings["load.mix"]): s for s in repeated}
    rows: dict[tuple[str, str], dict[str, str]] = {}
    manifests, durations = [], []
    for folder in SINGLE_RUNS:
        subjects = load_subjects(results / folder)
        manifests += [run.manifest for s in subjects for run in s.runs]
        durations.append(subjects[0].runs[0].manifest.mix.mix.shape.duration_s)
        for s in subjects:
            key = (s.settings[STRATEGY], s.settings["load.mix"])
            summary = s.runs[0].manifest.summary
            hits = summary.server.prefix_cache_hit_rate.get("all") if summary and summary.server else None
            row = rows.setdefault(key, {"strategy": key[0], "mix": MIX_NAMES.get(key[1], key[1])})
            row[f"{durations[-1]:g} s run: goodput"] = f"{summary.all.goodput_rps:.2f}" if summary else "-"
            row[f"{durations[-1]:g} s run: hits"] = f"{hits * 100:.1f} %" if hits is not None else "-"
    for key, row in rows.items():
        if key in by_point:
            row["repeated: goodput"] = _shown(interval(by_point[key], ALL, "goodput_rps"), 2)
            row["repeated: hits"] = _shown(interval(by_point[key], ALL, "prefix_cache_hit_rate"), 1, 100.0, " %")
    table = pd.DataFrame(sorted(rows.values(), key=lambda r: (r["mix"], r["strategy"])))
    return {"durations": durations, "provenance": measured(manifests), "table": table}


@page("studies/routing.md", title="Routing NPC traffic",
      summary="LiteLLM's routing strategies and session affinity on the NPC and multi-turn mixes, three runs a point.")
def routing(results: Path) -> str:
    sweep_dir = results / SWEEP
    subjects = load_subjects(sweep_dir)
    groups = by_load(subjects)  # one per mix, the default routing first
    manifests = [run.manifest for s in subjects for run in s.runs]
    default = ProxySpec.model_fields["routing_strategy"].default
    strategies = list(dict.fromkeys(s.settings[STRATEGY] for s in subjects))
    mixes = [{"name": g[0].settings["load.mix"], "npcs": getattr(g[0].runs[0].manifest.mix.mix.shape, "users", None)}
             for g in groups]

    overview = []
    for strategy in strategies:
        row = {"strategy": f"**{_label(strategy, default)}**" if strategy == default else _label(strategy, default)}
        for group in groups:
            subject = next(s for s in group if s.settings[STRATEGY] == strategy)
            mix = MIX_NAMES.get(subject.settings["load.mix"], subject.settings["load.mix"])
            for figure in ("goodput_rps", _latency(subject), "prefix_cache_hit_rate"):
                digits, scale, unit = _display(figure)
                unit = " %" if figure == "prefix_cache_hit_rate" else unit
                row[f"{mix}: {FIGURES[figure]}"] = _shown(interval(subject, ALL, figure), digits, scale, unit)
        overview.append(row)

    baseline_strategy = groups[0][0].settings[STRATEGY]
    rows: list[dict[str, str]] = []
    differing: dict[str, list[str]] = {}
    for group in groups:
        mix = MIX_NAMES.get(group[0].settings["load.mix"], group[0].settings["load.mix"])
        figures = ["goodput_rps", _latency(group[0]), "slo_attainment", "prefix_cache_hit_rate"]
        table = compare(group, figures)
        table = table[(table.cls == ALL) & table.verdict.notna()]
        differing[mix] = []
        for r in table.itertuples():
            strategy = next(s.settings[STRATEGY] for s in group if s.name == r.subject)
            digits, scale, unit = _display(str(r.figure))
            unit = " points" if r.figure == "prefix_cache_hit_rate" else unit
            diff = _shown(Interval(value=r.diff, low=r.diff_low, high=r.diff_high, n=0), digits, scale, unit,
                          signed=True)
            rows.append({"mix": mix, "strategy": strategy, "figure": FIGURES[str(r.figure)], "difference": diff,
                         "verdict": r.verdict})
            if r.verdict == "differs":
                differing[mix].append(f"{strategy}'s {FIGURES[str(r.figure)]} {diff}")

    head_to_head = []
    for group in groups:
        mix = MIX_NAMES.get(group[0].settings["load.mix"], group[0].settings["load.mix"])
        sa, lbr = (next(s for s in group if s.settings[STRATEGY] == name)
                   for name in ("session-affinity", "latency-based-routing"))
        both = compare([sa, lbr], ["goodput_rps", _latency(sa), "prefix_cache_hit_rate"])
        for r in both[(both.cls == ALL) & (both.subject == lbr.name)].itertuples():
            digits, scale, unit = _display(str(r.figure))
            unit = " points" if r.figure == "prefix_cache_hit_rate" else unit
            diff = _shown(Interval(value=r.diff, low=r.diff_low, high=r.diff_high, n=0), digits, scale, unit, True)
            head_to_head.append({"mix": mix, "figure": FIGURES[str(r.figure)],
                                 "latency-based - session affinity": diff, "verdict": r.verdict})

    placement, lbr_idle, sa_split, sa_light = [], [], 0, []
    for group in groups:
        mix = MIX_NAMES.get(group[0].settings["load.mix"], group[0].settings["load.mix"])
        for subject in group:
            strategy = subject.settings[STRATEGY]
            for run in subject.runs:
                names = [w.name for w in run.manifest.stack_spec.workers]
                counts = run.requests.worker.value_counts().reindex(names, fill_value=0)
                used = run.requests.group.unique()
                shown = {g: " / ".join(str(counts[w.name]) for w in run.manifest.stack_spec.workers if w.group == g)
                         for g in ("heavy", "light")}
                placement.append({"strategy": strategy, "mix": mix, "run": run.manifest.run_id,
                                  **{f"{g} ({' / '.join(w.name for w in run.manifest.stack_spec.workers if w.group == g)})":
                                     shown[g] if g in used else "-" for g in ("heavy", "light")}})
                idle = [w for w in names if counts[w] == 0 and any(
                    x.group in used and x.name == w for x in run.manifest.stack_spec.workers)]
                if strategy == "latency-based-routing":
                    lbr_idle.append((mix, run.manifest.run_id, idle))
                if strategy == "session-affinity":
                    sa_split += int((run.requests.dropna(subset=["worker"]).groupby(["npc_id", "group"])
                                     .worker.nunique() > 1).sum())
                    if mix == MIX_NAMES["npc-cpu"]:
                        sa_light.append(counts[[w.name for w in run.manifest.stack_spec.workers if w.group == "light"]])

    idle_text = []
    for mix in MIX_NAMES.values():
        runs = [(run_id, idle) for m, run_id, idle in lbr_idle if m == mix]
        with_idle = [idle for _, idle in runs if idle]
        idle_text.append(f"on the {mix}, {len(with_idle)} of its {len(runs)} runs left "
                         + (", ".join(sorted({w for idle in with_idle for w in idle})) if with_idle else "no worker")
                         + " without a request")
    light = pd.DataFrame(sa_light)
    sa_light_text = ", ".join(f"{w} served {light[w].min()} to {light[w].max()} light requests a run"
                              for w in light.columns)

    sa_calls = [c for c in differing[MIX_NAMES["npc-cpu"]] + differing[MIX_NAMES["multi-turn"]]
                if c.startswith(f"{default}'s")]
    return render(
        TEMPLATE, strategies=[f"`{s}`" for s in strategies], mixes=mixes, repeats=len(subjects[0].runs),
        duration_s=manifests[0].mix.mix.shape.duration_s,
        sweep=SWEEP, provenance=measured(manifests), overview=pd.DataFrame(overview),
        baseline=baseline_strategy, differences=pd.DataFrame(rows), differing=differing,
        head_to_head=pd.DataFrame(head_to_head), single=_single_runs(results, subjects),
        placement=pd.DataFrame(placement), lbr_idle="; ".join(idle_text), cores=manifests[0].machine.cores,
        sa_split=sa_split, sa_light=sa_light_text, default=f"`{default}`",
        sa_calls="; ".join(c.removeprefix(f"{default}'s ") + (" (NPC mix)" if c in differing[MIX_NAMES["npc-cpu"]]
                                                               else " (multi-turn)") for c in sa_calls) or "nothing")
