"""A sweep: serve settings x load levels, like `vllm bench sweep`.

Serve settings are a grid (`[serve]`: dotted profile path -> values) or a list (`[[points]]`); load
levels are a grid (`[load]`: mix, npcs, rate_rps, duration_s -> values). For each serve setting the
stack is restarted (`python -m serve up --detach --set ...`, its start-up timed), each load level is
run (`python -m bench run`), and the stack is stopped. Every point writes its own run folder under
`results/sweep-<name>/`; `index.json` / `index.csv` list them with their settings, the stack's
start-up time and the run's key figures. A stopped sweep resumes: points whose run folder is
complete are not run again. `repeats` runs each load point several times; `cache` says what the
workers' prefix caches hold at each run's start (emptied by default, as `vllm bench sweep` does).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.options import LoadOptions
from bench.rundir import MANIFEST, labelled_run_id, read_manifest
from bench.spec import MixError, load_mix
from serve import SpecError, load_profile, running_state

# What the index lists of each point, from its manifest's summary, so a sweep reads as one table.
INDEX_FIGURES = ["requests", "n_error", "goodput_rps", "slo_attainment", "ttft_p95_s", "e2e_p50_s", "e2e_p95_s",
                 "output_tps", "deadline_miss_rate"]
DECISION_FIGURES = ["fresh_share", "fallback_share", "staleness_p95", "thinking_share"]  # tick runs


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str = "cpu"
    mix: str = "npc-cpu"
    duration_s: float | None = Field(None, gt=0, description="for every load point, unless the load grid sets it")
    scrape_interval_s: float = Field(2.0, gt=0)
    html_report: bool = Field(True, description="false: Locust's CSVs only, for sample sets kept in git")
    serve: dict[str, list[Any]] = Field(default_factory=dict, description="dotted profile path -> values")
    points: list[dict[str, Any]] = Field(default_factory=list, description="serve settings named one by one "
                                         "(dotted path -> value; {} is the profile as is), instead of a grid")
    load: dict[str, list[Any]] = Field(default_factory=dict, description="mix / npcs / rate_rps / duration_s -> values")
    repeats: int = Field(3, ge=1, description="runs of every load point, one after the other on the same stack, "
                         "three by default as `vllm bench sweep` does; the index has a row for each (`repeat` 0, 1, ...)")
    cache: Literal["reset", "restart", "keep"] = Field(
        "reset", description="the workers' prefix caches before every run: reset (emptied through vLLM's "
        "/reset_prefix_cache; the sweep starts its stacks with worker_dev_endpoints), restart (a fresh stack for "
        "every run: cold caches and fresh processes, a start-up each), or keep (each run finds what the runs "
        "before it on that stack cached; its manifest says it started warm)")


def grid(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, in order; one empty point when there are no axes."""
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


def load_sweep(path: Path) -> SweepSpec:
    try:
        sweep = SweepSpec.model_validate(tomllib.loads(path.read_text()))
    except (ValidationError, tomllib.TOMLDecodeError) as exc:
        raise MixError(f"invalid sweep file {path}: {exc}") from None
    if unknown := set(sweep.load) - set(LoadOptions.LOAD_FIELDS):
        raise MixError(f"sweep {path}: unknown load keys {sorted(unknown)}; use {sorted(LoadOptions.LOAD_FIELDS)}")
    for mix in sweep.load.get("mix", [sweep.mix]):
        load_mix(mix)
    if sweep.points and sweep.serve:
        raise MixError(f"sweep {path}: give serve settings as a [serve] grid or as [[points]], not both")
    for point in serve_points(sweep):  # every serve setting must make a valid spec before anything starts
        try:
            load_profile(sweep.profile, overrides(point))
        except SpecError as exc:
            raise MixError(f"sweep {path}: serve point {point} is invalid: {exc}") from None
    return sweep


def serve_points(sweep: SweepSpec) -> list[dict[str, Any]]:
    return sweep.points or grid(sweep.serve)


def overrides(point: dict[str, Any]) -> list[str]:
    return [f"{key}={json.dumps(value)}" for key, value in point.items()]


def is_complete(run_dir: Path) -> bool:
    return (run_dir / MANIFEST).exists() and read_manifest(run_dir).status == "complete"


def run_sweep(path: Path, results_dir: Path, resume: bool = True) -> int:
    sweep = load_sweep(path)
    state = running_state()
    if state is not None:
        raise MixError("a stack is already running; the sweep restarts the stack for each setting, "
                       "so stop yours first with `python -m serve down`")
    sweep_dir = results_dir / f"sweep-{path.stem}"
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "sweep.json").write_text(sweep.model_dump_json(indent=2))
    index: list[dict[str, Any]] = []
    startup: dict[int, float | None] = {**_previous_startup(sweep_dir)}
    settings, load_points = serve_points(sweep), grid(sweep.load)
    repeats = f" x {sweep.repeats} runs each" if sweep.repeats > 1 else ""
    print(f"sweep {path.stem}: {len(settings)} serve settings x {len(load_points)} load levels{repeats} -> {sweep_dir}")
    try:
        for i, serve_point in enumerate(settings):
            simulated = load_profile(sweep.profile, overrides(serve_point)).simulated  # its runs say so: `-sim`
            runs = [(run_name(i, j, r, sweep.repeats, simulated), load_point)
                    for j, load_point in enumerate(load_points) for r in range(sweep.repeats)]
            todo = [(run_id, lp) for run_id, lp in runs if not (resume and is_complete(sweep_dir / run_id))]
            # restart: one stack per run; otherwise one per serve setting, its runs one after the other
            for batch in ([[run] for run in todo] if sweep.cache == "restart" else [todo] if todo else []):
                if (started := _run_serve_point(sweep, serve_point, batch, sweep_dir)) is not None:
                    startup.setdefault(i, started)  # the setting's first start-up, not a later restart's
            for k, (run_id, load_point) in enumerate(runs):
                index.append(_index_row(sweep_dir / run_id, run_id, serve_point, load_point, startup.get(i),
                                        repeat=k % sweep.repeats, simulated=simulated))
            _write_index(sweep_dir, index)
    except KeyboardInterrupt:
        subprocess.run([sys.executable, "-m", "serve", "down"])
        _write_index(sweep_dir, index)
        print(f"sweep stopped; run it again to resume. Index so far: {sweep_dir / 'index.json'}")
        return 130
    done = sum(row["status"] == "complete" for row in index)
    print(f"sweep {path.stem}: {done}/{len(index)} points complete; index: {sweep_dir / 'index.json'}")
    if done:
        write_intervals(sweep_dir)
    return 0 if done == len(index) else 1


