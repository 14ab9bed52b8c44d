"""docs/studies/routing-at-scale.md: LiteLLM's simple-shuffle against session affinity over 50, 200 and 500 NPCs of
`npc-gpu` on gpu-sim (SIMULATED), from results/sweep-gpu-sim-routing-scale/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.analysis import routing_balance, sweep_index
from bench.report.pages import page, render
from bench.report.pages.scale_provenance import (
    LITELLM_PIN_CACHE_ENTRIES,
    SIMULATED_NOTICE,
    of_manifest,
    provenance,
)
from bench.rundir import read_manifest, read_requests

FOLDER = "sweep-gpu-sim-routing-scale"
FIXED = "sweep-gpu-sim-affinity-scale"  # the session-affinity half again, after the router cache fix
STRATEGY = "serve.proxy.routing_strategy"
AFFINITY = "session-affinity"

TEMPLATE = """# SIMULATED: Routing at scale

{{ notice }}
`python -m bench sweep bench/sweeps/gpu-sim-routing-scale.toml` (`results/{{ folder }}/`): the `{{ mix }}` mix at
{{ rate | num }} requests/s spread over {{ npcs | join(", ") }} NPCs, LiteLLM's simple-shuffle against session
affinity, one {{ duration_s | num }} s run a point, the workers' prefix caches emptied before each. Per group: the
busiest and the idlest worker's requests (the client's records, with the NPCs each served), the group's NPCs and how
many of them two workers served, the group's prefix-cache hit rate (the workers' counters), and the point's goodput.

{{ table(balance) }}

## What it shows

- {{ affinity_split }}
  Under simple-shuffle, which pins nothing, the NPCs two workers served were, {{ shuffle_split }}.
  The NPCs that moved had been silent a while: under session affinity the median gap between an NPC's request
  and its next one on the other worker was {{ switch_gap_lo | num }}-{{ switch_gap_hi | num }} s (shortest
  {{ switch_gap_min | num }} s), against
  {{ stay_gap_lo | num }}-{{ stay_gap_hi | num }} s between requests that stayed; but {{ long_stays | num }} times an
  NPC stayed on its worker after at least as long a silence, so silence alone does not decide it. **The cause,
  found and fixed:** LiteLLM keeps session pins in its router's in-memory cache of {{ pin_cap }} entries, so with more
  NPCs than that the pins of the NPCs quiet longest are evicted and those NPCs are shuffled afresh; a larger cache
  (`proxy.router_cache_items`, now the default) or a Redis keeps them. [Session pins beyond LiteLLM's router
  cache](session-affinity.md) shows it point by point and re-runs these NPC counts after the fix: {{ fixed_split }}.
  The [harness ceilings](harness-ceilings.md) point the same way: {{ ceiling_npcs }} NPCs through one proxy process
  split {{ ceiling_split_local }}, through two processes sharing Redis {{ ceiling_split_redis }}
  ([proxy processes sharing Redis](proxy-redis.md)).
- **Balance.** With {{ npcs[0] }} NPCs the pins left the heavy group's busiest worker {{ heavy_small | num(2) }} times
  the idlest's requests; with {{ npcs[-1] }}, {{ heavy_large | num(2) }} (heavy) and {{ light_large | num(2) }}
  (light), against {{ shuffle_heavy_large | num(2) }} and {{ shuffle_light_large | num(2) }} for simple-shuffle. At
  {{ npcs[1] }} the light group was {{ light_mid | num(2) }} apart: pins follow the order NPCs first speak, and a few
  talkative NPCs weigh more than many quiet ones.
- **Session affinity bought no prefix-cache hits here.** The hit rates of the two strategies differ by
  {{ hit_diff_max_points | num(0) }} points at most, {{ hit_directions }}. The GPU mix's shared text is its faction
  doctrine, which every worker caches under either strategy, and at {{ rate | num }} requests/s over
  {{ npcs[1] }}-{{ npcs[-1] }} NPCs an NPC speaks every {{ (npcs[1] / rate) | num }}-{{ (npcs[-1] / rate) | num }} s on
  average, so its own history is rarely reused.
- **{{ rate | num }} requests/s saturated the model** (end-to-end p50 {{ e2e_lo | num(1) }}-{{ e2e_hi | num(1) }} s,
  goodput at most {{ goodput_hi | num(2) }} requests/s): with its roofline latencies and the attention term, an
  `{{ long_class }}` prompt (the longest, mean {{ long_tokens | num }} tokens) costs the {{ long_group }} model
  {{ long_prefill_s | num(1) }} s of prefill, which holds its engine steps and stalls the batch's decodes. That is the model's
  figure, not a GPU's; the balance and hit-rate figures do not depend on it. One run a point, so the goodput
  differences are not tested against run-to-run noise. These runs came before the simulator modelled shared devices
  ([calibration](sim-calibration.md)): their latencies were optimistic by that too.

