"""A results folder is readable at every moment: while running, after a crash, and once complete."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import pytest

from bench.cli import main
from bench.load.metrics import PREFIX_CACHE_HITS, PREFIX_CACHE_QUERIES
from bench.records import EnvLock, GitState, Manifest, PrefixCacheCounters, RequestRecord, lock_mismatch
from bench.report.summary import summarize
from bench.rundir import (
    DIRTY_TREE_NOTE,
    RunDir,
    cache_state,
    env_lock,
    labelled_run_id,
    machine_info,
    new_run_id,
    read_manifest,
    read_requests,
    says_simulated,
)
from bench.spec import load_mix
from serve.common import now_iso
from serve.spec import load_profile
from serve.tasks import STAMP_NAME


def manifest(run_id: str = "r1") -> Manifest:
    return Manifest(run_id=run_id, status="running", started_at=now_iso(), mix=load_mix("npc-cpu"),
                    stack=load_profile("cpu"), endpoints={"proxy": "http://127.0.0.1:4000/v1"},
                    versions={"locust": "2.47.0"}, git=GitState(commit="abc", dirty=False), machine=machine_info())


def record(i: int) -> RequestRecord:
    return RequestRecord(cls="ambient", kind="ambient", group="light", npc_id=f"npc-{i}", t_start=float(i),
                         e2e_s=0.5, max_tokens=8, output_tokens=8, outcome="ok")


def test_run_folder_is_readable_while_running_and_after_close(tmp_path) -> None:
    run = RunDir(tmp_path / "r1", manifest())
    assert read_manifest(tmp_path / "r1").status == "running"
    run.add(record(1))
    run.add(record(2))
    assert len(read_requests(tmp_path / "r1")) == 2  # flushed as it goes
    run.close("complete", summarize(read_requests(tmp_path / "r1"), duration_s=10.0))
    done = read_manifest(tmp_path / "r1")
    assert done.status == "complete" and done.ended_at and done.summary.all.requests == 2
    assert done.summary.classes["ambient"].throughput_rps == 0.2
    assert done.stack == load_profile("cpu") and done.mix.name == "npc-cpu"  # typed all the way back
    assert done.files["requests"] == "requests.jsonl"


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path) -> None:
    run = RunDir(tmp_path / "r2", manifest("r2"))
    run.add(record(1))
    with open(tmp_path / "r2" / "requests.jsonl", "a") as f:
        f.write('{"cls": "ambient", "kind": "amb')  # the process died mid-write
    df = read_requests(tmp_path / "r2")
    assert list(df.npc_id) == ["npc-1"]
    assert read_manifest(tmp_path / "r2").status == "running"  # never closed: not complete


def test_manifest_describes_the_machine(tmp_path) -> None:
    RunDir(tmp_path / "r3", manifest("r3"))
    data = json.loads((tmp_path / "r3" / "manifest.json").read_text())
    assert data["machine"]["cores"] >= 1 and data["machine"]["memory_gib"] > 0
    assert data["git"]["commit"] == "abc"


def test_run_ids_sort_by_time() -> None:
    earlier = new_run_id("npc-cpu", datetime(2026, 11, 22, 3, 0, 0, tzinfo=UTC))
    later = new_run_id("npc-cpu", datetime(2026, 11, 22, 3, 0, 1, tzinfo=UTC))
    assert earlier == "20261122-030000-npc-cpu" and earlier < later


@pytest.mark.parametrize(("given", "named"), [
    ("npc-gpu", "npc-gpu-sim"), ("npc-gpu-sim", "npc-gpu-sim"), ("s0-l1-r2", "s0-l1-r2-sim"), ("x-sim-r3", "x-sim-r3"),
    ("cpu-sim-shared", "cpu-sim-shared-sim"),  # "-sim" inside the name (the profile's) is not the label
    ("simulated", "simulated-sim"), ("a-sim-rx", "a-sim-rx-sim"),
])
def test_a_simulated_run_is_named_so_at_the_end(given: str, named: str) -> None:
    assert labelled_run_id(given, simulated=True) == named and says_simulated(named)
    assert labelled_run_id(given, simulated=False) == given
    assert new_run_id("npc-gpu", datetime(2026, 11, 22, tzinfo=UTC), simulated=True).endswith("-npc-gpu-sim")


def test_a_run_names_the_lock_its_environment_was_installed_from(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert env_lock() is None  # no stamp: not installed by serve/tasks.py (pixi, or by hand)
    stamp = {"name": "cpu", "lock": "serve/locks/cpu.txt", "lock_sha256": "ab" * 32, "recipe": "3"}
    (tmp_path / STAMP_NAME).write_text(json.dumps(stamp))  # as serve/tasks.py writes it
    lock = env_lock()
    assert lock == EnvLock(name="cpu", lock="serve/locks/cpu.txt", lock_sha256="ab" * 32)
    run = RunDir(tmp_path / "r4", manifest("r4").model_copy(update={"env_lock": lock}))
    assert read_manifest(run.path).env_lock == lock


def test_runs_from_different_locks_are_flagged() -> None:
    cpu = EnvLock(name="cpu", lock="serve/locks/cpu.txt", lock_sha256="ab" * 32)
    relocked = cpu.model_copy(update={"lock_sha256": "cd" * 32})
    assert lock_mismatch({"a": cpu, "b": cpu}) is None
    assert lock_mismatch({"old-1": None, "old-2": None}) is None  # folders from before locks: alike
    warning = lock_mismatch({"a": cpu, "b": relocked, "old": None})
    assert warning is not None
    assert "sha256 abababababab: a" in warning and "sha256 cdcdcdcdcdcd: b" in warning
    assert "no recorded lock: old" in warning


def test_show_warns_when_runs_came_from_different_locks(tmp_path, capsys) -> None:
    for run_id, sha in (("a", "ab"), ("b", "cd")):
        lock = EnvLock(name="cpu", lock="serve/locks/cpu.txt", lock_sha256=sha * 32)
        RunDir(tmp_path / run_id, manifest(run_id).model_copy(update={"env_lock": lock})).close("complete")
    assert main(["show", str(tmp_path / "a")]) == 0
    shown = capsys.readouterr()
    assert "installed from serve/locks/cpu.txt (sha256 abababababab)" in shown.out and "warning" not in shown.err
    assert main(["show", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "different Python environments" in capsys.readouterr().err


def test_cache_state_says_warm_when_a_worker_looked_up_prompts_and_was_not_reset() -> None:
    first = {"light-0": {PREFIX_CACHE_QUERIES: 0.0, PREFIX_CACHE_HITS: 0.0},
             "heavy-0": {PREFIX_CACHE_QUERIES: 1200.0, PREFIX_CACHE_HITS: 800.0}, "proxy": {}}
    state = cache_state(first, ["light-0", "heavy-0"], reset=False)
    assert state.warm and state.at_start["heavy-0"] == PrefixCacheCounters(queries=1200.0, hits=800.0)
    assert set(state.at_start) == {"light-0", "heavy-0"}  # the proxy is no worker
    assert not cache_state(first, ["light-0", "heavy-0"], reset=True).warm  # emptied just before the start
    assert not cache_state({"light-0": {}}, ["light-0"], reset=False).warm  # a fresh worker has looked up nothing


def test_a_run_from_a_dirty_tree_says_so_in_bench_show(tmp_path, capsys) -> None:
    dirty = manifest("dirty")
    dirty.notes.append(DIRTY_TREE_NOTE)
    RunDir(tmp_path / "dirty", dirty).close("complete")
    assert main(["show", str(tmp_path / "dirty")]) == 0
    assert "MEASURED FROM A DIRTY TREE" in capsys.readouterr().out
