"""docs/studies/session-affinity.md: session pins lost beyond LiteLLM's 200-entry router cache, found and fixed
(SIMULATED engine, real proxy), from results/affinity-scale-sim/ and the session-affinity runs of
results/sweep-gpu-sim-routing-scale/ (before the fix) and results/sweep-gpu-sim-affinity-scale/ (after).

`turns` and `npcs_split` are the per-turn analysis; results/affinity-scale-sim/turns.py prints them for any run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.report.analysis import sweep_index
from bench.report.pages import page, render
from bench.report.pages.scale_provenance import LITELLM_PIN_CACHE_ENTRIES, SIMULATED_NOTICE, of_manifest, provenance
from bench.rundir import read_manifest, read_requests

FOLDER = "affinity-scale-sim"
BEFORE = "sweep-gpu-sim-routing-scale"
AFTER = "sweep-gpu-sim-affinity-scale"
AFFINITY = "session-affinity"
POINTS = ["litellm-cache-150-npcs", "litellm-cache-300-npcs", "cache-100000-300-npcs", "litellm-cache-redis-300-npcs"]
# Read in LiteLLM's source (router's session_affinity check), not measured: a pin's TTL, renewed at each turn.
LITELLM_AFFINITY_TTL_S = 3600
FULL = 200  # "other pins between two turns" from which a pin can be evicted: LiteLLM's cache, measured full below
NEAR = 190  # the band just below it, reported apart


def turns(requests: pd.DataFrame) -> pd.DataFrame:
    """For each turn of an NPC in a group after its first (every request that reached a worker, in order of start):
    whether it moved worker, how many other pins (distinct group and NPC) were used since its last turn, and how long
    the NPC had been silent in that group."""
    served = requests[requests.worker.notna()].sort_values("t_start", kind="stable").reset_index(drop=True)
    pins = list(zip(served.group, served.npc_id, strict=True))
    workers, starts = served.worker.tolist(), served.t_start.tolist()
    last: dict[tuple[str, str], int] = {}
    rows = []
    for i, pin in enumerate(pins):
        if pin in last:
            j = last[pin]
            rows.append({"moved": workers[i] != workers[j], "other_pins": len(set(pins[j + 1:i]) - {pin}),
                         "silent_s": starts[i] - starts[j]})
        last[pin] = i
    return pd.DataFrame(rows, columns=["moved", "other_pins", "silent_s"])


def npcs_split(requests: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per group: (NPCs two or more workers served, NPCs)."""
    counts = requests[requests.worker.notna()].groupby(["group", "npc_id"]).worker.nunique()
    return {str(g): (int((c > 1).sum()), len(c)) for g, c in counts.groupby(level=0)}


def served_split(served: dict[str, list[str]]) -> tuple[int, int]:
    """From a point's `served` map (NPC -> worker of each turn): (NPCs split, turns that moved)."""
    split = sum(len(set(w)) > 1 for w in served.values())
    moved = sum(a != b for w in served.values() for a, b in zip(w, w[1:], strict=False))
    return split, moved


