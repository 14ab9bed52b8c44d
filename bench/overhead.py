"""What the LiteLLM proxy adds to each request: the same requests straight to the workers and through the proxy.

    python -m bench overhead [--requests 200] [--concurrency 16] [--duration-s 30] [--label default]

Against the running stack, on the `light` group, one request shape at a time (plain with 1 output
token, streamed with 8): at concurrency 1, N requests alternate direct and proxied (so drift hits both
alike) and the median difference is the added latency; then each target is loaded closed-loop at the
given concurrency for a fixed time, which gives requests/s and the proxy's CPU per request (psutil,
the proxy process and its children). LiteLLM's own view is recorded beside it: the
`x-litellm-overhead-duration-ms` header per request and `litellm_overhead_latency_metric` from /metrics.
Writes results/<run-id>/overhead.json (settings, stack spec, versions, machine, the table) and
requests.csv (one row per request).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Literal

import httpx
import openai
import pandas as pd
from pydantic import BaseModel

from bench.metrics import scrape, total
from bench.rundir import git_info, machine_info, package_versions, utc_now
from bench.scrape import process_tree
from serve.state import StackState, master_key

Target = Literal["direct", "proxy"]
Shape = Literal["plain", "stream"]
PROMPT = [{"role": "user", "content": "The guard sees the player. One word:"}]
OUTPUT_TOKENS: dict[Shape, int] = {"plain": 1, "stream": 8}
OVERHEAD_METRIC = "litellm_overhead_latency_metric"


class Row(BaseModel):
    """One line of the table: a request shape, a concurrency and a target."""

    shape: Shape
    concurrency: int
    target: Target
    requests: int
    errors: int
    rps: float
    latency_p50_ms: float
    latency_p95_ms: float
    added_p50_ms: float | None = None  # proxy minus direct, medians
    litellm_header_p50_ms: float | None = None  # x-litellm-overhead-duration-ms
    litellm_metric_mean_ms: float | None = None  # litellm_overhead_latency_metric, sum/count over the phase
    proxy_cpu_ms_per_request: float | None = None


class OverheadRun(BaseModel):
    run_id: str
    label: str
    started_at: str
    ended_at: str | None = None
    settings: dict
    stack: dict
    versions: dict[str, str | None]
    git: dict
    machine: dict
    rows: list[Row] = []


class Bench:
    def __init__(self, state: StackState) -> None:
        self.state = state
        self.proxy = openai.AsyncOpenAI(base_url=state.base_url, api_key=master_key(), max_retries=0, timeout=120)
        light = [w for w in state.workers if w.group == "light"]
        self.direct = [openai.AsyncOpenAI(base_url=w.url + "/v1", api_key="none", max_retries=0, timeout=120)
                       for w in light]
        self.served_name = state.spec["models"][state.spec["groups"]["light"]["model"]]["hf_id"]
        self.next_direct = itertools.cycle(self.direct)
        self.rows: list[dict] = []

    async def one(self, target: Target, shape: Shape, concurrency: int) -> None:
        client, model = (self.proxy, "light") if target == "proxy" else (next(self.next_direct), self.served_name)
        stream = shape == "stream"
        row = {"shape": shape, "concurrency": concurrency, "target": target, "ok": False, "header_ms": None}
        start = time.perf_counter()
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=PROMPT, max_tokens=OUTPUT_TOKENS[shape], stream=stream, temperature=0,
                extra_body={"ignore_eos": True})
            reply = raw.parse()
            if stream:
                async for _ in reply:
                    pass
            header = raw.headers.get("x-litellm-overhead-duration-ms")
            row.update(ok=True, header_ms=float(header) if header else None)
        except openai.APIError as exc:
            row["error"] = str(exc)[:200]
        row["latency_ms"] = (time.perf_counter() - start) * 1000
        self.rows.append(row)

    async def paired(self, shape: Shape, n: int) -> None:
        for _ in range(n):
            await self.one("direct", shape, 1)
            await self.one("proxy", shape, 1)

    async def closed_loop(self, target: Target, shape: Shape, concurrency: int, duration_s: float) -> None:
        deadline = time.perf_counter() + duration_s

        async def user() -> None:
            while time.perf_counter() < deadline:
                await self.one(target, shape, concurrency)

        await asyncio.gather(*(user() for _ in range(concurrency)))


def proxy_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of the proxy and its children."""
    return sum(sum(p.cpu_times()[:2]) for p in process_tree(pid))


