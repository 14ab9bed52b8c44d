"""What the LiteLLM proxy adds to each request: the same requests straight to the workers and through the proxy.

    python -m bench overhead [--requests 200] [--concurrency 16] [--duration-s 30] [--label default]
                             [--compare NAME --set proxy.num_workers=1 --set proxy.zero_cost=false]

Against the running stack, on the `light` group, one request shape at a time (plain with 1 output
token, streamed with 8): at concurrency 1, N requests alternate direct and proxied (so drift hits both
alike) and the median difference is the added latency; then each target is loaded closed-loop at the
given concurrency for a fixed time, which gives requests/s and the proxy's CPU per request (psutil,
the proxy process and its children). LiteLLM's own view is recorded beside it: the
`x-litellm-overhead-duration-ms` header per request and `litellm_overhead_latency_metric` from /metrics.
With `--compare NAME --set ...`, a second proxy rendered from the stack's spec with those overrides
starts beside the stack's own, in front of the same workers, and is measured in the same run, its
requests interleaved with the others at concurrency 1: a before/after table from one run.
Writes results/<run-id>/overhead.json (settings, stack spec, versions, machine, the table) and
requests.csv (one row per request).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
import pandas as pd
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, Field

from bench.load.metrics import scrape, total
from bench.records import Provenance
from bench.rundir import labelled_run_id, provenance
from serve import (
    Managed,
    ProxySpec,
    StackState,
    apply_overrides,
    log_tail,
    master_key,
    parse_spec,
    port_is_free,
    process_tree,
    proxy_process,
)
from serve.common import now_iso

DIRECT, PROXY = "direct", "proxy"  # targets; a compared proxy is named by its --compare label
ReplyMode = Literal["plain", "stream"]
PROMPT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "The guard sees the player. One word:"}]
OUTPUT_TOKENS: dict[ReplyMode, int] = {"plain": 1, "stream": 8}
OVERHEAD_METRIC = "litellm_overhead_latency_metric"


class Row(BaseModel):
    """One line of the table: a request shape, a concurrency and a target."""

    shape: ReplyMode
    concurrency: int
    target: str = Field(description="direct, proxy (the stack's), or the label of the compared proxy")
    requests: int
    errors: int
    rps: float
    latency_p50_ms: float
    latency_p95_ms: float
    added_p50_ms: float | None = None  # proxy minus direct, medians
    litellm_header_p50_ms: float | None = None  # x-litellm-overhead-duration-ms
    litellm_metric_mean_ms: float | None = None  # litellm_overhead_latency_metric, sum/count over the phase
    proxy_cpu_ms_per_request: float | None = None


class OverheadRun(Provenance):
    run_id: str
    label: str
    started_at: str
    ended_at: str | None = None
    settings: dict
    proxies: dict[str, ProxySpec] = Field(default_factory=dict, description="per proxy target: its settings as run")
    rows: list[Row] = []


class Proxy(BaseModel):
    """A proxy under measurement: where it listens and the process whose CPU is counted."""

    url: str
    pid: int


class Bench:
    def __init__(self, state: StackState, proxies: dict[str, Proxy]) -> None:
        self.state, self.proxies = state, proxies
        self.clients = {name: openai.AsyncOpenAI(base_url=p.url + "/v1", api_key=master_key(), max_retries=0,
                                                 timeout=120) for name, p in proxies.items()}
        light = [w for w in state.workers if w.group == "light"]
        self.direct = [openai.AsyncOpenAI(base_url=w.url + "/v1", api_key="none", max_retries=0, timeout=120)
                       for w in light]
        self.served_name = state.spec.models[state.spec.groups["light"].model].hf_id
        self.next_direct = itertools.cycle(self.direct)
        self.rows: list[dict] = []

    async def one(self, target: str, shape: ReplyMode, concurrency: int) -> None:
        client, model = (next(self.next_direct), self.served_name) if target == DIRECT else (self.clients[target], "light")
        stream = shape == "stream"
        row: dict[str, Any] = {"shape": shape, "concurrency": concurrency, "target": target, "ok": False, "header_ms": None}
        start = time.perf_counter()
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=PROMPT, max_tokens=OUTPUT_TOKENS[shape], stream=stream, temperature=0,
                extra_body={"ignore_eos": True})
            reply = raw.parse()
            if isinstance(reply, openai.AsyncStream):
                async for _ in reply:
                    pass
            header = raw.headers.get("x-litellm-overhead-duration-ms")
            row.update(ok=True, header_ms=float(header) if header else None)
        except openai.APIError as exc:
            row["error"] = str(exc)[:200]
        row["latency_ms"] = (time.perf_counter() - start) * 1000
        self.rows.append(row)

    async def interleaved(self, shape: ReplyMode, n: int) -> None:
        """n rounds of one request to each target in turn, so drift over the phase hits every target alike."""
        for _ in range(n):
            for target in (DIRECT, *self.proxies):
                await self.one(target, shape, 1)

    async def closed_loop(self, target: str, shape: ReplyMode, concurrency: int, duration_s: float) -> None:
        deadline = time.perf_counter() + duration_s

        async def user() -> None:
            while time.perf_counter() < deadline:
                await self.one(target, shape, concurrency)

        await asyncio.gather(*(user() for _ in range(concurrency)))


def proxy_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of the proxy and its children."""
    return sum(sum(p.cpu_times()[:2]) for p in process_tree(pid))


def litellm_overhead(proxy: Proxy) -> tuple[float, float]:
    samples = scrape(proxy.url, headers={"Authorization": f"Bearer {master_key()}"})  # fetch follows its 307
    return total(samples, OVERHEAD_METRIC + "_sum"), total(samples, OVERHEAD_METRIC + "_count")


