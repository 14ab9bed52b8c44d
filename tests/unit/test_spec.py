"""Each bad spec fails before any process starts, with a message that says what to change."""

from __future__ import annotations

import copy
import json
import socket
import tomllib

import pytest

from serve.spec import PROFILES_DIR, SpecError, load_profile, parse_spec
from serve.supervisor import preflight


def profile_data(name: str) -> dict:
    data = tomllib.loads((PROFILES_DIR / f"{name}.toml").read_text())
    data["profile"] = name
    return data


@pytest.fixture
def cpu() -> dict:
    return profile_data("cpu")


@pytest.fixture
def gpu() -> dict:
    return profile_data("gpu")


def test_shipped_profiles_are_valid() -> None:
    cpu, gpu = load_profile("cpu"), load_profile("gpu")
    assert [w.name for w in cpu.workers] == ["heavy-0", "heavy-1", "light-0", "light-1"]
    assert {w.group for w in gpu.workers} == {"heavy", "light"}
    assert cpu.groups["heavy"] != cpu.groups["light"], "heavy and light differ in settings"


def test_unknown_profile_names_the_choices() -> None:
    with pytest.raises(SpecError, match=r"unknown profile 'tpu': choose one of cpu, cpu-sim, gpu"):
        load_profile("tpu")


def test_duplicate_port(cpu: dict) -> None:
    cpu["workers"][1]["port"] = cpu["workers"][0]["port"]
    with pytest.raises(SpecError, match=r"port 8001 is used by heavy-0 and heavy-1"):
        parse_spec(cpu)


def test_worker_port_clashing_with_proxy(cpu: dict) -> None:
    cpu["workers"][0]["port"] = cpu["proxy"]["port"]
    with pytest.raises(SpecError, match=r"port 4000 is used by proxy and heavy-0"):
        parse_spec(cpu)


def test_overcommitted_gpu_memory(gpu: dict) -> None:
    gpu["groups"]["light"]["gpu_memory_utilization"] = 0.5
    with pytest.raises(SpecError, match=r"GPU 0 is over-committed: gpu_memory_utilization sums to 1.05"):
        parse_spec(gpu)


def test_workers_on_different_gpus_are_not_summed(gpu: dict) -> None:
    for worker in gpu["workers"]:
        worker["gpu"] = {"heavy-0": 0, "heavy-1": 1, "light-0": 2, "light-1": 3}[worker["name"]]
    gpu["groups"]["heavy"]["gpu_memory_utilization"] = 0.9
    assert parse_spec(gpu).groups["heavy"].gpu_memory_utilization == 0.9


def test_duplicate_worker_name(cpu: dict) -> None:
    cpu["workers"][1]["name"] = "heavy-0"
    with pytest.raises(SpecError, match="worker name heavy-0 is used 2 times"):
        parse_spec(cpu)


def test_group_without_worker(cpu: dict) -> None:
    cpu["workers"] = [w for w in cpu["workers"] if w["group"] == "heavy"]
    with pytest.raises(SpecError, match="group light has no worker"):
        parse_spec(cpu)


def test_group_with_unknown_model(cpu: dict) -> None:
    cpu["groups"]["light"]["model"] = "llama-70b"
    with pytest.raises(SpecError, match=r"group light: model 'llama-70b' is not in \[models\]"):
        parse_spec(cpu)


def test_cpu_group_needs_kv_space(cpu: dict) -> None:
    del cpu["groups"]["heavy"]["kv_cache_space_gib"]
    with pytest.raises(SpecError, match="group heavy: set kv_cache_space_gib for a cpu profile"):
        parse_spec(cpu)


def test_unknown_field_is_rejected(cpu: dict) -> None:
    cpu["groups"]["heavy"]["max_num_seq"] = 4  # typo of max_num_seqs
    with pytest.raises(SpecError, match=r"groups.heavy.max_num_seq: Extra inputs are not permitted"):
        parse_spec(cpu)


def test_worker_is_started_or_external_not_both(cpu: dict) -> None:
    cpu["workers"][0]["external_url"] = "http://10.0.0.5:8000"
    with pytest.raises(SpecError, match="give exactly one of `port`"):
        parse_spec(cpu)


def test_external_worker_is_routed_but_not_started(cpu: dict) -> None:
    del cpu["workers"][1]["port"]
    del cpu["workers"][1]["cpu_bind"]
    cpu["workers"][1]["external_url"] = "http://gpu-node-7:8000"
    spec = parse_spec(cpu)
    assert spec.worker_url(spec.workers[1]) == "http://gpu-node-7:8000"


