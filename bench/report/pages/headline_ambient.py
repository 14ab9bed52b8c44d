"""Headline: how many ambient NPCs ticking at 1 Hz the default CPU stack keeps in fresh decisions, per tick policy."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.records import Manifest
from bench.report.analysis import sweep_points
from bench.report.pages import _pct, measured, page, render, sweep_manifests
from bench.rundir import read_requests
from bench.shapes.tick import TickBurst

FRESH_TARGET = 0.95  # the share of ticks with a fresh decision the headline asks for

TEMPLATE = """# Headline: ambient NPCs at 1 Hz, in fresh decisions

**On the default `cpu` stack on this {{ cores }}-core machine, {% if best.fresh_share < target %}no number of ambient
NPCs ticking at 1 Hz gets a fresh decision at {{ target | pct }} of its ticks, under any tick policy{% else %}{{
best.npcs }} ambient NPCs at 1 Hz get a fresh decision at {{ best.fresh_share | pct }} of their ticks
(`{{ best.policy }}`){% endif %}.** The best point is {{ best.npcs }} NPC{{ "s" if best.npcs > 1 }} under `{{ best.policy
}}`, fresh at {{ best.fresh_share | pct }} of its ticks. One NPC gets a fresh decision at {{ one.fresh_min | pct }} to
{{ one.fresh_max | pct }} of its ticks, depending on the policy, and acts on a decision at most {{ one.stale_p95_max |
num }} tick{{ "s" if one.stale_p95_max != 1 }} old at p95. Past one NPC the policies part ways:

- `skip` (a thinking NPC does not ask again): staleness at p95 is {{ skip_stale | join(", ") }} ticks for {{ npcs |
  join(", ") }} NPCs.
- `overlap` (every NPC asks every tick): staleness at p95 is {{ overlap_stale | join(", ") }} ticks; requests pile up,
  and e2e p95 reaches {{ overlap_e2e_max | num(2) }} s.
- `cancel` (a newer tick cancels the request in flight): once a reply takes longer than a tick the stack almost never
  finishes one; from two NPCs on, {{ cancel_fallback_min | pct }} to {{ cancel_fallback_max | pct }} of NPC-ticks
  fall back.

In planning units, the fewest ticks old a decision is at p95 for each number of NPCs, and the policies that get it:

{{ table(planning) }}

A world simulator's {{ hz10.tick_hz | num }} Hz loop with {{ hz10.deadline_ms | num }} ms per decision {% if
hz10.fresh_max == 0 %}gets no fresh decision at all here{% else %}gets a fresh decision at {{ hz10.fresh_max | pct }} of
its ticks at best{% endif %}: a reply takes about {{ hz10.e2e_p50_s | num(2) }} s ({{ hz10.e2e_ticks | num }} ticks)
at e2e p50. With one NPC under `skip`, {{ hz10.skip_fallback | pct }} of its ticks fall back and it acts on decisions
{{ hz10.skip_stale_p95 | num }} ticks old at p95; under `cancel`, {{ hz10.cancel_ok }} of {{ hz10.cancel_requests |
num }} requests completed in {{ hz10.duration_s | num }} s.

## Reproduce

`python -m bench sweep bench/sweeps/cpu-tick-policies.toml` (the `{{ mix }}` mix at {{ tick_hz | num }} Hz, each
decision due by the next tick, under each `--tick-policy`, for {{ npcs | join(", ") }} NPCs, {{ duration_s | num }} s
each, on a freshly started default stack) and `python -m bench sweep bench/sweeps/cpu-tick-10hz.toml`:
`results/sweep-cpu-tick-policies/` and `results/sweep-cpu-tick-10hz/`, measured {{ provenance }}. Each point is one
run, so differences of a few points are within run-to-run noise.

{{ table(points) }}

(e2e p95 is over completed replies only; under `cancel` those are the few that beat the next tick.) What a game should
take from it: on hardware that answers in about a tick, `skip` keeps decisions a few ticks old as NPCs are added,
`overlap` spends the stack on answers nobody waits for, and `cancel` needs replies well inside a tick or it starves
every NPC.