## Where the figures come from

`results/{{ folder }}/`, regenerated with `python -m bench sweep bench/sweeps/gpu-sim-routing-scale.toml` on the
`gpu-sim` profile. {{ where }} Requests per worker and NPCs: each request's `worker` and `npc_id` in
`requests.jsonl`; hit rates: `summary.server.prefix_cache_hit_rate`; goodput: the sweep's `index.json`.
"""


def npc_workers(requests: pd.DataFrame, group: str) -> pd.Series:
    """Per NPC of a group: how many of the group's workers served it (the client's records)."""
    served = requests[(requests.group == group) & requests.worker.notna()]
    return served.groupby("npc_id").worker.nunique()


def gaps(requests: pd.DataFrame) -> tuple[list[float], list[float]]:
    """Seconds between an NPC's consecutive requests to one group: where the worker changed, and where it stayed."""
    switched: list[float] = []
    stayed: list[float] = []
    served = requests[requests.worker.notna()].sort_values("t_start")
    for _, npc in served.groupby(["group", "npc_id"]):
        workers, starts = npc.worker.tolist(), npc.t_start.tolist()
        for i in range(1, len(workers)):
            (switched if workers[i] != workers[i - 1] else stayed).append(starts[i] - starts[i - 1])
    return switched, stayed


def split_phrase(rows: pd.DataFrame) -> str:
    return "; ".join(f"at {r.npcs} NPCs, {r.heavy_split} of {r.heavy_npcs} heavy and {r.light_split} of {r.light_npcs} light"
                     for r in rows.itertuples())


def fixed_split(results: Path) -> str:
    """How many NPCs two workers served in the re-run after the fix, per NPC count."""
    parts = []
    for point in sweep_index(results / FIXED).to_dict("records"):
        requests = read_requests(results / FIXED / point["path"])
        per_group = [npc_workers(requests, g) for g in sorted(set(requests.group))]
        split, total = sum(int((s > 1).sum()) for s in per_group), sum(len(s) for s in per_group)
        parts.append(f"{split} of {total} NPCs split at {point['load.npcs']}")
    return ", ".join(parts)


def ceilings_split(results: Path, run: str) -> str:
    requests = read_requests(results / "harness-ceilings" / run)
    per_group = [npc_workers(requests, g) for g in sorted(set(requests.group))]
    split, total = sum(int((s > 1).sum()) for s in per_group), sum(len(s) for s in per_group)
    return f"{split} of {total} NPCs (`{run}`)"


