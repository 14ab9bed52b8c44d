"""Runs and sweep points side by side, with how sure each difference is.

    python -m bench compare A B [C ...]

Each argument is a run folder, a sweep point (`results/sweep-x/s0-l1`, which gathers its repeats
`s0-l1-r0`, `s0-l1-r1`, ...) or a whole sweep folder (each of its points). The first is the baseline;
every other is set beside it per class: TTFT and end-to-end percentiles, goodput, SLO attainment,
deadline misses and the prefix-cache hit rate, each with its confidence interval (bench/report/stats.py), and
its difference from the baseline with the difference's interval. A difference whose interval holds zero
is within noise. The comparison also says where the runs differ in what should be held equal: machine,
engine version, lock, stack spec, mix, code, cache state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from bench.records import Manifest, lock_mismatch
from bench.report.stats import Interval, bootstrap, bootstrap_difference, difference_t, mean_t
from bench.report.summary import FIGURES, PERCENTILES
from bench.rundir import MANIFEST, read_manifest, read_requests

COMPARED = ["ttft_p50_s", "ttft_p95_s", "e2e_p50_s", "e2e_p95_s", "goodput_rps", "slo_attainment",
            "deadline_miss_rate", "prefix_cache_hit_rate"]
ALL = "ALL"  # every class together
Verdict = Literal["within noise", "differs", "no interval"]


@dataclass
class Run:
    manifest: Manifest
    requests: pd.DataFrame

    @property
    def duration_s(self) -> float:
        return self.manifest.summary.duration_s if self.manifest.summary else 0.0


@dataclass
class Subject:
    """One configuration: a run, or the repeats of one sweep point."""

    name: str
    runs: list[Run]
    settings: dict[str, Any] = field(default_factory=dict)  # a sweep point's serve and load settings

    def classes(self) -> list[str]:
        return sorted({c for run in self.runs for c in run.requests.cls.unique()})


class CompareError(ValueError):
    """A path that names no run, sweep or sweep point."""


def _complete_run(path: Path) -> Run | None:
    if not (path / MANIFEST).exists():
        return None
    manifest = read_manifest(path)
    return Run(manifest, read_requests(path)) if manifest.summary is not None else None


def _sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    return json.loads((sweep_dir / "index.json").read_text())


def _point_of(run_id: str) -> str:
    """`s0-l1-r2` -> `s0-l1`; a run id without a repeat is its own point."""
    head, _, tail = run_id.rpartition("-r")
    return head if head and tail.isdigit() else run_id


def _settings(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k.startswith(("serve.", "load.")) and v is not None}


def _sweep_subjects(sweep_dir: Path, only: str | None = None) -> list[Subject]:
    points: dict[str, Subject] = {}
    for row in _sweep_rows(sweep_dir):
        point = _point_of(row["run_id"])
        if only is not None and point != only:
            continue
        subject = points.setdefault(point, Subject(f"{sweep_dir.name}/{point}", [], _settings(row)))
        if row["status"] == "complete" and (run := _complete_run(sweep_dir / row["path"])) is not None:
            subject.runs.append(run)
    return [s for s in points.values() if s.runs]


def load_subjects(path: str | Path) -> list[Subject]:
    """A run folder -> one subject; a sweep folder -> one per point; `SWEEP/sN-lM` -> that point's repeats."""
    path = Path(path)
    if (path / "index.json").exists():
        return _sweep_subjects(path)
    if (path.parent / "index.json").exists() and not (path / MANIFEST).exists():
        subjects = _sweep_subjects(path.parent, only=path.name)
        if not subjects:
            raise CompareError(f"{path}: sweep {path.parent} has no completed point {path.name}")
        return subjects
    if (run := _complete_run(path)) is None:
        raise CompareError(f"{path} is not a completed run folder (no manifest.json with a summary), "
                           "a sweep folder (index.json) or a sweep point")
    return [Subject(str(path), [run])]


def repeats(name: str, run_dirs: list[Path]) -> Subject:
    """Run folders made as repeats of one configuration (`bench run --repeats`), as one subject."""
    runs = [run for path in run_dirs if (run := _complete_run(path)) is not None]
    return Subject(name, runs)


def _requests(run: Run, cls: str) -> pd.DataFrame:
    return run.requests if cls == ALL else run.requests[run.requests.cls == cls]


def _hit_rate(run: Run, cls: str) -> float | None:
    """The workers' prefix-cache hit rate over the run: of all workers, or of the class's group."""
    server = run.manifest.summary.server if run.manifest.summary else None
    if server is None:
        return None
    if cls == ALL:
        return server.prefix_cache_hit_rate.get("all")
    group = run.manifest.mix.classes[cls].group if cls in run.manifest.mix.classes else None
    return server.prefix_cache_hit_rate.get(f"group:{group}")