def test_missing_model_folder_names_the_provision_command(cpu: dict, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NPCBENCH_HOME", str(tmp_path))
    with pytest.raises(SpecError, match=r"model folder .*SmolLM2-135M-Instruct is missing; provision it with "
                                        r"`python -m serve provision --profile cpu`"):
        preflight(parse_spec(cpu))


def test_a_missing_vllm_command_is_named_before_anything_starts(cpu: dict, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("serve.supervisor.VLLM", str(tmp_path / "bin" / "vllm"))
    with pytest.raises(SpecError, match=r"vLLM's `vllm` command is not at .*/bin/vllm: install the environment"):
        preflight(parse_spec(cpu))


def test_port_in_use(cpu: dict, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NPCBENCH_HOME", str(tmp_path))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        cpu = copy.deepcopy(cpu)
        cpu["workers"][2]["port"] = taken
        with pytest.raises(SpecError, match=rf"worker light-0: port {taken} on 127.0.0.1 is already in use"):
            preflight(parse_spec(cpu))


def test_a_shared_redis_that_does_not_answer_is_named_before_anything_starts(cpu: dict, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NPCBENCH_HOME", str(tmp_path))
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # nothing listens on it once closed
    cpu = copy.deepcopy(cpu)
    cpu["proxy"] |= {"redis_host": "127.0.0.1", "redis_port": port}
    with pytest.raises(SpecError, match=rf"proxy.redis_host: the Redis at 127.0.0.1:{port} does not answer "
                                        r"\(ConnectionError: .*\); start it, or put its password in \$REDIS_PASSWORD"):
        preflight(parse_spec(cpu))


def test_kv_bytes_per_token_from_model_config() -> None:
    cpu = load_profile("cpu")
    # 2 (K and V) x 30 layers x 3 KV heads x 64 head dim x 2 bytes (bf16)
    assert cpu.models["smollm2-135m"].kv_bytes_per_token(2) == 23_040
    # The cpu profile runs float32, so its KV cache takes 4 bytes a value.
    assert cpu.kv_bytes_per_token("light") == 46_080


def test_overrides_set_fields_by_dotted_path() -> None:
    spec = load_profile("cpu", ["groups.light.max_num_seqs=4", "proxy.routing_strategy=least-busy",
                                'workers.0.cpu_bind="0-1"', "groups.heavy.enable_prefix_caching=false"])
    assert spec.groups["light"].max_num_seqs == 4
    assert spec.proxy.routing_strategy == "least-busy"
    assert spec.workers[0].cpu_bind == "0-1"
    assert spec.groups["heavy"].enable_prefix_caching is False


def test_bad_override_is_explained() -> None:
    with pytest.raises(SpecError, match="write it as dotted.path=value"):
        load_profile("cpu", ["groups.light.max_num_seqs"])
    with pytest.raises(SpecError, match=r"groups.light.max_num_seqs: Input should be greater than 0"):
        load_profile("cpu", ["groups.light.max_num_seqs=0"])
    with pytest.raises(SpecError, match=r"proxy.routing_strategy: Input should be"):
        load_profile("cpu", ["proxy.routing_strategy=fastest"])


def test_waiting_for_health_shows_progress_then_each_ready_worker(monkeypatch) -> None:
    from types import SimpleNamespace

    from serve import supervisor

    monkeypatch.setattr(supervisor, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(supervisor.time, "sleep", lambda s: None)
    probes = iter([False, False, True])
    worker = SimpleNamespace(name="light-0", exited=lambda: None, healthy=lambda client: next(probes))
    said: list[str] = []
    fake_self = SimpleNamespace(say=said.append, startup_timeout_s=60.0)
    supervisor.Supervisor._wait_healthy(fake_self, [worker], client=None)
    assert said[0].startswith("  waiting for /health: light-0 ") and said[-1].startswith("  light-0 ready after")


def test_gpu_shares_that_sum_to_the_cap_exactly_are_accepted(gpu: dict) -> None:
    gpu["groups"]["light"]["gpu_memory_utilization"] = 0.4  # 0.55 + 0.4 is 0.9500000000000001 in floats
    assert parse_spec(gpu).groups["light"].gpu_memory_utilization == 0.4


def test_proxy_extras_cannot_replace_what_the_harness_renders(tmp_path) -> None:
    from serve.render import litellm_config, proxy_env

    spec = load_profile("cpu", ["proxy.start_redis=true", "proxy.num_workers=2"])  # every key the harness can render
    config = litellm_config(spec)
    for section in ("litellm_settings", "general_settings", "router_settings"):
        for key in config[section]:
            with pytest.raises(SpecError, match=rf"{section}.{key}: the harness renders auth, callbacks, routing"):
                load_profile("cpu", [f"proxy.extra_settings.{section}.{key}=1"])
    for name in proxy_env(spec, "k" * 32, tmp_path):
        with pytest.raises(SpecError, match=rf"extra_env {name}: the harness sets"):
            load_profile("cpu", [f'proxy.extra_env.{name}="x"'])
    for args in (["--port", "4100"], ["--num_workers=2"], ["-c", "other.yaml"]):
        with pytest.raises(SpecError, match="extra_args .*: the harness passes the config, host, port"):
            load_profile("cpu", [f"proxy.extra_args={json.dumps(args)}"])
    # Nor switch off a kept feature under another name.
    for extra in ("router_settings.disable_cooldowns=true", "router_settings.default_fallbacks=[]",
                  "general_settings.public_routes=[]", "litellm_settings.success_callback=[]"):
        with pytest.raises(SpecError, match="the harness renders"):
            load_profile("cpu", [f"proxy.extra_settings.{extra}"])
    with pytest.raises(SpecError, match=r"proxy.extra_settings.caching: Extra inputs are not permitted"):
        load_profile("cpu", ["proxy.extra_settings.caching.ttl=5"])