## The first round, in latency

The first round stated this headline in latency, by the class SLO: one NPC had an e2e p95 of {{ first.e2e_p95_s |
num(2) }} s, {{ "within" if first.e2e_p95_s <= slo_s else "over" }} the ambient SLO of {{ slo_s | num }} s (`python -m
bench sweep bench/sweeps/cpu-capacity.toml`, `overlap` policy, {{ capacity_duration_s | num }} s runs;
`results/sweep-cpu-capacity/`, measured {{ capacity_provenance }}). By the project's own goodput rule, which also
requires the reply by the next tick, that run's SLO attainment was {{ first.slo_attainment | num(2) }}: {{
first.deadline_miss_rate | pct }} of its replies came after the next tick.

{{ table(capacity) }}

An ambient request in this mix is about {{ prompt_mean | num }} prompt tokens ({{ prefix_share | pct }} of them a
faction prefix shared by many NPCs) and {{ output_mean | num }} reply tokens, so one reply takes about {{
first.e2e_p50_s | num(2) }} s at e2e p50 however few NPCs there are. With the earlier defaults ({{ earlier_routing }}
routing, {{ earlier_heavy_kv | num }} GiB heavy KV; `results/sweep-cpu-tick/`, {{ earlier_duration_s | num }} s runs,
measured {{ earlier_provenance }}, so not a like-for-like comparison), one NPC got an e2e p95 of {{ earlier_p95[0] |
num(2) }} s and two NPCs {{ earlier_p95[1] | num(2) }} s.
"""


def _ticks(x: float) -> str:
    return f"{x:g}"


def _tick_shape(manifest: Manifest) -> TickBurst:
    shape = manifest.mix.mix.shape
    assert isinstance(shape, TickBurst), f"{manifest.run_id} is not a tick run"
    return shape


@page("studies/headline-ambient-1hz.md", title="Headline: ambient NPCs at 1 Hz, in fresh decisions",
      summary="How many ambient NPCs at 1 Hz the CPU stack keeps in fresh decisions, under each tick policy.")
def headline(results: Path) -> str:
    policies_dir, hz10_dir = results / "sweep-cpu-tick-policies", results / "sweep-cpu-tick-10hz"
    capacity_dir, earlier_dir = results / "sweep-cpu-capacity", results / "sweep-cpu-tick"
    points = sweep_points(policies_dir).rename(columns={"offered_npcs": "npcs", "tick_policy": "policy"})
    manifests = sweep_manifests(policies_dir) + sweep_manifests(hz10_dir)
    first_manifest = manifests[0]
    npcs = sorted(points.npcs.unique())
    by_policy = {p: part.sort_values("npcs") for p, part in points.groupby("policy")}
    best = points.sort_values("fresh_share", ascending=False).iloc[0]
    one = points[points.npcs == 1]

    planning = []
    for n, part in points.groupby("npcs"):
        least = part.staleness_p95.min()
        planning.append({"NPCs at 1 Hz": n, "staleness p95 (ticks)": _ticks(least),
                         "policies": ", ".join(f"`{p}`" for p in part[part.staleness_p95 == least].policy)})

    shown = points.assign(
        fresh=points.fresh_share.map(_pct), late=points.late_share.map(_pct),
        fallback=points.fallback_share.map(_pct),
        staleness=points.staleness_p50.map(_ticks) + " / " + points.staleness_p95.map(_ticks),
        thinking=points.thinking_share.map(_pct), e2e=points.e2e_p95_s.map(lambda x: f"{x:.2f} s"))
    shown["order"] = shown.policy.map({"overlap": 0, "skip": 1, "cancel": 2})
    shown = shown.sort_values(["npcs", "order"])[["npcs", "policy", "fresh", "late", "fallback", "staleness",
                                                  "thinking", "e2e"]]
    shown.columns = ["NPCs at 1 Hz", "policy", "fresh", "late", "fallback", "staleness p50 / p95 (ticks)", "thinking",
                     "e2e p95"]

    hz10 = sweep_points(hz10_dir).rename(columns={"offered_npcs": "npcs", "tick_policy": "policy"})
    skip1 = hz10[(hz10.policy == "skip") & (hz10.npcs == 1)].iloc[0]
    cancel1 = hz10[(hz10.policy == "cancel") & (hz10.npcs == 1)].iloc[0]
    cancel_requests = read_requests(hz10_dir / cancel1.path)
    hz10_shape = _tick_shape(sweep_manifests(hz10_dir)[0])
    hz10_figures = {"deadline_ms": (hz10_shape.deadline_s or 0) * 1000, "e2e_p50_s": skip1.e2e_p50_s,
                    "e2e_ticks": skip1.e2e_p50_s * hz10_shape.tick_hz,
                    "skip_fallback": skip1.fallback_share, "skip_stale_p95": skip1.staleness_p95,
                    "cancel_ok": int((cancel_requests.outcome == "ok").sum()), "cancel_requests": len(cancel_requests),
                    "duration_s": hz10_shape.duration_s, "tick_hz": hz10_shape.tick_hz,
                    "fresh_max": hz10.fresh_share.max()}

    capacity = sweep_points(capacity_dir, by="groups").query("group == 'light'").reset_index(drop=True)
    capacity_manifests = sweep_manifests(capacity_dir)
    capacity_table = pd.DataFrame({
        "NPCs at 1 Hz": capacity.offered_npcs, "requests": capacity.requests,
        "e2e p50": capacity.e2e_p50_s.map(lambda x: f"{x:.2f} s"),
        f"e2e p95 (SLO {capacity_manifests[0].mix.classes['ambient'].slo.e2e_max_s} s)":
            capacity.e2e_p95_s.map(lambda x: f"{x:.2f} s"),
        "replies after the next tick": capacity.deadline_miss_rate.map(_pct),
        "SLO attainment": capacity.slo_attainment.map(lambda x: f"{x:.2g}"),
        "light prefix-cache hits": [_pct(m.summary.server.prefix_cache_hit_rate["group:light"] or 0.0)  # type: ignore[union-attr]
                                    for m in capacity_manifests]})
    ambient = capacity_manifests[0].mix.classes["ambient"]

    earlier = sweep_manifests(earlier_dir)
    earlier_p95 = [m.summary.all.e2e_p95_s for m in earlier[:2]]  # type: ignore[union-attr]

    return render(
        TEMPLATE, cores=first_manifest.machine.cores, target=FRESH_TARGET, best=best,
        one={"fresh_min": one.fresh_share.min(), "fresh_max": one.fresh_share.max(),
             "stale_p95_max": one.staleness_p95.max()},
        npcs=npcs, skip_stale=[_ticks(x) for x in by_policy["skip"].staleness_p95],
        overlap_stale=[_ticks(x) for x in by_policy["overlap"].staleness_p95],
        overlap_e2e_max=by_policy["overlap"].e2e_p95_s.max(),
        cancel_fallback_min=by_policy["cancel"][by_policy["cancel"].npcs > 1].fallback_share.min(),
        cancel_fallback_max=by_policy["cancel"][by_policy["cancel"].npcs > 1].fallback_share.max(),
        planning=pd.DataFrame(planning), hz10=hz10_figures, mix=first_manifest.mix.name,
        tick_hz=_tick_shape(first_manifest).tick_hz,
        duration_s=first_manifest.mix.mix.shape.duration_s, provenance=measured(manifests), points=shown,
        first=capacity.iloc[0], slo_s=ambient.slo.e2e_max_s, capacity=capacity_table,
        capacity_duration_s=capacity_manifests[0].mix.mix.shape.duration_s,
        capacity_provenance=measured(capacity_manifests), prompt_mean=ambient.prompt_tokens.mean,
        prefix_share=ambient.shared_prefix_share, output_mean=ambient.output_tokens.mean,
        earlier_routing=earlier[0].stack_spec.proxy.routing_strategy,
        earlier_heavy_kv=earlier[0].stack_spec.groups["heavy"].kv_cache_space_gib,
        earlier_duration_s=earlier[0].mix.mix.shape.duration_s, earlier_provenance=measured(earlier),
        earlier_p95=earlier_p95)