def _pooled(subject: Subject, cls: str, name: str) -> tuple[np.ndarray, float]:
    """A figure's per-request values over every run of the subject, and their summed length in seconds."""
    figure = FIGURES[name]
    values = [figure.values(_requests(run, cls)).to_numpy(dtype=float) for run in subject.runs]
    return np.concatenate(values), sum(run.duration_s for run in subject.runs)


def _per_run(subject: Subject, cls: str, name: str) -> list[float]:
    if name == "prefix_cache_hit_rate":
        values = [_hit_rate(run, cls) for run in subject.runs]
    else:
        values = [FIGURES[name].of(_requests(run, cls), run.duration_s) for run in subject.runs]
    return [v for v in values if v is not None]


def _by_runs(name: str, *subjects: Subject) -> bool:
    """Rates are taken over runs when every side has repeats, latency percentiles always over requests. The
    hit rate is a per-run counter, so it has an interval only over repeats."""
    if name == "prefix_cache_hit_rate":
        return True
    return name not in PERCENTILES and all(len(s.runs) >= 2 for s in subjects)


def _reducer(name: str, duration_s: float):
    reduce = FIGURES[name].reduce
    return lambda x: reduce(x, duration_s)


def interval(subject: Subject, cls: str, name: str) -> Interval:
    """One figure of one subject and class, with its interval."""
    if _by_runs(name, subject):
        return mean_t(_per_run(subject, cls, name))
    values, duration_s = _pooled(subject, cls, name)
    return bootstrap(values, _reducer(name, duration_s))


def difference(base: Subject, other: Subject, cls: str, name: str) -> Interval:
    """The other subject's figure minus the baseline's, with the difference's interval."""
    if _by_runs(name, base, other):
        return difference_t(_per_run(base, cls, name), _per_run(other, cls, name))
    (a, a_s), (b, b_s) = _pooled(base, cls, name), _pooled(other, cls, name)
    return bootstrap_difference(a, _reducer(name, a_s), b, _reducer(name, b_s))


def verdict(diff: Interval) -> Verdict:
    if not diff.known:
        return "no interval"
    return "within noise" if diff.contains(0.0) else "differs"


def compare(subjects: list[Subject], figures: list[str] = COMPARED) -> pd.DataFrame:
    """Long table: one row per (class, figure, subject) with the figure's interval and, for every subject but the
    first, its difference from the first with that interval and the verdict."""
    if len({s.name for s in subjects}) < len(subjects):
        raise CompareError(f"a subject is named twice ({', '.join(s.name for s in subjects)}); name each once")
    base, rows = subjects[0], []
    classes = [ALL] + sorted(set().union(*(s.classes() for s in subjects)))
    for cls in classes:
        for name in figures:
            for subject in subjects:
                value = interval(subject, cls, name)
                row = {"cls": cls, "figure": name, "subject": subject.name, "runs": len(subject.runs),
                       "value": value.value, "low": value.low, "high": value.high, "n": value.n,
                       "method": value.method, "shown": str(value)}
                if subject is not base:
                    diff = difference(base, subject, cls, name)
                    row |= {"diff": diff.value, "diff_low": diff.low, "diff_high": diff.high,
                            "diff_shown": str(diff), "verdict": verdict(diff)}
                rows.append(row)
    return pd.DataFrame(rows)


def by_load(subjects: list[Subject]) -> list[list[Subject]]:
    """A sweep's points grouped by their load settings, in sweep order, so each serve setting is compared with the
    first one under the same load (the NPC mix with the NPC mix, never with multi-turn). A sweep whose serve
    setting does not vary is one group: its load points are what it compares."""
    groups: dict[str, list[Subject]] = {}
    for subject in subjects:
        load = {k: v for k, v in subject.settings.items() if k.startswith("load.")}
        groups.setdefault(json.dumps(load, sort_keys=True, default=str), []).append(subject)
    return [subjects] if all(len(g) == 1 for g in groups.values()) else list(groups.values())


