"""`python -m serve render --format k8s`: the manifests are valid Kubernetes objects, run what `render` runs, and keep
the stack inside the cluster and its key out of every file."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from serve import k8s
from serve.__main__ import main
from serve.render import litellm_config, vllm_args
from serve.spec import SpecError, load_profile
from serve.state import StackState, ready_state, state_path
from serve.vllm_check import parse_vllm_args

# The oldest Kubernetes minor still common on managed clusters, and the newest whose schemas kubernetes-validate has.
K8S_VERSIONS = ["1.33", "1.37"]
PROFILES = ["gpu", "cpu"]
KEY = "sk-npc-unit-test-key-that-must-never-be-written-0123"


def rendered(profile: str, *overrides: str, **options: Any) -> dict[str, list[dict[str, Any]]]:
    return k8s.render(load_profile(profile, list(overrides)), k8s.K8sOptions(**options))


def every(objects: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [obj for part in objects.values() for obj in part]


def of(objects: dict[str, list[dict[str, Any]]], kind: str, component: str) -> list[dict[str, Any]]:
    return [o for o in every(objects) if o["kind"] == kind
            and o["metadata"]["labels"]["app.kubernetes.io/component"] == component]


def container(obj: dict[str, Any]) -> dict[str, Any]:
    (only,) = obj["spec"]["template"]["spec"]["containers"]
    return only


def env_of(obj: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(obj).get("env", [])}


@pytest.fixture(scope="module")
def kubernetes_validate():
    return pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (the `test` extra) is not installed: "
                               "its lock entry comes with the next `python -m serve.lock`")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("profile", PROFILES)
def test_every_object_validates_against_the_kubernetes_schemas(kubernetes_validate, profile, version):
    objects = every(rendered(profile))
    # as `kubectl apply -f` reads them: through the YAML the command writes
    for obj in yaml.safe_load_all(k8s.dump(objects)):
        kubernetes_validate.validate(obj, version, strict=True)  # strict: an unknown field fails too
    assert {o["kind"] for o in objects} == {"Deployment", "Service", "ConfigMap", "Job"}


def test_the_schema_check_catches_a_misspelt_field(kubernetes_validate):
    worker = rendered("gpu")["stack"][0]
    container(worker)["readinesProbe"] = container(worker).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(worker, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("profile", PROFILES)
def test_workers_run_renders_vllm_arguments_which_vllms_parser_accepts(profile):
    spec = load_profile(profile)
    workers = of(rendered(profile), "Deployment", "worker")
    assert [w["metadata"]["name"] for w in workers] == [f"npcbench-{w.name}" for w in spec.workers]
    for worker, deployment in zip(spec.workers, workers, strict=True):
        c = container(deployment)
        assert c["command"] == ["vllm", "serve"]
        ns = parse_vllm_args(c["args"])
        assert ns.host == "0.0.0.0" and ns.port == worker.port == c["ports"][0]["containerPort"]
        # everything else as `render` gives it, the model folder moved onto the model volume
        expected = vllm_args(spec, worker)
        expected[expected.index("--host") + 1] = "0.0.0.0"
        if spec.model_of(worker).local_dir is not None:
            expected[0] = "/models/SmolLM2-135M-Instruct"
        assert c["args"] == expected
        assert {p: c[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} == dict.fromkeys(
            ("startupProbe", "readinessProbe", "livenessProbe"), "/health")
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_gpu_workers_ask_for_a_gpu_and_leave_the_choice_of_it_to_the_device_plugin():
    for deployment in of(rendered("gpu"), "Deployment", "worker"):
        assert container(deployment)["resources"] == {"limits": {"nvidia.com/gpu": 1}}
        assert "CUDA_VISIBLE_DEVICES" not in env_of(deployment)  # index 1 on the host is index 0 in the pod
        assert env_of(deployment)["HF_HUB_OFFLINE"] == "1"
    heavy_0 = of(rendered("gpu"), "Deployment", "worker")[0]
    assert heavy_0["metadata"]["annotations"] == {"npcbench/profile-gpu": "0", "npcbench/profile-shares-gpu-with": "light-0"}


def test_cpu_workers_get_the_cores_of_their_binding_and_no_gpu():
    deployments = of(rendered("cpu", 'workers.0.cpu_bind="0-3"'), "Deployment", "worker")
    assert container(deployments[0])["resources"]["requests"]["cpu"] == "4"
    assert container(deployments[1])["resources"]["requests"]["cpu"] == "1"
    for deployment in deployments:
        assert "nvidia.com/gpu" not in str(deployment)
        assert "VLLM_CPU_OMP_THREADS_BIND" not in env_of(deployment)
        assert env_of(deployment)["VLLM_CPU_KVCACHE_SPACE"] == "1"


def test_the_model_volume_is_a_pvc_by_default_or_a_node_folder():
    def model_volume(objects):
        return of(objects, "Deployment", "worker")[0]["spec"]["template"]["spec"]["volumes"][0]

    assert model_volume(rendered("gpu")) == {"name": "models", "persistentVolumeClaim": {"claimName": "npcbench-models",
                                                                                      "readOnly": True}}
    host_path = model_volume(rendered("gpu", model_host_path="/srv/models"))["hostPath"]
    assert host_path == {"path": "/srv/models", "type": "Directory"}


def test_the_proxy_config_is_renders_own_pointed_at_the_worker_services_and_redis():
    spec = load_profile("gpu")
    config_map = of(rendered("gpu"), "ConfigMap", "proxy")[0]
    config = yaml.safe_load(config_map["data"]["litellm.yaml"])
    assert [m["litellm_params"]["api_base"] for m in config["model_list"]] == [
        f"http://npcbench-{w.name}:{w.port}/v1" for w in spec.workers]
    assert "127.0.0.1" not in config_map["data"]["litellm.yaml"]
    router = config["router_settings"]
    assert (router["redis_host"], router["redis_port"]) == ("npcbench-redis", 6379)
    assert router["redis_password"] == "os.environ/REDIS_PASSWORD"
    # the rest exactly as the supervisor's proxy has it
    local = litellm_config(spec)
    assert config["litellm_settings"] == local["litellm_settings"]
    assert config["general_settings"] == local["general_settings"]
    assert {k: v for k, v in router.items() if not k.startswith("redis")} == local["router_settings"]


def test_proxy_replicas_come_from_the_spec_or_the_flag_one_process_each():
    proxy = of(rendered("gpu", "proxy.num_workers=3"), "Deployment", "proxy")[0]
    assert proxy["spec"]["replicas"] == 3
    command = container(proxy)["command"]
    assert command[command.index("--num_workers") + 1] == "1"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert "PROMETHEUS_MULTIPROC_DIR" not in env_of(proxy)
    assert of(rendered("gpu", proxy_replicas=5), "Deployment", "proxy")[0]["spec"]["replicas"] == 5


def test_the_key_and_the_redis_password_come_from_secrets_and_are_in_no_file(monkeypatch):
    monkeypatch.setenv("LITELLM_MASTER_KEY", KEY)
    objects = rendered("gpu")
    assert KEY not in k8s.dump(every(objects))
    assert "Secret" not in {o["kind"] for o in every(objects)}
    key_ref = {"secretKeyRef": {"name": "npcbench-proxy-key", "key": "key"}}
    password_ref = {"secretKeyRef": {"name": "npcbench-redis", "key": "password"}}
    proxy = of(objects, "Deployment", "proxy")[0]
    assert env_of(proxy)["LITELLM_MASTER_KEY"] == key_ref
    assert env_of(proxy)["REDIS_PASSWORD"] == password_ref
    assert env_of(of(objects, "Job", "locust")[0])["LITELLM_MASTER_KEY"] == key_ref
    redis = of(objects, "Deployment", "redis")[0]
    assert env_of(redis)["REDIS_PASSWORD"] == password_ref
    args = container(redis)["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"  # filled in by the kubelet


@pytest.mark.parametrize("profile", PROFILES)
def test_nothing_listens_beyond_the_cluster(profile):
    objects = every(rendered(profile))
    assert {o["spec"]["type"] for o in objects if o["kind"] == "Service"} == {"ClusterIP"}
    text = k8s.dump(objects)
    for exposure in ("hostNetwork", "hostPort", "NodePort", "LoadBalancer", "externalIPs"):
        assert exposure not in text
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            assert obj["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed (apt-get install redis-server)")
def test_the_redis_flags_start_a_redis_that_wants_the_password(tmp_path):
    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = container(of(rendered("cpu", f"proxy.redis_port={port}"), "Deployment", "redis")[0])["args"]
    args = [a.replace("$(REDIS_PASSWORD)", "pw-from-the-secret") for a in args]  # what the kubelet does
    server = subprocess.Popen(["redis-server", *args], cwd=tmp_path, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert redis.Redis(port=port, password="pw-from-the-secret").ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the rendered redis-server did not answer"
                time.sleep(0.1)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).get("pin")
        assert redis.Redis(port=port, password="pw-from-the-secret").config_get("save") == {"save": ""}
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert not list(tmp_path.iterdir())  # nothing written to disk


def test_the_locust_job_runs_bench_run_which_finds_the_stack_and_mix_it_is_given(tmp_path, monkeypatch):
    from bench.cli import build_parser
    from bench.spec import load_mix

    objects = rendered("gpu", locust_processes=3)
    job = of(objects, "Job", "locust")[0]
    command = container(job)["command"]
    assert command[:4] == ["python", "-m", "bench", "run"]
    args = build_parser().parse_args(command[3:])  # bench's own parser takes every flag
    assert (args.mix, args.processes, args.results_dir) == ("/etc/npcbench/mix/npc-gpu.toml", 3, "/results")
    assert container(job)["resources"]["requests"]["cpu"] == "4"
    assert job["spec"]["backoffLimit"] == 0

    mix_map, state_map = of(objects, "ConfigMap", "locust")
    mix_file = tmp_path / "npc-gpu.toml"
    mix_file.write_text(mix_map["data"]["npc-gpu.toml"])
    assert load_mix(str(mix_file)).mix.shape.kind == "poisson"

    # The pod's $NPCBENCH_HOME/stack holds the state ConfigMap; PID 1 is the pod's own process.
    monkeypatch.setenv("NPCBENCH_HOME", str(tmp_path / "home"))
    state_path().parent.mkdir(parents=True)
    state_path().write_text(state_map["data"]["state.json"])
    state = ready_state()
    assert isinstance(state, StackState)
    assert state.base_url == "http://npcbench-proxy:4000/v1"
    assert {w.name: w.url for w in state.workers} == {
        "heavy-0": "http://npcbench-heavy-0:8001", "light-0": "http://npcbench-light-0:8002",
        "heavy-1": "http://npcbench-heavy-1:8003", "light-1": "http://npcbench-light-1:8004"}
    assert state.spec.proxy.redis_host == "npcbench-redis"


def test_a_simulated_profile_is_refused_with_what_to_render_instead():
    with pytest.raises(SpecError, match="simulated workers, which run only under the supervisor"):
        rendered("gpu-sim")


def test_render_writes_one_file_per_object_and_refuses_a_folder_in_use(tmp_path, capsys):
    out = tmp_path / "k8s"
    assert main(["render", "--profile", "cpu", "--format", "k8s", "--out", str(out), "--image", "studio/npc:1"]) == 0
    stack = sorted(p.name for p in (out / "stack").iterdir())
    assert "deployment-npcbench-heavy-0.yaml" in stack and "configmap-npcbench-proxy-config.yaml" in stack
    assert sorted(p.name for p in (out / "bench").iterdir()) == [
        "configmap-npcbench-locust-mix.yaml", "configmap-npcbench-locust-stack.yaml", "job-npcbench-locust.yaml"]
    proxy = yaml.safe_load((out / "stack" / "deployment-npcbench-proxy.yaml").read_text())
    assert container(proxy)["image"] == "studio/npc:1"
    assert "kubectl create secret generic npcbench-proxy-key" in capsys.readouterr().err

    assert main(["render", "--profile", "cpu", "--format", "k8s", "--out", str(out)]) == 2
    assert "is not empty" in capsys.readouterr().err


def test_render_prints_the_text_by_default(capsys):
    assert main(["render", "--profile", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# heavy-0 (heavy)") and "apiVersion" not in out


def test_the_cuda_workers_image_is_vllms_at_the_version_pyproject_pins():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    (pin,) = pyproject["project"]["optional-dependencies"]["cuda"]
    image = container(of(rendered("gpu"), "Deployment", "worker")[0])["image"]
    assert image == "vllm/vllm-openai:v" + pin.removeprefix("vllm==")
    assert container(of(rendered("cpu"), "Deployment", "worker")[0])["image"] == k8s.K8sOptions().image


def test_render_warns_that_the_device_plugin_gives_each_worker_its_own_gpu():
    assert "4 workers on 2 GPUs" in (k8s.shared_gpu_warning(load_profile("gpu")) or "")
    one_each = load_profile("gpu", ["workers.1.gpu=2", "workers.3.gpu=3"])
    assert k8s.shared_gpu_warning(one_each) is None
    assert k8s.shared_gpu_warning(load_profile("cpu")) is None


def test_a_bad_option_names_its_flag(capsys):
    assert main(["render", "--profile", "cpu", "--format", "k8s", "--name", "NPC_Bench"]) == 2
    assert "--name: String should match pattern" in capsys.readouterr().err