def litellm_overhead(state: StackState) -> tuple[float, float]:
    with httpx.Client(follow_redirects=True) as client:  # the proxy answers /metrics with a 307 to /metrics/
        samples = scrape(state.proxy.url, client, headers={"Authorization": f"Bearer {master_key()}"})
    return total(samples, OVERHEAD_METRIC + "_sum"), total(samples, OVERHEAD_METRIC + "_count")


def phase_row(df: pd.DataFrame, elapsed_s: float, cpu_s: float | None, metric: tuple[float, float] | None) -> dict:
    ok = df[df.ok]
    row = {"requests": len(df), "errors": int((~df.ok).sum()), "rps": round(len(ok) / elapsed_s, 2),
           "latency_p50_ms": round(ok.latency_ms.median(), 2), "latency_p95_ms": round(ok.latency_ms.quantile(0.95), 2)}
    if df.target.iloc[0] == "proxy":
        headers = ok.header_ms.dropna()
        row["litellm_header_p50_ms"] = round(headers.median(), 2) if len(headers) else None
        if metric and metric[1]:
            row["litellm_metric_mean_ms"] = round(metric[0] / metric[1] * 1000, 2)
        if cpu_s is not None and len(ok):
            row["proxy_cpu_ms_per_request"] = round(cpu_s / len(df) * 1000, 2)
    return row


async def measure(state: StackState, n: int, concurrency: int, duration_s: float) -> tuple[list[Row], pd.DataFrame]:
    bench = Bench(state)
    rows: list[Row] = []
    for shape in ("plain", "stream"):
        # Warm-up, not recorded: connections, the proxy's first-request paths, the workers' prefix cache.
        warm_from = len(bench.rows)
        await bench.paired(shape, 5)
        del bench.rows[warm_from:]
        for level in (1, concurrency):
            for target in ("direct", "proxy"):
                if level == 1 and target == "proxy":
                    continue  # measured with direct, interleaved
                before_rows = len(bench.rows)
                cpu0, metric0, t0 = proxy_cpu_s(state.proxy.pid), litellm_overhead(state), time.perf_counter()
                if level == 1:
                    await bench.paired(shape, n)
                else:
                    await bench.closed_loop(target, shape, level, duration_s)
                elapsed = time.perf_counter() - t0
                cpu, metric1 = proxy_cpu_s(state.proxy.pid) - cpu0, litellm_overhead(state)
                metric = (metric1[0] - metric0[0], metric1[1] - metric0[1])
                phase = pd.DataFrame(bench.rows[before_rows:])
                for name, part in phase.groupby("target"):
                    # At concurrency 1 the two targets share the phase's wall time; each took its own share.
                    span = part.latency_ms.sum() / 1000 if level == 1 else elapsed
                    only_proxy = name == "proxy"
                    rows.append(Row(shape=shape, concurrency=level, target=name,
                                    **phase_row(part, span, cpu if only_proxy else None,
                                                metric if only_proxy else None)))
                done = rows[-phase.target.nunique():]
                print(f"[overhead] {shape:6} c={level:<3} " + ", ".join(
                    f"{r.target} {r.rps} rps p50 {r.latency_p50_ms} ms" for r in done), flush=True)
        for level in (1, concurrency):
            direct, proxy = (next(r for r in rows if (r.shape, r.concurrency, r.target) == (shape, level, t))
                             for t in ("direct", "proxy"))
            proxy.added_p50_ms = round(proxy.latency_p50_ms - direct.latency_p50_ms, 2)
    return rows, pd.DataFrame(bench.rows)


def run_overhead(state: StackState, results_dir: Path, run_id: str, label: str, n: int, concurrency: int,
                 duration_s: float) -> OverheadRun:
    out = results_dir / run_id
    out.mkdir(parents=True, exist_ok=False)
    record = OverheadRun(run_id=run_id, label=label, started_at=utc_now(),
                         settings={"requests_at_c1": n, "concurrency": concurrency, "duration_s": duration_s,
                                   "group": "light", "output_tokens": OUTPUT_TOKENS, "prompt": PROMPT},
                         stack=state.spec, versions=package_versions(), git=git_info(),
                         machine=machine_info().model_dump())
    rows, requests = asyncio.run(measure(state, n, concurrency, duration_s))
    record.rows, record.ended_at = rows, utc_now()
    requests.to_csv(out / "requests.csv", index=False)
    (out / "overhead.json").write_text(record.model_dump_json(indent=2))
    return record
