"""bench/lab/cpushare.py: which process plays which part, and the cores each part used between two samples."""

from __future__ import annotations

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
