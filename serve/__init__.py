"""Serve: one typed stack spec rendered into vLLM workers behind a LiteLLM proxy, and their supervisor.

What is imported from here is serve's public surface, the one bench/ (and a studio's own scripts) may use:
the stack spec, the running stack's state, the GPU memory plan, the proxy as a process, and the Redis command
count. Everything else in serve/ is private to it; generic helpers both packages share live in serve.common.
tests/unit/test_boundary.py holds bench/ to this.
"""

from serve.gpu import Gpu, batched_tokens, kv_blocks, plan_worker
from serve.gpu import inventory as gpu_inventory
from serve.paths import REPO_ROOT, portable
from serve.process import Managed, log_tail, pid_alive, port_is_free, process_tree
from serve.provision import is_provisioned
from serve.proxy import proxy_process
from serve.render import VLLM
from serve.settings import Settings, settings
from serve.sim.virtual import Cluster, cluster_workers, tool_reply_tokens
from serve.sim.virtual import Request as VirtualRequest
from serve.spec import (
    GroupSpec,
    ModelSpec,
    ProxySpec,
    SimLatency,
    SpecError,
    StackSpec,
    apply_overrides,
    load_profile,
    parse_spec,
    profile_names,
)
from serve.state import NOT_READY, StackState, master_key, ready_state, running_state
from serve.supervisor import redis_commands
from serve.tasks import STAMP_NAME

__all__ = [
    "Cluster", "Gpu", "GroupSpec", "Managed", "ModelSpec", "NOT_READY", "ProxySpec", "REPO_ROOT", "STAMP_NAME", "Settings",
    "SimLatency", "SpecError", "StackSpec", "StackState", "VLLM", "VirtualRequest", "apply_overrides",
    "batched_tokens", "cluster_workers",
    "gpu_inventory", "is_provisioned", "kv_blocks", "load_profile", "log_tail", "master_key", "parse_spec",
    "pid_alive", "plan_worker", "port_is_free", "portable", "process_tree", "profile_names", "proxy_process",
    "ready_state", "redis_commands", "running_state", "settings", "tool_reply_tokens",
]
