"""What the "at scale, simulated" study pages share: where their runs came from, and the SIMULATED notice.

Not a page: the study modules beside it (sim_*.py, gpu_sim.py, ...) import it, so each page says the same
way which folders and commands reproduce it, when its runs ran, at which commit and whether the tree was dirty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.lab.overhead import OverheadRun
from bench.records import GitState, Manifest
from bench.rundir import read_manifest

# How many entries LiteLLM's in-memory router cache holds by default (session pins included): read in its source and
# measured full at this size in results/affinity-scale-sim/ (docs/studies/session-affinity.md).
LITELLM_PIN_CACHE_ENTRIES = 200

SIMULATED_NOTICE = (
    '!!! warning "SIMULATED"\n'
    "    The workers behind these figures are serve/sim's model of a vLLM engine, not an inference engine.\n"
    "    The figures measure the harness (load generator, proxy, Redis, routing) and the model's assumptions,\n"
    "    never a GPU or vLLM. Every run here is labelled so: its id contains `-sim` or its record says\n"
    '    `"simulated": true`.\n'
)


@dataclass(frozen=True)
class Recorded:
    """One record's provenance: a run's manifest, an overhead run or a calibration."""

    name: str
    started_at: str
    ended_at: str | None
    git: GitState
    simulated: bool


def of_manifest(name: str, manifest: Manifest) -> Recorded:
    return Recorded(name, manifest.started_at, manifest.ended_at, manifest.git, manifest.simulated)


def of_run(folder: Path, name: str | None = None) -> Recorded:
    return of_manifest(name or folder.name, read_manifest(folder))


def of_overhead(path: Path, name: str) -> Recorded:
    run = OverheadRun.model_validate_json(path.read_text())
    return Recorded(name, run.started_at, run.ended_at, run.git, bool(getattr(run, "simulated", False)))


def _minute(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def span(records: Iterable[Recorded]) -> str:
    """'2026-12-01 14:31-14:53 UTC' (or with both dates when the runs cross midnight)."""
    records = list(records)
    start = min(_minute(r.started_at) for r in records)
    end = max(_minute(r.ended_at or r.started_at) for r in records)
    if start.date() == end.date():
        return f"{start:%Y-%m-%d %H:%M}-{end:%H:%M} UTC"
    return f"{start:%Y-%m-%d %H:%M} UTC to {end:%Y-%m-%d %H:%M} UTC"


def commits(records: Iterable[Recorded]) -> str:
    """'`a820ab5`' or '`c579369` (real-r0, real-r1) and `a820ab5` (cpu-sim-r0)'."""
    by_commit: dict[str, list[str]] = {}
    for r in records:
        by_commit.setdefault((r.git.commit or "unknown")[:7], []).append(r.name)
    if len(by_commit) == 1:
        return f"`{next(iter(by_commit))}`"
    return " and ".join(f"`{c}` ({', '.join(names)})" for c, names in by_commit.items())


def tree(records: Iterable[Recorded]) -> str:
    """Whether the runs' trees had uncommitted changes, as their records say."""
    records = list(records)
    dirty = [r.name for r in records if r.git.dirty]
    unknown = [r.name for r in records if r.git.dirty is None]
    if dirty:
        return f"dirty tree (uncommitted changes) in {', '.join(dirty)}; clean in the others"
    if unknown:
        return f"tree state not recorded for {', '.join(unknown)}; clean in the others"
    return "clean tree" if len(records) == 1 else "clean tree in every run"


def provenance(records: Iterable[Recorded]) -> str:
    """One sentence for a page's 'Where the figures come from' section."""
    records = list(records)
    return f"Recorded {span(records)}, at {commits(records)}, {tree(records)}."
