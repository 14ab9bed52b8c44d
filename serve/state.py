"""What the supervisor tells `status` and `down`: a JSON file beside the logs, and the proxy key."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from serve import paths
from serve.common import write_atomic
from serve.process import pid_alive
from serve.render import MASTER_KEY_ENV
from serve.spec import GroupName, StackSpec

Phase = Literal["starting", "ready", "failed", "stopping", "stopped"]
# LiteLLM refuses these at start-up (UnsafeMasterKeyError) or they are trivially guessable.
WELL_KNOWN_KEYS = {"sk-1234", "sk-12345", "sk-test", "sk-admin", "sk-master", "sk-litellm"}
MIN_KEY_LENGTH = 20


class ProcessState(BaseModel):
    name: str
    pid: int | None = None
    log: str | None = None
    url: str
    restarts: int = 0
    gave_up: bool = Field(False, description="died once more after the last restart; the supervisor left it down")


class WorkerState(ProcessState):
    group: GroupName
    model: str
    external: bool = False


class StackState(BaseModel):
    profile: str
    phase: Phase
    supervisor_pid: int
    supervisor_log: str | None = None
    proxy: ProcessState
    workers: list[WorkerState]
    redis: ProcessState | None = Field(None, description="the Redis the stack started (proxy.start_redis)")
    started_at: str
    error: str | None = None
    spec: StackSpec = Field(description="the stack spec as it runs")

    @property
    def base_url(self) -> str:
        return self.proxy.url + "/v1"


def state_path() -> Path:
    return paths.stack_dir() / "state.json"


def read_state() -> StackState | None:
    try:
        return StackState.model_validate_json(state_path().read_text())
    except FileNotFoundError:
        return None


NOT_READY = ("no stack is ready: start it with `python -m serve up --detach` (or `pixi run serve` in another shell; "
             "`python -m serve status` shows what runs)")


def running_state() -> StackState | None:
    """The state of a stack whose supervisor is alive, in whatever phase; None if none runs."""
    state = read_state()
    return state if state and pid_alive(state.supervisor_pid) else None


def ready_state() -> StackState | None:
    """The state of a running stack that is ready to serve; None otherwise (see NOT_READY)."""
    state = running_state()
    return state if state and state.phase == "ready" else None


def write_state(state: StackState) -> None:
    write_atomic(state_path(), state.model_dump_json(indent=2))


def key_path() -> Path:
    return paths.home() / "master_key"


def check_key_format(key: str) -> str:
    """The key itself if it is not trivially guessable; authentication is serve/proxy_hooks.py's `authenticate`."""
    if key in WELL_KNOWN_KEYS or len(key) < MIN_KEY_LENGTH or not key.startswith("sk-"):
        raise ValueError(
            f"{MASTER_KEY_ENV} must start with 'sk-', be at least {MIN_KEY_LENGTH} characters and not a "
            "well-known value; unset it to have one generated"
        )
    return key


def master_key() -> str:
    """The proxy key: `$LITELLM_MASTER_KEY`, else the one generated once and kept in `$NPCBENCH_HOME/master_key`."""
    if key := os.environ.get(MASTER_KEY_ENV):
        return check_key_format(key)
    path = key_path()
    if path.exists():
        return check_key_format(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "sk-npc-" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def to_json(state: StackState, key: str) -> str:
    data = {"base_url": state.base_url, "proxy_url": state.proxy.url, "key": key, **state.model_dump(mode="json")}
    return json.dumps(data, indent=2)
