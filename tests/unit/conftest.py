"""Fixtures shared by the unit tests."""

from __future__ import annotations

import os

import pytest

from serve.common import now_iso
from serve.spec import load_profile
from serve.state import ProcessState, StackState, WorkerState, write_state
from tests.unit.fake_server import FakeServer, FakeWorker


class FakeStack(dict[str, FakeWorker]):
    """The fake workers by name; `stop()` takes the stack down (its servers stop answering)."""

    def __init__(self, workers: dict[str, FakeWorker], servers: list[FakeServer]) -> None:
        super().__init__(workers)
        self.servers = servers

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def fake_stack(tmp_path, monkeypatch):
    """A ready stack whose proxy and four workers are fake servers, with this test as its 'supervisor'."""
    monkeypatch.setenv("NPCBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-fake-key-for-unit-tests-0123")
    spec = load_profile("cpu")
    # Slow /metrics answers, as from busy workers: a first reading taken alongside the first requests misses them.
    servers = {name: FakeServer(FakeWorker(reply_tokens=4, metrics_delay_s=0.2))
               for name in ["proxy", *(w.name for w in spec.workers)]}
    fakes = {name: server.start() for name, server in servers.items()}
    fakes["light-0"] = fakes["proxy"]  # the 'proxy' answers as light-0 too, so that worker's counters see every request
    write_state(StackState(
        profile="cpu", phase="ready", supervisor_pid=os.getpid(), started_at=now_iso(), spec=spec,
        proxy=ProcessState(name="proxy", url=fakes["proxy"].url),
        workers=[WorkerState(name=w.name, group=w.group, model=spec.model_of(w).hf_id, url=fakes[w.name].url)
                 for w in spec.workers]))
    stack = FakeStack(fakes, list(servers.values()))
    yield stack
    stack.stop()
