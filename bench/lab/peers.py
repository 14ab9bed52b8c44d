"""What a peer load generator (`vllm bench serve`, GuideLLM) spends in CPU a request, measured the same way for each.

Each tool is run twice against the same backend at the same Poisson rate, once with a few requests and once with many;
its CPU is the whole process tree's user + system time (`getrusage(RUSAGE_CHILDREN)` around the run, which counts
every descendant its parents waited for). The difference between the two runs, divided by the difference in requests,
is the tool's CPU a request with its start-up (imports, tokenizer, synthetic prompts) cancelled out.

The harness's own load generator is measured by `python -m bench run` itself (`summary.client`, start-up excluded).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from pathlib import Path

from pydantic import BaseModel, Field


class Shape(BaseModel):
    """One harness mix as a peer can send it: tokens in and out, streamed or not."""

    name: str
    prompt_tokens: int
    output_tokens: int
    stream: bool


# The harness mixes' means (bench/classes.toml, gpu scale): ambient 7,800 in / 70 out plain; dialogue 3,000 / 150.
SHAPES = {
    "harness-plain": Shape(name="harness-plain", prompt_tokens=7800, output_tokens=70, stream=False),
    "harness-streamed": Shape(name="harness-streamed", prompt_tokens=3000, output_tokens=150, stream=True),
}


class Target(BaseModel):
    base_url: str = Field(description="the OpenAI-compatible server, e.g. http://127.0.0.1:8002")
    model: str
    tokenizer: str = Field(description="a local tokenizer folder, for the peers' synthetic prompts")


class ToolRun(BaseModel):
    requests: int
    cpu_s: float
    wall_s: float
    exit_code: int
    load_avg: tuple[float, float, float]


class PeerResult(BaseModel):
    tool: str
    shape: Shape
    rate_rps: float
    streams: bool = Field(description="whether the tool's requests streamed (vllm bench serve's always do)")
    command: list[str]
    small: ToolRun
    large: ToolRun

    @property
    def cpu_ms_per_request(self) -> float:
        return (self.large.cpu_s - self.small.cpu_s) * 1000 / (self.large.requests - self.small.requests)


def vllm_command(vllm: str, target: Target, shape: Shape, rate: float, n: int) -> list[str]:
    return [vllm, "bench", "serve", "--backend", "openai-chat", "--base-url", target.base_url,
            "--endpoint", "/v1/chat/completions", "--model", target.model, "--tokenizer", target.tokenizer,
            "--dataset-name", "random", "--random-input-len", str(shape.prompt_tokens),
            "--random-output-len", str(shape.output_tokens), "--num-prompts", str(n), "--request-rate", str(rate),
            "--ignore-eos", "--disable-tqdm", "--seed", "0"]


def guidellm_command(guidellm: str, target: Target, shape: Shape, rate: float, n: int, out: Path) -> list[str]:
    return [guidellm, "run",
            "--backend", f"kind=openai_http,target={target.base_url},model={target.model},"
                         f"stream={'true' if shape.stream else 'false'}",
            "--profile", f"kind=poisson,rate={rate}", "--constraint", f"kind=max_requests,count={n}",
            "--data", f"kind=synthetic_text,prompt_tokens={shape.prompt_tokens},output_tokens={shape.output_tokens}",
            "--tokenizer", f"kind=hf_auto,model={target.tokenizer}", "--output", f"kind=json,path={out}",
            "--disable-console-interactive"]


def measure(command: list[str], requests: int, log: Path) -> ToolRun:
    """Run one command to its end; its process tree's CPU from the children's rusage."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    with log.open("w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}).returncode
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return ToolRun(requests=requests, cpu_s=round(cpu, 3), wall_s=round(wall, 2), exit_code=code,
                   load_avg=tuple(round(x, 2) for x in os.getloadavg()))


def run_peer(tool: str, path: str, target: Target, shape: Shape, rate: float, small: int, large: int,
             folder: Path) -> PeerResult:
    def command(n: int, tag: str) -> list[str]:
        if tool == "vllm-bench-serve":
            return vllm_command(path, target, shape, rate, n)
        return guidellm_command(path, target, shape, rate, n, folder / f"{tool}-{shape.name}-{tag}.json")

    runs = {tag: measure(command(n, tag), n, folder / f"{tool}-{shape.name}-{tag}.log")
            for tag, n in (("small", small), ("large", large))}
    for tag in runs:  # GuideLLM's per-request JSON is ~50 kB a request; its console log (kept) has the summary
        (folder / f"{tool}-{shape.name}-{tag}.json").unlink(missing_ok=True)
    return PeerResult(tool=tool, shape=shape, rate_rps=rate, streams=shape.stream or tool == "vllm-bench-serve",
                      command=portable(command(large, "large"), target), small=runs["small"], large=runs["large"])


def portable(command: list[str], target: Target) -> list[str]:
    """The command as recorded: the tool and the tokenizer by name, not by this machine's paths."""
    names = {command[0]: Path(command[0]).name.upper(), target.tokenizer: "TOKENIZER"}
    return [names.get(arg, arg).replace(f"model={target.tokenizer}", "model=TOKENIZER") for arg in command]


def write(results: list[PeerResult], path: Path) -> None:
    rows = [{**r.model_dump(), "cpu_ms_per_request": round(r.cpu_ms_per_request, 3)} for r in results]
    path.write_text(json.dumps({"simulated_backend": True, "peers": rows}, indent=1) + "\n")


def read(path: Path) -> list[dict[str, object]]:
    peers: list[dict[str, object]] = json.loads(path.read_text())["peers"]
    return peers
