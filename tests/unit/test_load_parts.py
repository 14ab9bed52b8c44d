"""bench/load's parts with logic of their own: the class schedule, the load generator's cost, the relay of records
between Locust processes, and the notes a run's manifest opens with. (Locust itself is not imported here: it
monkey-patches the interpreter; the whole is run through Locust in test_run.py.)"""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from bench.load.classes import ClassPicker
from bench.load.folder import note_start
from bench.load.loops import client_load
from bench.load.relay import RECORDS_MESSAGE, MasterRelay, WorkerRelay
from bench.records import ClientLoad, RequestRecord
from bench.spec import load_mix, mix_names


def test_the_class_schedule_gives_each_class_its_weight_in_every_cycle() -> None:
    mix = next(m for m in map(load_mix, mix_names()) if len(m.classes) >= 3)
    weights = {name: mix.mix.weights[name] for name in mix.classes}
    cycle = round(sum(weights.values()) / min(weights.values()))
    picker = ClassPicker(mix)
    for _ in range(3):  # every cycle, not only on average
        drawn = Counter(picker.next().name for _ in range(cycle))
        assert set(drawn) == set(weights)
        for name, weight in weights.items():
            assert abs(drawn[name] - cycle * weight / sum(weights.values())) <= 1


def test_client_load_sums_cpu_over_processes_and_keeps_the_worst_lags() -> None:
    alone = client_load(2.0, [0.001, 0.002, 0.010], [], requests=100)
    assert (alone.processes, alone.cpu_s, alone.cpu_ms_per_request, alone.loop_lag_max_ms) == (1, 2.0, 20.0, 10.0)
    workers = [ClientLoad(cpu_s=3.0, cpu_ms_per_request=None, loop_lag_p50_ms=1.0, loop_lag_p99_ms=5.0,
                          loop_lag_max_ms=9.0),
               ClientLoad(cpu_s=1.0, cpu_ms_per_request=None, loop_lag_p50_ms=2.0, loop_lag_p99_ms=4.0,
                          loop_lag_max_ms=30.0)]
    master = client_load(0.5, [0.5], workers, requests=0)  # the master's own lags are not the load's
    assert (master.processes, master.cpu_s, master.cpu_ms_per_request) == (2, 4.5, None)
    assert (master.loop_lag_p50_ms, master.loop_lag_p99_ms, master.loop_lag_max_ms) == (2.0, 5.0, 30.0)


def record(n: int) -> RequestRecord:
    return RequestRecord(cls="ambient", kind="plain", group="light", npc_id=f"npc-{n}", t_start=float(n), e2e_s=0.1,
                         max_tokens=8, outcome="ok")


class Wire:
    """Locust's runner as the relay uses it: messages go straight to the master."""

    def __init__(self, master: MasterRelay, node_id: str) -> None:
        self.master, self.node_id = master, node_id

    def send_message(self, kind: str, data: dict) -> None:
        assert kind == RECORDS_MESSAGE
        self.master.received(None, SimpleNamespace(data=data, node_id=self.node_id))


def test_records_relayed_from_worker_processes_reach_the_master_once_and_their_end_is_counted() -> None:
    kept: list[RequestRecord] = []
    master = MasterRelay(kept.append)
    workers = [WorkerRelay(Wire(master, f"w{i}")) for i in range(2)]
    workers[0].add(record(0))
    workers[0].send()  # before the run is open: dropped, as records after its close are
    assert kept == [] and master.workers_done == {}
    master.open = True
    workers[0].add(record(1))
    workers[1].add(record(2))
    workers[0].send()
    workers[0].send()  # nothing new: nothing sent twice
    assert [r.npc_id for r in kept] == ["npc-1"]
    assert master.wait_for_workers(expected=2, timeout_s=0.1) == ("only 0 of 2 Locust worker processes sent their last "
                                                                   "records before the run was closed; the rest are missing")
    done = ClientLoad(cpu_s=1.0, cpu_ms_per_request=None, loop_lag_p50_ms=0.1, loop_lag_p99_ms=0.2, loop_lag_max_ms=0.3)
    for worker in workers:
        worker.send(done=done)
    assert [r.npc_id for r in kept] == ["npc-1", "npc-2"] and set(master.workers_done) == {"w0", "w1"}
    assert master.wait_for_workers(expected=2, timeout_s=0.1) is None


def test_a_simulated_runs_manifest_says_so_first_and_a_dirty_tree_is_noted() -> None:
    manifest = SimpleNamespace(notes=["sent straight to worker light-0"], simulated=True,
                               git=SimpleNamespace(dirty=True), cache=None)
    note_start(manifest, {"light-0": {}}, ["light-0"], cache_reset=False)  # type: ignore[arg-type]
    assert manifest.notes[0].startswith("SIMULATED") and any("DIRTY" in note for note in manifest.notes)
    assert manifest.cache.reset is False and manifest.cache.at_start["light-0"].queries == 0.0
