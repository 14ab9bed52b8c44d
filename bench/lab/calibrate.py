"""Fit the simulated worker's latency model (serve/sim/) to a real worker's measured timings.

    python -m bench calibrate --worker heavy-0 [--worker light-1] [--run-id calibration-cpu]

Straight to each worker (bypassing the proxy), with the other workers idle, streamed and with ignore_eos:
1. **Prefill**: one request at a time, prompts of several lengths up to the group's context, one token out;
   TTFT = request overhead + one step + prompt tokens x prefill cost. Every prompt is fresh random words, so
   nothing comes from the prefix cache.
2. **Decode**: B streams at once (B up to the group's max_num_seqs), with short and long prompts; the median
   gap between tokens is one step: step overhead + B x per-sequence cost + B x context x per-KV-token cost.
Least squares gives each term (`SimLatency`); the record keeps every probe and the fit's residuals. Writes
results/<run-id>/calibration.json, a `Calibration` with the stack's provenance.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openai
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, Field

from bench.load.npc import WORDS
from bench.records import Provenance
from bench.rundir import git_info, provenance
from serve import SimLatency, StackState, batched_tokens
from serve.common import now_iso

REPEATS = 3
DECODE_TOKENS = 40


class Probe(BaseModel):
    kind: str = Field(description="prefill (one request) or decode (`batch` streams at once)")
    prompt_tokens: int = Field(description="as the worker counted them (usage)")
    batch: int
    seconds: float = Field(description="prefill: TTFT; decode: median gap between tokens")


class WorkerFit(BaseModel):
    worker: str
    probes: list[Probe]
    latency: SimLatency
    prefill_rmse_ms: float
    decode_rmse_ms: float


class Calibration(Provenance):
    run_id: str
    started_at: str
    ended_at: str | None = None
    fits: list[WorkerFit] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def fresh_prompt(rng: random.Random, words: int) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": " ".join(rng.choice(WORDS) for _ in range(words))}]


def stream_times(client: openai.OpenAI, model: str, messages: list[ChatCompletionMessageParam], max_tokens: int
                 ) -> tuple[float, list[float], int]:
    """(start, each content chunk's arrival, prompt tokens) of one streamed request."""
    t0, arrivals, prompt = time.perf_counter(), [], 0
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, stream=True,
                                            stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    for chunk in stream:
        if chunk.usage:
            prompt = chunk.usage.prompt_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
    return t0, arrivals, prompt


def probe_prefill(client: openai.OpenAI, model: str, max_len: int, rng: random.Random) -> list[Probe]:
    stream_times(client, model, fresh_prompt(rng, 32), 2)  # a first request pays one-off costs: not a probe
    probes = []
    for words in [int(max_len * share) for share in (0.02, 0.1, 0.25, 0.45, 0.7)]:
        for _ in range(REPEATS):
            t0, arrivals, prompt = stream_times(client, model, fresh_prompt(rng, words), 2)
            probes.append(Probe(kind="prefill", prompt_tokens=prompt, batch=1, seconds=arrivals[0] - t0))
    return probes


def probe_decode(client: openai.OpenAI, model: str, max_len: int, max_seqs: int, rng: random.Random) -> list[Probe]:
    probes = []
    batches = sorted({1, 2, max(1, max_seqs // 2), max_seqs})
    for words in (16, int(max_len * 0.3)):
        for batch in batches:
            prompts = [fresh_prompt(rng, words) for _ in range(batch)]
            with ThreadPoolExecutor(batch) as pool:
                results = list(pool.map(lambda m: stream_times(client, model, m, DECODE_TOKENS), prompts))
            # The gaps while every stream decodes: after the last first token, before the first last one.
            start, end = max(r[1][0] for r in results), min(r[1][-1] for r in results)
            gaps = [b - a for _, arrivals, _ in results for a, b in zip(arrivals, arrivals[1:], strict=False)
                    if a >= start and b <= end]
            if gaps:
                prompt = round(statistics.mean(r[2] for r in results))
                probes.append(Probe(kind="decode", prompt_tokens=prompt, batch=batch, seconds=statistics.median(gaps)))
    return probes


def fit(worker: str, probes: list[Probe], budget: int, source: str) -> WorkerFit:
    """Least squares, in ms. Decode gap = s + B x d + B x context x k. TTFT = overhead + chunks x s + L x p
    + L^2/2 x q (attention: every prompt token against those before it), a prompt longer than the step's token
    budget (`max_num_batched_tokens`) taking one step per chunk."""
    decode = [p for p in probes if p.kind == "decode"]
    a = np.array([[1.0, p.batch, p.batch * (p.prompt_tokens + DECODE_TOKENS / 2)] for p in decode])
    y = np.array([p.seconds * 1000 for p in decode])
    (step, per_seq, per_kv), *_ = np.linalg.lstsq(a, y, rcond=None)
    step, per_seq, per_kv = max(step, 0.0), max(per_seq, 0.0), max(per_kv, 0.0)
    decode_rmse = float(np.sqrt(np.mean((a @ [step, per_seq, per_kv] - y) ** 2)))
    prefill = [p for p in probes if p.kind == "prefill"]
    b = np.array([[1.0, p.prompt_tokens, p.prompt_tokens**2 / 2] for p in prefill])
    z = np.array([p.seconds * 1000 - step * math.ceil(p.prompt_tokens / budget) for p in prefill])
    (overhead, per_token, per_pair), *_ = np.linalg.lstsq(b, z, rcond=None)
    overhead, per_token, per_pair = max(overhead, 0.0), max(per_token, 0.0), max(per_pair, 0.0)
    prefill_rmse = float(np.sqrt(np.mean((b @ [overhead, per_token, per_pair] - z) ** 2)))
    latency = SimLatency(source=source, request_overhead_ms=round(overhead, 3), step_overhead_ms=round(step, 3),
                         prefill_ms_per_token=round(per_token, 5), prefill_ms_per_token_pair=round(per_pair, 9),
                         decode_ms_per_seq=round(per_seq, 4), decode_ms_per_kv_token=round(per_kv, 7))
    return WorkerFit(worker=worker, probes=probes, latency=latency, prefill_rmse_ms=round(prefill_rmse, 2),
                     decode_rmse_ms=round(decode_rmse, 2))


def refit(path: Path, budgets: dict[str, int]) -> Calibration:
    """Fit a calibration's probes again with this code's model (they are measurements; the fit is arithmetic).
    The record says when, and from which commit."""
    record = Calibration.model_validate_json(path.read_text())
    record.fits = [fit(f.worker, f.probes, budgets[f.worker], f.latency.source) for f in record.fits]
    record.notes.append(f"fits recomputed from the same probes on {now_iso()} at commit {git_info().commit} "
                        f"(dirty: {git_info().dirty}), with the model of that commit's bench/lab/calibrate.py")
    path.write_text(record.model_dump_json(indent=2))
    return record


def run_calibration(state: StackState, workers: list[str], results_dir: Path, run_id: str) -> Calibration:
    out = results_dir / run_id
    out.mkdir(parents=True, exist_ok=False)
    record = Calibration(run_id=run_id, started_at=now_iso(), **dict(provenance(state.spec)))
    rng = random.Random(run_id)
    for name in workers:
        worker = next(w for w in state.spec.workers if w.name == name)
        group, model = state.spec.group_of(worker), state.spec.model_of(worker)
        client = openai.OpenAI(base_url=state.spec.worker_url(worker) + "/v1", api_key="unused", max_retries=0,
                               timeout=300)
        print(f"[calibrate] {name}: prefill probes", flush=True)
        probes = probe_prefill(client, model.hf_id, group.max_model_len, rng)
        print(f"[calibrate] {name}: decode probes", flush=True)
        probes += probe_decode(client, model.hf_id, group.max_model_len, group.max_num_seqs, rng)
        source = f"fitted to {name} of profile {state.spec.profile} ({results_dir.name}/{run_id}, {record.started_at})"
        record.fits.append(fit(name, probes, batched_tokens(state.spec, worker.group), source))
        print(f"[calibrate] {name}: {record.fits[-1].latency.model_dump(exclude={'source'})}", flush=True)
    record.ended_at = now_iso()
    (out / "calibration.json").write_text(record.model_dump_json(indent=2))
    return record