def _run_serve_point(sweep: SweepSpec, serve_point: dict[str, Any], todo, sweep_dir: Path) -> float | None:
    """Start the stack with this setting, run its load points, stop it; returns the start-up time in seconds."""
    print(f"\n== serve setting {serve_point or '(profile as is)'}", flush=True)
    up = [sys.executable, "-m", "serve", "up", "--detach", "--profile", sweep.profile]
    reset = {"worker_dev_endpoints": True} if sweep.cache == "reset" else {}
    for item in overrides(reset | serve_point):
        up += ["--set", item]
    started = time.monotonic()
    if subprocess.run(up).returncode != 0:
        print(f"the stack did not start for {serve_point}; its points are marked failed", flush=True)
        subprocess.run([sys.executable, "-m", "serve", "down"])
        return None
    startup_s = round(time.monotonic() - started, 1)
    try:
        for run_id, load_point in todo:
            given = {key: value for key, value in load_point.items() if value is not None}
            load = LoadOptions.model_validate({"mix": sweep.mix, "duration_s": sweep.duration_s or 0.0, **given,
                                               "results_dir": sweep_dir, "scrape_interval_s": sweep.scrape_interval_s,
                                               "cache": "reset" if sweep.cache == "reset" else "keep"})
            command = [sys.executable, "-m", "bench", "run", *load.argv(), "--run-id", run_id]
            if not sweep.html_report:
                command.append("--no-html-report")
            print(f"-- {run_id}: load {load_point or '(mix as is)'}", flush=True)
            if subprocess.run(command).returncode == 130:
                raise KeyboardInterrupt
    finally:
        subprocess.run([sys.executable, "-m", "serve", "down"])
    return startup_s


def run_name(serve_index: int, load_index: int, repeat: int, repeats: int, simulated: bool = False) -> str:
    """`s0-l1`, or with repeats `s0-l1-r0`, `s0-l1-r1`, ...; on simulated workers `s0-l1-sim`, `s0-l1-sim-r0`, ...
    (the label before the repeat, as `bench run --repeats` names them, so a point's repeats share its name)."""
    return labelled_run_id(f"s{serve_index}-l{load_index}", simulated) + (f"-r{repeat}" if repeats > 1 else "")


def _index_row(run_dir: Path, run_id: str, serve_point: dict, load_point: dict,
               startup_s: float | None, repeat: int = 0, simulated: bool = False) -> dict[str, Any]:
    manifest = read_manifest(run_dir) if (run_dir / MANIFEST).exists() else None
    summary = manifest.summary if manifest else None
    figures = summary.all.model_dump() if summary else {}
    server = summary.server if summary else None
    return {"run_id": run_id, "path": run_dir.name, "status": manifest.status if manifest else "failed",
            "simulated": manifest.simulated if manifest else simulated, "repeat": repeat,
            **{f"serve.{k}": v for k, v in serve_point.items()}, **{f"load.{k}": v for k, v in load_point.items()},
            "startup_s": startup_s, **{key: figures.get(key) for key in INDEX_FIGURES},
            "prefix_cache_hit_rate": server.prefix_cache_hit_rate.get("all") if server else None,
            **({key: getattr(summary.decisions, key) for key in DECISION_FIGURES} if summary and summary.decisions else {})}


def write_intervals(sweep_dir: Path) -> None:
    """`intervals.csv`: every point's figures per class with their confidence intervals (over its repeats), and
    each point's difference from the first serve setting under the same load (column `baseline`), with that
    difference's interval, as `bench compare BASELINE POINT ...` gives them."""
    from bench.report.compare import compare_by_load, load_subjects

    subjects = load_subjects(sweep_dir)
    table = compare_by_load(subjects)
    simulated = {s.name: any(run.manifest.simulated for run in s.runs) for s in subjects}
    table.insert(table.columns.get_loc("subject") + 1, "simulated", table.subject.map(simulated))
    table.to_csv(sweep_dir / "intervals.csv", index=False)
    print(f"intervals: {sweep_dir / 'intervals.csv'} (`python -m bench compare {sweep_dir}/sN-lM ...` prints them)")


def _previous_startup(sweep_dir: Path) -> dict[int, float]:
    """Start-up times measured by an earlier, stopped invocation of this sweep (resumed points keep theirs)."""
    try:
        rows = json.loads((sweep_dir / "index.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {int(row["run_id"].split("-")[0][1:]): row["startup_s"] for row in rows if row.get("startup_s")}


def _write_index(sweep_dir: Path, index: list[dict[str, Any]]) -> None:
    (sweep_dir / "index.json").write_text(json.dumps(index, indent=2))
    pd.DataFrame(index).to_csv(sweep_dir / "index.csv", index=False)