TEMPLATE = """# SIMULATED: Session pins beyond LiteLLM's router cache

{{ notice }}
**Found and fixed.** Under LiteLLM's `session_affinity` check, with more NPCs than LiteLLM's router cache holds
({{ cap }} entries), NPCs lost their pin and moved worker: the split of [routing at scale](routing-at-scale.md). The
workers here are serve/sim with a near-instant engine; what is measured is LiteLLM's routing (litellm
{{ litellm }}), not any engine.

## Four points: the cache's size, not the time

`results/{{ folder }}/`: {{ load }}. Between two turns of an NPC every other NPC speaks once: the sparsest an NPC can
be among N. A fresh stack for every point, one proxy process. NPCs split and turns moved are counted from each point's
`served` map (the worker of every turn of every NPC); the router cache columns are LiteLLM's
`/memory-usage-in-mem-cache-items` at the end.

{{ table(points) }}

## The cause

LiteLLM's `session_affinity` check keeps each pin (`deployment_affinity:v1:session:<group>:<key>:<NPC>`) in the
router's `DualCache`, whose in-memory tier is an `InMemoryCache()` of `DEFAULT_MAX_SIZE_IN_MEMORY` entries
(litellm {{ litellm }}, `caching/in_memory_cache.py`; the Router builds it with no size argument and its config has
no setting for it): {{ cap }}, the entries the cache held at the end of `{{ full_point }}`. The same entries hold the
router's other state ({{ other_state }} entries at `{{ small_point }}`). A pin's TTL (`deployment_affinity_ttl_seconds`,
{{ ttl | num }} s as read in LiteLLM's source) is renewed at each turn, and a full cache evicts the entries that expire
first: the pins of the NPCs silent longest. An NPC whose pin is gone is shuffled afresh, and with two workers lands
on the other half the time: {{ big.moved }} of {{ big.later }} turns moved, {{ big.split }} of {{ big.npcs }} NPCs
split at `{{ full_point }}`; at `{{ small_point }}` {{ small.moved }} moved. The TTL is not the cause: at
`{{ full_point }}` an NPC was silent about {{ big.silent_s | num }} s ({{ big.duration_s | num(1) }} s for
{{ big.rounds }} rounds), far below {{ ttl | num }} s. What decides a pin's survival is how many other pins are used
between two turns of its NPC, not the time itself.

Changing only the cache's size ({{ cap }} -> {{ fixed_items | num }}, `proxy.router_cache_items`) removed the split;
so did adding only a Redis (`proxy.start_redis`), where an evicted pin is read back from Redis
(`DualCache.async_get_cache` falls back to it) although the in-memory tier stays at {{ redis_entries }}.

The same holds in the runs that showed the finding: the session-affinity runs of `results/{{ before }}/`
({{ before_runs }}; every request that reached a worker, in order of start). For each later turn of an NPC in a
group: whether it moved, and how many other pins (group and NPC) were used since its last turn.

{{ table(before_turns) }}

{{ near_note }} No turn moved with fewer than {{ fewest_moved }} other pins in between, and beyond {{ full }} about
half moved: the coin flip of a fresh shuffle over two workers. The silences overlap (at {{ mid_npcs }} NPCs the turns
that moved had been silent {{ mid_moved_lo | num }}-{{ mid_moved_hi | num }} s, those that stayed
{{ mid_stay_lo | num }}-{{ mid_stay_hi | num }} s), so silence follows from the pin count: at {{ rate | num }}
requests/s, {{ full }} other pins take a while to be used (no turn silent less than {{ shortest_moved | num }} s
moved).

## The fix

`proxy.router_cache_items` (default {{ fixed_items | num }}) is rendered into the proxy's environment
(`NPCBENCH_ROUTER_CACHE_ITEMS`, `serve/render.py`), and the proxy's own pre-call hook (`serve/proxy_hooks.py`)
enlarges the router's in-memory cache to it before each request is routed.

## Re-run at {{ npcs | join(", ") }} NPCs, after the fix

`results/{{ after }}/` (`python -m bench sweep bench/sweeps/gpu-sim-affinity-scale.toml`): the session-affinity half
of `results/{{ before }}/`, the same mix (`{{ mix }}`), NPC counts, rate ({{ rate | num }} requests/s) and
{{ duration_s | num }} s, with the default `proxy.router_cache_items` ({{ after_items | num }}),
{{ after_procs }} proxy process, no Redis. One difference: the engine is near-instant (every latency term 0 but a
1 ms step). A first attempt with the roofline model, as in the original sweep, saturated it and its queues outlived
the run, so the next run's prefix-cache reset was refused and the sweep stopped; that attempt is not kept. The
engine's speed does not decide a pin; how many other NPCs speak between two turns does, and that is counted for both
sweeps.

{{ table(after_table) }}

{{ after_outcomes }} At most {{ max_other_after }} other pins were used between two turns of one NPC: the fix's
{{ after_items | num }} entries were never approached. This re-run is simulated and short: {{ duration_s | num }} s a
point, on one proxy process.

## Where the figures come from

- `results/{{ folder }}/`: `commands.sh` regenerates every `*.json` (`{{ regenerate }}`); `sessions.py` is the load;
  `affinity.json` the record: {{ record }}. `turns.py` prints the per-turn analysis of this page for any run's
  `requests.jsonl`.
- `results/{{ before }}/`: {{ before_where }}
- `results/{{ after }}/`: {{ after_where }}
"""


