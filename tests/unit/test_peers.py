"""`python -m bench peers`: bad input is refused before any tool starts; a peer's CPU a request is the difference of
two runs over the difference of their requests, start-up cancelled out (bench/lab/peers.py)."""

from __future__ import annotations

from pathlib import Path

from bench import cli
from bench.lab.peers import SHAPES, PeerResult, Target, ToolRun, guidellm_command, vllm_command


def test_no_peer_or_a_missing_tool_is_an_error_before_anything_runs(tmp_path: Path, capsys) -> None:
    base = ["peers", "--base-url", "http://127.0.0.1:1", "--model", "m", "--tokenizer", str(tmp_path),
            "--results-dir", str(tmp_path)]
    assert cli.main(base) == 2
    assert "name at least one peer" in capsys.readouterr().err
    assert cli.main([*base, "--guidellm", "/nonexistent/guidellm"]) == 2
    assert "is not an executable command" in capsys.readouterr().err
    assert not (tmp_path / "peers-sim").exists()


def test_cpu_a_request_cancels_start_up() -> None:
    def tool_run(requests: int, cpu_s: float) -> ToolRun:
        return ToolRun(requests=requests, cpu_s=cpu_s, wall_s=1, exit_code=0, load_avg=(0, 0, 0))
    # 12 s of start-up in both; 30 requests cost 0.3 s more, 330 requests 3.3 s more: 10 ms a request.
    result = PeerResult(tool="guidellm", shape=SHAPES["harness-plain"], rate_rps=30, streams=False, command=[],
                        small=tool_run(30, 12.3), large=tool_run(330, 15.3))
    assert round(result.cpu_ms_per_request, 6) == 10.0


def test_the_peers_are_asked_for_the_mixes_shape_and_rate(tmp_path: Path) -> None:
    target = Target(base_url="http://127.0.0.1:8002", model="m", tokenizer="/tok")
    plain, streamed = SHAPES["harness-plain"], SHAPES["harness-streamed"]
    vllm = vllm_command("vllm", target, plain, 30, 300)
    assert vllm[vllm.index("--random-input-len") + 1] == "7800" and vllm[vllm.index("--request-rate") + 1] == "30"
    assert "stream=false" in " ".join(guidellm_command("guidellm", target, plain, 30, 300, tmp_path / "o.json"))
    assert "stream=true" in " ".join(guidellm_command("guidellm", target, streamed, 30, 300, tmp_path / "o.json"))
