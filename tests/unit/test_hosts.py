"""Load from several hosts into one folder: the pure parts (the master's roster of workers, NPC ids across workers,
the flags `bench run --master` and `bench worker` check before anything starts)."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest

from bench.cli import CommandError, build_parser, worker
from bench.cli.run import check_distribution, distribution_args
from bench.load.npc import npc_identity
from bench.load.relay import RECORDS_MESSAGE, MasterRelay, WorkerRelay
from bench.records import ClientLoad, RequestRecord

DONE = ClientLoad(cpu_s=1.0, cpu_ms_per_request=None, loop_lag_p50_ms=0.1, loop_lag_p99_ms=0.2, loop_lag_max_ms=0.3)


def record(n: int) -> RequestRecord:
    return RequestRecord(cls="ambient", kind="plain", group="light", npc_id=f"npc-w0-{n}", t_start=float(n), e2e_s=0.1,
                         max_tokens=8, outcome="ok")


class Wire:
    def __init__(self, master: MasterRelay, node_id: str) -> None:
        self.master, self.node_id = master, node_id

    def send_message(self, kind: str, data: dict) -> None:
        assert kind == RECORDS_MESSAGE
        self.master.received(None, SimpleNamespace(data=data, node_id=self.node_id))


def test_the_roster_records_joins_late_joins_a_lost_worker_and_each_workers_records() -> None:
    kept: list[RequestRecord] = []
    master = MasterRelay(kept.append)
    index = {"a": 0, "b": 1, "c": 2}.__getitem__
    master.update_roster({"a": "ready", "b": "ready"}, index, "t0", started=False)
    master.open = True
    a, b = WorkerRelay(Wire(master, "a")), WorkerRelay(Wire(master, "b"))
    for n in range(3):
        a.add(record(n))
    b.add(record(9))
    a.send()
    b.send()
    b.add(record(10))  # made, never sent: b is lost before its next batch
    master.update_roster({"a": "running", "b": "missing", "c": "running"}, index, "t1")
    assert master.roster["b"].left == "missing" and master.roster["b"].left_at == "t1"
    assert master.roster["c"].late and master.roster["c"].joined_at == "t1"
    master.update_roster({"a": "running", "c": "running"}, index, "t2")
    assert master.roster["b"].left_at == "t1"  # left once
    a.send(done=DONE)
    master.update_roster({"c": "running"}, index, "t3")  # a stopped after its last report: it finished, not lost
    assert master.roster["a"].finished and master.roster["a"].left is None and master.roster["a"].left_at == "t3"
    assert [w.client_id for w in master.waiting_for()] == ["c"]
    assert len(kept) == sum(w.records for w in master.roster.values()) == 4
    assert master.roster["a"].sent == master.roster["a"].records == 3 and master.roster["b"].sent == 1
    notes = master.notes()
    assert any(n.startswith("Locust worker 1 (b) stopped answering heartbeats at t1") for n in notes)
    assert any(n.startswith("Locust worker 2 (c) joined late") for n in notes)


def test_the_master_waits_for_connected_workers_only_not_for_lost_ones() -> None:
    master = MasterRelay(lambda r: None)
    master.open = True
    present = {"a": "running", "b": "running"}
    master.update_roster(present, {"a": 0, "b": 1}.__getitem__, "t0", started=False)
    WorkerRelay(Wire(master, "a")).send(done=DONE)
    present["b"] = "missing"
    refresh = lambda: master.update_roster(present, {"a": 0, "b": 1}.__getitem__, "t1")  # noqa: E731
    assert master.wait_for_workers(expected=2, timeout_s=5, refresh=refresh) is None
    assert master.roster["b"].left == "missing"


def test_npc_ids_are_unique_across_workers_and_unchanged_for_one_process() -> None:
    assert npc_identity(7, None, None) == ("npc-7", "7", 7)
    assert npc_identity(3, 1, 2) == ("npc-7", "7", 7)  # --processes 2: numbered as one process would
    assert {npc_identity(n, w, 2)[0] for w in range(2) for n in range(50)} == {f"npc-{i}" for i in range(100)}
    ids = {npc_identity(n, w, None)[0] for w in range(5) for n in range(50)}  # `bench worker`s, however many join
    assert len(ids) == 250 and "npc-w4-49" in ids


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", "--mix", "npc-cpu", *argv])


def test_master_flags_are_checked_and_become_locusts_own() -> None:
    args = parse("--master", "--expect-workers", "3", "--master-bind-port", "6000")
    check_distribution(args, "closed")
    assert distribution_args(args) == ["--master", "--expect-workers", "3", "--expect-workers-max-wait", "300",
                                       "--master-bind-host", "127.0.0.1", "--master-bind-port", "6000",
                                       "--enable-rebalancing"]
    assert distribution_args(parse("--processes", "2")) == ["--processes", "2"] and distribution_args(parse()) == []
    for bad, shape in ((("--master", "--processes", "2"), "closed"), (("--master", "--expect-workers", "0"), "closed"),
                       (("--master", "--master-bind-port", "70000"), "closed"), (("--master",), "tick")):
        with pytest.raises(CommandError):
            check_distribution(parse(*bad), shape)


def test_a_worker_without_the_proxy_key_refuses_to_start(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(worker.KEY_ENV, raising=False)
    monkeypatch.setenv("NPCBENCH_HOME", str(tmp_path))
    args = build_parser().parse_args(["worker"])
    with pytest.raises(CommandError, match="LITELLM_MASTER_KEY"):
        worker.run(args)
    with pytest.raises(CommandError, match="--proxy-url"):
        worker.run(build_parser().parse_args(["worker", "--proxy-url", "10.0.0.7:4000"]))
