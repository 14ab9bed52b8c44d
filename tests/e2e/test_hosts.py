"""Load from several hosts into one folder: `bench run --master` and `bench worker` processes started as separate
commands, as they would be on other hosts (here all on 127.0.0.1), against the session's stack."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.rundir import read_manifest, read_requests

pytestmark = pytest.mark.e2e
BENCH = [sys.executable, "-m", "bench"]
MASTER_PORT = 5597  # not Locust's default, so a stray master elsewhere on the machine is never joined


def worker() -> subprocess.Popen:
    return subprocess.Popen([*BENCH, "worker", "--master-port", str(MASTER_PORT)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def locust_of(process: subprocess.Popen) -> psutil.Process:
    """The Locust worker process a `bench worker` runs: what a lost host takes down."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if children := psutil.Process(process.pid).children():
            return children[0]
        time.sleep(0.2)
    raise AssertionError("`bench worker` started no Locust process")


def test_a_master_and_workers_started_apart_write_one_folder_and_record_a_lost_worker(stack: dict,
                                                                                       tmp_path: Path) -> None:
    """Three workers join (as from three hosts); one is killed mid-run (a lost host). The master's one folder holds
    every record the workers sent: its request count is the sum of the workers' counts, each worker that finished
    sent all it made, NPC ids are unique across workers, and the lost worker is in the manifest as missing."""
    master = subprocess.Popen([*BENCH, "run", "--mix", "npc-cpu", "--npcs", "6", "--duration-s", "20", "--master",
                               "--expect-workers", "3", "--master-bind-port", str(MASTER_PORT), "--no-html-report",
                               "--results-dir", str(tmp_path), "--run-id", "hosts"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers = [worker() for _ in range(3)]
    try:
        lost = locust_of(workers[2])
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob("hosts*/manifest.json")) and time.monotonic() < deadline:
            time.sleep(0.5)  # the run has started: the master opened its folder
        time.sleep(8)
        lost.send_signal(signal.SIGKILL)
        out, _ = master.communicate(timeout=600)
        print(out[-4000:])
        assert master.returncode == 0, out[-3000:]
        for w in workers[:2]:
            assert w.wait(timeout=120) == 0, w.stdout.read() if w.stdout else ""
    finally:
        for p in [master, *workers]:
            if p.poll() is None:
                p.kill()
                p.wait()

    [run] = tmp_path.glob("hosts*")  # `hosts-sim` on a simulated stack
    manifest = read_manifest(run)
    requests = read_requests(run)
    assert manifest.status == "complete"
    assert (run / "server_metrics.csv").stat().st_size > 0 and (run / "locust_stats.csv").stat().st_size > 0
    roster = manifest.load_workers
    assert [w.index for w in roster] == [0, 1, 2] and not any(w.late for w in roster)
    assert len(requests) == sum(w.records for w in roster) > 0
    finished = [w for w in roster if w.finished]
    assert len(finished) == 2 and all(w.records == w.sent and w.left is None for w in finished)
    [gone] = [w for w in roster if not w.finished]
    assert gone.left == "missing" and gone.left_at is not None
    assert any(f"Locust worker {gone.index}" in note and "heartbeats" in note for note in manifest.notes)
    # NPC ids carry their worker's index: unique across workers, each worker's NPCs its own
    by_worker = requests.groupby(requests.npc_id.str.extract(r"^npc-w(\d+)-\d+$", expand=False)).size()
    assert by_worker.index.notna().all() and set(by_worker.index.astype(int)) <= {0, 1, 2}
    for w in roster:
        assert by_worker.get(str(w.index), 0) == w.records
