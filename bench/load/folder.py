"""A run's folder as it opens: its manifest (what ran, where, with which versions) before the first request."""

from __future__ import annotations

from bench.load.client import Direct
from bench.load.metrics import Samples
from bench.records import Manifest
from bench.rundir import (
    DIRTY_TREE_NOTE,
    SIMULATED_NOTE,
    cache_state,
    env_lock,
    git_info,
    machine_info,
    package_versions,
    provenance,
    worker_cache_config,
    worker_startup,
)
from bench.spec import ResolvedMix
from bench.target import TargetRecord
from serve import StackState
from serve.common import now_iso


def new_manifest(run_id: str, mix: ResolvedMix, stack: StackState, direct: Direct | None, client: str) -> Manifest:
    """The manifest of a run that is starting: the stack's endpoints, the request path (`client`), workers' KV caches
    and start-ups, provenance."""
    workers = {w.name: w.url for w in stack.workers}
    manifest = Manifest(
        run_id=run_id, status="running", started_at=now_iso(), mix=mix,
        endpoints={"proxy": stack.base_url, **workers}, client=client, kv_cache=worker_cache_config(workers),
        startup=worker_startup({w.name: w.log for w in stack.workers if not w.external}),
        **dict(provenance(stack.spec, workers)),
    )
    if direct:
        manifest.notes.append(f"sent straight to worker {direct.worker} ({manifest.endpoints[direct.worker]}), "
                              "bypassing the proxy")
    return manifest


def target_manifest(run_id: str, mix: ResolvedMix, target: TargetRecord, client: str) -> Manifest:
    """The manifest of a run against an outside endpoint: no stack spec, the target as recorded (never its key),
    and what the run cannot see of it among the notes."""
    return Manifest(run_id=run_id, status="running", started_at=now_iso(), mix=mix, endpoints={"target": target.url},
                    client=client, target=target, notes=[f"not seen: {what}" for what in target.unseen],
                    stack=None, versions=package_versions(), env_lock=env_lock(), git=git_info(), machine=machine_info())


def note_start(manifest: Manifest, first_counters: dict[str, Samples], workers: list[str], cache_reset: bool) -> None:
    """What the first reading of the counters says of the prefix caches, and the notes a reader must see first."""
    # No worker scraped (an outside target without --metrics): what its caches held is unknown, not cold.
    manifest.cache = cache_state(first_counters, workers, reset=cache_reset) if workers else None
    if manifest.git.dirty:
        manifest.notes.append(DIRTY_TREE_NOTE)
    if manifest.simulated:
        manifest.notes.insert(0, SIMULATED_NOTE)