def _affinity_runs(sweep: Path) -> list[dict]:
    points = sweep_index(sweep)
    return [p for p in points.to_dict("records") if p["serve.proxy.routing_strategy"] == AFFINITY]


def _band(found: pd.DataFrame, low: int, high: int) -> pd.DataFrame:
    return found[(found.other_pins >= low) & (found.other_pins < high)]


def _moved_of(found: pd.DataFrame) -> str:
    return f"{int(found.moved.sum())} of {len(found)}" if len(found) else "- (none)"


@page("studies/session-affinity.md", title="SIMULATED: Session pins beyond LiteLLM's router cache",
      summary="NPCs lost their pin beyond LiteLLM's 200-entry router cache; proxy.router_cache_items fixes it.")
def session_affinity(results: Path) -> str:
    record = json.loads((results / FOLDER / "affinity.json").read_text())
    rows, by_name = [], {}
    for name in POINTS:
        point = json.loads((results / FOLDER / f"{name}.json").read_text())
        split, moved = served_split(point["served"])
        proxy = point["spec_proxy"]
        rounds = point["rounds"]
        by_name[name] = {"split": split, "moved": moved, "npcs": point["sessions"], "later": point["sessions"] * (rounds - 1),
                         "rounds": rounds, "duration_s": point["duration_s"], "silent_s": point["duration_s"] / rounds,
                         "entries": point["router_cache_entries"], "pins": point["router_cache_session_pins"],
                         "items": proxy["router_cache_items"]}
        rows.append({"point": f"`{name}`", "router cache": f"{proxy['router_cache_items']:,}",
                     "Redis": "yes" if proxy["start_redis"] else "no", "NPCs": point["sessions"],
                     "NPCs split": f"**{split}**" if split else "0",
                     f"turns moved (of {rounds - 1} x NPCs)": f"{moved} / {point['sessions'] * (rounds - 1)}",
                     "router cache at the end: entries / session pins":
                         f"{point['router_cache_entries']} / {point['router_cache_session_pins']}"})
    small, big, fixed, redis = (by_name[n] for n in POINTS)
    cap = big["items"]
    assert big["entries"] == cap == LITELLM_PIN_CACHE_ENTRIES, "LiteLLM's cache was not full at its size: recheck the page"

    before_runs = _affinity_runs(results / BEFORE)
    after_runs = {p["load.npcs"]: p for p in _affinity_runs(results / AFTER)}
    before_rows, after_rows, fewest, near, before_manifests, after_manifests = [], [], [], [], [], []
    mid_moved: list[float] = []
    mid_stay: list[float] = []
    shortest_moved, max_other_after, outcomes = float("inf"), [], []
    npcs = [int(p["load.npcs"]) for p in before_runs]
    for p in before_runs:
        n = int(p["load.npcs"])
        run = results / BEFORE / p["path"]
        before_manifests.append(of_manifest(p["path"], read_manifest(run)))
        requests = read_requests(run)
        found = turns(requests)
        moved = found[found.moved]
        fewest.extend(moved.other_pins.tolist())
        if len(moved):
            shortest_moved = min(shortest_moved, float(moved.silent_s.min()))
        near_band = _band(found, NEAR, FULL)
        if near_band.moved.any():
            near.append(f"At {n} NPCs, {int(near_band.moved.sum())} of {len(near_band)} turns with {NEAR}-{FULL - 1} "
                        "others moved")
        if n == npcs[1]:
            mid_moved, mid_stay = moved.silent_s.tolist(), found[~found.moved].silent_s.tolist()
        before_rows.append({"run": f"{n} NPCs (`{p['path']}`)", "later turns": len(found), "moved": len(moved),
                            "fewest other pins before a move": int(moved.other_pins.min()) if len(moved) else
                            f"- (at most {int(found.other_pins.max())} others ever)",
                            f"moved with < {NEAR} others": _moved_of(_band(found, 0, NEAR)),
                            f"moved with >= {FULL} others": _moved_of(_band(found, FULL, 10**9))})
        after = after_runs[n]
        after_run = results / AFTER / after["path"]
        after_manifests.append(of_manifest(after["path"], read_manifest(after_run)))
        after_requests = read_requests(after_run)
        after_found = turns(after_requests)
        if n != npcs[0]:
            max_other_after.append(f"{int(after_found.other_pins.max())} ({n} NPCs)")
        outcomes.append(after_requests.outcome.value_counts())
        split_before, split_after = npcs_split(requests), npcs_split(after_requests)

        def groups(split: dict[str, tuple[int, int]]) -> str:
            return " / ".join(f"{split[g][0]} of {split[g][1]}" for g in ("heavy", "light"))

        after_split = groups(split_after)
        after_rows.append({
            "NPCs": n, "NPCs two workers served, heavy / light: before": groups(split_before),
            "after": f"**{after_split}**" if sum(v[0] for v in split_before.values()) else after_split,
            f"later turns with >= {FULL} other pins in between: moved before": _moved_of(_band(found, FULL, 10**9)),
            "moved after": _moved_of(_band(after_found, FULL, 10**9))})
    counts = pd.DataFrame(outcomes).fillna(0)
    failed = int(counts.drop(columns=["ok", "interrupted"], errors="ignore").to_numpy().sum())
    interrupted = counts.get("interrupted", pd.Series([0]))
    after_outcomes = (("No request failed or timed out in the re-run" if not failed else
                       f"{failed} requests of the re-run neither succeeded nor were interrupted")
                      + f" ({int(interrupted.min())}-{int(interrupted.max())} a run were `interrupted`, the mix's own "
                        "cancelled streams).")
    first_after = read_manifest(results / AFTER / next(iter(after_runs.values()))["path"])
    assert all(r.simulated for r in before_manifests + after_manifests), "a run was not simulated, and this page says it is"
    notes = sorted({n for m in [first_after] for n in m.notes if not n.startswith("SIMULATED")})
    return render(
        TEMPLATE, notice=SIMULATED_NOTICE, folder=FOLDER, before=BEFORE, after=AFTER, cap=cap,
        litellm=record["versions"]["litellm"], load=record["load"], points=pd.DataFrame(rows),
        full_point=POINTS[1], small_point=POINTS[0], other_state=small["entries"] - small["pins"],
        ttl=LITELLM_AFFINITY_TTL_S, big=big, small=small, fixed_items=fixed["items"], redis_entries=redis["entries"],
        before_runs=", ".join(f"`{p['path']}`" for p in before_runs), before_turns=pd.DataFrame(before_rows),
        near_note=f"({'; '.join(near)}.)" if near else "", fewest_moved=min(fewest), full=FULL,
        mid_npcs=npcs[1], mid_moved_lo=min(mid_moved), mid_moved_hi=max(mid_moved), mid_stay_lo=min(mid_stay),
        mid_stay_hi=max(mid_stay), rate=before_runs[0]["load.rate_rps"], shortest_moved=shortest_moved,
        npcs=npcs, mix=first_after.mix.name, duration_s=getattr(first_after.mix.mix.shape, "duration_s", None) or 0,
        after_items=first_after.stack_spec.proxy.router_cache_items, after_procs=first_after.stack_spec.proxy.num_workers,
        after_table=pd.DataFrame(after_rows), after_outcomes=after_outcomes, max_other_after=" and ".join(max_other_after),
        regenerate=record["regenerate"],
        record=(f"{record['note']} Commit `{record['commit']}`, "
                f"{'dirty' if record['git_dirty'] else 'clean'} tree, {record['started_utc'].replace('T', ' ')[:16]}-"
                f"{record['ended_utc'][11:16]} UTC, {record['machine']}; versions "
                + ", ".join(f"{k} {v}" for k, v in record["versions"].items())),
        before_where=" ".join(["`python -m bench sweep bench/sweeps/gpu-sim-routing-scale.toml`.",
                               provenance(before_manifests)]),
        after_where=" ".join(["`python -m bench sweep bench/sweeps/gpu-sim-affinity-scale.toml`.",
                              provenance(after_manifests), *notes]))