def compare_by_load(subjects: list[Subject], figures: list[str] = COMPARED) -> pd.DataFrame:
    """`compare` within each group of `by_load`, the groups' tables one after the other; `baseline` names the point
    each difference is taken from."""
    return pd.concat([compare(group, figures).assign(baseline=group[0].name) for group in by_load(subjects)],
                     ignore_index=True)


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """A JSON value as {dotted path: leaf}, lists by index, for setting two specs side by side."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)  # type: ignore[assignment]
    else:
        return {prefix: value}
    return {k: v for key, item in items for k, v in _flat(item, f"{prefix}.{key}" if prefix else str(key)).items()}


def _differing(values: dict[str, dict[str, Any]]) -> dict[str, list[Any]]:
    """Of per-run flattened records, the paths whose values differ, with the distinct values in run order."""
    paths = sorted(set().union(*values.values()))
    out = {}
    for path in paths:
        seen = list(dict.fromkeys(json.dumps(v.get(path), sort_keys=True) for v in values.values()))
        if len(seen) > 1:
            out[path] = [json.loads(s) for s in seen]
    return out


def provenance_warnings(subjects: list[Subject]) -> list[str]:
    """What differs between the compared runs that a fair comparison holds equal, or that muddies it."""
    runs = {run.manifest.run_id if len(subjects) == 1 else f"{s.name}:{run.manifest.run_id}": run.manifest
            for s in subjects for run in s.runs}
    warnings = []

    def differ(what: str, records: dict[str, Any]) -> None:
        if diffs := _differing({run_id: _flat(record) for run_id, record in records.items()}):
            shown = "; ".join(f"{path}: {' / '.join(map(str, vals))}" for path, vals in list(diffs.items())[:8])
            more = f" (and {len(diffs) - 8} more)" if len(diffs) > 8 else ""
            warnings.append(f"the runs differ in {what}: {shown}{more}")

    differ("machine", {k: m.machine.model_dump(mode="json", exclude={"hostname"}) for k, m in runs.items()})
    differ("engine and package versions", {k: m.versions for k, m in runs.items()})
    if mismatch := lock_mismatch({k: m.env_lock for k, m in runs.items()}):
        warnings.append(mismatch)
    differ("stack spec", {k: m.stack.model_dump(mode="json") if m.stack else None for k, m in runs.items()})
    differ("outside target", {k: m.target.model_dump(mode="json") if m.target else None for k, m in runs.items()})
    differ("mix", {k: m.mix.model_dump(mode="json") for k, m in runs.items()})
    differ("code (git commit)", {k: m.git.commit for k, m in runs.items()})
    # a run from before manifest.client was recorded used the SDK
    differ("load generator client (--client)", {k: m.client or "openai" for k, m in runs.items()})
    if late := [k for k, m in runs.items() if (check := m.lateness()) is not None and check.exceeded]:
        warnings.append("the load generator's p99 timer lateness exceeded its limit in "
                        f"{', '.join(late)}: their tail latencies are partly the bench's own")
    if dirty := [k for k, m in runs.items() if m.git.dirty]:
        warnings.append(f"measured from a dirty tree (the commit is not all the code that ran): {', '.join(dirty)}")
    states = {k: "not recorded" if m.cache is None else "reset" if m.cache.reset else "warm" if m.cache.warm
              else "cold" for k, m in runs.items()}
    if len(set(states.values())) > 1:
        warnings.append("the runs started with different prefix-cache states: "
                        + ", ".join(f"{k} {v}" for k, v in states.items()))
    return warnings


def lateness_line(subject: Subject) -> str | None:
    """The load generator's p99 timer lateness of each run of a subject against its limit (Manifest.lateness),
    flagging the runs whose tails are partly the bench's own; None when no run recorded its client load."""
    checks = {run.manifest.run_id: check for run in subject.runs if (check := run.manifest.lateness()) is not None}
    if not checks:
        return None
    shown = ", ".join(f"{run_id} {c.p99_ms:g} ms" + (" EXCEEDS" if c.exceeded else "") for run_id, c in checks.items())
    limits = sorted({c.limit_ms for c in checks.values() if c.limit_ms is not None})
    line = f"load generator's p99 timer lateness: {shown}"
    if limits:
        first = next(c for c in checks.values() if c.limit_ms is not None)
        line += (f" (limit {' / '.join(f'{v:g}' for v in limits)} ms: {first.fraction:.0%} of the tightest budget, "
                 f"{first.tightest_budget})")
    if any(c.exceeded for c in checks.values()):
        line += "; WARNING: tails partly the bench's own"
    return line


def render(subjects: list[Subject], table: pd.DataFrame) -> str:
    """The comparison as text: the subjects, then one table per class."""
    lines = []
    for i, subject in enumerate(subjects):
        settings = ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in subject.settings.items())
        role = "baseline" if i == 0 else f"#{i}"
        lines.append(f"{role}: {subject.name} ({len(subject.runs)} run{'s' * (len(subject.runs) > 1)}"
                     + (f"; {settings}" if settings else "") + ")")
        if lateness := lateness_line(subject):
            lines.append(f"  {lateness}")
    for cls, part in table.groupby("cls", sort=False):
        lines.append(f"\n{cls}")
        wide = part.pivot_table(index="figure", columns="subject", values="shown", aggfunc="first", sort=False)
        wide = wide[[s.name for s in subjects]]
        wide.columns = ["baseline"] + [f"#{i}" for i in range(1, len(subjects))]
        for i, subject in enumerate(subjects[1:], start=1):
            mine = part[part.subject == subject.name].set_index("figure")
            wide[f"#{i} - baseline"] = mine.diff_shown + "  " + mine.verdict
        lines.append(wide.to_string())
    return "\n".join(lines)
