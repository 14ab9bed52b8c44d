"""bench/lab/cpushare.py: which process plays which part, and the cores each part used between two samples."""

from __future__ import annotations

import argparse

import pytest

from bench.lab.cpushare import role, shares


def proc(pid: int, ppid: int, name: str, cmd: str, cpu_s: float) -> dict:
    return {"pid": pid, "ppid": ppid, "name": name, "cmd": cmd, "role": "", "cpu_s": cpu_s, "core": 0}


def test_roles_follow_vllm_process_names_and_only_this_stacks_proxy_and_locust() -> None:
    ours = ("/stack", "/wt")
    assert role("vllm", "python vllm serve /m --port 8001".split(), ours) == "api_server"
    assert role("VLLM::EngineCore", ["VLLM::EngineCore"], ours) == "engine_core"
    assert role("VLLM::Worker", ["VLLM::Worker"], ours) == "model_worker"
    assert role("python", "python -m litellm.proxy.proxy_cli --config /stack/c.yaml".split(), ours) == "proxy"
    assert role("python", "python -m litellm.proxy.proxy_cli --config /tmp/x/c.yaml".split(), ours) == "other"
    assert role("python", "python -m locust -f /wt/bench/locustfile.py".split(), ours) == "load"
    assert role("python", "python -m bench run --results-dir /elsewhere".split(), ours) == "other"
    assert role("mypy", ["mypy"], ours) == "other"


def test_shares_are_cores_used_per_second_by_role_and_by_worker() -> None:
    def at(t: float, used: float) -> dict:
        return {"t": t, "load": [3.0, 2.0, 1.0], "cores_busy_s": [10 + used, 20 + used],
                "procs": [proc(1, 0, "vllm", "vllm serve m --port 8001", used / 10),
                          proc(2, 1, "VLLM::EngineCore", "VLLM::EngineCore", used / 10),
                          proc(3, 2, "VLLM::Worker", "VLLM::Worker", used),
                          proc(4, 0, "mypy", "mypy", used / 2)]}

    result = shares([at(100.0, 0.0), at(110.0, 5.0)])
    assert result["window_s"] == 10.0
    assert result["cores_busy"] == [0.5, 0.5]
    assert result["cores_by_role"]["model_worker"] == 0.5 and result["cores_by_role"]["other"] == 0.25
    assert result["cores_by_worker"] == {"8001": {"api_server": 0.05, "engine_core": 0.05, "model_worker": 0.5}}
    with pytest.raises(ValueError, match="fewer than two"):
        shares([at(100.0, 0.0)])


def test_the_command_sums_samples_over_each_run_and_refuses_bad_input_first(tmp_path) -> None:
    import json

    from bench.cli import CommandError
    from bench.cli.cpushare import run

    def at(t: float, used: float) -> dict:
        return {"t": t, "load": [3.0, 2.0, 1.0], "cores_busy_s": [used, used],
                "procs": [proc(3, 2, "VLLM::Worker", "VLLM::Worker", used)]}

    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(at(t, t / 2)) + "\n" for t in (1000.0, 1002.0, 1004.0)))
    run_dir = tmp_path / "real-r0"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps({"started_at": "1970-01-01T00:16:40+00:00",
                                                      "ended_at": "1970-01-01T00:16:44+00:00"}))
    out = tmp_path / "cpu-share.json"
    args = argparse.Namespace(out=out, duration_s=0.0, interval_s=1.0, samples=samples, runs=[run_dir], ours=[])
    assert run(args) == 0
    summary = json.loads(out.read_text())["real-r0"]
    assert summary["cores_by_role"]["model_worker"] == 0.5 and summary["load_avg_1_5_15"] == [3.0, 2.0, 1.0]
    with pytest.raises(CommandError, match="--runs needs --samples"):
        run(argparse.Namespace(**{**vars(args), "samples": tmp_path / "none.jsonl"}))
    with pytest.raises(CommandError, match="not run folders"):
        run(argparse.Namespace(**{**vars(args), "runs": [tmp_path]}))
    with pytest.raises(CommandError, match="must be positive"):
        run(argparse.Namespace(**{**vars(args), "runs": []}))
