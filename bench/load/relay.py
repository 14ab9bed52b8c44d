"""Request records between Locust processes (`--processes N`): each worker process sends its records to the
master as they come, and its own load at its end; the master keeps the run's one folder. Locust's custom messages
carry them (`runner.send_message`, `register_message`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gevent

from bench.records import ClientLoad, RequestRecord

RECORDS_MESSAGE = "npc_records"  # a Locust worker process's request records, to the master
FINISH_MESSAGE = "npc_finish"  # the master's word to its workers that the run's shape has ended
SEND_EVERY_S = 0.5


class WorkerRelay:
    """In a worker process: its records, sent to the master every SEND_EVERY_S and once more at its end."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner  # Locust's WorkerRunner
        self.outbox: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        self.outbox.append(record)

    def send_loop(self) -> None:
        while True:
            gevent.sleep(SEND_EVERY_S)
            self.send()

    def send(self, done: ClientLoad | None = None) -> None:
        """`done`: this process's load, which tells the master it has sent its last records."""
        batch, self.outbox = self.outbox, []
        self.runner.send_message(RECORDS_MESSAGE, {"records": [r.model_dump(mode="json") for r in batch],
                                                   "done": None if done is None else done.model_dump()})


class MasterRelay:
    """In the master: every worker's records to `keep`, and each worker's load once it is done."""

    def __init__(self, keep: Callable[[RequestRecord], None]) -> None:
        self.keep = keep
        self.open = False  # records that arrive after the run was closed are dropped (said in its manifest)
        self.workers_done: dict[str, ClientLoad] = {}

    def received(self, environment: Any, msg: Any, **kwargs: Any) -> None:
        if not self.open:
            return
        for item in msg.data["records"]:
            self.keep(RequestRecord.model_validate(item))
        if msg.data["done"] is not None:
            self.workers_done[msg.node_id] = ClientLoad.model_validate(msg.data["done"])

    def wait_for_workers(self, expected: int, timeout_s: float) -> str | None:
        """Until every worker process has sent its last records (it does once its requests in flight are done); what
        is missing, if some did not in time."""
        deadline = time.monotonic() + timeout_s
        while len(self.workers_done) < expected and time.monotonic() < deadline:
            gevent.sleep(0.2)
        if len(self.workers_done) < expected:
            return (f"only {len(self.workers_done)} of {expected} Locust worker processes sent their last records "
                    "before the run was closed; the rest are missing")
        return None
