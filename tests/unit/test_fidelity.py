"""The fidelity run reads this project's records the way vLLM's benchmark defines its figures."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.lab.fidelity import bench_figures, bench_mix, vllm_bench_command
from bench.spec import load_mix
from serve.paths import REPO_ROOT, portable
from serve.render import VLLM


def test_records_are_read_by_vllms_definitions() -> None:
    records = pd.DataFrame([
        # starts at 0, first token at 0.5 s, then three gaps; 4 tokens in all
        {"outcome": "ok", "t_start": 100.0, "e2e_s": 0.8, "ttft_s": 0.5, "output_tokens": 4,
         "token_gaps_s": [0.1, 0.1, 0.1]},
        {"outcome": "ok", "t_start": 100.5, "e2e_s": 1.5, "ttft_s": 0.3, "output_tokens": 4,
         "token_gaps_s": [0.2, 0.4, 0.6]},
        {"outcome": "error", "t_start": 101.0, "e2e_s": 0.1, "ttft_s": None, "output_tokens": 0, "token_gaps_s": None},
    ])
    figures = bench_figures(records)
    assert figures.requests == 2
    assert figures.ttft_median_ms == pytest.approx(400.0)
    assert figures.itl_median_ms == pytest.approx(150.0)  # pooled over all six gaps, not per request
    assert figures.tpot_median_ms == pytest.approx((100.0 + 400.0) / 2)
    assert figures.duration_s == 2.0 and figures.output_tps == 4.0  # 8 tokens from 100.0 to 102.0


def test_both_tools_get_the_same_workload(tmp_path) -> None:
    settings = {"input_len": 200, "output_len": 32, "concurrency": 3, "num_prompts": 12}
    command = vllm_bench_command("http://127.0.0.1:8003", "m", "/models/m", settings, tmp_path)

    def value(flag: str) -> str:
        return command[command.index(flag) + 1]

    assert command[:3] == [VLLM, "bench", "serve"]  # vLLM's own command, as its docs run it
    assert (value("--random-input-len"), value("--random-output-len"), value("--max-concurrency")) == ("200", "32", "3")
    assert "--ignore-eos" in command and value("--random-range-ratio") == "0"
    path = tmp_path / "mix.toml"
    path.write_text(bench_mix(settings, duration_s=42.0))
    mix = load_mix(str(path))
    fixed = mix.classes["fixed"]
    assert (fixed.prompt_tokens.mean, fixed.output_tokens.mean, fixed.stream) == (200, 32, True)
    assert (mix.mix.shape.users, mix.mix.shape.think_time_s, mix.mix.shape.duration_s) == (3, 0, 42.0)


def test_a_failing_tool_is_reported_with_the_end_of_its_log(tmp_path) -> None:
    import sys

    from bench.lab.fidelity import run_logged

    with pytest.raises(RuntimeError, match=r"(?s)vllm bench serve exited with code 3:\nboom\nfull log: "):
        run_logged([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], tmp_path / "x.log", "vllm bench serve")


def test_recorded_commands_name_no_local_path(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("NPCBENCH_HOME", str(tmp_path / "npc"))
    command = vllm_bench_command("http://127.0.0.1:8003", "m", str(tmp_path / "npc" / "models" / "M"),
                                 {"input_len": 8, "output_len": 4, "concurrency": 1, "num_prompts": 2},
                                 REPO_ROOT / "results" / "f")
    shown = [portable(part) for part in command]
    assert shown[0] == "vllm" and "$NPCBENCH_HOME/models/M" in shown and "results/f" in shown
    assert not [part for part in shown if str(tmp_path) in part or str(REPO_ROOT) in part]
