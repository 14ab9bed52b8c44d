"""Request records between Locust processes (`--processes N`, or workers on other hosts with `--master`): each worker
process sends its records to the master as they come, and its own load at its end; the master keeps the run's one
folder and a roster of its workers (who joined when, who left, how many records each sent). Locust's custom
messages carry them (`runner.send_message`, `register_message`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import gevent

from bench.records import ClientLoad, LoadWorker, RequestRecord

RECORDS_MESSAGE = "npc_records"  # a Locust worker process's request records, to the master
FINISH_MESSAGE = "npc_finish"  # the master's word to its workers that the run's shape has ended
SEND_EVERY_S = 0.5
MISSING = "missing"  # Locust's state of a worker that stopped answering its heartbeats


class WorkerRelay:
    """In a worker process: its records, sent to the master every SEND_EVERY_S and once more at its end."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner  # Locust's WorkerRunner
        self.outbox: list[RequestRecord] = []
        self.made = 0  # records this process has made so far

    def add(self, record: RequestRecord) -> None:
        self.outbox.append(record)
        self.made += 1

    def send_loop(self) -> None:
        while True:
            gevent.sleep(SEND_EVERY_S)
            self.send()

    def send(self, done: ClientLoad | None = None) -> None:
        """`done`: this process's load, which tells the master it has sent its last records."""
        batch, self.outbox = self.outbox, []
        self.runner.send_message(RECORDS_MESSAGE, {"records": [r.model_dump(mode="json") for r in batch],
                                                   "sent": self.made,
                                                   "done": None if done is None else done.model_dump()})


class MasterRelay:
    """In the master: every worker's records to `keep`, each worker's load once it is done, and the roster."""

    def __init__(self, keep: Callable[[RequestRecord], None]) -> None:
        self.keep = keep
        self.open = False  # records that arrive after the run was closed are dropped (said in its manifest)
        self.workers_done: dict[str, ClientLoad] = {}
        self.roster: dict[str, LoadWorker] = {}

    def received(self, environment: Any, msg: Any, **kwargs: Any) -> None:
        if not self.open:
            return
        worker = self.roster.get(msg.node_id)
        for item in msg.data["records"]:
            self.keep(RequestRecord.model_validate(item))
        if worker is not None:
            worker.records += len(msg.data["records"])
            worker.sent = msg.data.get("sent", worker.sent)
        if msg.data["done"] is not None:
            self.workers_done[msg.node_id] = ClientLoad.model_validate(msg.data["done"])
            if worker is not None:
                worker.finished = True

    def update_roster(self, present: Mapping[str, str], index_of: Callable[[str], int], at: str,
                      started: bool = True) -> None:
        """`present`: the workers connected to the master now, by Locust client id, with their state. New ones join
        (late once the run has `started`); those gone or missing leave."""
        for client_id in present:
            if client_id not in self.roster:
                self.roster[client_id] = LoadWorker(index=index_of(client_id), client_id=client_id, joined_at=at,
                                                    late=started)
        for client_id, worker in self.roster.items():
            if worker.left_at is not None:
                continue
            state = present.get(client_id)
            if state is None or state == MISSING:
                worker.left_at = at
                if not worker.finished:
                    worker.left = "missing" if state == MISSING else "stopped"

    def waiting_for(self) -> list[LoadWorker]:
        """Workers still connected that have not sent their last records."""
        return [w for w in self.roster.values() if not w.finished and w.left_at is None]

    def wait_for_workers(self, expected: int, timeout_s: float, refresh: Callable[[], None] | None = None) -> str | None:
        """Until every worker process has sent its last records (it does once its requests in flight are done); what
        is missing, if some did not in time. With `refresh` (which updates the roster), a worker that leaves is
        not waited for: the roster says it left."""
        deadline = time.monotonic() + timeout_s

        def pending() -> bool:
            if refresh is None:
                return len(self.workers_done) < expected
            refresh()
            return bool(self.waiting_for())

        while pending() and time.monotonic() < deadline:
            gevent.sleep(0.2)
        if refresh is not None:
            return None if not self.waiting_for() else (
                f"{len(self.waiting_for())} Locust worker processes did not send their last records before the run "
                "was closed; see load_workers")
        if len(self.workers_done) < expected:
            return (f"only {len(self.workers_done)} of {expected} Locust worker processes sent their last records "
                    "before the run was closed; the rest are missing")
        return None

    def notes(self) -> list[str]:
        """What a reader of the manifest must know about workers that joined late or left early."""
        notes = []
        for w in sorted(self.roster.values(), key=lambda w: w.index):
            if w.late:
                notes.append(f"Locust worker {w.index} ({w.client_id}) joined late, at {w.joined_at}")
            if not w.finished:
                how = {"missing": "stopped answering heartbeats", "stopped": "left"}.get(w.left or "", "did not finish")
                notes.append(f"Locust worker {w.index} ({w.client_id}) {how} at {w.left_at or 'the end'} without "
                             f"its last report: its {w.records} records sent until then are in requests.jsonl; "
                             "requests it had in flight or not yet sent (at most its last 0.5 s) are not")
        return notes