@page("studies/routing-at-scale.md", title="SIMULATED: Routing at scale")
def routing_at_scale(results: Path) -> str:
    sweep = results / FOLDER
    balance, manifests = routing_balance(sweep)
    assert all(m.simulated for m in manifests), f"{sweep}: a run was not simulated, and this page says it is"
    points = sweep_index(sweep)
    by_path = {path: read_requests(sweep / path) for path in points.path}  # each point's records, read once
    split_rows, switch_medians, stay_medians, long_stays, min_switch = [], [], [], 0, float("inf")
    for point in points.to_dict("records"):
        requests = by_path[point["path"]]
        row: dict[str, object] = {"npcs": point["load.npcs"], "strategy": point[STRATEGY]}
        for group in ("heavy", "light"):
            served = npc_workers(requests, group)
            row[f"{group}_npcs"], row[f"{group}_split"] = len(served), int((served > 1).sum())
        split_rows.append(row)
        if row["strategy"] == AFFINITY:
            switched, stayed = gaps(requests)
            if switched:
                switch_medians.append(float(np.median(switched)))
                stay_medians.append(float(np.median(stayed)))
                min_switch = min(min_switch, min(switched))
                long_stays += sum(g >= min(switched) for g in stayed)
    splits = pd.DataFrame(split_rows)
    affinity, shuffle = splits[splits.strategy == AFFINITY], splits[splits.strategy != AFFINITY]
    all_one = affinity[(affinity.heavy_split == 0) & (affinity.light_split == 0)]
    moved = affinity[(affinity.heavy_split > 0) | (affinity.light_split > 0)]
    moved_at = " and ".join(str(n) for n in moved.npcs)
    affinity_split = (f"**Session affinity did not keep every NPC on one worker at {moved_at} NPCs.** At "
                      f"{', '.join(str(n) for n in all_one.npcs) or 'no scale'} NPCs each NPC stayed on one worker; "
                      f"at {moved_at}, two workers served some ({split_phrase(moved)}).") if len(moved) else \
        "**Session affinity kept every NPC on one worker at every scale.**"

    b = balance.assign(npcs=balance["load.npcs"], strategy=balance[STRATEGY])
    ratio = {(r.npcs, r.strategy, r.group): r.max_over_min for r in b.itertuples()}
    npcs = sorted(b.npcs.unique())
    hits = b.pivot_table(index=["npcs", "group"], columns="strategy", values="prefix_cache_hit_rate")
    table_rows = []
    for (n, strategy), part in b.groupby(["npcs", "strategy"], sort=True):
        requests = by_path[part.path.iloc[0]]
        cells: dict[str, object] = {"NPCs": n, "strategy": strategy}
        for r in part.itertuples():
            per_worker = requests[requests.group == r.group].groupby("worker").agg(
                requests=("npc_id", "size"), npcs=("npc_id", "nunique")).sort_values("requests", ascending=False)
            busiest, idlest = per_worker.iloc[0], per_worker.iloc[-1]
            served = npc_workers(requests, r.group)
            cells[f"{r.group}: requests (NPCs) busiest / idlest"] = (
                f"{busiest.requests} ({busiest.npcs}) / {idlest.requests} ({idlest.npcs})")
            cells[f"{r.group}: NPCs, served by both"] = f"{len(served)}, {int((served > 1).sum())}"
        cells["hits heavy / light"] = " / ".join(f"{v:.0%}" for v in part.sort_values("group").prefix_cache_hit_rate)
        cells["goodput req/s"] = f"{points[points.path == part.path.iloc[0]].goodput_rps.iloc[0]:.2f}"
        table_rows.append(cells)
    order = {name: i for i, name in enumerate(["simple-shuffle", AFFINITY])}
    table_frame = pd.DataFrame(table_rows).sort_values(
        ["NPCs", "strategy"], key=lambda c: c.map(order) if c.name == "strategy" else c)
    first = manifests[0]
    all_requests = pd.concat(list(by_path.values()))
    prompt_means = all_requests.groupby("cls").prompt_tokens.mean()
    long_class = str(prompt_means.idxmax())
    long_tokens = float(prompt_means.max())
    long_group = first.mix.classes[long_class].group
    long_sim = first.stack_spec.groups[long_group].sim
    assert long_sim is not None, f"the sweep's {long_group} group is not simulated"
    long_prefill_s = (long_sim.prefill_ms_per_token * long_tokens
                      + long_sim.prefill_ms_per_token_pair * long_tokens**2 / 2) / 1000
    return render(
        TEMPLATE, notice=SIMULATED_NOTICE, folder=FOLDER, mix=first.mix.name, rate=points["load.rate_rps"].iloc[0],
        npcs=npcs, duration_s=getattr(first.mix.mix.shape, "duration_s", None) or 0, balance=table_frame,
        pin_cap=LITELLM_PIN_CACHE_ENTRIES, affinity_split=affinity_split, shuffle_split=split_phrase(shuffle),
        switch_gap_lo=min(switch_medians, default=0), switch_gap_hi=max(switch_medians, default=0),
        switch_gap_min=min_switch if switch_medians else 0,
        stay_gap_lo=min(stay_medians, default=0), stay_gap_hi=max(stay_medians, default=0), long_stays=long_stays,
        ceiling_npcs=getattr(read_manifest(results / "harness-ceilings" / "harness-plain-p1-sim").mix.mix.shape,
                             "users", "?"),
        long_class=long_class, long_tokens=long_tokens, long_group=long_group, long_prefill_s=long_prefill_s,
        fixed_split=fixed_split(results), ceiling_split_local=ceilings_split(results, "harness-plain-p1-sim"),
        ceiling_split_redis=ceilings_split(results, "harness-plain-redis-sim"),
        heavy_small=ratio[(npcs[0], AFFINITY, "heavy")], heavy_large=ratio[(npcs[-1], AFFINITY, "heavy")],
        light_large=ratio[(npcs[-1], AFFINITY, "light")], light_mid=ratio[(npcs[1], AFFINITY, "light")],
        shuffle_heavy_large=ratio[(npcs[-1], "simple-shuffle", "heavy")],
        shuffle_light_large=ratio[(npcs[-1], "simple-shuffle", "light")],
        hit_diff_max_points=float((hits[AFFINITY] - hits["simple-shuffle"]).abs().max() * 100),
        hit_directions=("in both directions" if (hits[AFFINITY] > hits["simple-shuffle"]).any()
                        and (hits[AFFINITY] < hits["simple-shuffle"]).any() else "all one way"),
        e2e_lo=points.e2e_p50_s.min(), e2e_hi=points.e2e_p50_s.max(), goodput_hi=points.goodput_rps.max(),
        where=" ".join([provenance([of_manifest(m.run_id, m) for m in manifests]),
                        *sorted({n for m in manifests for n in m.notes if not n.startswith("SIMULATED")})]))


def split_npcs(results: Path, point: str, group: str) -> tuple[int, int]:
    """(NPCs of the group two workers served, NPCs of the group) at one point: what the page's tables hold."""
    served = npc_workers(read_requests(results / FOLDER / point), group)
    return int((served > 1).sum()), len(served)

