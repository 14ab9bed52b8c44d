"""Where and with what the run was measured: commit, dirty tree, environment lock, versions, stack, machine,
prefix caches at the start, and the run's notes."""

from __future__ import annotations

import html

import pandas as pd

from bench.report.analysis import Run
from bench.report.panels import panel, section, table
from bench.rundir import DIRTY_TREE_NOTE, SIMULATED_NOTE


def facts(run: Run) -> dict[str, object]:
    m = run.manifest
    lock = m.env_lock
    dirty = {True: "yes: " + DIRTY_TREE_NOTE, False: "no", None: "unknown (not a git checkout)"}[m.git.dirty]
    cache = ("emptied just before the start" if m.cache.reset else "warm" if m.cache.warm else "cold") if m.cache else None
    return {
        "run": m.run_id, "status": m.status, "started": m.started_at, "ended": m.ended_at, "duration (s)": m.duration_s,
        "simulated workers": SIMULATED_NOTE if m.simulated else "no",
        "mix": f"{m.mix.name} ({m.mix.mix.shape.kind}): {m.mix.mix.description}",
        "commit": m.git.commit, "dirty tree": dirty,
        "environment lock": f"{lock.name}: {lock.lock} (sha256 {lock.lock_sha256})" if lock else "no recorded lock",
        "stack profile": f"{m.stack.profile} ({m.stack.device}), workers: "
                         + ", ".join(f"{w.name} ({w.group})" for w in m.stack.workers) if m.stack else
                         f"none: an outside endpoint, {m.target.url if m.target else '?'}",
        "models": ", ".join(f"{g} -> {name}" for g, name in m.target.models.items()) if m.target else None,
        "not seen": "; ".join(m.target.unseen) if m.target else None,
        "machine": f"{m.machine.cpu_model}, {m.machine.cores} cores, {m.machine.memory_gib} GiB, {m.machine.platform}"
                   + (f", GPUs: {', '.join(str(g) for g in m.machine.gpus)}" if m.machine.gpus else ""),
        "prefix caches at the start": cache,
    }


@panel("provenance", order=90)
def provenance(run: Run) -> str:
    m = run.manifest
    versions = pd.DataFrame({"version": m.versions}).rename_axis("package")
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in m.notes)
    return section("Provenance",
                   table(pd.DataFrame({"": facts(run)}).rename_axis("fact"), "provenance-facts"),
                   table(versions, "versions"),
                   f"<h3>Notes</h3><ul>{notes}</ul>" if notes else "")
