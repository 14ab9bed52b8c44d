"""Sweep grids and their validation, before any stack starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.lab.sweep import grid, load_sweep, overrides, serve_points
from bench.spec import MixError

SWEEPS = __import__("pathlib").Path(__file__).parents[2] / "bench" / "sweeps"


def test_grid_is_the_product_of_its_axes() -> None:
    points = grid({"a": [1, 2], "b": ["x", "y", "z"]})
    assert len(points) == 6 and points[0] == {"a": 1, "b": "x"} and points[-1] == {"a": 2, "b": "z"}
    assert grid({}) == [{}]


def test_overrides_render_json_values() -> None:
    assert overrides({"groups.heavy.enable_prefix_caching": False, "proxy.routing_strategy": "least-busy"}) == [
        "groups.heavy.enable_prefix_caching=false", 'proxy.routing_strategy="least-busy"']


def test_shipped_sweeps_are_valid() -> None:
    for path in SWEEPS.glob("*.toml"):
        sweep = load_sweep(path)
        assert len(grid(sweep.serve)) * len(grid(sweep.load)) >= 1


def test_a_bad_serve_point_fails_before_anything_starts(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[serve]\n"groups.light.max_num_seqs" = [4, 0]\n')
    with pytest.raises(MixError, match=r"serve point \{'groups.light.max_num_seqs': 0\} is invalid"):
        load_sweep(path)


def test_unknown_load_key(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[load]\nusers = [4]\n')
    with pytest.raises(MixError, match="unknown load keys"):
        load_sweep(path)


def test_serve_settings_can_be_listed_one_by_one(tmp_path) -> None:
    path = tmp_path / "points.toml"
    path.write_text('[[points]]\n\n[[points]]\n"groups.light.max_num_seqs" = 4\n"groups.heavy.max_num_seqs" = 4\n'
                    '[load]\nmix = ["ambient", "npc-cpu"]\n')
    sweep = load_sweep(path)
    assert serve_points(sweep) == [{}, {"groups.light.max_num_seqs": 4, "groups.heavy.max_num_seqs": 4}]
    assert grid(sweep.load) == [{"mix": "ambient"}, {"mix": "npc-cpu"}]
    path.write_text(path.read_text() + '[serve]\n"groups.light.max_num_seqs" = [4]\n')
    with pytest.raises(MixError, match="not both"):
        load_sweep(path)


def test_an_unknown_mix_in_the_load_grid_fails_before_anything_starts(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[load]\nmix = ["npc-cpu", "no-such-mix"]\n')
    with pytest.raises(MixError, match="unknown mix 'no-such-mix'"):
        load_sweep(path)


def test_repeats_name_each_run_of_a_load_point(tmp_path) -> None:
    from bench.lab.sweep import run_name

    path = tmp_path / "twice.toml"
    path.write_text('mix = "ambient"\nrepeats = 2\n[load]\nnpcs = [1, 2]\n')
    assert load_sweep(path).repeats == 2
    assert [run_name(0, j, r, 2) for j in range(2) for r in range(2)] == ["s0-l0-r0", "s0-l0-r1", "s0-l1-r0", "s0-l1-r1"]
    assert run_name(1, 3, 0, 1) == "s1-l3"  # without repeats, the names sweeps always had


def test_a_sweep_runs_each_point_three_times_from_emptied_caches_unless_told(tmp_path) -> None:
    path = tmp_path / "plain.toml"
    path.write_text('mix = "ambient"\n')
    sweep = load_sweep(path)
    assert (sweep.repeats, sweep.cache) == (3, "reset")  # as vllm bench sweep runs and resets by default
    path.write_text('mix = "ambient"\ncache = "sometimes"\n')
    with pytest.raises(MixError, match="cache"):
        load_sweep(path)


def test_committed_single_run_sweeps_say_how_their_results_ran() -> None:
    """Sweep files whose committed results are single runs on warm caches pin that, so they regenerate alike."""
    for name in ("cpu-sample", "cpu-tick", "cpu-routing", "cpu-defaults", "cpu-capacity", "cpu-tick-policies"):
        sweep = load_sweep(Path(__file__).resolve().parents[2] / "bench" / "sweeps" / f"{name}.toml")
        assert (sweep.repeats, sweep.cache) == (1, "keep"), name


def test_a_simulated_sweeps_runs_end_in_sim_before_their_repeat() -> None:
    from bench.lab.sweep import run_name
    from bench.report.compare import _point_of
    from bench.rundir import says_simulated

    names = [run_name(0, 1, r, 2, simulated=True) for r in range(2)]
    assert names == ["s0-l1-sim-r0", "s0-l1-sim-r1"] and all(says_simulated(n) for n in names)
    assert {_point_of(n) for n in names} == {"s0-l1-sim"}  # `bench compare` gathers them as one point's repeats
    assert run_name(0, 1, 0, 1, simulated=True) == "s0-l1-sim"


def test_the_index_and_the_intervals_say_which_points_were_simulated(tmp_path) -> None:
    import json
    import shutil

    import pandas as pd

    from bench.lab.sweep import _index_row, write_intervals

    results = Path(__file__).resolve().parents[2] / "results"
    sweep_dir = tmp_path / "sweep-sim"
    shutil.copytree(results / "sweep-gpu-sim-routing-scale", sweep_dir)
    assert _index_row(sweep_dir / "s0-l0-sim", "s0-l0-sim", {}, {}, None)["simulated"] is True  # from its manifest
    assert _index_row(sweep_dir / "never-ran", "never-ran", {}, {}, None, simulated=True)["simulated"] is True
    assert _index_row(results / "sweep-cpu-sample" / "s0-l0", "s0-l0", {}, {}, None)["simulated"] is False
    (sweep_dir / "index.json").write_text(json.dumps(json.loads((sweep_dir / "index.json").read_text())[:2]))
    write_intervals(sweep_dir)
    intervals = pd.read_csv(sweep_dir / "intervals.csv")
    assert list(intervals.columns[:4]) == ["cls", "figure", "subject", "simulated"] and intervals.simulated.all()
