"""One spec renders the worker commands, their environments and the LiteLLM config."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from serve.render import (
    MASTER_KEY_ENV,
    ROUTER_CACHE_ITEMS_ENV,
    litellm_command,
    litellm_config,
    proxy_env,
    redis_conf,
    vllm_args,
    vllm_command,
    vllm_env,
)
from serve.spec import SpecError, apply_overrides, load_profile, parse_spec


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_cpu_workers_bind_cores_and_kv_space_per_group() -> None:
    spec = load_profile("cpu")
    envs = {w.name: vllm_env(spec, w) for w in spec.workers}
    assert {n: e["VLLM_CPU_OMP_THREADS_BIND"] for n, e in envs.items()} == {
        "heavy-0": "0", "heavy-1": "1", "light-0": "0", "light-1": "1"}
    assert envs["heavy-0"]["VLLM_CPU_KVCACHE_SPACE"] == str(spec.groups["heavy"].kv_cache_space_gib)
    assert envs["light-0"]["VLLM_CPU_KVCACHE_SPACE"] == str(spec.groups["light"].kv_cache_space_gib)
    assert all(e["HF_HUB_OFFLINE"] == "1" for e in envs.values())


def test_cpu_worker_listens_on_loopback_and_serves_local_folder() -> None:
    spec = load_profile("cpu")
    args = vllm_args(spec, spec.workers[0])
    assert flag(args, "--host") == "127.0.0.1"
    assert flag(args, "--port") == "8001"
    assert args[0].endswith("models/SmolLM2-135M-Instruct")  # `vllm serve MODEL ...`, as vLLM's docs write it
    assert flag(args, "--served-model-name") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "--gpu-memory-utilization" not in args


def test_workers_run_vllms_own_command_beside_this_python() -> None:
    spec = load_profile("cpu")
    command = vllm_command(spec, spec.workers[0])
    assert command[0] == str(Path(sys.executable).with_name("vllm"))
    assert command[1:] == ["serve", *vllm_args(spec, spec.workers[0])]


def test_gpu_workers_follow_the_reference_deployment() -> None:
    spec = load_profile("gpu")
    by_name = {w.name: (w, vllm_args(spec, w), vllm_env(spec, w)) for w in spec.workers}
    for worker, args, env in by_name.values():
        assert flag(args, "--quantization") == "awq_marlin"
        assert flag(args, "--max-model-len") == "8192"
        assert "--enable-prefix-caching" in args and "--enable-auto-tool-choice" in args
        assert flag(args, "--tool-call-parser") == "hermes"
        assert env["CUDA_VISIBLE_DEVICES"] == str(worker.gpu)
    assert by_name["heavy-0"][1][0] == "Qwen/Qwen2.5-14B-Instruct-AWQ"
    assert by_name["light-1"][1][0] == "Qwen/Qwen3-8B-AWQ"
    assert json.loads(flag(by_name["light-0"][1], "--default-chat-template-kwargs")) == {"enable_thinking": False}
    assert "--default-chat-template-kwargs" not in by_name["heavy-0"][1]
    per_gpu = {}
    for worker, args, _ in by_name.values():
        per_gpu[worker.gpu] = per_gpu.get(worker.gpu, 0) + float(flag(args, "--gpu-memory-utilization"))
    assert per_gpu.keys() == {0, 1} and all(share <= 0.95 for share in per_gpu.values())


def test_prefix_caching_off_renders_the_negative_flag() -> None:
    spec = load_profile("cpu")
    heavy = spec.groups["heavy"].model_copy(update={"enable_prefix_caching": False})
    spec = spec.model_copy(update={"groups": {**spec.groups, "heavy": heavy}})
    assert "--no-enable-prefix-caching" in vllm_args(spec, spec.workers[0])


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_litellm_config_groups_workers_with_retries_and_fallback(profile: str) -> None:
    spec = load_profile(profile)
    config = litellm_config(spec)
    deployments = {d["model_info"]["id"]: d for d in config["model_list"]}
    assert set(deployments) == {w.name for w in spec.workers}
    for worker in spec.workers:
        params = deployments[worker.name]["litellm_params"]
        assert deployments[worker.name]["model_name"] == worker.group
        assert params["model"] == f"hosted_vllm/{spec.model_of(worker).hf_id}"
        assert params["api_base"] == f"http://127.0.0.1:{worker.port}/v1"
    router = config["router_settings"]
    assert router["num_retries"] >= 1 and router["cooldown_time"] > 0
    assert router["fallbacks"] == [{"heavy": ["light"]}]
    assert config["litellm_settings"]["callbacks"] == ["prometheus", "serve.proxy_hooks.request_check"]
    assert config["litellm_settings"]["require_auth_for_metrics_endpoint"] is True
    assert config["general_settings"]["custom_auth"] == "serve.proxy_hooks.authenticate"
    # The key is read from the environment at start-up, never written into the config file.
    assert config["general_settings"]["master_key"] == f"os.environ/{MASTER_KEY_ENV}"


def test_proxies_share_routing_state_through_redis_only_when_given_one() -> None:
    from argparse import Namespace

    from serve.__main__ import load

    assert "redis_host" not in litellm_config(load_profile("cpu"))["router_settings"]
    spec = load(Namespace(profile="cpu", set=['proxy.redis_host="10.0.0.5"'], proxy_host=None))
    router = litellm_config(spec)["router_settings"]
    assert (router["redis_host"], router["redis_port"]) == ("10.0.0.5", 6379)
    assert router["redis_password"] == "os.environ/REDIS_PASSWORD"  # like the key, never in the file
    import litellm

    assert set(router) <= set(litellm.Router.get_valid_args())  # LiteLLM would ignore any other key


def test_proxy_listens_on_loopback_unless_told() -> None:
    spec = load_profile("cpu")
    command = litellm_command(spec, "cfg.yaml")
    assert flag(command, "--host") == "127.0.0.1"
    assert flag(command, "--port") == "4000"


def test_exposing_the_proxy_is_an_explicit_override() -> None:
    from argparse import Namespace

    from serve.__main__ import load

    spec = load(Namespace(profile="cpu", set=None, proxy_host="0.0.0.0"))
    assert flag(litellm_command(spec, "cfg.yaml"), "--host") == "0.0.0.0"
    assert all(flag(vllm_args(spec, w), "--host") == "127.0.0.1" for w in spec.workers)  # workers stay local
    assert spec.proxy_url() == "http://127.0.0.1:4000"


def test_session_affinity_is_simple_shuffle_plus_litellms_session_check() -> None:
    router = litellm_config(load_profile("cpu", ["proxy.routing_strategy=session-affinity"]))["router_settings"]
    assert router["routing_strategy"] == "simple-shuffle"
    assert router["optional_pre_call_checks"] == ["session_affinity"]
    plain = litellm_config(load_profile("cpu", ["proxy.routing_strategy=least-busy"]))["router_settings"]
    assert plain["routing_strategy"] == "least-busy" and "optional_pre_call_checks" not in plain


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_the_proxys_router_cache_holds_a_games_session_pins_unless_told(profile: str, tmp_path) -> None:
    assert int(proxy_env(load_profile(profile), "k" * 32, tmp_path)[ROUTER_CACHE_ITEMS_ENV]) >= 10_000
    told = proxy_env(load_profile(profile, ["proxy.router_cache_items=5000"]), "k" * 32, tmp_path)
    assert told[ROUTER_CACHE_ITEMS_ENV] == "5000"
    with pytest.raises(SpecError, match="router_cache_items"):  # below LiteLLM's own 200 would shrink it
        load_profile(profile, ["proxy.router_cache_items=100"])


def test_several_proxy_processes_share_one_metrics_folder(tmp_path) -> None:
    one = proxy_env(load_profile("cpu", ["proxy.num_workers=1"]), "k" * 32, tmp_path)
    two = proxy_env(load_profile("cpu", ["proxy.num_workers=2"]), "k" * 32, tmp_path)
    assert "PROMETHEUS_MULTIPROC_DIR" not in one
    assert two["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path) and two[MASTER_KEY_ENV] == "k" * 32


def test_a_proxy_that_crashes_in_native_code_leaves_its_python_stack_in_its_log(tmp_path) -> None:
    assert proxy_env(load_profile("cpu"), "k" * 32, tmp_path)["PYTHONFAULTHANDLER"] == "1"  # extras may not unset it


def test_workers_are_declared_free_unless_told() -> None:
    infos = [m["model_info"] for m in litellm_config(load_profile("cpu"))["model_list"]]
    assert all(i["input_cost_per_token"] == 0 and i["output_cost_per_token"] == 0 for i in infos)
    infos = [m["model_info"] for m in litellm_config(load_profile("cpu", ["proxy.zero_cost=false"]))["model_list"]]
    assert all(set(i) == {"id"} for i in infos)


def test_vllms_development_routes_are_off_unless_the_spec_asks() -> None:
    spec = load_profile("cpu")
    assert all("VLLM_SERVER_DEV_MODE" not in vllm_env(spec, w) for w in spec.workers)
    opened = load_profile("cpu", ["worker_dev_endpoints=true"])
    assert all(vllm_env(opened, w)["VLLM_SERVER_DEV_MODE"] == "1" for w in opened.workers)


def test_a_redis_the_stack_starts_listens_on_loopback_with_a_password_and_keeps_nothing() -> None:
    spec = load_profile("cpu", ["proxy.start_redis=true", "proxy.redis_port=6390", "proxy.num_workers=2"])
    router = litellm_config(spec)["router_settings"]
    assert (router["redis_host"], router["redis_port"]) == ("127.0.0.1", 6390)
    assert router["redis_password"] == "os.environ/REDIS_PASSWORD"
    conf = dict(line.split(" ", 1) for line in redis_conf(spec, "pw-123").splitlines())
    assert conf == {"bind": "127.0.0.1", "port": "6390", "requirepass": "pw-123", "protected-mode": "yes",
                    "save": '""', "appendonly": "no", "daemonize": "no"}
    with pytest.raises(SpecError, match="either redis_host"):
        load_profile("cpu", ["proxy.start_redis=true", "proxy.redis_host=10.0.0.5"])


def test_litellms_own_switches_reach_the_proxy_through_set_overrides(tmp_path) -> None:
    metrics = ["litellm_overhead_latency_metric", "litellm_requests_metric"]
    overrides = ["proxy.extra_env.LITELLM_LOG=WARNING", "proxy.extra_env.DISABLE_AIOHTTP_TRANSPORT=True",
                 f'proxy.extra_settings.litellm_settings.prometheus_metrics_config=[{{"group": "bench", "metrics": '
                 f'{json.dumps(metrics)}}}]', "proxy.extra_settings.router_settings.cache_responses=false",
                 'proxy.extra_args=["--run_granian"]']
    # As `bench overhead --compare` applies them: over the running stack's spec, dumped.
    spec = parse_spec(apply_overrides(load_profile("cpu").model_dump(mode="json"), overrides))
    env = proxy_env(spec, "k" * 32, tmp_path)
    assert (env["LITELLM_LOG"], env["DISABLE_AIOHTTP_TRANSPORT"], env[MASTER_KEY_ENV]) == ("WARNING", "True", "k" * 32)
    config, plain = litellm_config(spec), litellm_config(load_profile("cpu"))
    assert config["litellm_settings"] == {**plain["litellm_settings"],
                                          "prometheus_metrics_config": [{"group": "bench", "metrics": metrics}]}
    assert config["router_settings"] == {**plain["router_settings"], "cache_responses": False}
    assert config["general_settings"] == plain["general_settings"]
    assert litellm_command(spec, "cfg.yaml")[-1] == "--run_granian"
    assert litellm_command(load_profile("cpu"), "cfg.yaml")[-1] == "1"  # --num_workers 1, nothing after it
