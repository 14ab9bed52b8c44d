"""docs/studies/proxy-redis.md: proxy processes sharing Redis, as the committed runs show it (session pins held or
not, Redis commands a request), from results/harness-ceilings/ (SIMULATED engine, real proxy and Redis)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.pages import page, render
from bench.report.pages.harness_ceilings import redis_rates
from bench.report.pages.routing_at_scale import npc_workers
from bench.report.pages.scale_provenance import LITELLM_PIN_CACHE_ENTRIES, SIMULATED_NOTICE, of_manifest, provenance
from bench.rundir import read_manifest, read_requests

FOLDER = "harness-ceilings"
RUNS = ["harness-plain-p1-sim", "harness-plain-p2-sim", "harness-plain-redis-sim",
        "harness-streamed-p1-sim", "harness-streamed-p2-sim", "harness-streamed-redis-sim"]

TEMPLATE = """# SIMULATED engine: Proxy processes sharing Redis

{{ notice }}
Here only the engine is simulated; the proxy processes, their routing and Redis are real.

`--set proxy.start_redis=true` starts a Redis beside the proxy (127.0.0.1 only, a password made at each start,
nothing written to disk), and LiteLLM's router keeps its state there: session pins, cooldowns, usage. How it is set
up, and how a second proxy instance joins the same Redis, is in the how-to guides; this page holds what the committed
runs measured of it.

## Session pins, with and without a shared Redis

The harness runs of `results/{{ folder }}/` route by `{{ strategy }}` and record, per request, the worker that served
it. Counting per NPC how many of its group's workers served it:

{{ table(pins) }}

{{ finding }} {{ over_cap }} than the {{ pin_cap }} entries of LiteLLM's in-memory router cache, which evicted the
pins of the quietest NPCs: the cause of the splits, found and fixed in [session pins beyond LiteLLM's router
cache](session-affinity.md); [routing at scale](routing-at-scale.md) counts the same splits at several scales.
The runs differ in more than Redis (two proxy processes in the Redis runs,
one in the others), so this shows that pins held with Redis, not that Redis alone made the difference.

## What Redis costs

The two Redis runs sent {{ redis_per_request_lo | num(1) }}-{{ redis_per_request_hi | num(1) }} Redis commands a
request (`redis_commands` in each run's summary: what the stack's own Redis processed). One Redis on this machine
serves {{ redis_lo | round(-3) | num }}-{{ redis_hi | round(-3) | num }} commands/s (`redis-benchmark.txt`), so at
the harness's {{ rate | num }} requests/s it used {{ redis_share | pct(2) }} of that.

## What the end-to-end tests check, and this page does not quote

`tests/e2e/test_sim.py` asserts on every run that, with two proxy processes and each request on a new connection,
NPCs are split between workers without Redis and never with it; and that a worker one process has put in cooldown
gets no requests from the other process with Redis. Those runs are assertions, not committed results, so their
counts are not quoted here.

## Where the figures come from

`results/{{ folder }}/`, made by its `commands.sh` (the `-redis` runs on a stack with
`--set proxy.num_workers=2 --set proxy.start_redis=true`). {{ where }}
"""


@page("studies/proxy-redis.md", title="SIMULATED engine: Proxy processes sharing Redis")
def proxy_redis(results: Path) -> str:
    folder = results / FOLDER
    manifests = {name: read_manifest(folder / name) for name in RUNS}
    assert all(m.simulated for m in manifests.values()), f"{folder}: a run was not simulated"
    rows: list[dict[str, object]] = []
    redis_per_request: list[float] = []
    npc_counts: list[int] = []
    splits: dict[bool, list[int]] = {True: [], False: []}
    for name, manifest in manifests.items():
        requests = read_requests(folder / name)
        per_group = {g: npc_workers(requests, g) for g in sorted(set(requests.group))}
        npcs = sum(len(s) for s in per_group.values())
        split = sum(int((s > 1).sum()) for s in per_group.values())
        proxy, summary = manifest.stack_spec.proxy, manifest.summary
        assert summary is not None and summary.server is not None and summary.client is not None, name
        shared = bool(proxy.start_redis or proxy.redis_host)
        splits[shared].append(split)
        npc_counts.append(npcs)
        if summary.server.redis_commands is not None:
            redis_per_request.append(summary.server.redis_commands / summary.all.requests)
        rows.append({"run": f"`{name}`", "proxy processes": proxy.num_workers, "shared Redis": "yes" if shared else "no",
                     "Locust processes": summary.client.processes, "NPCs": npcs, "served by two workers": split,
                     "share": f"{split / npcs:.0%}"})
    finding = (f"**Without a shared Redis, {min(splits[False])} to {max(splits[False])} NPCs a run were served by two "
               f"workers; with it, {' and '.join(str(n) for n in splits[True])}.**")
    rates = redis_rates((folder / "redis-benchmark.txt").read_text())
    first = manifests[RUNS[0]]
    shape = first.mix.mix.shape
    rate = float(getattr(shape, "rate_rps", 0.0))
    return render(
        TEMPLATE, notice=SIMULATED_NOTICE, folder=FOLDER, strategy=first.stack_spec.proxy.routing_strategy,
        pins=pd.DataFrame(rows), finding=finding, pin_cap=LITELLM_PIN_CACHE_ENTRIES,
        over_cap="Every run here served more NPCs" if min(npc_counts) > LITELLM_PIN_CACHE_ENTRIES
        else "Not every run here served more NPCs",
        redis_per_request_lo=min(redis_per_request), redis_per_request_hi=max(redis_per_request),
        redis_lo=min(rates.values()), redis_hi=max(rates.values()), rate=rate,
        redis_share=rate * max(redis_per_request) / min(rates.values()),
        where=provenance([of_manifest(n, m) for n, m in manifests.items()]))
