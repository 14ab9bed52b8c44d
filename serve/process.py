"""The stack's processes as the operating system sees them: start one with its log, look for it, stop its
group. Built on psutil; the supervisor and the bench's own helper processes (a compared proxy) use it alike."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import psutil

LOG_TAIL_LINES = 40
STOP_GRACE_S = 20.0
PR_SET_PDEATHSIG = 1


def pid_alive(pid: int | None) -> bool:
    """The process runs (a zombie, dead but not yet reaped, does not)."""
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def group_alive(pgid: int) -> bool:
    """A live (not zombie) process is left in the process group."""
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def process_tree(pid: int) -> list[psutil.Process]:
    """A stack process and all its children (a vLLM worker's engine core is a child)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def stop_process_group(pid: int, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group led by `pid` (vLLM's engine core lives in it too), SIGKILL after the grace."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not group_alive(pid):
                return
            time.sleep(0.2)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def _die_with_parent() -> None:
    """In the child: get SIGTERM if its starter dies, even by SIGKILL, so no worker is orphaned."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Managed:
    """One process started in its own group with its log in a file: a worker, a proxy."""

    name: str
    url: str
    health_path: str
    command: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen | None = None
    restarts: int = 0
    next_restart_at: float | None = None
    gave_up: bool = False
    ready: Callable[[], bool] | None = None  # for a process that does not speak HTTP (Redis): its own readiness check
    _log_file: IO | None = field(default=None, repr=False)

    def start(self, mode: str = "w") -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        if self._log_file:
            self._log_file.close()  # a restart appends to the same log
        self._log_file = open(self.log, mode)
        self.popen = subprocess.Popen(
            self.command, env={**os.environ, **self.env}, stdout=self._log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent, cwd=self.log.parent,
        )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def exited(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def healthy(self, client: httpx.Client) -> bool:
        return self.ready() if self.ready else probe(client, self.url + self.health_path)

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            stop_process_group(self.popen.pid)
        if self.popen:
            self.popen.wait()
        if self._log_file:
            self._log_file.close()


def probe(client: httpx.Client, url: str, timeout_s: float = 2.0) -> bool:
    """A health endpoint answers 200."""
    try:
        return client.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False
