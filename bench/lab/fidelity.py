"""Do this project's figures agree with vLLM's own benchmark? One worker, one fixed workload, both tools.

    python -m bench fidelity [--direct light-0] [--input-len 256] [--output-len 64] [--concurrency 4]
                             [--num-prompts 48] [--tolerance 0.05]

Against the running stack, straight to one worker, one after the other:
1. `vllm bench serve` (vLLM's own benchmark, run by the installed `vllm` command) with its random dataset:
   prompts of `input-len` random tokens, replies of exactly `output-len` tokens (`--ignore-eos`),
   `--max-concurrency`, all requests at once.
2. This project's bench (`python -m bench run --direct WORKER`, Locust and the OpenAI SDK) with the same
   workload: the `fixed` class (one user message of `input-len` random words, the same reply length with
   ignore_eos), closed loop at the same concurrency with no think time, for as long as vLLM's run took.

Both are read the same way, the way vLLM defines its figures: median TTFT over requests; median ITL over
every gap between streamed chunks of every request, pooled; output tokens/s = output tokens over the time
from the first request's start to the last one's end. The worker's own counters before and after each run
give the prompt and output tokens it processed per request, which shows both sent the same workload.
Writes results/<run-id>/: fidelity.json (settings, both tools' figures, their differences, versions,
machine), vllm_bench.json (vLLM's own result file) and bench/ (this project's run folder).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from bench.load.metrics import CounterWindow, scrape, total
from bench.options import LoadOptions
from bench.records import Provenance
from bench.rundir import labelled_run_id, provenance, read_requests
from serve import VLLM, StackState, log_tail, portable
from serve.common import now_iso

FIGURES = ["ttft_median_ms", "itl_median_ms", "output_tps"]  # the ones that must agree


class Figures(BaseModel):
    requests: int
    duration_s: float
    ttft_median_ms: float
    itl_median_ms: float
    tpot_median_ms: float
    output_tps: float
    worker_prompt_tokens_per_request: float | None = None  # from the worker's own counters
    worker_output_tokens_per_request: float | None = None


class FidelityRun(Provenance):
    run_id: str
    started_at: str
    ended_at: str | None = None
    worker: str
    settings: dict
    commands: dict[str, list[str]]
    vllm: Figures | None = None
    bench: Figures | None = None
    differences: dict[str, float] = {}  # (bench - vllm) / vllm
    tolerance: float
    agree: bool | None = None


class WorkerCounters:
    """The worker's prompt, output and finished-request counters over one tool's run."""

    PROMPT, OUTPUT, REQUESTS = "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total"

    def __init__(self, url: str) -> None:
        self.url = url
        self.window = CounterWindow()
        self.read()

    def read(self) -> None:
        samples = scrape(self.url)
        self.window.add(self.url, {name: total(samples, name) for name in (self.PROMPT, self.OUTPUT, self.REQUESTS)})

    def per_request(self) -> tuple[float | None, float | None]:
        """Prompt and output tokens per finished request since the counters were made."""
        self.read()
        done = self.window.delta(self.REQUESTS)[self.url]
        if not done:
            return None, None
        return (round(self.window.delta(self.PROMPT)[self.url] / done, 1),
                round(self.window.delta(self.OUTPUT)[self.url] / done, 1))


def vllm_bench_command(url: str, model: str, tokenizer: str, settings: dict, out: Path) -> list[str]:
    return [VLLM, "bench", "serve", "--backend", "openai-chat", "--base-url", url,
            "--endpoint", "/v1/chat/completions", "--model", model, "--tokenizer", tokenizer,
            "--dataset-name", "random", "--random-input-len", str(settings["input_len"]),
            "--random-output-len", str(settings["output_len"]), "--random-range-ratio", "0",
            "--num-prompts", str(settings["num_prompts"]), "--max-concurrency", str(settings["concurrency"]),
            "--request-rate", "inf", "--ignore-eos", "--seed", "0", "--percentile-metrics", "ttft,tpot,itl,e2el",
            "--save-result", "--result-dir", str(out), "--result-filename", "vllm_bench.json"]


def vllm_figures(result: dict) -> Figures:
    return Figures(requests=result["completed"], duration_s=round(result["duration"], 2),
                   ttft_median_ms=round(result["median_ttft_ms"], 2), itl_median_ms=round(result["median_itl_ms"], 2),
                   tpot_median_ms=round(result["median_tpot_ms"], 2), output_tps=round(result["output_throughput"], 2))


def bench_figures(records: pd.DataFrame) -> Figures:
    """This project's records read by vLLM's definitions (see the module docstring)."""
    ok = records[records.outcome == "ok"]
    gaps = [gap for row in ok.token_gaps_s.dropna() for gap in row]
    span = (ok.t_start + ok.e2e_s).max() - ok.t_start.min()
    tpot = ((ok.e2e_s - ok.ttft_s) / (ok.output_tokens - 1)).where(ok.output_tokens > 1)
    return Figures(requests=len(ok), duration_s=round(span, 2), ttft_median_ms=round(ok.ttft_s.median() * 1000, 2),
                   itl_median_ms=round(statistics.median(gaps) * 1000, 2), tpot_median_ms=round(tpot.median() * 1000, 2),
                   output_tps=round(ok.output_tokens.sum() / span, 2))


def bench_mix(settings: dict, duration_s: float) -> str:
    return (f'description = "The fixed workload of a fidelity run, as vllm bench serve sends it."\n'
            f'scale = "cpu"\nweights = {{ fixed = 1 }}\n'
            f'shape = {{ kind = "closed", users = {settings["concurrency"]}, think_time_s = 0, '
            f'duration_s = {duration_s:.1f} }}\n'
            f'[lengths.fixed]\nprompt_tokens = {{ mean = {settings["input_len"]} }}\n'
            f'output_tokens = {{ mean = {settings["output_len"]} }}\n')


def run_logged(command: list[str], log: Path, what: str) -> None:
    with log.open("w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"{what} exited with code {code}:\n{log_tail(log, 15)}\nfull log: {log}")


def run_fidelity(state: StackState, results_dir: Path, run_id: str, worker_name: str, settings: dict,
                 tolerance: float) -> FidelityRun:
    worker = next(w for w in state.workers if w.name == worker_name)
    model = state.spec.models[state.spec.groups[worker.group].model]
    # On simulated workers both the record and its bench run say so in their names, as `bench run` names its own.
    run_id, bench_id = (labelled_run_id(name, state.spec.simulated) for name in (run_id, "bench"))
    out = results_dir / run_id
    out.mkdir(parents=True, exist_ok=False)
    mix_path = out / "fixed-mix.toml"
    vllm_cmd = vllm_bench_command(worker.url, model.hf_id, str(model.local_dir or model.hf_id), settings, out)
    load = LoadOptions(mix=str(mix_path), direct=worker.name, results_dir=out, scrape_interval_s=5)
    bench_cmd = [sys.executable, "-m", "bench", "run", *load.argv(), "--run-id", bench_id, "--no-html-report"]
    record = FidelityRun(run_id=run_id, started_at=now_iso(), worker=worker.name, settings=settings,
                         commands={name: [portable(part) for part in command]
                                   for name, command in (("vllm", vllm_cmd), ("bench", bench_cmd))},
                         tolerance=tolerance,
                         **dict(provenance(state.spec)))

    print(f"[fidelity] 1/2 vllm bench serve -> {worker.name} ({settings})", flush=True)
    counters = WorkerCounters(worker.url)
    run_logged(vllm_cmd, out / "vllm_bench.log", "vllm bench serve")
    result = out / "vllm_bench.json"
    result.write_text(portable(result.read_text()))  # vLLM records the tokenizer's local folder
    record.vllm = vllm_figures(json.loads(result.read_text()))
    record.vllm.worker_prompt_tokens_per_request, record.vllm.worker_output_tokens_per_request = counters.per_request()

    print(f"[fidelity] 2/2 python -m bench run --direct {worker.name}, {record.vllm.duration_s:.0f} s", flush=True)
    mix_path.write_text(bench_mix(settings, record.vllm.duration_s))
    counters = WorkerCounters(worker.url)
    run_logged(bench_cmd, out / "bench.log", "python -m bench run")
    record.bench = bench_figures(read_requests(out / bench_id))
    record.bench.worker_prompt_tokens_per_request, record.bench.worker_output_tokens_per_request = counters.per_request()

    vllm, bench = record.vllm.model_dump(), record.bench.model_dump()
    record.differences = {key: round((bench[key] - vllm[key]) / vllm[key], 4) for key in FIGURES}
    record.agree = all(abs(d) <= tolerance for d in record.differences.values())
    record.ended_at = now_iso()
    (out / "fidelity.json").write_text(record.model_dump_json(indent=2))
    return record


def table(record: FidelityRun) -> pd.DataFrame:
    assert record.vllm is not None and record.bench is not None, "the fidelity run did not finish"
    rows = {"vllm bench serve": record.vllm.model_dump(), "python -m bench": record.bench.model_dump()}
    frame = pd.DataFrame(rows)
    frame["difference"] = pd.Series({k: f"{v:+.1%}" for k, v in record.differences.items()})
    return frame