def phase_row(df: pd.DataFrame, elapsed_s: float, cpu_s: float | None, metric: tuple[float, float] | None) -> dict:
    ok = df[df.ok]
    row = {"requests": len(df), "errors": int((~df.ok).sum()), "rps": round(len(ok) / elapsed_s, 2),
           "latency_p50_ms": round(ok.latency_ms.median(), 2), "latency_p95_ms": round(ok.latency_ms.quantile(0.95), 2)}
    if df.target.iloc[0] != DIRECT:
        headers = ok.header_ms.dropna()
        row["litellm_header_p50_ms"] = round(headers.median(), 2) if len(headers) else None
        if metric and metric[1]:
            row["litellm_metric_mean_ms"] = round(metric[0] / metric[1] * 1000, 2)
        if cpu_s is not None and len(ok):
            row["proxy_cpu_ms_per_request"] = round(cpu_s / len(df) * 1000, 2)
    return row


async def measure(state: StackState, proxies: dict[str, Proxy], n: int, concurrency: int,
                  duration_s: float) -> tuple[list[Row], pd.DataFrame]:
    bench = Bench(state, proxies)
    rows: list[Row] = []
    for shape in ("plain", "stream"):
        # Warm-up, not recorded: connections, the proxies' first-request paths, the workers' prefix cache.
        warm_from = len(bench.rows)
        await bench.interleaved(shape, 5)
        del bench.rows[warm_from:]
        # Concurrency 1: every target in one phase, interleaved. Then each target loaded on its own.
        for level, targets in ((1, [None]), (concurrency, [DIRECT, *proxies])):
            for target in targets:
                before_rows = len(bench.rows)
                cpu0 = {name: proxy_cpu_s(p.pid) for name, p in proxies.items()}
                metric0 = {name: litellm_overhead(p) for name, p in proxies.items()}
                t0 = time.perf_counter()
                if target is None:
                    await bench.interleaved(shape, n)
                else:
                    await bench.closed_loop(target, shape, level, duration_s)
                elapsed = time.perf_counter() - t0
                phase = pd.DataFrame(bench.rows[before_rows:])
                for name, part in phase.groupby("target", sort=False):
                    # At concurrency 1 the targets share the phase's wall time; each took its own share.
                    span = part.latency_ms.sum() / 1000 if level == 1 else elapsed
                    cpu = metric = None
                    if name in proxies:
                        cpu = proxy_cpu_s(proxies[name].pid) - cpu0[name]
                        metric1 = litellm_overhead(proxies[name])
                        metric = (metric1[0] - metric0[name][0], metric1[1] - metric0[name][1])
                    rows.append(Row(shape=shape, concurrency=level, target=name,
                                    **phase_row(part, span, cpu, metric)))
                done = rows[-phase.target.nunique():]
                print(f"[overhead] {shape:6} c={level:<3} " + ", ".join(
                    f"{r.target} {r.rps} rps p50 {r.latency_p50_ms} ms" for r in done), flush=True)
        for level in (1, concurrency):
            here = {r.target: r for r in rows if (r.shape, r.concurrency) == (shape, level)}
            for name in proxies:
                here[name].added_p50_ms = round(here[name].latency_p50_ms - here[DIRECT].latency_p50_ms, 2)
    return rows, pd.DataFrame(bench.rows)


def compared_proxy(state: StackState, overrides: list[str], out: Path) -> tuple[Managed, ProxySpec]:
    """A second proxy in front of the stack's workers: the stack's spec with `overrides`, on the next free port."""
    out = out.resolve()  # the proxy runs in the folder of its log
    data = apply_overrides(state.spec.model_dump(mode="json"), overrides)
    port = next(p for p in range(state.spec.proxy.port + 100, 65535) if port_is_free("127.0.0.1", p))
    spec = parse_spec(apply_overrides(data, [f"proxy.port={port}"]), source="--set overrides")
    return proxy_process(spec, master_key(), out, name="compared proxy", prefix="compared-"), spec.proxy


def wait_ready(proxy: Managed, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client() as client:
        while not proxy.healthy(client):
            if proxy.exited() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the compared proxy did not start:\n{log_tail(proxy.log)}\nfull log: {proxy.log}")
            time.sleep(1)


def run_overhead(state: StackState, results_dir: Path, run_id: str, label: str, n: int, concurrency: int,
                 duration_s: float, compare: str | None = None, overrides: list[str] | None = None) -> OverheadRun:
    run_id = labelled_run_id(run_id, state.spec.simulated)  # the record says in its name what its workers were
    out = results_dir / run_id
    out.mkdir(parents=True, exist_ok=False)
    record = OverheadRun(run_id=run_id, label=label, started_at=now_iso(),
                         settings={"requests_at_c1": n, "concurrency": concurrency, "duration_s": duration_s,
                                   "group": "light", "output_tokens": OUTPUT_TOKENS, "prompt": PROMPT,
                                   "compare": compare, "compare_overrides": overrides or []},
                         proxies={PROXY: state.spec.proxy}, **dict(provenance(state.spec)))
    proxies = {PROXY: Proxy(url=state.proxy.url, pid=state.proxy.pid)}
    other = None
    try:
        if compare:
            other, record.proxies[compare] = compared_proxy(state, overrides or [], out)
            print(f"[overhead] starting the compared proxy '{compare}' ({' '.join(overrides or [])}) on {other.url}",
                  flush=True)
            other.start()
            wait_ready(other)
            proxies[compare] = Proxy(url=other.url, pid=other.pid)
        rows, requests = asyncio.run(measure(state, proxies, n, concurrency, duration_s))
    finally:
        if other:
            other.stop()
    record.rows, record.ended_at = rows, now_iso()
    requests.to_csv(out / "requests.csv", index=False)
    (out / "overhead.json").write_text(record.model_dump_json(indent=2))
    return record
