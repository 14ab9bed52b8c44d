"""A sweep: a grid over serve settings and load levels, like `vllm bench sweep`.

For each serve setting the stack is restarted (`python -m serve up --detach --set ...`), each load
level is run (`python -m bench run`), and the stack is stopped. Every point writes its own run
folder under `results/sweep-<name>/`, and `index.json` / `index.csv` list them with their settings.
A stopped sweep resumes: points whose run folder is complete are not run again.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.rundir import MANIFEST, read_manifest
from bench.spec import MixError, load_mix
from serve.spec import SpecError, load_profile
from serve.state import pid_alive, read_state

LOAD_KEYS = {"npcs", "rate_rps", "duration_s"}


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str = "cpu"
    mix: str = "npc-cpu"
    duration_s: float | None = Field(None, gt=0, description="for every load point, unless the load grid sets it")
    scrape_interval_s: float = Field(2.0, gt=0)
    html_report: bool = Field(True, description="false: Locust's CSVs only, for sample sets kept in git")
    serve: dict[str, list[Any]] = Field(default_factory=dict, description="dotted profile path -> values")
    load: dict[str, list[Any]] = Field(default_factory=dict, description="npcs / rate_rps / duration_s -> values")


def grid(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, in order; one empty point when there are no axes."""
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def load_sweep(path: Path) -> SweepSpec:
    try:
        sweep = SweepSpec.model_validate(tomllib.loads(path.read_text()))
    except (ValidationError, tomllib.TOMLDecodeError) as exc:
        raise MixError(f"invalid sweep file {path}: {exc}") from None
    if unknown := set(sweep.load) - LOAD_KEYS:
        raise MixError(f"sweep {path}: unknown load keys {sorted(unknown)}; use {sorted(LOAD_KEYS)}")
    load_mix(sweep.mix)
    for point in grid(sweep.serve):  # every serve setting must make a valid spec before anything starts
        try:
            load_profile(sweep.profile, overrides(point))
        except SpecError as exc:
            raise MixError(f"sweep {path}: serve point {point} is invalid: {exc}") from None
    return sweep


def overrides(point: dict[str, Any]) -> list[str]:
    return [f"{key}={json.dumps(value)}" for key, value in point.items()]


def is_complete(run_dir: Path) -> bool:
    return (run_dir / MANIFEST).exists() and read_manifest(run_dir).status == "complete"


def run_sweep(path: Path, results_dir: Path, resume: bool = True) -> int:
    sweep = load_sweep(path)
    state = read_state()
    if state is not None and pid_alive(state.supervisor_pid):
        raise MixError("a stack is already running; the sweep restarts the stack for each setting, "
                       "so stop yours first with `python -m serve down`")
    sweep_dir = results_dir / f"sweep-{path.stem}"
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "sweep.json").write_text(sweep.model_dump_json(indent=2))
    index: list[dict[str, Any]] = []
    serve_points, load_points = grid(sweep.serve), grid(sweep.load)
    print(f"sweep {path.stem}: {len(serve_points)} serve settings x {len(load_points)} load levels -> {sweep_dir}")
    try:
        for i, serve_point in enumerate(serve_points):
            runs = [(f"s{i}-l{j}", load_point) for j, load_point in enumerate(load_points)]
            todo = [(run_id, lp) for run_id, lp in runs if not (resume and is_complete(sweep_dir / run_id))]
            if todo:
                _run_serve_point(sweep, serve_point, todo, sweep_dir)
            for run_id, load_point in runs:
                index.append(_index_row(sweep_dir / run_id, run_id, serve_point, load_point))
            _write_index(sweep_dir, index)
    except KeyboardInterrupt:
        subprocess.run([sys.executable, "-m", "serve", "down"])
        _write_index(sweep_dir, index)
        print(f"sweep stopped; run it again to resume. Index so far: {sweep_dir / 'index.json'}")
        return 130
    done = sum(row["status"] == "complete" for row in index)
    print(f"sweep {path.stem}: {done}/{len(index)} points complete; index: {sweep_dir / 'index.json'}")
    return 0 if done == len(index) else 1


def _run_serve_point(sweep: SweepSpec, serve_point: dict[str, Any], todo, sweep_dir: Path) -> None:
    print(f"\n== serve setting {serve_point or '(profile as is)'}", flush=True)
    up = [sys.executable, "-m", "serve", "up", "--detach", "--profile", sweep.profile]
    for item in overrides(serve_point):
        up += ["--set", item]
    if subprocess.run(up).returncode != 0:
        print(f"the stack did not start for {serve_point}; its points are marked failed", flush=True)
        subprocess.run([sys.executable, "-m", "serve", "down"])
        return
    try:
        for run_id, load_point in todo:
            load = {"duration_s": sweep.duration_s, **load_point}
            command = [sys.executable, "-m", "bench", "run", "--mix", sweep.mix, "--results-dir", str(sweep_dir),
                       "--run-id", run_id, "--scrape-interval-s", str(sweep.scrape_interval_s)]
            if not sweep.html_report:
                command.append("--no-html-report")
            for key, value in load.items():
                if value is not None:
                    command += [f"--{key.replace('_', '-')}", str(value)]
            print(f"-- {run_id}: load {load_point or '(mix as is)'}", flush=True)
            if subprocess.run(command).returncode == 130:
                raise KeyboardInterrupt
    finally:
        subprocess.run([sys.executable, "-m", "serve", "down"])


def _index_row(run_dir: Path, run_id: str, serve_point: dict, load_point: dict) -> dict[str, Any]:
    status = read_manifest(run_dir).status if (run_dir / MANIFEST).exists() else "failed"
    return {"run_id": run_id, "path": run_dir.name, "status": status,
            **{f"serve.{k}": v for k, v in serve_point.items()}, **{f"load.{k}": v for k, v in load_point.items()}}


def _write_index(sweep_dir: Path, index: list[dict[str, Any]]) -> None:
    (sweep_dir / "index.json").write_text(json.dumps(index, indent=2))
    pd.DataFrame(index).to_csv(sweep_dir / "index.csv", index=False)
